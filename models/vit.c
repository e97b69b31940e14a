#include "models/vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vit_config(const char *size, int64_t patch_size, int64_t image_size, bool distilled, VitConfig *config) {
    VitConfig c = {.depth = 12, .mlp_ratio = 4.0, .patch_size = patch_size, .image_size = image_size, .in_channels = 3,
                   .distilled = distilled};
    if (!strcmp(size, "tiny")) c.embed_dim = 192, c.heads = 3;
    else if (!strcmp(size, "small")) c.embed_dim = 384, c.heads = 6;
    else if (!strcmp(size, "base")) c.embed_dim = 768, c.heads = 12;
    else return -1;
    if (patch_size < 1 || image_size < patch_size || image_size % patch_size) return -1;
    *config = c;
    return 0;
}

// A Linear with timm's ViT init: trunc_normal(std .02) weight, zero bias.
static Linear vit_linear(ParamStore *store, const char *name, int64_t in, int64_t out, Rng *rng) {
    Linear layer = linear_create(store, name, in, out, true, NULL);
    init_trunc_normal(layer.weight, rng, 0.0, 0.02, -2.0, 2.0);
    return layer;
}

void vit_create(Vit *net, ParamStore *store, const char *prefix, VitConfig c, Rng *rng) {
    if (c.embed_dim < 1 || c.depth < 1 || c.heads < 1 || c.embed_dim % c.heads || c.patch_size < 1 ||
        c.image_size % c.patch_size || c.image_size < c.patch_size || c.mlp_ratio <= 0)
        tensor_fatal("vit", "bad configuration (embed %lld, heads %d, patch %lld, image %lld)", (long long)c.embed_dim, c.heads,
                     (long long)c.patch_size, (long long)c.image_size);
    *net = (Vit){.config = c};
    int64_t grid = c.image_size / c.patch_size, D = c.embed_dim;
    net->num_patches = grid * grid;
    net->num_prefix_tokens = c.distilled ? 2 : 1;
    char name[160];
    // Parameters in timm's state-dict order: cls_token, pos_embed, (dist_token), patch_embed, blocks, norm.
    // They are tokens and position codes, not weights: no weight decay (timm's no_weight_decay()).
    snprintf(name, sizeof name, "%scls_token", prefix);
    net->cls_token = params_add(store, name, SHAPE(1, 1, D), PARAM_GROUP_NO_DECAY);
    snprintf(name, sizeof name, "%spos_embed", prefix);
    net->pos_embed = params_add(store, name, SHAPE(1, net->num_prefix_tokens + net->num_patches, D), PARAM_GROUP_NO_DECAY);
    if (c.distilled) {
        snprintf(name, sizeof name, "%sdist_token", prefix);
        net->dist_token = params_add(store, name, SHAPE(1, 1, D), PARAM_GROUP_NO_DECAY);
    }
    snprintf(name, sizeof name, "%spatch_embed.proj", prefix);
    // nn.Conv2d's default init (timm's ViT init leaves the patch conv alone).
    net->patch_embed = conv2d_create(store, name, c.in_channels, D, (int)c.patch_size,
                                     conv2d_params((int)c.patch_size, 0, 1, 1), true, rng);
    if (c.distilled) init_trunc_normal(net->dist_token, rng, 0.0, 0.02, -2.0, 2.0);
    init_trunc_normal(net->pos_embed, rng, 0.0, 0.02, -2.0, 2.0);
    init_normal(net->cls_token, rng, 0.0, 1e-6);
    int64_t hidden = (int64_t)(D * c.mlp_ratio);
    net->blocks = calloc((size_t)c.depth, sizeof(VitBlock));
    for (int i = 0; i < c.depth; i++) {
        VitBlock *b = &net->blocks[i];
        char base[128];
        snprintf(base, sizeof base, "%sblocks.%d", prefix, i);
#define NAME(leaf) (snprintf(name, sizeof name, "%s.%s", base, leaf), name)
        b->norm1 = layernorm_create(store, NAME("norm1"), D, 1e-6);
        b->qkv = vit_linear(store, NAME("attn.qkv"), D, 3 * D, rng);
        b->proj = vit_linear(store, NAME("attn.proj"), D, D, rng);
        b->norm2 = layernorm_create(store, NAME("norm2"), D, 1e-6);
        b->fc1 = vit_linear(store, NAME("mlp.fc1"), D, hidden, rng);
        b->fc2 = vit_linear(store, NAME("mlp.fc2"), hidden, D, rng);
#undef NAME
    }
    snprintf(name, sizeof name, "%snorm", prefix);
    net->norm = layernorm_create(store, name, D, 1e-6);
}

void vit_free(Vit *net) {
    free(net->blocks);
    net->blocks = NULL;
}

// timm's Attention: one qkv Linear, heads split as [B, T, 3, H, Dh], scale head_dim^-0.5, heads
// concatenated into the output projection.
static Tensor *attention(const Vit *net, const VitBlock *b, Tensor *x) {
    return linear_forward(&b->proj, op_self_attention(linear_forward(&b->qkv, x), net->config.heads, false, 0));
}

Tensor *vit_forward_tokens(Vit *net, Tensor *x, Tensor **blocks_out) {
    const VitConfig *c = &net->config;
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->image_size || x->shape[3] != c->image_size) {
        char got[96];
        tensor_fatal("vit", "input %s, the model takes [B, %lld, %lld, %lld]", tensor_shape_string(x, got, sizeof got),
                     (long long)c->in_channels, (long long)c->image_size, (long long)c->image_size);
    }
    int64_t B = x->shape[0], D = c->embed_dim;
    Tensor *patches = op_transpose(op_flatten(conv2d_forward(&net->patch_embed, x), 2, 3), 1, 2);  // [B, N, D]
    Tensor *parts[3];
    int n = 0;
    parts[n++] = op_expand(net->cls_token, SHAPE(B, 1, D));
    if (c->distilled) parts[n++] = op_expand(net->dist_token, SHAPE(B, 1, D));
    parts[n++] = patches;
    x = op_add(op_concat(parts, n, 1), net->pos_embed);
    for (int i = 0; i < c->depth; i++) {
        VitBlock *b = &net->blocks[i];
        x = op_add(x, attention(net, b, layernorm_forward(&b->norm1, x)));
        x = op_add(x, linear_forward(&b->fc2, op_gelu(linear_forward(&b->fc1, layernorm_forward(&b->norm2, x)))));
        if (blocks_out) blocks_out[i] = x;
    }
    return layernorm_forward(&net->norm, x);
}

Tensor *vit_pool(const Vit *net, Tensor *tokens) {
    Tensor *cls = op_select(tokens, 1, 0);
    if (!net->config.distilled) return cls;
    return op_mul_scalar(op_add(cls, op_select(tokens, 1, 1)), 0.5);
}
