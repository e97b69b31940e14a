// Vision Transformer and DeiT as timm 0.9.16's VisionTransformer / VisionTransformerDistilled
// (timm/models/vision_transformer.py, deit.py) with the default options of vit_*/deit_*: the same
// layers, state-dict names and initialisation.
//
//   patch_embed.proj: conv patch x patch, stride patch, with bias -> tokens [B, N, D] (row-major
//     over the patch grid: flatten(2).transpose(1, 2))
//   cls_token [1, 1, D] (and dist_token [1, 1, D] for distilled DeiT) concatenated in front,
//   + pos_embed [1, prefix + N, D]
//   blocks.i (pre-norm): x += attn.proj(attention(attn.qkv(norm1(x))));  x += mlp.fc2(GELU(mlp.fc1(norm2(x))))
//     qkv with bias, heads of D / heads, scale head_dim^-0.5, GELU the erf form, mlp ratio 4.
//   norm -> class token (token 0) is the pooled feature; distilled: the heads see token 0 (head)
//     and token 1 (head_dist) and the logits are their mean, the pooled feature (timm's
//     pre_logits) is the mean of the two tokens.
// LayerNorm eps 1e-6. The heads ("head", "head_dist") belong to models/classifier.h.
//
// Initialisation as timm (weight_init=''): pos_embed trunc_normal(std .02, [-2, 2]); cls_token
// normal(std 1e-6) — timm's VisionTransformer.init_weights, not the .02 of the original DeiT code;
// dist_token trunc_normal(std .02); every Linear trunc_normal(std .02) with zero bias; the patch
// conv keeps nn.Conv2d's default init; LayerNorm weight 1 / bias 0. No dropout or drop-path
// (timm's defaults are 0).
#pragma once
#include "models/nn.h"

typedef struct {
    int64_t embed_dim;    // tiny 192, small 384, base 768
    int depth;            // 12
    int heads;            // tiny 3, small 6, base 12
    double mlp_ratio;     // 4
    int64_t patch_size;   // 16
    int64_t image_size;   // 224 (square); must be a multiple of patch_size
    int64_t in_channels;  // 3
    bool distilled;       // DeiT distilled: dist_token and head_dist
} VitConfig;

typedef struct {
    LayerNorm norm1, norm2;
    Linear qkv, proj, fc1, fc2;
} VitBlock;

typedef struct {
    VitConfig config;
    Conv2d patch_embed;
    Tensor *cls_token, *dist_token, *pos_embed;
    VitBlock *blocks;
    LayerNorm norm;
    int64_t num_patches, num_prefix_tokens;
} Vit;

// "tiny", "small" or "base" with the given patch and image size; 0 on success, -1 otherwise.
int vit_config(const char *size, int64_t patch_size, int64_t image_size, bool distilled, VitConfig *config);
void vit_create(Vit *net, ParamStore *store, const char *prefix, VitConfig config, Rng *rng);
void vit_free(Vit *net);
// x [B, C, image, image] -> tokens after the final norm [B, prefix + N, D]. blocks_out (may be
// NULL, else depth entries) receives the tokens after each block (before the final norm), as
// timm's get_intermediate_layers(norm=False) with the prefix tokens kept.
Tensor *vit_forward_tokens(Vit *net, Tensor *x, Tensor **blocks_out);
// The pooled feature from the normalised tokens: token 0, or the mean of tokens 0 and 1 when distilled.
Tensor *vit_pool(const Vit *net, Tensor *tokens);
