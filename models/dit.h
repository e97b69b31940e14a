// DiT, the Diffusion Transformer of Peebles & Xie 2023 ("Scalable Diffusion Models with
// Transformers"), as the official facebookresearch/DiT models.py builds it: the same layers,
// state-dict names and initialisation, so the released checkpoints (DiT-XL-2-256x256.pt, ...) load
// by name.
//
//   x_embedder.proj       conv patch x patch, stride patch -> tokens [B, T, D], T = (input / patch)^2
//                         (row-major over the patch grid), + pos_embed [1, T, D]: a fixed 2-D sin-cos
//                         table, saved in the state dict but not trained (a buffer here)
//   t_embedder.mlp.0 / .2 Linear(256 -> D), SiLU, Linear(D -> D) over the frequency embedding of t
//                         (cos half first, then sin; frequencies exp(-ln(10000) i / 128))
//   y_embedder.embedding_table  [classes (+ 1 null row when trained with class dropout), D]
//   c = t_embedder(t) + y_embedder(y)
//   blocks.i (adaLN-Zero): adaLN_modulation.1 = Linear(D -> 6D) on SiLU(c) gives shift, scale, gate
//     for attention and for the MLP;  x += gate_a * attn.proj(attention(attn.qkv(modulate(norm1(x)))))
//     x += gate_m * mlp.fc2(GELU_tanh(mlp.fc1(modulate(norm2(x))))),  modulate(h) = h (1 + scale) + shift
//   final_layer: adaLN_modulation.1 = Linear(D -> 2D) gives shift, scale; linear(modulate(norm_final(x)))
//     -> [B, T, patch^2 * out] -> unpatchify -> [B, out, H, W]; out = 2 x in with learned sigma
//     (the first `in` channels are the noise prediction, the rest the variance interpolation v).
// LayerNorms have no affine parameters, eps 1e-6; attention heads D / heads wide, scale Dh^-0.5.
#pragma once
#include <stdbool.h>

#include "models/nn.h"

// Width of the sinusoidal timestep features fed to t_embedder.mlp.0 (the official default).
#define DIT_FREQUENCY_DIM 256

typedef struct {
    int depth;              // transformer blocks
    int64_t hidden;         // D
    int heads;
    int64_t patch_size;     // 2, 4 or 8 in the presets
    int64_t input_size;     // H = W of the input (the latent: 32 for 256x256 images, 64 for 512x512)
    int64_t in_channels;    // 4 (VAE latents)
    int64_t num_classes;    // 1000 (ImageNet)
    bool learn_sigma;       // output 2 x in_channels
    bool null_class;        // class_dropout_prob > 0: the table has one more row, the null class
    double mlp_ratio;       // 4
} DitConfig;

typedef struct {
    Linear qkv, proj, fc1, fc2, modulation;
} DitBlock;

typedef struct {
    DitConfig config;
    Conv2d x_embedder;
    Tensor *pos_embed;              // [1, T, D] buffer
    Linear t_linear_1, t_linear_2;  // t_embedder.mlp.0, t_embedder.mlp.2
    Tensor *label_table;            // [classes (+1), D]
    DitBlock *blocks;
    Linear final_modulation, final_linear;
    int64_t grid, out_channels;     // patches per side; channels of the output
} Dit;

// A named preset, "DiT-XL/2" ... "DiT-S/8" (the paper's Table 1: S 384 wide, 12 deep, 6 heads;
// B 768/12/12; L 1024/24/16; XL 1152/28/16; patch 2, 4 or 8), with the official defaults: 4 input
// channels, 1000 classes plus the null class, learned sigma. 0, or -1 for an unknown name.
int dit_preset(const char *name, int64_t input_size, DitConfig *config);
// 0, or -1 with one line in error naming the field and the value.
int dit_check_config(const DitConfig *config, char *error, size_t error_size);
// Registers every weight under prefix (e.g. "" or "model.") with the official names and fills
// pos_embed. With rng, the official initialisation: xavier-uniform Linears with zero biases (the
// patch conv as a Linear over its C p p inputs), N(0, .02) for the label table and the timestep
// MLP's weights, and zeros for every adaLN modulation and the final linear, so each block starts as
// the identity and the output as zero. rng NULL leaves the weights zero, for loading.
void dit_create(Dit *net, ParamStore *store, const char *prefix, DitConfig config, Rng *rng);
void dit_free(Dit *net);
// x [B, in, input, input], timesteps [B] (float, may be fractional), labels [B] i64 in
// [0, classes] (classes = the null class, when the model has it) -> [B, out, input, input].
Tensor *dit_forward(Dit *net, Tensor *x, Tensor *timesteps, Tensor *labels);

// Classifier-free guidance's null class: the index of the table's last row (= num_classes). Stops
// with one line when the model has no null row (trained without class dropout).
int64_t dit_null_class(const Dit *net);
// [batch] i64 labels all the null class, on the CPU (dit_forward moves labels to the model's device).
Tensor *dit_null_labels(const Dit *net, int64_t batch);
// Label dropout for training with classifier-free guidance (the official LabelEmbedder.token_drop),
// shaped as diffusion/loss.h's ConditionDropFn: labels [B] i64 with drop[b] != 0 (u8 [B], CPU)
// replaced by the null class of the Dit passed as context.
Tensor *dit_drop_labels(Tensor *labels, Tensor *drop, void *dit);
// The denoiser as the samplers and losses call it (diffusion/guidance.h's DiffusionModelFn, context
// a Dit, condition the labels): the first in_channels output channels, the noise prediction. With
// learned sigma the variance channels are dropped, since the project's samplers use fixed variances.
Tensor *dit_denoiser(Tensor *x_t, Tensor *timesteps, Tensor *labels, void *dit);
