// diffusers' ResnetBlock2D (time_embedding_norm "default", output_scale_factor 1), shared by the
// UNet (with a time embedding) and the VAE (without): GroupNorm-SiLU-conv, + the projected time
// embedding, GroupNorm-SiLU-conv, added to the input (through a 1x1 conv when the width changes).
// Weights: <prefix>norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut.
#pragma once
#include "models/nn.h"

typedef struct {
    GroupNorm norm1, norm2;
    Conv2d conv1, conv2, shortcut;
    Linear time_projection;  // weight NULL without a time embedding
    bool has_shortcut;
} ResnetBlock2d;

// temb_channels 0: no time embedding (the VAE's blocks).
ResnetBlock2d resnet_block2d_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, int64_t temb_channels,
                                    int groups, double eps, Rng *rng);
// temb_activated: silu(time embedding) [B, temb_channels], or NULL for a block without one.
Tensor *resnet_block2d_forward(const ResnetBlock2d *block, Tensor *x, Tensor *temb_activated);
// A 3x3 convolution with bias (stride 1 or 2, padding 1), as diffusers' conv_in/conv_out/samplers.
Conv2d conv3x3_create(ParamStore *store, const char *name, int64_t in, int64_t out, int stride, Rng *rng);
