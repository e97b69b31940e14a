// A generator as `tailor generate` and the adaptation programs use it: a denoiser (UNet or DiT),
// optionally a VAE (latent space; without one the denoiser works on pixels), optionally a text
// encoder with its tokenizer (text-conditional; else class-conditional or unconditional), the
// sampler defaults of its scheduler config, and the image size. docs/GENERATE.md lists the forms:
//
//   a diffusers folder   model_index.json, unet/, scheduler/scheduler_config.json, and as present
//                        vae/, text_encoder/ + tokenizer/ (vocab.json + merges.txt: CLIP BPE, or
//                        tailor-word-vocab.txt: the word tokenizer of generators trained here),
//                        tailor.json (image size, class names, sample prompts: what
//                        `tailor diffusion-train` writes). Stable Diffusion 1.x folders and the
//                        folders `tailor diffusion-train` writes are both this form.
//   an LDM .safetensors  a Stable Diffusion 1.x single-file checkpoint (models/sd_checkpoint.h).
//   a DiT .safetensors   the official DiT weights (x_embedder.*, blocks.N.*, y_embedder.*), converted
//                        to safetensors; the configuration is read off the tensor shapes; needs a VAE
//                        (options.vae: a diffusers vae/ folder such as stabilityai/sd-vae-ft-ema).
//
// Images: [B, 3, H, W] f32 in [0, 1] (the model's [-1, 1] mapped and clamped).
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "diffusion/clip_tokenizer.h"
#include "diffusion/sampler.h"
#include "diffusion/word_tokenizer.h"
#include "models/clip_text.h"
#include "models/dit.h"
#include "models/sd_checkpoint.h"
#include "models/unet.h"
#include "models/vae.h"

#define PIPELINE_FORMAT "tailor-generator-1"  // tailor.json's "format"

typedef enum { PIPELINE_TEXT, PIPELINE_CLASS, PIPELINE_UNCONDITIONAL } PipelineCondition;

typedef struct {
    const char *vae;        // a diffusers VAE folder (required for DiT; replaces a pipeline's own)
    const char *tokenizer;  // replaces the pipeline's CLIP tokenizer (as SdLoadOptions.tokenizer)
} PipelineLoadOptions;

typedef struct {
    char description[512];       // what was loaded from where, one line
    PipelineCondition condition;
    // The denoiser: exactly one of unet / dit.
    Unet *unet;
    Dit *dit;
    Vae *vae;                    // NULL: pixel space
    ClipText *text_encoder;      // PIPELINE_TEXT only
    ClipTokenizer *clip_tokenizer;  // one of the two tokenizers for PIPELINE_TEXT
    WordTokenizer *word_tokenizer;
    int context_length;          // token ids per prompt
    int64_t num_classes;         // PIPELINE_CLASS: real classes (the null class is index num_classes)
    char **class_names;          // [num_classes] or NULL (names from tailor.json)
    int64_t image_size;          // default output side in pixels
    int64_t latent_channels, latent_factor;  // channels the denoiser sees; pixels per latent pixel
    SamplerConfig scheduler;     // the scheduler config's fields (sampler kind set by the caller)
    bool scheduler_spacing_set;  // the config names timestep_spacing (else the sampler kind's default)
    int n_sample_prompts;
    char **sample_prompts;       // tailor.json's prompts for sample grids (may be 0)
    double guidance_scale;       // tailor.json's recommended guidance (0: none given)
    int sampling_steps;          // tailor.json's recommended steps (0: none given)
    // Owned storage.
    SdModel *sd;
    ParamStore *stores[4];
    Unet unet_storage;
    Dit dit_storage;
    Vae vae_storage;
    ClipText text_storage;
} Pipeline;

// Opens path (see above). NULL with one line in error naming the file and what is wrong.
Pipeline *pipeline_load(const char *path, const PipelineLoadOptions *options, char *error, size_t error_size);
void pipeline_free(Pipeline *pipeline);  // NULL is fine

// Moves every weight to `device` (after loading).
void pipeline_to_device(Pipeline *pipeline, Device device);

// The condition of n images: text states [n, L, D] from prompts (PIPELINE_TEXT), or labels [n] i64
// from class ids (PIPELINE_CLASS; each in [0, num_classes)); NULL for an unconditional model. On
// `device`. Grad mode as the caller set it (Diffusion-TTA differentiates through text states).
Tensor *pipeline_text_states(Pipeline *pipeline, const char *const *prompts, int64_t n, Device device);
// Token ids [n, context_length] (i64, CPU) of prompts with the pipeline's tokenizer.
Tensor *pipeline_tokenize(Pipeline *pipeline, const char *const *prompts, int64_t n);
Tensor *pipeline_class_labels(const Pipeline *pipeline, const int64_t *class_ids, int64_t n, Device device);
// Classifier-free guidance's unconditional input [1, ...]: the empty prompt's states or the null
// class; NULL when the model has none (unconditional models, class models without a null row).
Tensor *pipeline_null_condition(Pipeline *pipeline, Device device);
// The denoiser as the samplers call it (DiffusionModelFn's context is the pipeline).
Tensor *pipeline_denoiser(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *pipeline);

// A class id from a name (tailor.json's class names) or a number; -1 when neither.
int64_t pipeline_class_id(const Pipeline *pipeline, const char *name);

typedef struct {
    SamplerKind sampler;
    int steps;                 // inference steps
    double guidance_scale;     // 1: no guidance
    double eta;                // DDIM
    int64_t image_size;        // 0: the pipeline's
} PipelineSampling;

PipelineSampling pipeline_sampling_defaults(void);  // DDIM, 25 steps, guidance 3, eta 0 (tailor generate's)

// Generates n images for the condition (from pipeline_text_states / _class_labels, or NULL), one
// seed per image: image i starts from the noise of rng_make(seeds[i], 0) and its sampler noise
// comes from rng_make(seeds[i], 1), so an image depends on its seed and condition alone, not on
// the batch it was made in. Returns f32 [n, 3, H, W] in [0, 1] on the CPU. Grad mode off.
Tensor *pipeline_generate(Pipeline *pipeline, Tensor *condition, int64_t n, const uint64_t *seeds,
                          const PipelineSampling *sampling, const char *where);

// The sampling loop from given starting noise [n, C, h, w] (before the sampler's init_noise_sigma
// scaling, as diffusers' prepare_latents draws it), with per-image step noise from step_rngs[n]
// (may be NULL for deterministic samplers), then the VAE decode when there is one. What
// pipeline_generate runs; tests give it a reference implementation's noise.
Tensor *pipeline_sample(Pipeline *pipeline, Tensor *condition, Tensor *initial_noise, Rng *step_rngs,
                        const PipelineSampling *sampling, const char *where);

// Writes a pipeline folder for a pixel- or latent-space UNet trained here: model_index.json,
// unet/ (config.json, diffusion_pytorch_model.safetensors), text_encoder/ (config.json,
// model.safetensors) and tokenizer/tailor-word-vocab.txt when text-conditional, vae/ copied from
// vae_folder when given, scheduler/scheduler_config.json, tailor.json. The weights are taken from
// store under the prefixes "unet." and "text_encoder." (saved without them). Written to
// "<folder>.tmp" and renamed over folder. 0, or -1 with one line in error.
typedef struct {
    const UnetConfig *unet;
    const ClipTextConfig *text;             // NULL unless text-conditional
    const WordTokenizer *tokenizer;         // with text
    const char *vae_folder;                 // NULL: pixel space
    const SamplerConfig *scheduler;
    int64_t image_size;
    int context_length;
    const char *const *class_names;         // may be NULL
    int64_t n_class_names;
    const char *const *sample_prompts;      // may be NULL
    int n_sample_prompts;
    const char *extra_json;                 // members appended to tailor.json (e.g. "\"step\": 10"), or NULL
} PipelineSaveSpec;
int pipeline_save(const char *folder, const ParamStore *store, const PipelineSaveSpec *spec, char *error, size_t error_size);
