// The diffusion UNet: diffusers' UNet2DConditionModel (Stable Diffusion 1.x and small
// configurations), driven by the same configuration fields and holding its weights under the same
// state-dict names, so diffusers checkpoints load as they are.
//
// Blocks: time embedding (sinusoidal, flip_sin_to_cos / freq_shift; Linear-SiLU-Linear), an optional
// class embedding added to it (num_class_embeds rows; by convention the last row is the null class
// that classifier-free guidance uses), conv_in, down blocks (DownBlock2D or CrossAttnDownBlock2D:
// ResnetBlock2D + Transformer2DModel with self-attention, cross-attention over the text states and a
// GEGLU feed-forward), a mid block (UNetMidBlock2DCrossAttn, UNetMidBlock2D = one resnet, or none),
// up blocks (UpBlock2D / CrossAttnUpBlock2D with skip concatenation, nearest 2x upsampling + conv),
// GroupNorm-SiLU-conv_out. Norm epsilons as diffusers: norm_eps (1e-5) in the resnets and the output
// norm, 1e-6 in the transformer's input GroupNorm, 1e-5 in its LayerNorms.
#pragma once
#include <stdbool.h>

#include "engine/params.h"
#include "engine/rng.h"
#include "models/nn.h"
#include "models/resnet_block2d.h"

#define UNET_MAX_LEVELS 6

typedef enum { UNET_MID_CROSS_ATTENTION, UNET_MID_RESNET, UNET_MID_NONE } UnetMidBlock;

typedef struct {
    int64_t in_channels, out_channels;
    int levels;                                     // len(block_out_channels)
    int64_t block_out_channels[UNET_MAX_LEVELS];
    bool down_cross_attention[UNET_MAX_LEVELS];     // down_block_types[i] == CrossAttnDownBlock2D
    bool up_cross_attention[UNET_MAX_LEVELS];       // up_block_types[i] == CrossAttnUpBlock2D (up order)
    int heads[UNET_MAX_LEVELS];                     // attention heads per level, in down order (see below)
    int layers_per_block;
    int64_t cross_attention_dim;                    // width of the conditioning states
    int norm_groups;
    double norm_eps;
    bool flip_sin_to_cos;
    double freq_shift;
    bool linear_projection;                         // use_linear_projection: proj_in/out Linear, else 1x1 conv
    int64_t num_class_embeds;                       // 0: no class embedding
    UnetMidBlock mid_block;
} UnetConfig;
// Heads: diffusers' config field attention_head_dim is, for this model, the number of heads
// (num_attention_heads = num_attention_heads or attention_head_dim); each head is channels / heads
// wide. SD 1.x: attention_head_dim 8 -> 8 heads at every level.


typedef struct {
    LayerNorm norm1, norm2, norm3;
    Linear self_q, self_k, self_v, self_out;
    Linear cross_q, cross_k, cross_v, cross_out;
    Linear ff_in, ff_out;  // GEGLU: ff_in gives [hidden | gate], 2 x 4 x dim wide
} UnetTransformerBlock;

typedef struct {
    GroupNorm norm;
    Conv2d proj_in_conv, proj_out_conv;
    Linear proj_in_linear, proj_out_linear;
    UnetTransformerBlock block;
    int heads;
} UnetTransformer;

typedef struct {
    int resnet_count;
    ResnetBlock2d *resnets;
    UnetTransformer *attentions;  // NULL for blocks without cross-attention
    Conv2d sampler;              // downsampler / upsampler conv
    bool has_sampler;
} UnetBlock;

typedef struct {
    UnetConfig config;
    int64_t time_embed_dim;
    Linear time_linear_1, time_linear_2;
    Tensor *class_embedding;  // [num_class_embeds, time_embed_dim] or NULL
    Conv2d conv_in, conv_out;
    GroupNorm norm_out;
    UnetBlock down[UNET_MAX_LEVELS], up[UNET_MAX_LEVELS];
    ResnetBlock2d mid_resnets[2];
    UnetTransformer mid_attention;
} Unet;

// A small default: the fields diffusers defaults to, with the given widths.
UnetConfig unet_default_config(void);
// SD 1.x's UNet (runwayml/stable-diffusion-v1-5 unet/config.json): widths 320/640/1280/1280, 8 heads,
// 2 layers per block, cross-attention over 768-wide text states, 1x1-conv projections.
UnetConfig unet_sd1_config(void);
// Reads a diffusers config.json (UNet2DConditionModel). 0, or -1 with one line in error.
int unet_config_from_json(const char *json_text, UnetConfig *config, char *error, size_t error_size);
// Writes the configuration as a diffusers config.json (readable by unet_config_from_json and by
// diffusers' UNet2DConditionModel.from_config). 0, or -1 when out (size bytes) is too small.
int unet_config_to_json(const UnetConfig *config, char *out, size_t size);
// Checks the configuration; 0, or -1 with one line in error naming the field.
int unet_check_config(const UnetConfig *config, char *error, size_t error_size);
// Registers every weight under prefix (e.g. "" or "unet.") with diffusers' names, initialised as
// PyTorch's layer defaults (rng NULL: zeros, for loading).
void unet_create(Unet *net, ParamStore *store, const char *prefix, UnetConfig config, Rng *rng);
void unet_free(Unet *net);
// sample [B, in, H, W] (H, W divisible by 2^(levels-1)), timesteps [B] (f32, may be fractional),
// context [B, L, cross_attention_dim] (NULL when no block attends to it), class_labels [B] i64 or
// NULL -> [B, out, H, W].
Tensor *unet_forward(Unet *net, Tensor *sample, Tensor *timesteps, Tensor *context, Tensor *class_labels);
// The sinusoidal timestep embedding [B, dim] (diffusers' get_timestep_embedding).
Tensor *unet_timestep_embedding(Tensor *timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift);
