#include "models/sd_checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/fs.h"
#include "engine/json.h"
#include "engine/safetensors.h"

SdConfig sd1_config(void) {
    return (SdConfig){.unet = unet_sd1_config(), .vae = vae_sd1_config(), .text = clip_text_sd1_config()};
}

static int fail(char *error, size_t error_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *error, size_t error_size, const char *fmt, ...) {
    if (error && error_size) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(error, error_size, fmt, args);
        va_end(args);
    }
    return -1;
}

// ---------------------------------------------------------------- the name mapping
//
// Learned from diffusers' converter (pipelines/stable_diffusion/convert_from_ckpt.py:
// convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint), written
// here in the other direction: from the diffusers name each model registers to the name in the
// file. A name is a block prefix (computed below from the block indices) plus the rest, and inside
// some blocks the rest is renamed by one of these tables ({diffusers, LDM}, prefixes of the rest).

typedef struct {
    const char *diffusers, *other;
} Rename;

// LDM ResBlock: in_layers = (GroupNorm, SiLU, conv), emb_layers = (SiLU, Linear), out_layers =
// (GroupNorm, SiLU, Dropout, conv), skip_connection = the 1x1 conv when the width changes.
static const Rename UNET_RESNET[] = {{"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},
                                     {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
                                     {"conv2.", "out_layers.3."},         {"conv_shortcut.", "skip_connection."},
                                     {NULL, NULL}};
// UNet blocks whose names do not depend on the configuration. The SpatialTransformer blocks
// (attentions) keep their inner names (norm, proj_in, transformer_blocks.N.attn1.to_q, ff.net.0.proj, ...).
static const Rename UNET_FIXED[] = {{"time_embedding.linear_1.", "time_embed.0."}, {"time_embedding.linear_2.", "time_embed.2."},
                                    {"class_embedding.", "label_emb."},            {"conv_in.", "input_blocks.0.0."},
                                    {"conv_norm_out.", "out.0."},                  {"conv_out.", "out.2."},
                                    {"mid_block.attentions.0.", "middle_block.1."}, {NULL, NULL}};
// Inside a VAE resnet only the shortcut differs; the VAE's mid-block attention (LDM AttnBlock:
// norm, q, k, v, proj_out as 1x1 convs).
static const Rename VAE_RESNET[] = {{"conv_shortcut.", "nin_shortcut."}, {NULL, NULL}};
static const Rename VAE_ATTENTION[] = {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."},
                                       {"to_out.0.", "proj_out."}, {NULL, NULL}};
// The VAE attention names diffusers used before 0.14 (still found in saved folders).
static const Rename VAE_ATTENTION_DEPRECATED[] = {{"to_q.", "query."}, {"to_k.", "key."}, {"to_v.", "value."},
                                                  {"to_out.0.", "proj_attn."}, {NULL, NULL}};
// LDM key prefixes of the three parts.
static const char *const LDM_PREFIX[] = {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."};

static bool starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// out = head + rest, with rest's leading part renamed by table (diffusers -> other) when it matches.
static int compose(char *out, size_t size, const char *head, const char *rest, const Rename *table) {
    const char *tail_prefix = "";
    for (const Rename *r = table; r && r->diffusers; r++)
        if (starts_with(rest, r->diffusers)) {
            tail_prefix = r->other;
            rest += strlen(r->diffusers);
            break;
        }
    int n = snprintf(out, size, "%s%s%s", head, tail_prefix, rest);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

// UNet: input_blocks.0 is conv_in; then per level b, for l < layers_per_block,
// input_blocks.(1 + b (L + 1) + l) holds resnet l (.0) and its transformer (.1), and
// input_blocks.(1 + b (L + 1) + L).0.op the downsampler. output_blocks.(b (L + 1) + l), l <= L,
// holds up-block b's resnet l (.0), its transformer (.1) and, at l = L, the upsampler (.1 or,
// after a transformer, .2). middle_block = (resnet, transformer, resnet).
static int unet_ldm_name(const UnetConfig *c, const char *name, char *out, size_t size) {
    const int per = c->layers_per_block + 1;
    char head[96];
    int b, l, n = -1;
    for (const Rename *r = UNET_FIXED; r->diffusers; r++)
        if (starts_with(name, r->diffusers)) return compose(out, size, "", name, UNET_FIXED);
    if (sscanf(name, "mid_block.resnets.%d.%n", &l, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "middle_block.%d.", 2 * l);
        return compose(out, size, head, name + n, UNET_RESNET);
    }
    if (sscanf(name, "down_blocks.%d.resnets.%d.%n", &b, &l, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "input_blocks.%d.0.", 1 + b * per + l);
        return compose(out, size, head, name + n, UNET_RESNET);
    }
    if (sscanf(name, "down_blocks.%d.attentions.%d.%n", &b, &l, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "input_blocks.%d.1.", 1 + b * per + l);
        return compose(out, size, head, name + n, NULL);
    }
    if (sscanf(name, "down_blocks.%d.downsamplers.0.conv.%n", &b, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "input_blocks.%d.0.op.", 1 + b * per + per - 1);
        return compose(out, size, head, name + n, NULL);
    }
    if (sscanf(name, "up_blocks.%d.resnets.%d.%n", &b, &l, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "output_blocks.%d.0.", b * per + l);
        return compose(out, size, head, name + n, UNET_RESNET);
    }
    if (sscanf(name, "up_blocks.%d.attentions.%d.%n", &b, &l, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "output_blocks.%d.1.", b * per + l);
        return compose(out, size, head, name + n, NULL);
    }
    if (sscanf(name, "up_blocks.%d.upsamplers.0.conv.%n", &b, &n) == 1 && n > 0 && b >= 0 && b < UNET_MAX_LEVELS) {
        snprintf(head, sizeof head, "output_blocks.%d.%d.conv.", b * per + per - 1, c->up_cross_attention[b] ? 2 : 1);
        return compose(out, size, head, name + n, NULL);
    }
    return -1;
}

// VAE: encoder.down.B.block.J / .downsample, {en,de}coder.mid.block_1 / attn_1 / block_2,
// norm_out; the decoder's up.N counts from the top (diffusers' up_blocks.i = LDM up.(levels-1-i)).
static int vae_ldm_name(const VaeConfig *c, const char *name, char *out, size_t size) {
    const char *coder = starts_with(name, "encoder.") ? "encoder." : starts_with(name, "decoder.") ? "decoder." : NULL;
    if (!coder) return compose(out, size, "", name, NULL);  // quant_conv, post_quant_conv
    const char *rest = name + strlen(coder);
    char head[96];
    int b, j, n = -1;
    if (starts_with(rest, "conv_norm_out.")) {
        snprintf(head, sizeof head, "%snorm_out.", coder);
        return compose(out, size, head, rest + strlen("conv_norm_out."), NULL);
    }
    if (starts_with(rest, "mid_block.attentions.0.")) {
        snprintf(head, sizeof head, "%smid.attn_1.", coder);
        return compose(out, size, head, rest + strlen("mid_block.attentions.0."), VAE_ATTENTION);
    }
    if (sscanf(rest, "mid_block.resnets.%d.%n", &j, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "%smid.block_%d.", coder, j + 1);
        return compose(out, size, head, rest + n, VAE_RESNET);
    }
    if (sscanf(rest, "down_blocks.%d.resnets.%d.%n", &b, &j, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "%sdown.%d.block.%d.", coder, b, j);
        return compose(out, size, head, rest + n, VAE_RESNET);
    }
    if (sscanf(rest, "down_blocks.%d.downsamplers.0.%n", &b, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "%sdown.%d.downsample.", coder, b);
        return compose(out, size, head, rest + n, NULL);
    }
    if (sscanf(rest, "up_blocks.%d.resnets.%d.%n", &b, &j, &n) == 2 && n > 0) {
        snprintf(head, sizeof head, "%sup.%d.block.%d.", coder, c->levels - 1 - b, j);
        return compose(out, size, head, rest + n, VAE_RESNET);
    }
    if (sscanf(rest, "up_blocks.%d.upsamplers.0.%n", &b, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "%sup.%d.upsample.", coder, c->levels - 1 - b);
        return compose(out, size, head, rest + n, NULL);
    }
    return compose(out, size, coder, rest, NULL);  // conv_in, conv_out
}

int sd_checkpoint_tensor_name(SdFormat format, SdPart part, const SdConfig *config, const char *name, int alternative,
                              char *out, size_t out_size) {
    if (format == SD_FORMAT_DIFFUSERS) {
        if (alternative == 0) return compose(out, out_size, "", name, NULL);
        const char *attention = strstr(name, "mid_block.attentions.0.");
        if (alternative != 1 || part != SD_PART_VAE || !attention) return -1;
        size_t head = (size_t)(attention - name) + strlen("mid_block.attentions.0.");
        char prefix[128];
        if (head >= sizeof prefix) return -1;
        memcpy(prefix, name, head);
        prefix[head] = 0;
        const char *rest = name + head;
        if (starts_with(rest, "group_norm.")) return -1;  // the same name in both spellings
        return compose(out, out_size, prefix, rest, VAE_ATTENTION_DEPRECATED);
    }
    char inner[256];
    int status = -1;
    switch (part) {
    case SD_PART_UNET:
        if (alternative != 0) return -1;
        status = unet_ldm_name(&config->unet, name, inner, sizeof inner);
        break;
    case SD_PART_VAE:
        if (alternative != 0) return -1;
        status = vae_ldm_name(&config->vae, name, inner, sizeof inner);
        break;
    case SD_PART_TEXT:
        // transformers' CLIPTextModel names; checkpoints saved with old transformers lack "text_model.".
        if (alternative == 1 && !starts_with(name, "text_model.")) return -1;
        if (alternative > 1) return -1;
        status = compose(inner, sizeof inner, "", alternative == 1 ? name + strlen("text_model.") : name, NULL);
        break;
    }
    if (status != 0) return -1;
    return compose(out, out_size, LDM_PREFIX[part], inner, NULL);
}

// ---------------------------------------------------------------- what a file may hold besides weights

// LatentDiffusion's registered buffers: the DDPM schedule (register_schedule), the loss weights.
static const char *const LDM_BUFFERS[] = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights",
    "scale_factor", NULL};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// Known non-weights: the text embeddings' position_ids (an index buffer), and in an LDM file the
// schedule buffers and the EMA copy (model_ema.*: the weights are read from model.diffusion_model).
static bool is_known_non_weight(SdFormat format, const char *name) {
    if (ends_with(name, "embeddings.position_ids")) return true;
    if (format != SD_FORMAT_LDM) return false;
    if (starts_with(name, "model_ema.")) return true;
    for (int i = 0; LDM_BUFFERS[i]; i++)
        if (!strcmp(name, LDM_BUFFERS[i])) return true;
    return false;
}

// ---------------------------------------------------------------- loading one part from one file

static const char *const PART_NAMES[] = {"UNet", "VAE", "text encoder"};

typedef struct {
    SafetensorsFile *file;
    bool *claimed;  // per entry: read as a weight
} Source;

static int source_open(Source *s, const char *path, char *error, size_t error_size) {
    memset(s, 0, sizeof *s);
    if (safetensors_open(path, &s->file, error, error_size) != 0) return -1;
    s->claimed = calloc((size_t)safetensors_count(s->file) + 1, sizeof(bool));
    if (!s->claimed) tensor_fatal("sd_checkpoint", "out of memory");
    return 0;
}

static void source_close(Source *s) {
    safetensors_close(s->file);
    free(s->claimed);
    memset(s, 0, sizeof *s);
}

static Shape entry_shape(const SafetensorsEntry *e) {
    Shape s = {.ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) s.dims[d] = e->shape[d];
    return s;
}

// The VAE attention projections are Linear [C, C] here; the LDM (and old diffusers) stored them as
// 1x1 convs, [C, C, 1, 1] (or [C, C, 1]): the same numbers in the same order.
static bool conv_shaped_linear(SdPart part, const char *name, Shape expected, Shape found) {
    if (part != SD_PART_VAE || !strstr(name, "mid_block.attentions.0.to_") || !ends_with(name, ".weight")) return false;
    if (expected.ndim != 2 || found.ndim < 3 || found.ndim > 4) return false;
    if (found.dims[0] != expected.dims[0] || found.dims[1] != expected.dims[1]) return false;
    for (int d = 2; d < found.ndim; d++)
        if (found.dims[d] != 1) return false;
    return true;
}

// Reads every parameter of store from src, by the names format gives them; marks what it read.
static int load_part(ParamStore *store, SdFormat format, SdPart part, const SdConfig *config, Source *src, char *error,
                     size_t error_size) {
    const char *path = safetensors_path(src->file);
    for (int i = 0; i < store->count; i++) {
        const Param *p = &store->items[i];
        char file_name[256], first[256] = "";
        const SafetensorsEntry *e = NULL;
        for (int alternative = 0; alternative < 2 && !e; alternative++) {
            if (sd_checkpoint_tensor_name(format, part, config, p->name, alternative, file_name, sizeof file_name) != 0) {
                if (alternative == 0)
                    tensor_fatal("sd_checkpoint", "no %s name for the %s weight '%s'", format == SD_FORMAT_LDM ? "LDM" : "diffusers",
                                 PART_NAMES[part], p->name);
                continue;
            }
            if (!first[0]) snprintf(first, sizeof first, "%s", file_name);
            e = safetensors_find(src->file, file_name);
        }
        // "(the UNet's down_blocks.0...)" when the file's name differs from the diffusers name.
        char which[300];
        if (strcmp(first, p->name)) snprintf(which, sizeof which, "the %s's %s", PART_NAMES[part], p->name);
        else snprintf(which, sizeof which, "a %s weight", PART_NAMES[part]);
        if (!e) return fail(error, error_size, "%s: tensor '%s' is missing (%s)", path, first, which);
        Shape expected = tensor_shape(p->value), found = entry_shape(e);
        if (!shape_equal(found, expected) && !conv_shaped_linear(part, p->name, expected, found)) {
            char a[96], b[96];
            return fail(error, error_size, "%s: tensor '%s' has shape %s, expected %s (%s)", path, e->name,
                        shape_string(found, a, sizeof a), shape_string(expected, b, sizeof b), which);
        }
        if (!dtype_is_float(e->dtype))
            return fail(error, error_size, "%s: tensor '%s' has dtype %s, expected F32, F16, BF16 or F64 (%s)", path, e->name,
                        dtype_name(e->dtype), which);
        float *out = tensor_f32(p->value);
        int64_t n = tensor_numel(p->value);
        if (e->dtype == DTYPE_F32) memcpy(out, e->data, (size_t)n * sizeof(float));  // the data may be unaligned
        else
            for (int64_t j = 0; j < n; j++) out[j] = (float)dtype_load(e->data, e->dtype, j);
        for (int64_t j = 0; j < n; j++) {
            if (!isfinite(out[j]))
                return fail(error, error_size, "%s: tensor '%s' holds a non-finite value (%g at element %lld)", path, e->name,
                            (double)out[j], (long long)j);
        }
        src->claimed[e - safetensors_entry(src->file, 0)] = true;
    }
    return 0;
}

// Every tensor of src must have been read as a weight or be a known non-weight.
static int check_unexpected(Source *src, SdFormat format, const char *what, int *ignored, char *error, size_t error_size) {
    for (int i = 0; i < safetensors_count(src->file); i++) {
        const SafetensorsEntry *e = safetensors_entry(src->file, i);
        if (src->claimed[i]) continue;
        if (is_known_non_weight(format, e->name)) {
            (*ignored)++;
            continue;
        }
        return fail(error, error_size, "%s: unexpected tensor '%s' (not a weight of %s, nor a known non-weight)",
                    safetensors_path(src->file), e->name, what);
    }
    return 0;
}

// ---------------------------------------------------------------- the two formats

static void create_models(SdModel *m) {
    m->unet_params = params_new();
    m->vae_params = params_new();
    m->text_params = params_new();
    unet_create(&m->unet, m->unet_params, "", m->config.unet, NULL);
    vae_create(&m->vae, m->vae_params, "", m->config.vae, NULL);
    clip_text_create(&m->text_encoder, m->text_params, "", m->config.text, NULL);
    params_finalize(m->unet_params);
    params_finalize(m->vae_params);
    params_finalize(m->text_params);
}

static ParamStore *part_params(SdModel *m, SdPart part) {
    return part == SD_PART_UNET ? m->unet_params : part == SD_PART_VAE ? m->vae_params : m->text_params;
}

static const char *const COMPONENT_FOLDERS[] = {"unet", "vae", "text_encoder"};
static const char *const COMPONENT_CLASSES[] = {"UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel"};

// model_index.json: a JSON object; where it names a component, the class must be the one we load.
static int check_model_index(const char *folder, char *error, size_t error_size) {
    char path[4096], parse_error[256];
    snprintf(path, sizeof path, "%s/model_index.json", folder);
    if (!fs_is_file(path))
        return fail(error, error_size, "%s: no model_index.json: not a diffusers pipeline folder (it holds model_index.json, "
                    "unet/, vae/, text_encoder/ and tokenizer/)", folder);
    char *text = fs_read_text(path, error, error_size);
    if (!text) return -1;
    JsonValue *root = json_parse(text, strlen(text), parse_error, sizeof parse_error);
    free(text);
    if (!root) return fail(error, error_size, "%s: %s", path, parse_error);
    int status = json_type(root) == JSON_OBJECT ? 0 : fail(error, error_size, "%s: not a JSON object", path);
    for (int part = 0; part < 3 && status == 0; part++) {
        const JsonValue *entry = json_get(root, COMPONENT_FOLDERS[part]);
        const char *class_name = json_string(json_at(entry, 1));
        if (entry && (!class_name || strcmp(class_name, COMPONENT_CLASSES[part])))
            status = fail(error, error_size, "%s: \"%s\" is %s, expected [\"...\", \"%s\"] (a Stable Diffusion 1.x pipeline)", path,
                          COMPONENT_FOLDERS[part], class_name ? class_name : "not a [library, class] pair", COMPONENT_CLASSES[part]);
    }
    json_free(root);
    return status;
}

// A component's config.json (path) into the part's configuration.
static int parse_component_config(const char *path, SdPart part, SdConfig *config, char *error, size_t error_size) {
    char message[512];
    char *text = fs_read_text(path, error, error_size);
    if (!text) return -1;
    int status = part == SD_PART_UNET ? unet_config_from_json(text, &config->unet, message, sizeof message)
               : part == SD_PART_VAE ? vae_config_from_json(text, &config->vae, message, sizeof message)
                                     : clip_text_config_from_json(text, &config->text, message, sizeof message);
    free(text);
    if (status != 0) return fail(error, error_size, "%s: %s", path, message);
    return 0;
}

// <folder>/<component>/config.json into the part's configuration.
static int read_component_config(const char *folder, SdPart part, SdConfig *config, char *error, size_t error_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", folder, COMPONENT_FOLDERS[part]);
    if (!fs_is_directory(path))
        return fail(error, error_size, "%s: no %s/ folder (a diffusers Stable Diffusion folder has unet/, vae/, text_encoder/ and "
                    "tokenizer/)", folder, COMPONENT_FOLDERS[part]);
    snprintf(path, sizeof path, "%s/%s/config.json", folder, COMPONENT_FOLDERS[part]);
    return parse_component_config(path, part, config, error, error_size);
}

// The weight file in a component folder: diffusers' name, transformers' name, or the fp16 variant.
static int find_weights(const char *component_folder, char *path, size_t size, char *error, size_t error_size) {
    static const char *const names[] = {"diffusion_pytorch_model.safetensors", "model.safetensors",
                                        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, size, "%s/%s", component_folder, names[i]);
        if (fs_is_file(path)) return 0;
    }
    return fail(error, error_size, "%s: no diffusion_pytorch_model.safetensors or model.safetensors (.bin and .ckpt "
                "files are not read: convert them to safetensors)", component_folder);
}

static int component_weights(const char *folder, SdPart part, char *path, size_t size, char *error, size_t error_size) {
    char component[4096];
    snprintf(component, sizeof component, "%s/%s", folder, COMPONENT_FOLDERS[part]);
    return find_weights(component, path, size, error, error_size);
}

static int load_diffusers(SdModel *m, const char *folder, char *error, size_t error_size) {
    if (check_model_index(folder, error, error_size) != 0) return -1;
    for (int part = 0; part < 3; part++)
        if (read_component_config(folder, (SdPart)part, &m->config, error, error_size) != 0) return -1;
    char paths[3][4096];
    for (int part = 0; part < 3; part++)
        if (component_weights(folder, (SdPart)part, paths[part], sizeof paths[part], error, error_size) != 0) return -1;
    create_models(m);
    for (int part = 0; part < 3; part++) {
        Source src;
        if (source_open(&src, paths[part], error, error_size) != 0) return -1;
        char what[128];
        snprintf(what, sizeof what, "the %s of %s/config.json", PART_NAMES[part], COMPONENT_FOLDERS[part]);
        int status = load_part(part_params(m, (SdPart)part), SD_FORMAT_DIFFUSERS, (SdPart)part, &m->config, &src, error, error_size);
        if (status == 0) status = check_unexpected(&src, SD_FORMAT_DIFFUSERS, what, &m->ignored, error, error_size);
        source_close(&src);
        if (status != 0) return -1;
    }
    return 0;
}

static int load_ldm(SdModel *m, const char *path, char *error, size_t error_size) {
    Source src;
    if (source_open(&src, path, error, error_size) != 0) return -1;
    create_models(m);
    int status = 0;
    for (int part = 0; part < 3 && status == 0; part++)
        status = load_part(part_params(m, (SdPart)part), SD_FORMAT_LDM, (SdPart)part, &m->config, &src, error, error_size);
    if (status == 0) status = check_unexpected(&src, SD_FORMAT_LDM, "the UNet, VAE or text encoder", &m->ignored, error, error_size);
    source_close(&src);
    return status;
}

static int load_tokenizer(SdModel *m, const char *path, const SdLoadOptions *options, char *error, size_t error_size) {
    char tokenizer_path[4096], message[512];
    if (options && options->tokenizer) {
        snprintf(tokenizer_path, sizeof tokenizer_path, "%s", options->tokenizer);
    } else if (m->format == SD_FORMAT_DIFFUSERS) {
        snprintf(tokenizer_path, sizeof tokenizer_path, "%s/tokenizer", path);
        if (!fs_is_directory(tokenizer_path))
            return fail(error, error_size, "%s: no tokenizer/ folder (vocab.json + merges.txt); give a tokenizer explicitly", path);
    } else {
        const char *root = getenv("TAILOR_ROOT");
        snprintf(tokenizer_path, sizeof tokenizer_path, "%s/%s", root && *root ? root : ".", SD_DEFAULT_TOKENIZER);
    }
    m->tokenizer = clip_tokenizer_load(tokenizer_path, message, sizeof message);
    if (!m->tokenizer)
        return fail(error, error_size, "%s: tokenizer: %s%s", path, message,
                    options && options->tokenizer ? "" : m->format == SD_FORMAT_LDM ? " (the default for a single-file checkpoint; "
                    "give the tokenizer explicitly or set TAILOR_ROOT to the Tailor source folder)" : "");
    int32_t ids = clip_tokenizer_vocab_size(m->tokenizer);
    if (ids > m->config.text.vocab_size)
        return fail(error, error_size, "%s: the tokenizer %s has %d ids, but the text encoder's vocabulary has %lld rows", path,
                    tokenizer_path, (int)ids, (long long)m->config.text.vocab_size);
    return 0;
}

SdModel *sd_model_load(const char *path, const SdLoadOptions *options, char *error, size_t error_size) {
    SdModel *m = calloc(1, sizeof *m);
    if (!m) tensor_fatal("sd_checkpoint", "out of memory");
    struct stat st;
    if (stat(path, &st) != 0) {
        fail(error, error_size, "%s: cannot open: %s", path, strerror(errno));
        free(m);
        return NULL;
    }
    m->format = S_ISDIR(st.st_mode) ? SD_FORMAT_DIFFUSERS : SD_FORMAT_LDM;
    m->config = options && options->config ? *options->config : sd1_config();
    char message[512];
    if (m->format == SD_FORMAT_LDM &&
        (unet_check_config(&m->config.unet, message, sizeof message) != 0)) {
        fail(error, error_size, "%s: %s", path, message);
        free(m);
        return NULL;
    }
    int status = m->format == SD_FORMAT_DIFFUSERS ? load_diffusers(m, path, error, error_size) : load_ldm(m, path, error, error_size);
    if (status == 0) status = load_tokenizer(m, path, options, error, error_size);
    if (status != 0) {
        sd_model_free(m);
        return NULL;
    }
    snprintf(m->report, sizeof m->report, "%s (%s): UNet %lld, VAE %lld, text encoder %lld parameters; %d known non-weight tensors ignored",
             path, m->format == SD_FORMAT_DIFFUSERS ? "diffusers folder" : "LDM single file",
             (long long)params_count_elements(m->unet_params), (long long)params_count_elements(m->vae_params),
             (long long)params_count_elements(m->text_params), m->ignored);
    return m;
}

int sd_component_config(const char *component_folder, SdPart part, SdConfig *config, char *weights_path,
                        size_t weights_size, char *error, size_t error_size) {
    char path[4096];
    if (!fs_is_directory(component_folder)) return fail(error, error_size, "%s: not a folder", component_folder);
    snprintf(path, sizeof path, "%s/config.json", component_folder);
    if (parse_component_config(path, part, config, error, error_size) != 0) return -1;
    return find_weights(component_folder, weights_path, weights_size, error, error_size);
}

int sd_component_load_weights(const char *weights_path, SdPart part, const SdConfig *config, ParamStore *store,
                              char *error, size_t error_size) {
    Source src;
    if (source_open(&src, weights_path, error, error_size) != 0) return -1;
    int ignored = 0;
    char what[64];
    snprintf(what, sizeof what, "the %s", PART_NAMES[part]);
    int status = load_part(store, SD_FORMAT_DIFFUSERS, part, config, &src, error, error_size);
    if (status == 0) status = check_unexpected(&src, SD_FORMAT_DIFFUSERS, what, &ignored, error, error_size);
    source_close(&src);
    return status;
}

void sd_model_free(SdModel *m) {
    if (!m) return;
    if (m->unet_params) {
        unet_free(&m->unet);
        vae_free(&m->vae);
        clip_text_free(&m->text_encoder);
        params_free(m->unet_params);
        params_free(m->vae_params);
        params_free(m->text_params);
    }
    clip_tokenizer_free(m->tokenizer);
    free(m);
}
