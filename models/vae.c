#include "models/vae.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"

VaeConfig vae_sd1_config(void) {
    VaeConfig c = {.in_channels = 3, .out_channels = 3, .latent_channels = 4, .levels = 4, .layers_per_block = 2,
                   .norm_groups = 32, .scaling_factor = 0.18215, .mid_attention = true};
    const int64_t widths[4] = {128, 256, 512, 512};
    memcpy(c.block_out_channels, widths, sizeof widths);
    return c;
}

static int check_config(const VaeConfig *c, char *error, size_t error_size) {
    if (c->levels < 1 || c->levels > VAE_MAX_LEVELS)
        return snprintf(error, error_size, "vae config: %d levels (block_out_channels), 1-%d supported", c->levels, VAE_MAX_LEVELS), -1;
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 || c->layers_per_block < 1 || c->norm_groups < 1)
        return snprintf(error, error_size, "vae config: channel counts, layers_per_block and norm_num_groups must be >= 1"), -1;
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] < 1 || c->block_out_channels[i] % c->norm_groups)
            return snprintf(error, error_size, "vae config: block_out_channels[%d] = %lld is not a multiple of norm_num_groups %d", i,
                            (long long)c->block_out_channels[i], c->norm_groups),
                   -1;
    return 0;
}

int vae_config_from_json(const char *json_text, VaeConfig *config, char *error, size_t error_size) {
    char parse_error[256];
    JsonValue *root = json_parse(json_text, strlen(json_text), parse_error, sizeof parse_error);
    if (!root) return snprintf(error, error_size, "vae config: %s", parse_error), -1;
    // diffusers' AutoencoderKL defaults for the fields a config.json may leave out.
    VaeConfig c = {.in_channels = 3, .out_channels = 3, .latent_channels = 4, .levels = 1, .layers_per_block = 1,
                   .norm_groups = 32, .scaling_factor = 0.18215, .mid_attention = true};
    c.block_out_channels[0] = 64;
    int status = 0;
#define FAIL(...) (status = -1, snprintf(error, error_size, __VA_ARGS__))
    const JsonValue *widths = json_get(root, "block_out_channels");
    if (widths) {
        c.levels = (int)json_length(widths);
        if (json_type(widths) != JSON_ARRAY || c.levels < 1 || c.levels > VAE_MAX_LEVELS)
            FAIL("vae config: block_out_channels must be a list of 1-%d widths", VAE_MAX_LEVELS);
        for (int i = 0; i < c.levels && status == 0; i++)
            if (json_int64(json_at(widths, (size_t)i), &c.block_out_channels[i]) != 0)
                FAIL("vae config: block_out_channels[%d] is not an integer", i);
    }
    const char *keys[2] = {"down_block_types", "up_block_types"}, *wanted[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
    for (int k = 0; k < 2 && status == 0; k++) {
        const JsonValue *types = json_get(root, keys[k]);
        for (size_t i = 0; types && i < json_length(types) && status == 0; i++) {
            const char *type = json_string(json_at(types, i));
            if (!type || strcmp(type, wanted[k])) FAIL("vae config: %s[%zu] = %s: only %s", keys[k], i, type ? type : "?", wanted[k]);
        }
        if (status == 0 && types && (int)json_length(types) != c.levels)
            FAIL("vae config: %s has %zu entries for %d levels", keys[k], json_length(types), c.levels);
    }
    struct {
        const char *key;
        int64_t *value;
    } ints[] = {{"in_channels", &c.in_channels}, {"out_channels", &c.out_channels}, {"latent_channels", &c.latent_channels}};
    for (size_t i = 0; i < 3 && status == 0; i++)
        if (json_get(root, ints[i].key) && json_int64(json_get(root, ints[i].key), ints[i].value) != 0)
            FAIL("vae config: \"%s\" must be an integer", ints[i].key);
    int64_t v;
    int b;
    double d;
    if (status == 0 && json_int64(json_get(root, "layers_per_block"), &v) == 0) c.layers_per_block = (int)v;
    if (status == 0 && json_int64(json_get(root, "norm_num_groups"), &v) == 0) c.norm_groups = (int)v;
    if (status == 0 && json_double(json_get(root, "scaling_factor"), &d) == 0) c.scaling_factor = d;
    if (status == 0 && json_bool(json_get(root, "mid_block_add_attention"), &b) == 0) c.mid_attention = b;
    const char *act = json_string(json_get(root, "act_fn"));
    if (status == 0 && act && strcmp(act, "silu")) FAIL("vae config: act_fn \"%s\" is not implemented", act);
    const JsonValue *quant = json_get(root, "use_quant_conv"), *post = json_get(root, "use_post_quant_conv");
    if (status == 0 && ((quant && json_bool(quant, &b) == 0 && !b) || (post && json_bool(post, &b) == 0 && !b)))
        FAIL("vae config: models without quant_conv / post_quant_conv are not implemented");
#undef FAIL
    json_free(root);
    if (status == 0) status = check_config(&c, error, error_size);
    if (status == 0) *config = c;
    return status;
}

// ---------------------------------------------------------------- construction


static VaeAttention attention_create(ParamStore *store, const char *prefix, int64_t C, int groups, Rng *rng) {
    char name[256];
    VaeAttention a;
    a.norm = groupnorm_create(store, param_name(name, sizeof name, "%sgroup_norm", prefix), groups, C, 1e-6);
    a.q = linear_create(store, param_name(name, sizeof name, "%sto_q", prefix), C, C, true, rng);
    a.k = linear_create(store, param_name(name, sizeof name, "%sto_k", prefix), C, C, true, rng);
    a.v = linear_create(store, param_name(name, sizeof name, "%sto_v", prefix), C, C, true, rng);
    a.out = linear_create(store, param_name(name, sizeof name, "%sto_out.0", prefix), C, C, true, rng);
    return a;
}

static void mid_create(VaeCoder *coder, ParamStore *store, const char *prefix, int64_t C, const VaeConfig *c, Rng *rng) {
    char name[256];
    coder->mid_resnets[0] = resnet_block2d_create(store, param_name(name, sizeof name, "%smid_block.resnets.0.", prefix), C, C, 0,
                                                  c->norm_groups, 1e-6, rng);
    if (c->mid_attention)
        coder->mid_attention = attention_create(store, param_name(name, sizeof name, "%smid_block.attentions.0.", prefix), C,
                                                c->norm_groups, rng);
    coder->mid_resnets[1] = resnet_block2d_create(store, param_name(name, sizeof name, "%smid_block.resnets.1.", prefix), C, C, 0,
                                                  c->norm_groups, 1e-6, rng);
}

// A DownEncoderBlock2D / UpDecoderBlock2D: `count` resnets from width `in` to `out`, then the sampler.
static void block_create(VaeBlock *block, ParamStore *store, const char *prefix, int count, int64_t in, int64_t out,
                         bool sampler, bool down, const VaeConfig *c, Rng *rng) {
    char name[256];
    *block = (VaeBlock){.resnet_count = count, .has_sampler = sampler};
    block->resnets = calloc((size_t)count, sizeof(ResnetBlock2d));
    if (!block->resnets) tensor_fatal("vae", "out of memory");
    for (int j = 0; j < count; j++)
        block->resnets[j] = resnet_block2d_create(store, param_name(name, sizeof name, "%sresnets.%d.", prefix, j), j == 0 ? in : out,
                                                  out, 0, c->norm_groups, 1e-6, rng);
    if (sampler && down)  // stride 2 without padding, on an input padded at the far side (forward)
        block->sampler = conv2d_create(store, param_name(name, sizeof name, "%sdownsamplers.0.conv", prefix), out, out, 3,
                                       conv2d_params(2, 0, 1, 1), true, rng);
    else if (sampler)
        block->sampler = conv3x3_create(store, param_name(name, sizeof name, "%supsamplers.0.conv", prefix), out, out, 1, rng);
}

void vae_create(Vae *vae, ParamStore *store, const char *prefix, VaeConfig config, Rng *rng) {
    char error[256], name[256];
    if (check_config(&config, error, sizeof error) != 0) tensor_fatal("vae", "%s", error);
    const VaeConfig *c = &config;
    *vae = (Vae){.config = config};
    int L = c->levels;
    int64_t top = c->block_out_channels[L - 1], latent = c->latent_channels;
    // Encoder.
    VaeCoder *e = &vae->encoder;
    e->conv_in = conv3x3_create(store, param_name(name, sizeof name, "%sencoder.conv_in", prefix), c->in_channels,
                                c->block_out_channels[0], 1, rng);
    int64_t output = c->block_out_channels[0];
    for (int i = 0; i < L; i++) {
        int64_t input = output;
        output = c->block_out_channels[i];
        block_create(&e->blocks[i], store, param_name(name, sizeof name, "%sencoder.down_blocks.%d.", prefix, i), c->layers_per_block,
                     input, output, i < L - 1, true, c, rng);
    }
    mid_create(e, store, param_name(name, sizeof name, "%sencoder.", prefix), top, c, rng);
    e->norm_out = groupnorm_create(store, param_name(name, sizeof name, "%sencoder.conv_norm_out", prefix), c->norm_groups, top, 1e-6);
    e->conv_out = conv3x3_create(store, param_name(name, sizeof name, "%sencoder.conv_out", prefix), top, 2 * latent, 1, rng);
    // Decoder.
    VaeCoder *d = &vae->decoder;
    d->conv_in = conv3x3_create(store, param_name(name, sizeof name, "%sdecoder.conv_in", prefix), latent, top, 1, rng);
    mid_create(d, store, param_name(name, sizeof name, "%sdecoder.", prefix), top, c, rng);
    output = top;
    for (int i = 0; i < L; i++) {
        int64_t input = output;
        output = c->block_out_channels[L - 1 - i];
        block_create(&d->blocks[i], store, param_name(name, sizeof name, "%sdecoder.up_blocks.%d.", prefix, i), c->layers_per_block + 1,
                     input, output, i < L - 1, false, c, rng);
    }
    int64_t base = c->block_out_channels[0];
    d->norm_out = groupnorm_create(store, param_name(name, sizeof name, "%sdecoder.conv_norm_out", prefix), c->norm_groups, base, 1e-6);
    d->conv_out = conv3x3_create(store, param_name(name, sizeof name, "%sdecoder.conv_out", prefix), base, c->out_channels, 1, rng);
    Conv2dParams pointwise = conv2d_params(1, 0, 1, 1);
    vae->quant_conv = conv2d_create(store, param_name(name, sizeof name, "%squant_conv", prefix), 2 * latent, 2 * latent, 1, pointwise,
                                    true, rng);
    vae->post_quant_conv = conv2d_create(store, param_name(name, sizeof name, "%spost_quant_conv", prefix), latent, latent, 1,
                                         pointwise, true, rng);
}

void vae_free(Vae *vae) {
    for (int i = 0; i < vae->config.levels; i++) {
        free(vae->encoder.blocks[i].resnets);
        free(vae->decoder.blocks[i].resnets);
    }
}

// ---------------------------------------------------------------- forward

// Single-head self-attention over the H x W positions of a group-normalised map, added back.
static Tensor *attention_forward(const VaeAttention *a, Tensor *x) {
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    Tensor *h = op_transpose(op_reshape(groupnorm_forward(&a->norm, x), SHAPE(B, C, H * W)), 1, 2);  // [B, HW, C]
    const Linear qkv_layers[3] = {a->q, a->k, a->v};
    Tensor *qkv = linear_stacked_forward(qkv_layers, 3, h);
    Tensor *attended = linear_forward(&a->out, op_self_attention(qkv, 1, false, 0));  // [B, HW, C]
    return op_add(op_reshape(op_transpose(attended, 1, 2), SHAPE(B, C, H, W)), x);
}

static Tensor *mid_forward(const VaeCoder *coder, Tensor *h, bool attention) {
    h = resnet_block2d_forward(&coder->mid_resnets[0], h, NULL);
    if (attention) h = attention_forward(&coder->mid_attention, h);
    return resnet_block2d_forward(&coder->mid_resnets[1], h, NULL);
}

// diffusers' Downsample2D with padding 0: zero-pad one column on the right and one row at the
// bottom, then the stride-2 convolution.
static Tensor *downsample(const Conv2d *conv, Tensor *x) {
    Tensor *column = tensor_zeros_like(op_narrow(x, 3, 0, 1));
    Tensor *wide[2] = {x, column};
    x = op_concat(wide, 2, 3);
    Tensor *row = tensor_zeros_like(op_narrow(x, 2, 0, 1));
    Tensor *tall[2] = {x, row};
    return conv2d_forward(conv, op_concat(tall, 2, 2));
}

static void check_input(const char *what, Tensor *x, int64_t channels, int64_t factor) {
    char got[96];
    if (x->ndim != 4 || x->shape[1] != channels || x->shape[2] % factor || x->shape[3] % factor)
        tensor_fatal("vae", "%s %s: expected [B, %lld, H, W] with H and W multiples of %lld", what,
                     tensor_shape_string(x, got, sizeof got), (long long)channels, (long long)factor);
}

Tensor *vae_encode(Vae *vae, Tensor *images, Tensor **logvar) {
    const VaeConfig *c = &vae->config;
    check_input("images", images, c->in_channels, (int64_t)1 << (c->levels - 1));
    const VaeCoder *e = &vae->encoder;
    Tensor *h = conv2d_forward(&e->conv_in, images);
    for (int i = 0; i < c->levels; i++) {
        const VaeBlock *block = &e->blocks[i];
        for (int j = 0; j < block->resnet_count; j++) h = resnet_block2d_forward(&block->resnets[j], h, NULL);
        if (block->has_sampler) h = downsample(&block->sampler, h);
    }
    h = mid_forward(e, h, c->mid_attention);
    h = conv2d_forward(&e->conv_out, op_silu(groupnorm_forward(&e->norm_out, h)));
    Tensor *moments = conv2d_forward(&vae->quant_conv, h);
    int64_t latent = c->latent_channels;
    if (logvar) *logvar = op_clamp(op_narrow(moments, 1, latent, latent), -30.0, 20.0);
    return op_narrow(moments, 1, 0, latent);
}

Tensor *vae_decode(Vae *vae, Tensor *latents) {
    const VaeConfig *c = &vae->config;
    check_input("latents", latents, c->latent_channels, 1);
    const VaeCoder *d = &vae->decoder;
    Tensor *h = conv2d_forward(&d->conv_in, conv2d_forward(&vae->post_quant_conv, latents));
    h = mid_forward(d, h, c->mid_attention);
    for (int i = 0; i < c->levels; i++) {
        const VaeBlock *block = &d->blocks[i];
        for (int j = 0; j < block->resnet_count; j++) h = resnet_block2d_forward(&block->resnets[j], h, NULL);
        if (block->has_sampler)
            h = conv2d_forward(&block->sampler, op_upsample_nearest2d(h, (int)h->shape[2] * 2, (int)h->shape[3] * 2));
    }
    return conv2d_forward(&d->conv_out, op_silu(groupnorm_forward(&d->norm_out, h)));
}
