// Generators: loading the three forms, conditioning, sampling, saving (diffusion/pipeline.h).
#include "diffusion/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/unet_model.h"
#include "engine/autograd.h"
#include "engine/fs.h"
#include "engine/json.h"
#include "engine/ops.h"
#include "engine/params.h"
#include "engine/safetensors.h"

static int fail(char *error, size_t error_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *error, size_t error_size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(error, error_size, fmt, args);
    va_end(args);
    return -1;
}

static JsonValue *read_json(const char *path, char *error, size_t error_size) {
    char *text = fs_read_text(path, error, error_size);
    if (!text) return NULL;
    char message[256];
    JsonValue *root = json_parse(text, strlen(text), message, sizeof message);
    free(text);
    if (!root) fail(error, error_size, "%s: %s", path, message);
    else if (json_type(root) != JSON_OBJECT) fail(error, error_size, "%s: not a JSON object", path), json_free(root), root = NULL;
    return root;
}

static char **string_list(const JsonValue *list, int64_t *count) {
    *count = (int64_t)json_length(list);
    if (*count == 0) return NULL;
    char **out = calloc((size_t)*count, sizeof *out);
    if (!out) tensor_fatal("pipeline", "out of memory");
    for (int64_t i = 0; i < *count; i++) {
        const char *s = json_string(json_at(list, (size_t)i));
        out[i] = strdup(s ? s : "");
        if (!out[i]) tensor_fatal("pipeline", "out of memory");
    }
    return out;
}

// ---------------------------------------------------------------- scheduler config

// The fields of a diffusers scheduler_config.json the samplers share (any scheduler class: SD
// folders ship PNDMScheduler's, whose schedule fields are the same).
static int read_scheduler(const char *path, SamplerConfig *config, bool *spacing_set, char *error, size_t error_size) {
    JsonValue *root = read_json(path, error, error_size);
    if (!root) return -1;
    int64_t v;
    double d;
    int b;
    int status = 0;
    if (json_int64(json_get(root, "num_train_timesteps"), &v) == 0) config->num_train_timesteps = (int)v;
    if (json_double(json_get(root, "beta_start"), &d) == 0) config->beta_start = d;
    if (json_double(json_get(root, "beta_end"), &d) == 0) config->beta_end = d;
    if (json_int64(json_get(root, "steps_offset"), &v) == 0) config->steps_offset = (int)v;
    if (json_bool(json_get(root, "clip_sample"), &b) == 0) config->clip_sample = b;
    if (json_bool(json_get(root, "set_alpha_to_one"), &b) == 0) config->set_alpha_to_one = b;
    const char *spacing = json_string(json_get(root, "timestep_spacing"));
    if (spacing) {
        if (!strcmp(spacing, "leading")) config->timestep_spacing = SPACING_LEADING;
        else if (!strcmp(spacing, "trailing")) config->timestep_spacing = SPACING_TRAILING;
        else if (!strcmp(spacing, "linspace")) config->timestep_spacing = SPACING_LINSPACE;
        else status = fail(error, error_size, "%s: timestep_spacing \"%s\" is not leading, trailing or linspace", path, spacing);
        *spacing_set = true;
    }
    const char *schedule = json_string(json_get(root, "beta_schedule"));
    const char *prediction = json_string(json_get(root, "prediction_type"));
    char where[4200];
    snprintf(where, sizeof where, "%s", path);
    if (schedule) config->beta_schedule = beta_schedule_from_name(schedule, where);
    if (prediction) config->prediction_type = prediction_type_from_name(prediction, where);
    if (config->num_train_timesteps < 1) status = fail(error, error_size, "%s: num_train_timesteps must be >= 1", path);
    json_free(root);
    return status;
}

// ---------------------------------------------------------------- loading

static ParamStore *new_store(Pipeline *p) {
    for (int i = 0; i < 4; i++)
        if (!p->stores[i]) return p->stores[i] = params_new();
    tensor_fatal("pipeline", "too many parameter stores");
    return NULL;
}

static int load_vae_folder(Pipeline *p, const char *folder, char *error, size_t error_size) {
    SdConfig config = sd1_config();
    char weights[4200];
    if (sd_component_config(folder, SD_PART_VAE, &config, weights, sizeof weights, error, error_size) != 0) return -1;
    ParamStore *store = new_store(p);
    vae_create(&p->vae_storage, store, "", config.vae, NULL);
    params_finalize(store);
    p->vae = &p->vae_storage;
    if (sd_component_load_weights(weights, SD_PART_VAE, &config, store, error, error_size) != 0) return -1;
    p->latent_channels = config.vae.latent_channels;
    p->latent_factor = (int64_t)1 << (config.vae.levels - 1);
    return 0;
}

// The parts of a Stable Diffusion model loaded by models/sd_checkpoint.
static void adopt_sd(Pipeline *p) {
    p->unet = &p->sd->unet;
    p->vae = &p->sd->vae;
    p->text_encoder = &p->sd->text_encoder;
    p->clip_tokenizer = p->sd->tokenizer;
    p->context_length = CLIP_CONTEXT_LENGTH;
    p->latent_channels = p->sd->config.vae.latent_channels;
    p->latent_factor = (int64_t)1 << (p->sd->config.vae.levels - 1);
    p->condition = PIPELINE_TEXT;
}

// A folder written by `tailor diffusion-train` (or any diffusers folder with a UNet and optional
// VAE, text encoder with the word tokenizer or CLIP tokenizer).
static int load_folder(Pipeline *p, const char *folder, const PipelineLoadOptions *options, char *error, size_t error_size) {
    char path[4200], weights[4200];
    snprintf(path, sizeof path, "%s/model_index.json", folder);
    if (!fs_is_file(path))
        return fail(error, error_size, "%s: no model_index.json: not a generator folder (see docs/GENERATE.md for the forms "
                    "--model takes)", folder);
    JsonValue *extra = NULL;
    snprintf(path, sizeof path, "%s/tailor.json", folder);
    if (fs_is_file(path)) {
        if (!(extra = read_json(path, error, error_size))) return -1;
        const char *format = json_string(json_get(extra, "format"));
        if (!format || strcmp(format, PIPELINE_FORMAT)) {
            fail(error, error_size, "%s: format %s, expected \"%s\"", path, format ? format : "missing", PIPELINE_FORMAT);
            json_free(extra);
            return -1;
        }
    }
    // Stable Diffusion layout (VAE + CLIP text encoder + BPE tokenizer): the SD loader, which also
    // knows the older VAE names.
    char vocab[4200], word_vocab[4200], text_folder[4200], vae_folder[4200];
    snprintf(vocab, sizeof vocab, "%s/tokenizer/vocab.json", folder);
    snprintf(word_vocab, sizeof word_vocab, "%s/tokenizer/tailor-word-vocab.txt", folder);
    snprintf(text_folder, sizeof text_folder, "%s/text_encoder", folder);
    snprintf(vae_folder, sizeof vae_folder, "%s/vae", folder);
    int status = 0;
    if (fs_is_file(vocab) && fs_is_directory(text_folder) && fs_is_directory(vae_folder) && !(options && options->vae)) {
        SdLoadOptions sd_options = {.tokenizer = options ? options->tokenizer : NULL};
        p->sd = sd_model_load(folder, &sd_options, error, error_size);
        if (!p->sd) return json_free(extra), -1;
        adopt_sd(p);
    } else {
        SdConfig config = sd1_config();
        snprintf(path, sizeof path, "%s/unet", folder);
        if (sd_component_config(path, SD_PART_UNET, &config, weights, sizeof weights, error, error_size) != 0)
            return json_free(extra), -1;
        ParamStore *store = new_store(p);
        unet_create(&p->unet_storage, store, "", config.unet, NULL);
        params_finalize(store);
        p->unet = &p->unet_storage;
        if (sd_component_load_weights(weights, SD_PART_UNET, &config, store, error, error_size) != 0)
            return json_free(extra), -1;
        p->latent_channels = config.unet.in_channels;
        p->latent_factor = 1;
        p->condition = config.unet.num_class_embeds > 0 ? PIPELINE_CLASS : PIPELINE_UNCONDITIONAL;
        if (fs_is_directory(text_folder)) {
            if (sd_component_config(text_folder, SD_PART_TEXT, &config, weights, sizeof weights, error, error_size) != 0)
                return json_free(extra), -1;
            store = new_store(p);
            clip_text_create(&p->text_storage, store, "", config.text, NULL);
            params_finalize(store);
            p->text_encoder = &p->text_storage;
            if (sd_component_load_weights(weights, SD_PART_TEXT, &config, store, error, error_size) != 0)
                return json_free(extra), -1;
            p->condition = PIPELINE_TEXT;
            char message[512];
            if (fs_is_file(word_vocab)) {
                p->word_tokenizer = word_tokenizer_load(word_vocab, message, sizeof message);
                int64_t length;
                if (json_int64(json_get(extra, "context_length"), &length) != 0) length = config.text.max_positions;
                p->context_length = (int)length;
            } else {
                snprintf(path, sizeof path, "%s/tokenizer", folder);
                const char *tokenizer = options && options->tokenizer ? options->tokenizer : path;
                p->clip_tokenizer = clip_tokenizer_load(tokenizer, message, sizeof message);
                p->context_length = CLIP_CONTEXT_LENGTH;
            }
            if (!p->word_tokenizer && !p->clip_tokenizer) return json_free(extra), fail(error, error_size, "%s", message);
            int32_t ids = p->word_tokenizer ? word_tokenizer_vocab_size(p->word_tokenizer)
                                            : clip_tokenizer_vocab_size(p->clip_tokenizer);
            if (ids > config.text.vocab_size)
                status = fail(error, error_size, "%s: the tokenizer has %d ids, but the text encoder's vocabulary has %lld rows",
                              folder, (int)ids, (long long)config.text.vocab_size);
            if (p->context_length < 2 || p->context_length > config.text.max_positions)
                status = fail(error, error_size, "%s/tailor.json: context_length %d must be in 2..%lld (the text encoder's "
                              "positions)", folder, p->context_length, (long long)config.text.max_positions);
            if (status == 0 && !config.unet.cross_attention_dim)
                status = fail(error, error_size, "%s: a text encoder but a UNet without cross-attention", folder);
            if (status == 0 && config.text.width != config.unet.cross_attention_dim)
                status = fail(error, error_size, "%s: the text encoder is %lld wide but the UNet attends to %lld-wide states",
                              folder, (long long)config.text.width, (long long)config.unet.cross_attention_dim);
        }
        if (status == 0 && !(options && options->vae) && fs_is_directory(vae_folder))
            status = load_vae_folder(p, vae_folder, error, error_size);
    }
    if (status == 0 && options && options->vae) status = load_vae_folder(p, options->vae, error, error_size);
    if (status == 0 && p->vae && p->vae->config.latent_channels != p->unet->config.in_channels)
        status = fail(error, error_size, "%s: the VAE has %lld latent channels, the UNet takes %lld", folder,
                      (long long)p->vae->config.latent_channels, (long long)p->unet->config.in_channels);
    if (status == 0) {
        snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", folder);
        if (fs_is_file(path)) status = read_scheduler(path, &p->scheduler, &p->scheduler_spacing_set, error, error_size);
    }
    if (status == 0 && p->condition == PIPELINE_CLASS) p->num_classes = p->unet->config.num_class_embeds - 1;
    int64_t size = 0;
    if (status == 0 && extra) {
        json_int64(json_get(extra, "image_size"), &size);
        int64_t names = 0;
        p->class_names = string_list(json_get(extra, "class_names"), &names);
        if (p->condition == PIPELINE_CLASS && names && names != p->num_classes)
            status = fail(error, error_size, "%s/tailor.json: %lld class names for %lld classes", folder, (long long)names,
                          (long long)p->num_classes);
        int64_t prompts = 0, steps = 0;
        p->sample_prompts = string_list(json_get(extra, "sample_prompts"), &prompts);
        p->n_sample_prompts = (int)prompts;
        // Recommended sampling settings, when the folder's maker measured them.
        if (json_double(json_get(extra, "guidance_scale"), &p->guidance_scale) != 0) p->guidance_scale = 0;
        if (json_int64(json_get(extra, "sampling_steps"), &steps) == 0 && steps > 0 && steps <= 100000) p->sampling_steps = (int)steps;
    }
    // Otherwise the UNet config's sample_size (in latent pixels), else SD's 512 (64 x 8) or 32 pixels.
    if (status == 0 && size <= 0) {
        snprintf(path, sizeof path, "%s/unet/config.json", folder);
        JsonValue *unet_json = read_json(path, error, error_size);
        int64_t sample_size = 0;
        if (unet_json && json_int64(json_get(unet_json, "sample_size"), &sample_size) == 0 && sample_size > 0)
            size = sample_size * p->latent_factor;
        json_free(unet_json);
    }
    p->image_size = size > 0 ? size : p->vae ? 64 * p->latent_factor : 32;
    json_free(extra);
    return status;
}

// The official DiT weights, with the configuration read off the shapes.
static int load_dit(Pipeline *p, const char *path, SafetensorsFile *file, const PipelineLoadOptions *options, char *error,
                    size_t error_size) {
    const SafetensorsEntry *patch = safetensors_find(file, "x_embedder.proj.weight");
    const SafetensorsEntry *pos = safetensors_find(file, "pos_embed");
    const SafetensorsEntry *table = safetensors_find(file, "y_embedder.embedding_table.weight");
    const SafetensorsEntry *final = safetensors_find(file, "final_layer.linear.weight");
    if (!pos || !table || !final || patch->ndim != 4 || pos->ndim != 3 || table->ndim != 2 || final->ndim != 2)
        return fail(error, error_size, "%s: a DiT checkpoint needs pos_embed, y_embedder.embedding_table.weight and "
                    "final_layer.linear.weight with their official shapes", path);
    DitConfig c = {.hidden = patch->shape[0], .in_channels = patch->shape[1], .patch_size = patch->shape[2], .mlp_ratio = 4.0};
    int64_t tokens = pos->shape[1], grid = (int64_t)llround(sqrt((double)tokens));
    c.input_size = grid * c.patch_size;
    while (true) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.qkv.weight", c.depth);
        if (!safetensors_find(file, name)) break;
        c.depth++;
    }
    // Heads are not in the shapes: the paper's per-width choice (S 6, B 12, L and XL 16), else 64 wide.
    c.heads = c.hidden == 384 ? 6 : c.hidden == 768 ? 12 : c.hidden == 1024 || c.hidden == 1152 ? 16 : (int)(c.hidden / 64);
    c.learn_sigma = final->shape[0] == c.patch_size * c.patch_size * 2 * c.in_channels;
    // The official models train with class dropout, so the table holds the null row after the classes.
    c.num_classes = table->shape[0] - 1;
    c.null_class = true;
    char message[512];
    if (grid * grid != tokens || c.heads < 1 || dit_check_config(&c, message, sizeof message) != 0)
        return fail(error, error_size, "%s: the tensor shapes do not give a DiT configuration (%s)", path,
                    grid * grid != tokens ? "pos_embed is not a square grid" : message);
    if (!options || !options->vae)
        return fail(error, error_size, "%s: a DiT model works in a VAE's latent space: give the VAE folder with --vae "
                    "(e.g. stabilityai/sd-vae-ft-ema)", path);
    ParamStore *store = new_store(p);
    dit_create(&p->dit_storage, store, "", c, NULL);
    params_finalize(store);
    p->dit = &p->dit_storage;
    char report[256];
    if (params_load(store, path, false, false, report, sizeof report, error, error_size) != 0) return -1;
    if (load_vae_folder(p, options->vae, error, error_size) != 0) return -1;
    if (p->vae->config.latent_channels != c.in_channels)
        return fail(error, error_size, "%s: the VAE has %lld latent channels, the DiT takes %lld", options->vae,
                    (long long)p->vae->config.latent_channels, (long long)c.in_channels);
    p->condition = PIPELINE_CLASS;
    p->num_classes = c.num_classes;
    p->image_size = c.input_size * p->latent_factor;
    // The official sampling: linear betas 1e-4 .. 0.02 over 1000 steps, epsilon (sampler defaults).
    return 0;
}

Pipeline *pipeline_load(const char *path, const PipelineLoadOptions *options, char *error, size_t error_size) {
    Pipeline *p = calloc(1, sizeof *p);
    if (!p) tensor_fatal("pipeline", "out of memory");
    p->scheduler = sampler_config_defaults(SAMPLER_DDIM);
    int status;
    if (fs_is_directory(path)) {
        status = load_folder(p, path, options, error, error_size);
    } else if (!fs_is_file(path)) {
        status = fail(error, error_size, "%s: no such file or folder", path);
    } else {
        SafetensorsFile *file = NULL;
        status = safetensors_open(path, &file, error, error_size);
        if (status == 0 && safetensors_find(file, "x_embedder.proj.weight")) {
            status = load_dit(p, path, file, options, error, error_size);
        } else if (status == 0) {
            SdLoadOptions sd_options = {.tokenizer = options ? options->tokenizer : NULL};
            p->sd = sd_model_load(path, &sd_options, error, error_size);
            if (!p->sd) status = -1;
            else {
                adopt_sd(p);
                p->image_size = 512;
                // SD 1.x's scheduler: scaled_linear 0.00085 .. 0.012, steps_offset 1.
                p->scheduler.beta_schedule = BETA_SCALED_LINEAR;
                p->scheduler.beta_start = 0.00085, p->scheduler.beta_end = 0.012;
                p->scheduler.steps_offset = 1;
                p->scheduler.clip_sample = false, p->scheduler.set_alpha_to_one = false;
            }
        }
        safetensors_close(file);
    }
    if (status == 0 && options && options->vae && p->sd)
        status = fail(error, error_size, "%s: --vae replaces the VAE of a folder or DiT model, not of a single-file "
                      "Stable Diffusion checkpoint", path);
    if (status != 0) {
        pipeline_free(p);
        return NULL;
    }
    const char *space = p->vae ? "latent" : "pixel";
    const char *kind = p->condition == PIPELINE_TEXT ? "text-conditional" : p->condition == PIPELINE_CLASS ? "class-conditional"
                                                                                                           : "unconditional";
    int64_t parameters = 0;
    for (int i = 0; i < 4; i++) parameters += p->stores[i] ? params_count_elements(p->stores[i]) : 0;
    if (p->sd) parameters = params_count_elements(p->sd->unet_params) + params_count_elements(p->sd->vae_params) +
                            params_count_elements(p->sd->text_params);
    snprintf(p->description, sizeof p->description, "%s: %s %s %s-space generator, %lld parameters, %lldx%lld images", path,
             kind, p->dit ? "DiT" : "UNet", space, (long long)parameters, (long long)p->image_size, (long long)p->image_size);
    return p;
}

void pipeline_free(Pipeline *p) {
    if (!p) return;
    if (p->sd) sd_model_free(p->sd);
    if (p->unet == &p->unet_storage) unet_free(&p->unet_storage);
    if (p->dit == &p->dit_storage) dit_free(&p->dit_storage);
    if (p->vae == &p->vae_storage) vae_free(&p->vae_storage);
    if (p->text_encoder == &p->text_storage) clip_text_free(&p->text_storage);
    if (!p->sd) clip_tokenizer_free(p->clip_tokenizer);
    word_tokenizer_free(p->word_tokenizer);
    for (int i = 0; i < 4; i++) params_free(p->stores[i]);
    for (int64_t i = 0; p->class_names && i < p->num_classes; i++) free(p->class_names[i]);
    free(p->class_names);
    for (int i = 0; i < p->n_sample_prompts; i++) free(p->sample_prompts[i]);
    free(p->sample_prompts);
    free(p);
}

void pipeline_to_device(Pipeline *p, Device device) {
    for (int i = 0; i < 4; i++)
        if (p->stores[i]) params_to_device(p->stores[i], device);
    if (p->sd) {
        params_to_device(p->sd->unet_params, device);
        params_to_device(p->sd->vae_params, device);
        params_to_device(p->sd->text_params, device);
    }
}

// ---------------------------------------------------------------- conditioning

Tensor *pipeline_tokenize(Pipeline *p, const char *const *prompts, int64_t n) {
    if (p->condition != PIPELINE_TEXT) tensor_fatal("pipeline", "this generator takes no text prompts");
    int L = p->context_length;
    Tensor *ids = tensor_empty(DTYPE_I64, SHAPE(n, L));
    int32_t *row = malloc((size_t)L * sizeof *row);
    if (!row) tensor_fatal("pipeline", "out of memory");
    ClipEncodeOptions clip = clip_options_hf();
    clip.context_length = L;
    for (int64_t i = 0; i < n; i++) {
        if (p->word_tokenizer) word_tokenizer_encode(p->word_tokenizer, prompts[i], L, row);
        else clip_tokenizer_encode(p->clip_tokenizer, prompts[i], &clip, row);
        for (int j = 0; j < L; j++) tensor_i64(ids)[i * L + j] = row[j];
    }
    free(row);
    return ids;
}

Tensor *pipeline_text_states(Pipeline *p, const char *const *prompts, int64_t n, Device device) {
    Tensor *ids = pipeline_tokenize(p, prompts, n);
    if (device.kind != DEVICE_CPU) ids = op_to_device(ids, device);
    return clip_text_forward(p->text_encoder, ids, NULL, NULL);
}

Tensor *pipeline_class_labels(const Pipeline *p, const int64_t *class_ids, int64_t n, Device device) {
    if (p->condition != PIPELINE_CLASS) tensor_fatal("pipeline", "this generator takes no class labels");
    Tensor *labels = tensor_empty(DTYPE_I64, SHAPE(n));
    for (int64_t i = 0; i < n; i++) {
        if (class_ids[i] < 0 || class_ids[i] >= p->num_classes)
            tensor_fatal("pipeline", "class %lld is outside 0..%lld", (long long)class_ids[i], (long long)p->num_classes - 1);
        tensor_i64(labels)[i] = class_ids[i];
    }
    return device.kind == DEVICE_CPU ? labels : op_to_device(labels, device);
}

Tensor *pipeline_null_condition(Pipeline *p, Device device) {
    if (p->condition == PIPELINE_TEXT) {
        const char *empty = "";
        return pipeline_text_states(p, &empty, 1, device);
    }
    if (p->condition == PIPELINE_CLASS) {
        Tensor *null = tensor_empty(DTYPE_I64, SHAPE(1));
        tensor_i64(null)[0] = p->num_classes;
        return device.kind == DEVICE_CPU ? null : op_to_device(null, device);
    }
    return NULL;
}

Tensor *pipeline_denoiser(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *context) {
    Pipeline *p = context;
    if (p->dit) return dit_denoiser(x_t, timesteps, condition, p->dit);
    return unet_diffusion_model(x_t, timesteps, condition, p->unet);
}

int64_t pipeline_class_id(const Pipeline *p, const char *name) {
    for (int64_t i = 0; p->class_names && i < p->num_classes; i++)
        if (!strcmp(p->class_names[i], name)) return i;
    char *end;
    errno = 0;
    long long v = strtoll(name, &end, 10);
    if (*name && !*end && errno == 0 && v >= 0 && v < p->num_classes) return v;
    return -1;
}

// ---------------------------------------------------------------- sampling

PipelineSampling pipeline_sampling_defaults(void) {
    return (PipelineSampling){.sampler = SAMPLER_DDIM, .steps = 25, .guidance_scale = 3.0, .eta = 0.0, .image_size = 0};
}

// Standard normal noise [n, ...] with image i's part from its own stream.
static Tensor *per_image_noise(Rng *rngs, int64_t n, Shape shape, Device device) {
    Tensor *noise = tensor_empty(DTYPE_F32, shape);
    int64_t per = tensor_numel(noise) / n;
    for (int64_t i = 0; i < n; i++) rng_fill_normal_f32(&rngs[i], tensor_f32(noise) + i * per, per, 0.0f, 1.0f);
    return device.kind == DEVICE_CPU ? noise : op_to_device(noise, device);
}

// The sample side in pixels, checked against what the model can make.
static int64_t checked_size(const Pipeline *p, const PipelineSampling *s, const char *where) {
    int64_t size = s->image_size > 0 ? s->image_size : p->image_size;
    int64_t multiple = p->latent_factor * (p->dit ? p->dit->config.patch_size : (int64_t)1 << (p->unet->config.levels - 1));
    if (size % multiple)
        tensor_fatal(where, "image size %lld must be a multiple of %lld for this generator", (long long)size, (long long)multiple);
    if (p->dit && size != p->image_size)
        tensor_fatal(where, "this DiT makes %lldx%lld images only (its position table is fixed)", (long long)p->image_size,
                     (long long)p->image_size);
    return size;
}

static Device model_device(const Pipeline *p) {
    return p->dit ? p->dit->pos_embed->storage->device : p->unet->conv_in.weight->storage->device;
}

Tensor *pipeline_sample(Pipeline *p, Tensor *condition, Tensor *initial_noise, Rng *step_rngs, const PipelineSampling *s,
                        const char *where) {
    Device device = model_device(p);
    int64_t n = initial_noise->shape[0];
    bool grad_was = autograd_set_enabled(false);
    SamplerConfig config = p->scheduler;
    SamplerConfig defaults = sampler_config_defaults(s->sampler);
    config.kind = s->sampler;
    if (!p->scheduler_spacing_set) config.timestep_spacing = defaults.timestep_spacing;
    config.variance_type = defaults.variance_type;
    config.eta = s->sampler == SAMPLER_DDIM ? s->eta : 0.0;
    if (s->sampler == SAMPLER_EULER || s->sampler == SAMPLER_EULER_ANCESTRAL) config.clip_sample = false;
    Sampler sampler = sampler_make(config, s->steps, where);
    Shape shape = tensor_shape(initial_noise);
    GuidedModel model = guided_model(pipeline_denoiser, p, condition);
    if (s->guidance_scale != 1.0) {
        model.null_condition = pipeline_null_condition(p, device);
        model.guidance_scale = s->guidance_scale;
        if (!model.null_condition)
            tensor_fatal(where, "guidance needs an unconditional input, which an unconditional model does not have: "
                         "use --guidance 1");
    }
    Tensor *start = initial_noise->storage->device.kind == device.kind ? initial_noise : op_to_device(initial_noise, device);
    Tensor *x = tensor_keep(op_mul_scalar(start, sampler.init_noise_sigma));
    for (int i = 0; i < sampler.num_inference_steps; i++) {
        TensorScope scope = tensor_scope_begin();
        Tensor *out = guided_model_output(&model, sampler_scale_model_input(&sampler, i, x), sampler.timesteps[i]);
        Tensor *noise = NULL;
        if (sampler_step_needs_noise(&sampler, i)) {
            if (!step_rngs) tensor_fatal(where, "this sampler adds noise at every step: give it random streams");
            noise = per_image_noise(step_rngs, n, shape, device);
        }
        Tensor *next = tensor_keep(sampler_step(&sampler, i, out, x, noise, NULL));
        tensor_scope_end(scope);
        tensor_release(x);
        x = next;
    }
    Tensor *images = x;
    if (p->vae) images = vae_decode(p->vae, op_mul_scalar(x, 1.0 / p->vae->config.scaling_factor));
    images = op_clamp(op_add_scalar(op_mul_scalar(images, 0.5), 0.5), 0.0, 1.0);
    if (images->storage->device.kind != DEVICE_CPU) images = op_to_device(images, device_cpu());
    images = op_contiguous(images);
    tensor_release(x);
    sampler_free(&sampler);
    autograd_set_enabled(grad_was);
    return images;
}

Tensor *pipeline_generate(Pipeline *p, Tensor *condition, int64_t n, const uint64_t *seeds, const PipelineSampling *s,
                          const char *where) {
    int64_t side = checked_size(p, s, where) / p->latent_factor;
    Rng *start = malloc((size_t)n * sizeof *start), *step = malloc((size_t)n * sizeof *step);
    if (!start || !step) tensor_fatal(where, "out of memory");
    for (int64_t i = 0; i < n; i++) start[i] = rng_make(seeds[i], 0), step[i] = rng_make(seeds[i], 1);
    Tensor *noise = per_image_noise(start, n, SHAPE(n, p->latent_channels, side, side), device_cpu());
    Tensor *images = pipeline_sample(p, condition, noise, step, s, where);
    free(start);
    free(step);
    return images;
}

// ---------------------------------------------------------------- saving

static int write_file(const char *path, const char *text, char *error, size_t error_size) {
    if (fs_write_text(path, text) != 0) return fail(error, error_size, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

static int make_folder(const char *path, char *error, size_t error_size) {
    if (fs_make_directories(path) != 0) return fail(error, error_size, "%s: cannot create: %s", path, strerror(errno));
    return 0;
}

// Appends a JSON string list to out.
static void put_strings(char *out, size_t size, const char *const *items, int64_t n) {
    size_t used = strlen(out);
    for (int64_t i = 0; i < n && used < size; i++) {
        used += (size_t)snprintf(out + used, size - used, "%s\"", i ? ", " : "");
        for (const char *c = items[i]; *c && used + 8 < size; c++) {
            if (*c == '"' || *c == '\\') out[used++] = '\\', out[used++] = *c;
            else if ((unsigned char)*c < 0x20) used += (size_t)snprintf(out + used, size - used, "\\u%04x", *c);
            else out[used++] = *c;
        }
        if (used + 1 < size) out[used++] = '"';
        out[used < size ? used : size - 1] = 0;
    }
}

int pipeline_save(const char *folder, const ParamStore *store, const PipelineSaveSpec *spec, char *error, size_t error_size) {
    char staging[4200], path[8600];
    snprintf(staging, sizeof staging, "%s.tmp", folder);
    if (fs_remove_tree(staging) != 0) return fail(error, error_size, "%s: cannot remove: %s", staging, strerror(errno));
    size_t text_size = 1 << 20;
    char *text = malloc(text_size);
    if (!text) tensor_fatal("pipeline", "out of memory");
    int status = make_folder(staging, error, error_size);
    // model_index.json: the components, as diffusers names them (it loads the folder as a pipeline).
    if (status == 0) {
        snprintf(text, text_size, "{\n  \"_class_name\": \"%s\",\n  \"_diffusers_version\": \"0.27.2\",\n"
                 "  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n  \"scheduler\": [\"diffusers\", \"DDIMScheduler\"]%s%s\n}\n",
                 spec->vae_folder ? "StableDiffusionPipeline" : "DiffusionPipeline",
                 spec->text ? ",\n  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"]" : "",
                 spec->vae_folder ? ",\n  \"vae\": [\"diffusers\", \"AutoencoderKL\"]" : "");
        snprintf(path, sizeof path, "%s/model_index.json", staging);
        status = write_file(path, text, error, error_size);
    }
    snprintf(path, sizeof path, "%s/unet", staging);
    if (status == 0) status = make_folder(path, error, error_size);
    if (status == 0 && unet_config_to_json(spec->unet, text, text_size) != 0) status = fail(error, error_size, "unet config too long");
    snprintf(path, sizeof path, "%s/unet/config.json", staging);
    if (status == 0) status = write_file(path, text, error, error_size);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", staging);
    const char *metadata[] = {"format", "pt", NULL};
    if (status == 0) status = params_save_prefixed(store, "unet.", path, metadata, error, error_size);
    if (status == 0 && spec->text) {
        snprintf(path, sizeof path, "%s/text_encoder", staging);
        status = make_folder(path, error, error_size);
        if (status == 0 && clip_text_config_to_json(spec->text, text, text_size) != 0)
            status = fail(error, error_size, "text encoder config too long");
        snprintf(path, sizeof path, "%s/text_encoder/config.json", staging);
        if (status == 0) status = write_file(path, text, error, error_size);
        snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", staging);
        if (status == 0) status = params_save_prefixed(store, "text_encoder.", path, metadata, error, error_size);
        snprintf(path, sizeof path, "%s/tokenizer", staging);
        if (status == 0) status = make_folder(path, error, error_size);
        snprintf(path, sizeof path, "%s/tokenizer/tailor-word-vocab.txt", staging);
        if (status == 0) status = word_tokenizer_save(spec->tokenizer, path, error, error_size);
    }
    if (status == 0 && spec->vae_folder) {
        char from[4300], weights[4300];
        SdConfig config = sd1_config();
        status = sd_component_config(spec->vae_folder, SD_PART_VAE, &config, weights, sizeof weights, error, error_size);
        snprintf(path, sizeof path, "%s/vae", staging);
        if (status == 0) status = make_folder(path, error, error_size);
        snprintf(from, sizeof from, "%s/config.json", spec->vae_folder);
        snprintf(path, sizeof path, "%s/vae/config.json", staging);
        if (status == 0 && fs_copy_file(from, path) != 0) status = fail(error, error_size, "%s: cannot copy to %s: %s", from, path, strerror(errno));
        const char *base = strrchr(weights, '/');
        snprintf(path, sizeof path, "%s/vae/%.200s", staging, base ? base + 1 : weights);
        if (status == 0 && fs_copy_file(weights, path) != 0)
            status = fail(error, error_size, "%s: cannot copy to %s: %s", weights, path, strerror(errno));
    }
    if (status == 0) {
        snprintf(path, sizeof path, "%s/scheduler", staging);
        status = make_folder(path, error, error_size);
        const SamplerConfig *c = spec->scheduler;
        snprintf(text, text_size, "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"num_train_timesteps\": %d,\n  \"beta_start\": %.17g,\n"
                 "  \"beta_end\": %.17g,\n  \"beta_schedule\": \"%s\",\n  \"prediction_type\": \"%s\",\n  \"clip_sample\": %s,\n"
                 "  \"set_alpha_to_one\": %s,\n  \"steps_offset\": %d\n}\n",
                 c->num_train_timesteps, c->beta_start, c->beta_end, beta_schedule_name(c->beta_schedule),
                 prediction_type_name(c->prediction_type), c->clip_sample ? "true" : "false",
                 c->set_alpha_to_one ? "true" : "false", c->steps_offset);
        snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", staging);
        if (status == 0) status = write_file(path, text, error, error_size);
    }
    if (status == 0) {
        snprintf(text, text_size, "{\n  \"format\": \"%s\",\n  \"image_size\": %lld,\n  \"context_length\": %d,\n  \"class_names\": [",
                 PIPELINE_FORMAT, (long long)spec->image_size, spec->context_length);
        put_strings(text, text_size, spec->class_names, spec->class_names ? spec->n_class_names : 0);
        snprintf(text + strlen(text), text_size - strlen(text), "],\n  \"sample_prompts\": [");
        put_strings(text, text_size, spec->sample_prompts, spec->sample_prompts ? spec->n_sample_prompts : 0);
        snprintf(text + strlen(text), text_size - strlen(text), "]%s%s\n}\n", spec->extra_json ? ",\n  " : "",
                 spec->extra_json ? spec->extra_json : "");
        snprintf(path, sizeof path, "%s/tailor.json", staging);
        status = write_file(path, text, error, error_size);
    }
    free(text);
    // Replace the previous folder: remove it, then rename the finished one in.
    if (status == 0 && fs_remove_tree(folder) != 0) status = fail(error, error_size, "%s: cannot replace: %s", folder, strerror(errno));
    if (status == 0 && rename(staging, folder) != 0)
        status = fail(error, error_size, "%s: cannot rename %s: %s", folder, staging, strerror(errno));
    return status;
}
