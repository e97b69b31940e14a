// The Stable Diffusion autoencoder: diffusers' AutoencoderKL. The encoder (DownEncoderBlock2D
// resnets, strided convs on inputs padded by one row and column at the far side, a mid block of
// resnet - single-head group-norm self-attention - resnet, GroupNorm-SiLU-conv to 2 x latent
// channels, quant_conv) gives the posterior's mean and log-variance (clamped to [-30, 20] as
// diffusers does); the decoder (post_quant_conv, conv_in, mid block, UpDecoderBlock2D resnets
// with nearest 2x upsampling + conv, GroupNorm-SiLU-conv_out) maps latents back to images.
// Latents for a diffusion model are mean (or a sample) x scaling_factor (0.18215 for SD 1.x).
// Weights by diffusers' names (encoder.down_blocks.0.resnets.0.conv1.weight, ...,
// encoder.mid_block.attentions.0.to_q.weight); epsilons 1e-6 throughout.
#pragma once
#include <stdbool.h>

#include "models/resnet_block2d.h"

#define VAE_MAX_LEVELS 6

typedef struct {
    int64_t in_channels, out_channels, latent_channels;
    int levels;
    int64_t block_out_channels[VAE_MAX_LEVELS];
    int layers_per_block;
    int norm_groups;
    double scaling_factor;
    bool mid_attention;  // mid_block_add_attention
} VaeConfig;

typedef struct {
    GroupNorm norm;
    Linear q, k, v, out;
} VaeAttention;

typedef struct {
    int resnet_count;
    ResnetBlock2d *resnets;
    Conv2d sampler;
    bool has_sampler;
} VaeBlock;

typedef struct {
    Conv2d conv_in, conv_out;
    VaeBlock blocks[VAE_MAX_LEVELS];
    ResnetBlock2d mid_resnets[2];
    VaeAttention mid_attention;
    GroupNorm norm_out;
} VaeCoder;

typedef struct {
    VaeConfig config;
    VaeCoder encoder, decoder;
    Conv2d quant_conv, post_quant_conv;
} Vae;

// SD 1.x's VAE (block_out_channels 128/256/512/512, 2 layers per block, 4 latent channels).
VaeConfig vae_sd1_config(void);
// Reads a diffusers AutoencoderKL config.json. 0, or -1 with one line in error.
int vae_config_from_json(const char *json_text, VaeConfig *config, char *error, size_t error_size);
void vae_create(Vae *vae, ParamStore *store, const char *prefix, VaeConfig config, Rng *rng);
void vae_free(Vae *vae);
// images [B, in, H, W] (H, W multiples of 2^(levels-1); SD expects values in [-1, 1]) -> the
// posterior's mean and log-variance [B, latent, H / f, W / f] (logvar may be NULL).
Tensor *vae_encode(Vae *vae, Tensor *images, Tensor **logvar);
// latents [B, latent, h, w] (already divided by the scaling factor) -> images [B, out, h f, w f].
Tensor *vae_decode(Vae *vae, Tensor *latents);
