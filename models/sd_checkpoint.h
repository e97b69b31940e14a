// Opening a Stable Diffusion 1.x model -- UNet, VAE, CLIP text encoder and tokenizer -- from the
// two forms its weights come in (docs/DIFFUSION.md, "Loading Stable Diffusion weights"):
//
//   a diffusers folder  model_index.json; unet/, vae/, text_encoder/ each with config.json and
//                       diffusion_pytorch_model.safetensors or model.safetensors; tokenizer/ with
//                       vocab.json + merges.txt. Configurations from the config.json files.
//   one .safetensors    the original LDM checkpoint: model.diffusion_model.* (UNet),
//                       first_stage_model.* (VAE), cond_stage_model.transformer[.text_model].*
//                       (CLIP text). It holds no configuration: the SD 1.x ones unless the caller
//                       gives others, and no tokenizer: the caller's, or by default the OpenAI
//                       merges file committed at tests/golden/clip_vocab/ (SD 1.x's vocabulary).
//
// Loading is strict: every weight of the three models must be found with its shape (f32, f16,
// bf16 or f64 in the file, converted to f32), and every tensor of a file must be a weight or one
// of the known non-weights (position_ids, the LDM's DDPM schedule buffers, model_ema.*). Every
// failure is one line naming the tensor (or file) and the file. The LDM -> diffusers name
// mapping lives in sd_checkpoint.c, in one place (sd_checkpoint_ldm_name).
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "diffusion/clip_tokenizer.h"
#include "engine/params.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"

// The default tokenizer of a single-file checkpoint, relative to $TAILOR_ROOT (or the current
// directory when it is not set).
#define SD_DEFAULT_TOKENIZER "tests/golden/clip_vocab/bpe_simple_vocab_16e6.txt.gz"

typedef enum { SD_FORMAT_DIFFUSERS, SD_FORMAT_LDM } SdFormat;
typedef enum { SD_PART_UNET, SD_PART_VAE, SD_PART_TEXT } SdPart;

typedef struct {
    UnetConfig unet;
    VaeConfig vae;
    ClipTextConfig text;
} SdConfig;

// SD 1.x: unet_sd1_config(), vae_sd1_config(), clip_text_sd1_config().
SdConfig sd1_config(void);

typedef struct {
    // Single file only (a diffusers folder has its config.json files): NULL -> sd1_config().
    const SdConfig *config;
    // A tokenizer path for clip_tokenizer_load (a folder with vocab.json + merges.txt, or an
    // OpenAI merges file). NULL: <folder>/tokenizer for a diffusers folder, SD_DEFAULT_TOKENIZER
    // for a single file.
    const char *tokenizer;
} SdLoadOptions;

typedef struct {
    SdFormat format;
    SdConfig config;
    Unet unet;
    Vae vae;
    ClipText text_encoder;
    ClipTokenizer *tokenizer;
    ParamStore *unet_params, *vae_params, *text_params;  // finalized, on the CPU
    int ignored;          // tensors skipped as known non-weights
    char report[256];     // one line: what was read from where, and what was ignored
} SdModel;

// Opens path: a directory is read as a diffusers folder, a file as an LDM single-file checkpoint.
// options may be NULL. Returns the model, or NULL with one line in error.
SdModel *sd_model_load(const char *path, const SdLoadOptions *options, char *error, size_t error_size);
void sd_model_free(SdModel *model);  // NULL is fine

// The name under which a file of the given format holds a weight that a model part registers
// under its diffusers name -- the mapping, in one place. alternative 0 is the usual name;
// alternative 1 an older spelling that also occurs (diffusers: the VAE attention's deprecated
// query/key/value/proj_attn; LDM: the text encoder without the "text_model." level). Returns 0, or
// -1 when there is no such name. E.g. SD_FORMAT_LDM, SD_PART_UNET,
// "down_blocks.0.resnets.1.conv1.weight" -> "model.diffusion_model.input_blocks.2.0.in_layers.2.weight"
// (block indices depend on config->unet.layers_per_block, VAE up-block indices on config->vae.levels).
int sd_checkpoint_tensor_name(SdFormat format, SdPart part, const SdConfig *config, const char *diffusers_name,
                              int alternative, char *out, size_t out_size);

// One component folder of a diffusers pipeline on its own (unet/, vae/, text_encoder/, or a VAE
// published alone such as stabilityai/sd-vae-ft-ema): reads its config.json into config's part and
// finds its weight file (into weights_path). 0, or -1 with one line in error.
int sd_component_config(const char *component_folder, SdPart part, SdConfig *config, char *weights_path,
                        size_t weights_size, char *error, size_t error_size);
// Loads the component's weights into store (the part created from that config and finalized) by
// diffusers' names, with the same strictness and name alternatives as sd_model_load.
int sd_component_load_weights(const char *weights_path, SdPart part, const SdConfig *config, ParamStore *store,
                              char *error, size_t error_size);

