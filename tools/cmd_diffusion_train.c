// `tailor diffusion-train`: trains a diffusion UNet (diffusers' UNet2DConditionModel) on images,
// text-conditional (with a small CLIP-style text encoder trained along, over a word vocabulary built
// from the captions), class-conditional (with a null class) or unconditional, in pixel space or
// in the latent space of a given VAE. Condition dropout trains the unconditional model that
// classifier-free guidance needs. Writes <out>/log.jsonl (a line per step), <out>/samples/ (grids
// from the EMA weights every --sample-every steps), <out>/checkpoint/ (for --resume, bit for bit)
// and <out>/generator/: a pipeline folder of the EMA weights that `tailor generate --model` loads
// (docs/GENERATE.md).
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/captions.h"
#include "data/image_grid.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "diffusion/loss.h"
#include "diffusion/pipeline.h"
#include "diffusion/unet_model.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/fs.h"
#include "engine/jsonl.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/schedule.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/data_source.h"
#include "tools/progress.h"
#include "tools/run_setup.h"

#define FAIL(status, ...)                                            \
    do {                                                             \
        fprintf(stderr, "error: tailor diffusion-train: " __VA_ARGS__); \
        fputc('\n', stderr);                                         \
        exit(status);                                                \
    } while (0)

// ---------------------------------------------------------------- model presets

// UNet presets for 32x32-class images. "small": the built-in generator (DownBlock2D at full
// resolution, cross-attention at 16x16 and 8x8 and in the mid block); "tiny": a fast one for tests.
// Class-conditional and unconditional models get no cross-attention (nothing to attend to).
static int unet_preset(const char *name, bool text, int64_t classes, int64_t channels, int64_t text_width,
                       UnetConfig *out) {
    UnetConfig c = unet_default_config();
    int64_t widths[3];
    int levels;
    if (!strcmp(name, "small")) levels = 3, widths[0] = 32, widths[1] = 64, widths[2] = 64;
    else if (!strcmp(name, "medium")) levels = 3, widths[0] = 64, widths[1] = 128, widths[2] = 128;
    else if (!strcmp(name, "tiny")) levels = 2, widths[0] = 16, widths[1] = 32;
    else return -1;
    c.levels = levels;
    for (int i = 0; i < levels; i++) {
        c.block_out_channels[i] = widths[i];
        c.heads[i] = widths[i] >= 64 ? 4 : 2;
        c.down_cross_attention[i] = text && i > 0;
        c.up_cross_attention[levels - 1 - i] = text && i > 0;
    }
    c.mid_block = text ? UNET_MID_CROSS_ATTENTION : UNET_MID_RESNET;
    c.layers_per_block = 1;
    c.in_channels = c.out_channels = channels;
    c.cross_attention_dim = text ? text_width : 0;
    c.norm_groups = 8;
    c.num_class_embeds = classes > 0 ? classes + 1 : 0;  // the last row: the null class
    *out = c;
    return 0;
}

// ---------------------------------------------------------------- conditions

typedef struct {
    int64_t null_class;
} ClassDrop;

// Labels [B] i64 with dropped samples set to the null class.
static Tensor *drop_labels(Tensor *labels, Tensor *drop, void *context) {
    const ClassDrop *d = context;
    Tensor *host = labels->storage->device.kind == DEVICE_CPU ? op_contiguous(labels) : op_to_device(labels, device_cpu());
    Tensor *out = tensor_empty(DTYPE_I64, tensor_shape(host));
    for (int64_t i = 0; i < host->shape[0]; i++)
        tensor_i64(out)[i] = ((const uint8_t *)tensor_data(drop))[i] ? d->null_class : tensor_i64(host)[i];
    return labels->storage->device.kind == DEVICE_CPU ? out : op_to_device(out, labels->storage->device);
}

// ---------------------------------------------------------------- sample grids

typedef struct {
    Pipeline view;          // the EMA weights seen as a pipeline (owns nothing)
    char **prompts;         // text: one prompt per grid row
    int64_t *classes;       // class: one class per grid row
    int rows, columns;
    PipelineSampling sampling;
    uint64_t seed;
} SampleSheet;

static int write_samples(SampleSheet *sheet, const char *path, Device device, char *error, size_t error_size) {
    TensorScope scope = tensor_scope_begin();
    bool grad_was = autograd_set_enabled(false);
    int64_t n = (int64_t)sheet->rows * sheet->columns;
    uint64_t *seeds = malloc((size_t)n * sizeof *seeds);
    if (!seeds) tensor_fatal("diffusion-train", "out of memory");
    Tensor *condition = NULL;
    // Row r, column c: condition r, seed c (the same seeds every time, so grids compare across steps).
    for (int64_t i = 0; i < n; i++) seeds[i] = sheet->seed * 1000003u + (uint64_t)(i % sheet->columns);
    if (sheet->view.condition == PIPELINE_TEXT) {
        const char **prompts = malloc((size_t)n * sizeof *prompts);
        if (!prompts) tensor_fatal("diffusion-train", "out of memory");
        for (int64_t i = 0; i < n; i++) prompts[i] = sheet->prompts[i / sheet->columns];
        condition = pipeline_text_states(&sheet->view, prompts, n, device);
        free(prompts);
    } else if (sheet->view.condition == PIPELINE_CLASS) {
        int64_t *ids = malloc((size_t)n * sizeof *ids);
        if (!ids) tensor_fatal("diffusion-train", "out of memory");
        for (int64_t i = 0; i < n; i++) ids[i] = sheet->classes[i / sheet->columns];
        condition = pipeline_class_labels(&sheet->view, ids, n, device);
        free(ids);
    }
    Tensor *images = pipeline_generate(&sheet->view, condition, n, seeds, &sheet->sampling, "diffusion-train: samples");
    int status = image_grid_save(path, images, sheet->columns, error, error_size);
    free(seeds);
    autograd_set_enabled(grad_was);
    tensor_scope_end(scope);
    return status;
}

// ---------------------------------------------------------------- the command

int command_diffusion_train(int argc, char **argv) {
    const char *data = "bench:world", *captions_path = NULL, *caption_template = NULL, *benchmark_root = "data/benchmark";
    const char *image_root = NULL, *condition_name = "text", *space = "pixel", *vae_path = NULL, *unet_preset_name = "small";
    const char *unet_config_path = NULL, *prediction = "epsilon", *beta_schedule = "linear", *schedule_text = "constant:warmup=500";
    const char *out_dir = "runs/diffusion", *resume_dir = NULL, *device = "auto", *sample_prompts_path = NULL;
    int64_t image_size = 32, steps = 10000, batch_size = 64, seed = 0, workers = 2, threads = 0, timesteps = 1000;
    int64_t text_width = 64, text_layers = 2, text_heads = 4, context_length = 16, min_word_count = 1;
    int64_t sample_every = 1000, checkpoint_every = 1000, sample_steps = 25, sample_columns = 8, stop_at_step = 0;
    double lr = 3e-4, weight_decay = 0.0, ema_decay = 0.999, condition_dropout = 0.1, grad_clip = 1.0, beta_start = 1e-4;
    double beta_end = 0.02, sample_guidance = 3.0, snr_gamma = 0;
    static const char *const conditions[] = {"text", "class", "none", NULL};
    static const char *const spaces[] = {"pixel", "latent", NULL};
    static const char *const predictions[] = {"epsilon", "v_prediction", "sample", NULL};
    static const char *const presets[] = {"tiny", "small", "medium", NULL};
    Flag flags[] = {
        {"data", FLAG_STRING, &data, "training images: bench:world (the captioned corpus), bench:DOMAIN, an ImageFolder DIR or a list FILE.txt", NULL},
        {"captions", FLAG_STRING, &captions_path, "TSV of <path>\\t<category>\\t<caption> (default for bench:world: its captions.tsv)", NULL},
        {"caption-template", FLAG_STRING, &caption_template, "without --captions: a caption per image from its class name, e.g. \"a photo of a {class}\"", NULL},
        {"benchmark-root", FLAG_STRING, &benchmark_root, "where `tailor data build` wrote the built-in benchmark", NULL},
        {"image-root", FLAG_STRING, &image_root, "directory of the relative paths of image lists", NULL},
        {"condition", FLAG_STRING, &condition_name, "what the model is conditioned on", conditions},
        {"space", FLAG_STRING, &space, "denoise pixels or the latents of --vae", spaces},
        {"vae", FLAG_STRING, &vae_path, "with --space latent: a diffusers AutoencoderKL folder (config.json + safetensors)", NULL},
        {"image-size", FLAG_INT, &image_size, "training images are resized to this side", NULL},
        {"unet", FLAG_STRING, &unet_preset_name, "UNet size preset (docs/GENERATE.md)", presets},
        {"unet-config", FLAG_STRING, &unet_config_path, "a diffusers UNet config.json instead of the preset", NULL},
        {"text-width", FLAG_INT, &text_width, "text encoder width (= the UNet's cross_attention_dim)", NULL},
        {"text-layers", FLAG_INT, &text_layers, "text encoder layers", NULL},
        {"text-heads", FLAG_INT, &text_heads, "text encoder attention heads", NULL},
        {"context-length", FLAG_INT, &context_length, "word tokens per caption, BOS and EOS included", NULL},
        {"min-word-count", FLAG_INT, &min_word_count, "words seen fewer times in the captions become <unk>", NULL},
        {"prediction", FLAG_STRING, &prediction, "what the model predicts", predictions},
        {"timesteps", FLAG_INT, &timesteps, "diffusion steps T of training", NULL},
        {"beta-schedule", FLAG_STRING, &beta_schedule, "linear | scaled_linear | squaredcos_cap_v2", NULL},
        {"beta-start", FLAG_DOUBLE, &beta_start, "first beta (linear schedules)", NULL},
        {"beta-end", FLAG_DOUBLE, &beta_end, "last beta (linear schedules)", NULL},
        {"condition-dropout", FLAG_DOUBLE, &condition_dropout, "probability of training a sample unconditionally (for guidance)", NULL},
        {"snr-gamma", FLAG_DOUBLE, &snr_gamma, "min-SNR-gamma loss weighting (Hang et al. 2023; 5 is usual; 0: plain MSE)", NULL},
        {"steps", FLAG_INT, &steps, "training steps", NULL},
        {"batch-size", FLAG_INT, &batch_size, "images per step", NULL},
        {"lr", FLAG_DOUBLE, &lr, "AdamW learning rate", NULL},
        {"lr-schedule", FLAG_STRING, &schedule_text, "constant | cosine[:min=F] | ..., may add warmup=N (tailor train --help)", NULL},
        {"weight-decay", FLAG_DOUBLE, &weight_decay, "AdamW weight decay", NULL},
        {"grad-clip", FLAG_DOUBLE, &grad_clip, "clip the gradients' global L2 norm (0: off)", NULL},
        {"ema-decay", FLAG_DOUBLE, &ema_decay, "decay of the EMA weights that samples and the saved generator use", NULL},
        {"sample-every", FLAG_INT, &sample_every, "steps between sample grids (0: only at the end)", NULL},
        {"sample-prompts", FLAG_STRING, &sample_prompts_path, "prompts (one per line) or class names for the grids' rows (default: 8 spread over the data)", NULL},
        {"sample-steps", FLAG_INT, &sample_steps, "DDIM steps of the sample grids", NULL},
        {"sample-guidance", FLAG_DOUBLE, &sample_guidance, "guidance scale of the sample grids", NULL},
        {"sample-columns", FLAG_INT, &sample_columns, "images per prompt in a grid", NULL},
        {"checkpoint-every", FLAG_INT, &checkpoint_every, "steps between checkpoints and generator folders (0: only at the end)", NULL},
        {"workers", FLAG_INT, &workers, "loader threads", NULL},
        {"seed", FLAG_INT, &seed, "seed of initialisation, order, timesteps and noise", NULL},
        {"out", FLAG_STRING, &out_dir, "output directory", NULL},
        {"stop-at-step", FLAG_INT, &stop_at_step, "stop (with a checkpoint) after this step; the schedule spans --steps (0: run to the end)", NULL},
        {"resume", FLAG_STRING, &resume_dir, "checkpoint directory to continue from (<out>/checkpoint)", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads for the model (0: all cores)", NULL},
    };
    args_parse("diffusion-train", "Train a diffusion UNet (text-, class- or unconditional; pixel or latent space).", flags,
               (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    bool text = !strcmp(condition_name, "text"), by_class = !strcmp(condition_name, "class");
    bool latent = !strcmp(space, "latent");
    if (latent != (vae_path != NULL)) FAIL(2, "%s", latent ? "--space latent needs --vae FOLDER" : "--vae needs --space latent");
    if (steps < 1 || batch_size < 1 || batch_size > 65536 || image_size < 8 || image_size > 4096 || workers < 0 ||
        workers > 64 || timesteps < 2 || sample_every < 0 || checkpoint_every < 0 || sample_steps < 1 ||
        sample_steps > timesteps || sample_columns < 1 || sample_columns > 64 || stop_at_step < 0)
        FAIL(2, "--steps, --batch-size (<= 65536), --sample-steps (<= --timesteps) and --sample-columns (<= 64) must be "
                "positive, --image-size in 8..4096, --timesteps >= 2, --workers 0..64; the *-every flags not negative");
    if (text && (text_width < 1 || text_layers < 1 || text_heads < 1 || text_width % text_heads || context_length < 2 ||
                 context_length > 512 || min_word_count < 1))
        FAIL(2, "--text-width must be a positive multiple of --text-heads, --text-layers >= 1, --context-length in 2..512, "
                "--min-word-count >= 1");
    if (!(lr > 0) || !(weight_decay >= 0) || !(grad_clip >= 0) || !(ema_decay >= 0 && ema_decay < 1) ||
        !(condition_dropout >= 0 && condition_dropout < 1) || !(sample_guidance >= 1) || !(snr_gamma >= 0))
        FAIL(2, "--lr must be positive, --weight-decay and --grad-clip not negative, --ema-decay and --condition-dropout "
                "in [0, 1), --sample-guidance >= 1, --snr-gamma not negative");
    if (!text && (captions_path || caption_template)) FAIL(2, "--captions and --caption-template are for --condition text");
    if (!strcmp(condition_name, "none") && condition_dropout > 0) condition_dropout = 0;  // nothing to drop
    Device run_device = apply_device_and_threads("diffusion-train", device, threads);
    char error[8192];

    // Data: bench:world is the captioned corpus's ImageFolder (world/images) with its captions.tsv.
    DataSource source;
    bool world = !strcmp(data, "bench:world");
    char world_images[4200];
    snprintf(world_images, sizeof world_images, "%s/world/images", benchmark_root);
    if (world && !fs_is_directory(world_images))
        FAIL(2, "--data bench:world: no %s; build the benchmark with `sh scripts/get_data_sources.sh && build/tailor data "
                "build` (or give --benchmark-root)", world_images);
    if (data_source_open("data", world ? world_images : data, "train", benchmark_root, image_root, &source, error,
                         sizeof error) != 0)
        FAIL(2, "%s", error);
    Dataset *dataset = source.dataset;
    if (dataset->count < batch_size)
        FAIL(2, "--data has %lld images, fewer than one batch of --batch-size %lld", (long long)dataset->count, (long long)batch_size);
    char default_captions[4200];
    if (text && !captions_path && !caption_template) {
        if (!world) FAIL(2, "--condition text needs --captions FILE.tsv or --caption-template (e.g. \"a photo of a {class}\")");
        snprintf(default_captions, sizeof default_captions, "%s/world/captions.tsv", benchmark_root);
        captions_path = default_captions;
    }
    char **captions = NULL;
    if (text && captions_path && !(captions = captions_from_tsv(dataset, captions_path, error, sizeof error)))
        FAIL(2, "--captions: %s", error);
    if (text && !captions) captions = captions_from_template(dataset, caption_template);
    int64_t classes = by_class ? dataset->class_count : 0;

    // Word vocabulary from the captions (the same ids on every machine for the same captions).
    WordTokenizer *tokenizer = NULL;
    if (text) {
        WordVocabOptions vocab_options = word_vocab_defaults();
        vocab_options.min_count = (int)min_word_count;
        tokenizer = word_tokenizer_build((const char *const *)captions, (size_t)dataset->count, vocab_options);
    }

    // Models: the UNet and text encoder (one parameter store, "unet." and "text_encoder."), and
    // their EMA twins.
    Pipeline vae_holder = {0};
    int64_t channels = 3, factor = 1;
    if (latent) {
        SdConfig config = sd1_config();
        char weights[4200];
        if (sd_component_config(vae_path, SD_PART_VAE, &config, weights, sizeof weights, error, sizeof error) != 0)
            FAIL(2, "--vae: %s", error);
        vae_holder.stores[0] = params_new();
        vae_create(&vae_holder.vae_storage, vae_holder.stores[0], "", config.vae, NULL);
        params_finalize(vae_holder.stores[0]);
        if (sd_component_load_weights(weights, SD_PART_VAE, &config, vae_holder.stores[0], error, sizeof error) != 0)
            FAIL(2, "--vae: %s", error);
        vae_holder.vae = &vae_holder.vae_storage;
        channels = config.vae.latent_channels;
        factor = (int64_t)1 << (config.vae.levels - 1);
        if (image_size % factor) FAIL(2, "--image-size %lld must be a multiple of the VAE's factor %lld", (long long)image_size, (long long)factor);
    }
    UnetConfig unet_config;
    if (unet_config_path) {
        char *json = fs_read_text(unet_config_path, error, sizeof error);
        if (!json) FAIL(2, "--unet-config %s", error);
        int status = unet_config_from_json(json, &unet_config, error, sizeof error);
        free(json);
        if (status != 0) FAIL(2, "--unet-config %s: %s", unet_config_path, error);
    } else {
        unet_preset(unet_preset_name, text, classes, channels, text_width, &unet_config);
    }
    if (unet_config.in_channels != channels || unet_config.out_channels != channels)
        FAIL(2, "the UNet takes %lld channels in and %lld out; the %s data has %lld", (long long)unet_config.in_channels,
             (long long)unet_config.out_channels, latent ? "latent" : "image", (long long)channels);
    if (by_class && unet_config.num_class_embeds != classes + 1)
        FAIL(2, "the UNet has %lld class rows; %lld classes need %lld (the last is the null class)",
             (long long)unet_config.num_class_embeds, (long long)classes, (long long)classes + 1);
    if (text && unet_config.cross_attention_dim != text_width)
        FAIL(2, "the UNet attends to %lld-wide states; --text-width is %lld", (long long)unet_config.cross_attention_dim,
             (long long)text_width);
    int64_t side = image_size / factor, multiple = (int64_t)1 << (unet_config.levels - 1);
    if (side % multiple) FAIL(2, "--image-size %lld: the UNet needs a multiple of %lld", (long long)image_size, (long long)(multiple * factor));
    ClipTextConfig text_config = {0};
    if (text)
        text_config = (ClipTextConfig){.vocab_size = word_tokenizer_vocab_size(tokenizer), .width = text_width,
                                       .layers = text_layers, .heads = text_heads, .intermediate = 4 * text_width,
                                       .max_positions = context_length, .eps = 1e-5, .quick_gelu = true,
                                       .eos_token_id = WORD_EOS_ID, .projection_dim = 0};
    ParamStore *params = params_new(), *ema = params_new();
    Rng init = rng_make((uint64_t)seed, 0);
    Unet unet, ema_unet;
    ClipText text_encoder, ema_text;
    unet_create(&unet, params, "unet.", unet_config, &init);
    unet_create(&ema_unet, ema, "unet.", unet_config, NULL);
    if (text) {
        clip_text_create(&text_encoder, params, "text_encoder.", text_config, &init);
        clip_text_create(&ema_text, ema, "text_encoder.", text_config, NULL);
    }
    params_finalize(params);
    params_finalize(ema);
    params_ema_update(ema, params, 0.0);  // the EMA starts at the initial weights
    Optimizer *optimizer = optimizer_new_adam(params->numel, lr, 0.9, 0.999, 1e-8, weight_decay, true);
    if (!optimizer) FAIL(2, "invalid optimizer settings");

    // Settings a resume must repeat.
    TrainState state = {0};
    char *settings = state.user_json;
    size_t settings_size = sizeof state.user_json;
    snprintf(settings, settings_size, "{\"command\":\"diffusion-train\"");
    settings_add_string(settings, settings_size, "data", data);
    settings_add_string(settings, settings_size, "captions", captions_path ? captions_path : "");
    settings_add_string(settings, settings_size, "caption-template", caption_template ? caption_template : "");
    settings_add_string(settings, settings_size, "condition", condition_name);
    settings_add_string(settings, settings_size, "vae", vae_path ? vae_path : "");
    settings_add_string(settings, settings_size, "unet", unet_config_path ? unet_config_path : unet_preset_name);
    settings_add_string(settings, settings_size, "prediction", prediction);
    settings_add_string(settings, settings_size, "beta-schedule", beta_schedule);
    settings_add_string(settings, settings_size, "lr-schedule", schedule_text);
    size_t used = strlen(settings);
    snprintf(settings + used, settings_size - used,
             ",\"image-size\":%lld,\"text-width\":%lld,\"text-layers\":%lld,\"text-heads\":%lld,\"context-length\":%lld,"
             "\"min-word-count\":%lld,\"timesteps\":%lld,\"beta-start\":%.17g,\"beta-end\":%.17g,\"condition-dropout\":%.17g,"
             "\"steps\":%lld,\"batch-size\":%lld,\"lr\":%.17g,\"weight-decay\":%.17g,\"grad-clip\":%.17g,\"ema-decay\":%.17g,"
             "\"seed\":%lld,\"snr-gamma\":%.17g}",
             (long long)image_size, (long long)text_width, (long long)text_layers, (long long)text_heads,
             (long long)context_length, (long long)min_word_count, (long long)timesteps, beta_start, beta_end,
             condition_dropout, (long long)steps, (long long)batch_size, lr, weight_decay, grad_clip, ema_decay, (long long)seed,
             snr_gamma);
    if (strlen(settings) + 2 >= settings_size) FAIL(2, "the run's settings (paths) are too long");
    if (fs_make_directories(out_dir) != 0) FAIL(1, "cannot create --out directory %s: %s", out_dir, strerror(errno));
    char samples_dir[4200], checkpoint_dir[4200], generator_dir[4200], path[8400];
    snprintf(samples_dir, sizeof samples_dir, "%s/samples", out_dir);
    snprintf(checkpoint_dir, sizeof checkpoint_dir, "%s/checkpoint", out_dir);
    snprintf(generator_dir, sizeof generator_dir, "%s/generator", out_dir);
    if (fs_make_directories(samples_dir) != 0) FAIL(1, "cannot create %s: %s", samples_dir, strerror(errno));

    // The noise schedule, and the sampler config the generator folder records.
    char where[64] = "diffusion-train";
    SamplerConfig scheduler = sampler_config_defaults(SAMPLER_DDIM);
    scheduler.num_train_timesteps = (int)timesteps;
    scheduler.beta_start = beta_start, scheduler.beta_end = beta_end;
    scheduler.beta_schedule = beta_schedule_from_name(beta_schedule, "--beta-schedule");
    scheduler.prediction_type = prediction_type_from_name(prediction, "--prediction");
    scheduler.clip_sample = !latent;  // pixels live in [-1, 1]; latents do not
    NoiseSchedule schedule = noise_schedule_make(scheduler.beta_schedule, (int)timesteps, beta_start, beta_end, where);
    Schedule lr_schedule;
    if (schedule_parse(schedule_text, steps, &lr_schedule, error, sizeof error) != 0) FAIL(2, "--lr-schedule: %s", error);

    // RNGs: timesteps/noise/dropout, saved with the checkpoint.
    Rng train_rng = rng_make((uint64_t)seed, 1);
    train_state_track_rng(&state, "diffusion", &train_rng);
    train_state_add_part(&state, "ema", ema, NULL);
    if (resume_dir) {
        char saved[sizeof state.user_json];
        if (checkpoint_read_user_json(resume_dir, saved, sizeof saved, error, sizeof error) != 0) FAIL(1, "--resume: %s", error);
        if (check_resume_settings("diffusion-train", saved, state.user_json, resume_dir) != 0) exit(2);
        if (checkpoint_load(resume_dir, params, optimizer, &state, error, sizeof error) != 0) FAIL(1, "--resume: %s", error);
    }
    if (state.step >= steps) FAIL(2, "the checkpoint is already at step %lld of --steps %lld", (long long)state.step, (long long)steps);
    int64_t end_step = stop_at_step && stop_at_step < steps ? stop_at_step : steps;
    if (state.step >= end_step) FAIL(2, "--stop-at-step %lld: the run is already at step %lld", (long long)stop_at_step, (long long)state.step);
    if (run_device.kind == DEVICE_CUDA) {
        params_to_device(params, run_device);
        params_to_device(ema, run_device);
        optimizer_move_to_device(optimizer);
        if (vae_holder.stores[0]) params_to_device(vae_holder.stores[0], run_device);
    }

    // Loader: images resized to --image-size and mapped to [-1, 1].
    char spec[256];
    snprintf(spec, sizeof spec, "resize=%lld:%lld,normalize=half", (long long)image_size, (long long)image_size);
    TransformPipeline *transform = transform_pipeline_parse(spec, error, sizeof error);
    if (!transform) FAIL(1, "%s", error);
    LoaderOptions loader_options = {.dataset = dataset, .idx_images = data_source_idx(&source), .channels = 3,
                                    .views = {transform}, .n_views = 1, .batch_size = batch_size, .shuffle = true,
                                    .drop_last = true, .seed = (uint64_t)seed, .workers = (int)workers,
                                    .bad_samples = LOADER_BAD_SAMPLE_FATAL, .start_epoch = state.epoch,
                                    .start_position = state.epoch_position, .name = "--data"};
    Loader *loader = loader_create(&loader_options, error, sizeof error);
    if (!loader) FAIL(1, "%s", error);

    // Sample sheet rows: --sample-prompts, else 8 captions / classes spread over the dataset.
    SampleSheet sheet = {.columns = (int)sample_columns, .seed = (uint64_t)seed, .sampling = pipeline_sampling_defaults()};
    sheet.sampling.steps = (int)sample_steps;
    sheet.sampling.guidance_scale = !strcmp(condition_name, "none") ? 1.0 : sample_guidance;
    sheet.sampling.image_size = image_size;
    char **rows = NULL;
    int64_t n_rows = 0;
    if (sample_prompts_path) {
        FILE *f = fopen(sample_prompts_path, "rb");
        if (!f) FAIL(2, "--sample-prompts %s: cannot open: %s", sample_prompts_path, strerror(errno));
        char line[1024];
        while (fgets(line, sizeof line, f) && n_rows < 64) {
            line[strcspn(line, "\r\n")] = 0;
            if (!*line) continue;
            rows = realloc(rows, (size_t)(n_rows + 1) * sizeof *rows);
            if (!rows || !(rows[n_rows++] = strdup(line))) FAIL(1, "out of memory");
        }
        fclose(f);
        if (n_rows == 0) FAIL(2, "--sample-prompts %s: no prompts", sample_prompts_path);
    } else if (!strcmp(condition_name, "none")) {
        n_rows = 1;
    } else {
        // The distinct captions / classes of 8 evenly spaced samples: datasets are ordered by class,
        // so the rows span the classes.
        rows = calloc(8, sizeof *rows);
        if (!rows) FAIL(1, "out of memory");
        for (int64_t k = 0; k < 8; k++) {
            int64_t index = (k * dataset->count) / 8;
            char label[512];
            if (text) snprintf(label, sizeof label, "%s", captions[index]);
            else {
                int64_t y = dataset->samples[index].label;
                if (dataset->class_names) snprintf(label, sizeof label, "%s", dataset->class_names[y]);
                else snprintf(label, sizeof label, "%lld", (long long)y);
            }
            bool seen = false;
            for (int64_t r = 0; r < n_rows && !seen; r++) seen = !strcmp(rows[r], label);
            if (seen) continue;
            if (!(rows[n_rows++] = strdup(label))) FAIL(1, "out of memory");
        }
    }
    sheet.rows = (int)n_rows;
    sheet.view = (Pipeline){.condition = text ? PIPELINE_TEXT : by_class ? PIPELINE_CLASS : PIPELINE_UNCONDITIONAL,
                            .unet = &ema_unet, .vae = vae_holder.vae, .text_encoder = text ? &ema_text : NULL,
                            .word_tokenizer = tokenizer, .context_length = (int)context_length, .num_classes = classes,
                            .class_names = dataset->class_names, .image_size = image_size, .latent_channels = channels,
                            .latent_factor = factor, .scheduler = scheduler};
    if (text) sheet.prompts = rows;
    if (by_class) {
        sheet.classes = malloc((size_t)n_rows * sizeof *sheet.classes);
        if (!sheet.classes) FAIL(1, "out of memory");
        for (int64_t r = 0; r < n_rows; r++)
            if ((sheet.classes[r] = pipeline_class_id(&sheet.view, rows[r])) < 0)
                FAIL(2, "--sample-prompts: \"%s\" is not a class name or number of the data", rows[r]);
    }
    // What the generator folder records.
    PipelineSaveSpec save_spec = {.unet = &unet_config, .text = text ? &text_config : NULL, .tokenizer = tokenizer,
                                  .vae_folder = vae_path, .scheduler = &scheduler, .image_size = image_size,
                                  .context_length = (int)context_length,
                                  .class_names = by_class ? (const char *const *)dataset->class_names : NULL,
                                  .n_class_names = classes, .sample_prompts = (const char *const *)rows,
                                  .n_sample_prompts = rows ? (int)n_rows : 0};

    snprintf(path, sizeof path, "%s/log.jsonl", out_dir);
    JsonlLog *log = jsonl_open(path, error, sizeof error);
    if (!log) FAIL(1, "%s", error);
    int64_t total_parameters = params_count_elements(params);
    printf("tailor diffusion-train: %s %s-space UNet (%s), %lld parameters%s; %s: %lld images; %lld steps of %lld; %d threads\n",
           condition_name, space, unet_config_path ? unet_config_path : unet_preset_name, (long long)total_parameters,
           text ? ", with a text encoder over a word vocabulary" : "", source.description, (long long)dataset->count,
           (long long)steps, (long long)batch_size, omp_get_max_threads());
    if (text) printf("vocabulary: %d words (min count %lld); context %lld tokens\n", (int)word_tokenizer_vocab_size(tokenizer),
                     (long long)min_word_count, (long long)context_length);
    jsonl_write(log, "\"event\":\"start\",\"condition\":\"%s\",\"space\":\"%s\",\"parameters\":%lld,\"steps\":%lld,"
                     "\"batch_size\":%lld,\"images\":%lld,\"threads\":%d,\"resumed_at\":%lld",
                condition_name, space, (long long)total_parameters, (long long)steps, (long long)batch_size,
                (long long)dataset->count, omp_get_max_threads(), (long long)state.step);

    DiffusionTrainingOptions loss_options = {.prediction_type = scheduler.prediction_type,
                                             .condition_dropout = condition_dropout, .snr_gamma = snr_gamma};
    ClassDrop class_drop = {.null_class = classes};
    if (by_class) loss_options.drop_condition = drop_labels, loss_options.drop_context = &class_drop;
    if (text) loss_options.drop_condition = diffusion_drop_to_null_condition;
    int32_t *ids = malloc((size_t)(batch_size + 1) * (size_t)context_length * sizeof *ids);
    if (!ids) FAIL(1, "out of memory");
    Progress progress;
    progress_begin(&progress, "diffusion-train", end_step - state.step);
    double start_time = progress_now(), smoothed = NAN;
    int64_t first_step = state.step, images_seen = 0;
    char status_text[160] = "";
    int exit_status = 0;
    while (state.step < end_step) {
        const LoaderBatch *batch;
        if (loader_next(loader, &batch, error, sizeof error) != 0) {
            fprintf(stderr, "\nerror: tailor diffusion-train: %s\n", error);
            exit_status = 1;
            break;
        }
        TensorScope scope = tensor_scope_begin();
        Tensor *x0 = loader_batch_images(batch, 0, run_device);
        if (latent) {
            bool grad_was = autograd_set_enabled(false);
            x0 = op_mul_scalar(vae_encode(vae_holder.vae, x0, NULL), vae_holder.vae->config.scaling_factor);
            autograd_set_enabled(grad_was);
        }
        Tensor *condition = NULL;
        if (text) {
            // The batch's captions and, last, the empty prompt (the null condition for dropout).
            int64_t B = batch->count;
            Tensor *tokens = tensor_empty(DTYPE_I64, SHAPE(B + 1, context_length));
            for (int64_t i = 0; i <= B; i++) {
                const char *caption = i < B ? captions[batch->indices[i]] : "";
                word_tokenizer_encode(tokenizer, caption, (int)context_length, ids);
                for (int64_t j = 0; j < context_length; j++) tensor_i64(tokens)[i * context_length + j] = ids[j];
            }
            if (run_device.kind != DEVICE_CPU) tokens = op_to_device(tokens, run_device);
            Tensor *states = clip_text_forward(&text_encoder, tokens, NULL, NULL);
            condition = op_narrow(states, 0, 0, B);
            loss_options.drop_context = op_narrow(states, 0, B, 1);
        } else if (by_class) {
            condition = loader_batch_labels(batch, run_device);
        }
        params_zero_grad(params);
        Tensor *loss = diffusion_training_loss(&schedule, unet_diffusion_model, &unet, x0, condition, loss_options, &train_rng);
        double loss_value = tensor_item(loss);
        if (!isfinite(loss_value)) {
            fprintf(stderr, "\nerror: tailor diffusion-train: the loss became %g at step %lld (learning rate %g too high?)\n",
                    loss_value, (long long)state.step, optimizer->lr);
            jsonl_write(log, "\"event\":\"error\",\"step\":%lld,\"message\":\"non-finite loss\"", (long long)state.step);
            tensor_scope_end(scope);
            exit_status = 1;
            break;
        }
        tensor_backward(loss, NULL);
        double grad_norm = grad_clip > 0 ? clip_grad_norm(params_grads(params), params->numel, grad_clip) : NAN;
        optimizer->lr = schedule_lr(&lr_schedule, lr, state.step);
        optimizer_step(optimizer, params_values(params), params_grads(params));
        // EMA with diffusers' warm-up: decay min(d, (1 + n) / (10 + n)), so early samples are not
        // dominated by the random initial weights.
        double decay = fmin(ema_decay, (1.0 + (double)state.step) / (10.0 + (double)state.step));
        params_ema_update(ema, params, decay);
        tensor_scope_end(scope);

        state.step++;
        state.epoch = batch->next_epoch;
        state.epoch_position = batch->next_position;
        images_seen += batch->count;
        smoothed = isnan(smoothed) ? loss_value : 0.98 * smoothed + 0.02 * loss_value;
        jsonl_write(log, "\"event\":\"step\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g",
                    (long long)state.step, (long long)batch->epoch, loss_value, optimizer->lr, isnan(grad_norm) ? -1.0 : grad_norm);
        bool last = state.step == end_step;
        if ((sample_every && state.step % sample_every == 0) || last) {
            snprintf(path, sizeof path, "%s/step_%06lld.png", samples_dir, (long long)state.step);
            if (write_samples(&sheet, path, run_device, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor diffusion-train: %s\n", error);
                exit_status = 1;
                break;
            }
            jsonl_write(log, "\"event\":\"samples\",\"step\":%lld,\"path\":\"%s\"", (long long)state.step, path);
            if (!progress.interactive) printf("step %lld: samples %s\n", (long long)state.step, path);
        }
        if ((checkpoint_every && state.step % checkpoint_every == 0) || last) {
            char extra[96];
            snprintf(extra, sizeof extra, "\"trained_steps\": %lld", (long long)state.step);
            save_spec.extra_json = extra;
            if (checkpoint_save(checkpoint_dir, params, optimizer, &state, error, sizeof error) != 0 ||
                pipeline_save(generator_dir, ema, &save_spec, error, sizeof error) != 0) {
                fprintf(stderr, "\nerror: tailor diffusion-train: %s\n", error);
                exit_status = 1;
                break;
            }
        }
        double elapsed = progress_now() - start_time;
        snprintf(status_text, sizeof status_text, "loss %.4f %.1f img/s", smoothed, elapsed > 0 ? (double)images_seen / elapsed : 0.0);
        progress_update(&progress, state.step - first_step, status_text);
    }
    progress_end(&progress, status_text);
    if (exit_status == 0) {
        double elapsed = progress_now() - start_time;
        printf("step %lld: loss %.4f (smoothed), %.1f images/s\n", (long long)state.step, smoothed,
               elapsed > 0 ? (double)images_seen / elapsed : 0.0);
        printf("generator (EMA weights): %s\ncheckpoint: %s, samples: %s, log: %s/log.jsonl\n", generator_dir, checkpoint_dir,
               samples_dir, out_dir);
        jsonl_write(log, "\"event\":\"end\",\"step\":%lld,\"loss\":%.6g,\"images_per_second\":%.2f", (long long)state.step,
                    smoothed, elapsed > 0 ? (double)images_seen / elapsed : 0.0);
    }
    jsonl_close(log);
    loader_free(loader);
    transform_pipeline_free(transform);
    free(ids);
    for (int64_t r = 0; rows && r < n_rows; r++) free(rows[r]);
    free(rows);
    free(sheet.classes);
    noise_schedule_free(&schedule);
    optimizer_free(optimizer);
    unet_free(&unet);
    unet_free(&ema_unet);
    if (text) clip_text_free(&text_encoder), clip_text_free(&ema_text);
    params_free(params);
    params_free(ema);
    if (latent) vae_free(&vae_holder.vae_storage), params_free(vae_holder.stores[0]);
    word_tokenizer_free(tokenizer);
    captions_free(captions, dataset->count);
    data_source_close(&source);
    return exit_status;
}
