#include "models/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"

UnetConfig unet_default_config(void) {
    UnetConfig c = {.in_channels = 4, .out_channels = 4, .levels = 2, .layers_per_block = 1, .cross_attention_dim = 32,
                    .norm_groups = 8, .norm_eps = 1e-5, .flip_sin_to_cos = true, .freq_shift = 0,
                    .mid_block = UNET_MID_CROSS_ATTENTION};
    c.block_out_channels[0] = 32, c.block_out_channels[1] = 64;
    c.down_cross_attention[0] = true, c.up_cross_attention[1] = true;
    c.heads[0] = c.heads[1] = 2;
    return c;
}

UnetConfig unet_sd1_config(void) {
    UnetConfig c = unet_default_config();
    c.levels = 4;
    const int64_t widths[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c.block_out_channels[i] = widths[i];
        c.heads[i] = 8;
        c.down_cross_attention[i] = i < 3;
        c.up_cross_attention[i] = i > 0;
    }
    c.in_channels = c.out_channels = 4;
    c.layers_per_block = 2;
    c.cross_attention_dim = 768;
    c.norm_groups = 32;
    return c;
}

int unet_check_config(const UnetConfig *c, char *error, size_t error_size) {
#define FAIL(...) return snprintf(error, error_size, __VA_ARGS__), -1
    if (c->levels < 1 || c->levels > UNET_MAX_LEVELS) FAIL("unet: %d levels (block_out_channels), 1-%d supported", c->levels, UNET_MAX_LEVELS);
    if (c->in_channels < 1 || c->out_channels < 1) FAIL("unet: in_channels and out_channels must be >= 1");
    if (c->layers_per_block < 1) FAIL("unet: layers_per_block must be >= 1");
    if (c->norm_groups < 1) FAIL("unet: norm_num_groups must be >= 1");
    bool any_cross = c->mid_block == UNET_MID_CROSS_ATTENTION;
    for (int i = 0; i < c->levels; i++) {
        int64_t ch = c->block_out_channels[i];
        if (ch < 1 || ch % c->norm_groups)
            FAIL("unet: block_out_channels[%d] = %lld is not a multiple of norm_num_groups %d", i, (long long)ch, c->norm_groups);
        any_cross |= c->down_cross_attention[i] || c->up_cross_attention[i];
    }
    for (int i = 0; i < c->levels; i++) {
        bool used = c->down_cross_attention[i] || c->up_cross_attention[c->levels - 1 - i] ||
                    (i == c->levels - 1 && c->mid_block == UNET_MID_CROSS_ATTENTION);
        if (used && (c->heads[i] < 1 || c->block_out_channels[i] % c->heads[i]))
            FAIL("unet: %d attention heads do not divide the %lld channels of level %d", c->heads[i],
                 (long long)c->block_out_channels[i], i);
    }
    if (any_cross && c->cross_attention_dim < 1) FAIL("unet: cross-attention blocks need cross_attention_dim >= 1");
    if (c->num_class_embeds < 0) FAIL("unet: num_class_embeds must be >= 0");
    return 0;
#undef FAIL
}

// ---------------------------------------------------------------- diffusers config.json

// An int or per-level list field (attention_head_dim, num_attention_heads) into heads[].
static int per_level_ints(const JsonValue *value, int levels, int *out) {
    int64_t v;
    if (json_int64(value, &v) == 0) {
        for (int i = 0; i < levels; i++) out[i] = (int)v;
        return 0;
    }
    if (json_type(value) != JSON_ARRAY || (int)json_length(value) != levels) return -1;
    for (int i = 0; i < levels; i++) {
        if (json_int64(json_at(value, (size_t)i), &v) != 0) return -1;
        out[i] = (int)v;
    }
    return 0;
}

// Fields of diffusers' UNet2DConditionModel that this implementation does not have must be at their
// defaults: a checkpoint using them would load but compute something else.
static const char *unsupported_field(const JsonValue *root) {
    static const struct {
        const char *key;
        const char *allowed;  // JSON text of the accepted value(s), "|"-separated; "null" for absent
    } fields[] = {
        {"class_embed_type", "null"}, {"addition_embed_type", "null"}, {"time_embedding_type", "\"positional\""},
        {"resnet_time_scale_shift", "\"default\""}, {"act_fn", "\"silu\""}, {"time_cond_proj_dim", "null"},
        {"conv_in_kernel", "3"}, {"conv_out_kernel", "3"}, {"encoder_hid_dim", "null"},
        {"class_embeddings_concat", "false"}, {"only_cross_attention", "false"}, {"dual_cross_attention", "false"},
        {"transformer_layers_per_block", "1"}, {"center_input_sample", "false"}, {"attention_type", "\"default\""},
        {"mid_block_scale_factor", "1|1.0"}, {"downsample_padding", "1"}, {"cross_attention_norm", "null"},
        {"resnet_skip_time_act", "false"}, {"resnet_out_scale_factor", "1|1.0"}, {"time_embedding_dim", "null"},
        {"timestep_post_act", "null"}, {"projection_class_embeddings_input_dim", "null"},
        {"reverse_transformer_layers_per_block", "null"}, {"dropout", "0|0.0"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const JsonValue *v = json_get(root, fields[i].key);
        if (!v || json_type(v) == JSON_NULL) continue;
        char text[64] = "";
        if (json_type(v) == JSON_BOOL) snprintf(text, sizeof text, "%s", v->boolean ? "true" : "false");
        else if (json_type(v) == JSON_NUMBER && v->is_integer) snprintf(text, sizeof text, "%lld", (long long)v->integer);
        else if (json_type(v) == JSON_NUMBER) snprintf(text, sizeof text, "%.1f", v->number);
        else if (json_type(v) == JSON_STRING) snprintf(text, sizeof text, "\"%s\"", json_string(v));
        else return fields[i].key;
        char allowed[64];
        snprintf(allowed, sizeof allowed, "%s", fields[i].allowed);
        bool ok = false;
        for (char *option = strtok(allowed, "|"); option; option = strtok(NULL, "|")) ok |= !strcmp(option, text);
        if (!ok) return fields[i].key;
    }
    return NULL;
}

int unet_config_from_json(const char *json_text, UnetConfig *config, char *error, size_t error_size) {
#define FAIL(...) (snprintf(error, error_size, __VA_ARGS__), json_free(root), -1)
    char parse_error[256];
    JsonValue *root = json_parse(json_text, strlen(json_text), parse_error, sizeof parse_error);
    if (!root) return snprintf(error, error_size, "unet config: %s", parse_error), -1;
    if (json_type(root) != JSON_OBJECT) return FAIL("unet config: not a JSON object");
    UnetConfig c = unet_default_config();
    const char *bad = unsupported_field(root);
    if (bad) return FAIL("unet config: \"%s\" has a value this UNet does not implement", bad);
    const JsonValue *channels = json_get(root, "block_out_channels");
    c.levels = (int)json_length(channels);
    if (json_type(channels) != JSON_ARRAY || c.levels < 1 || c.levels > UNET_MAX_LEVELS)
        return FAIL("unet config: block_out_channels must be a list of 1-%d widths", UNET_MAX_LEVELS);
    for (int i = 0; i < c.levels; i++)
        if (json_int64(json_at(channels, (size_t)i), &c.block_out_channels[i]) != 0)
            return FAIL("unet config: block_out_channels[%d] is not an integer", i);
    const JsonValue *down = json_get(root, "down_block_types"), *up = json_get(root, "up_block_types");
    if ((int)json_length(down) != c.levels || (int)json_length(up) != c.levels)
        return FAIL("unet config: down_block_types and up_block_types need %d entries each", c.levels);
    for (int i = 0; i < c.levels; i++) {
        const char *d = json_string(json_at(down, (size_t)i)), *u = json_string(json_at(up, (size_t)i));
        if (!d || (strcmp(d, "DownBlock2D") && strcmp(d, "CrossAttnDownBlock2D")))
            return FAIL("unet config: down_block_types[%d] = %s: only DownBlock2D and CrossAttnDownBlock2D", i, d ? d : "?");
        if (!u || (strcmp(u, "UpBlock2D") && strcmp(u, "CrossAttnUpBlock2D")))
            return FAIL("unet config: up_block_types[%d] = %s: only UpBlock2D and CrossAttnUpBlock2D", i, u ? u : "?");
        c.down_cross_attention[i] = !strcmp(d, "CrossAttnDownBlock2D");
        c.up_cross_attention[i] = !strcmp(u, "CrossAttnUpBlock2D");
    }
    const JsonValue *mid = json_get(root, "mid_block_type");
    const char *mid_name = json_string(mid);
    if (!mid) c.mid_block = UNET_MID_CROSS_ATTENTION;  // diffusers' default
    else if (json_type(mid) == JSON_NULL) c.mid_block = UNET_MID_NONE;
    else if (mid_name && !strcmp(mid_name, "UNetMidBlock2DCrossAttn")) c.mid_block = UNET_MID_CROSS_ATTENTION;
    else if (mid_name && !strcmp(mid_name, "UNetMidBlock2D")) c.mid_block = UNET_MID_RESNET;
    else return FAIL("unet config: mid_block_type %s is not implemented", mid_name ? mid_name : "?");
    int64_t v;
    double d;
    int b;
    if (json_int64(json_get(root, "in_channels"), &v) == 0) c.in_channels = v;
    if (json_int64(json_get(root, "out_channels"), &v) == 0) c.out_channels = v;
    if (json_int64(json_get(root, "layers_per_block"), &v) == 0) c.layers_per_block = (int)v;
    else if (json_get(root, "layers_per_block")) return FAIL("unet config: layers_per_block must be one integer");
    if (json_int64(json_get(root, "norm_num_groups"), &v) == 0) c.norm_groups = (int)v;
    if (json_double(json_get(root, "norm_eps"), &d) == 0) c.norm_eps = d;
    if (json_bool(json_get(root, "flip_sin_to_cos"), &b) == 0) c.flip_sin_to_cos = b;
    if (json_double(json_get(root, "freq_shift"), &d) == 0) c.freq_shift = d;
    if (json_bool(json_get(root, "use_linear_projection"), &b) == 0) c.linear_projection = b;
    if (json_int64(json_get(root, "num_class_embeds"), &v) == 0) c.num_class_embeds = v;
    c.cross_attention_dim = 1280;  // diffusers' default
    const JsonValue *cross = json_get(root, "cross_attention_dim");
    if (cross && json_int64(cross, &c.cross_attention_dim) != 0)
        return FAIL("unet config: cross_attention_dim must be one integer");
    // num_attention_heads, else attention_head_dim (which means heads here), else 8.
    for (int i = 0; i < c.levels; i++) c.heads[i] = 8;
    const JsonValue *heads = json_get(root, "num_attention_heads");
    if (!heads || json_type(heads) == JSON_NULL) heads = json_get(root, "attention_head_dim");
    if (heads && json_type(heads) != JSON_NULL && per_level_ints(heads, c.levels, c.heads) != 0)
        return FAIL("unet config: attention_head_dim / num_attention_heads must be an integer or %d integers", c.levels);
    json_free(root);
    *config = c;
    return unet_check_config(config, error, error_size);
#undef FAIL
}

// The configuration as a diffusers config.json (UNet2DConditionModel), so that the weights this
// program saves load in diffusers as they are. Fields left at diffusers' defaults are not written.
int unet_config_to_json(const UnetConfig *c, char *out, size_t size) {
    size_t used = 0;
#define PUT(...) (used += (size_t)snprintf(out + used, used < size ? size - used : 0, __VA_ARGS__))
    PUT("{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"sample_size\": null,\n");
    PUT("  \"in_channels\": %lld,\n  \"out_channels\": %lld,\n", (long long)c->in_channels, (long long)c->out_channels);
    PUT("  \"block_out_channels\": [");
    for (int i = 0; i < c->levels; i++) PUT("%s%lld", i ? ", " : "", (long long)c->block_out_channels[i]);
    PUT("],\n  \"down_block_types\": [");
    for (int i = 0; i < c->levels; i++)
        PUT("%s\"%s\"", i ? ", " : "", c->down_cross_attention[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    PUT("],\n  \"up_block_types\": [");
    for (int i = 0; i < c->levels; i++)
        PUT("%s\"%s\"", i ? ", " : "", c->up_cross_attention[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
    PUT("],\n  \"mid_block_type\": %s,\n", c->mid_block == UNET_MID_CROSS_ATTENTION ? "\"UNetMidBlock2DCrossAttn\""
                                          : c->mid_block == UNET_MID_RESNET         ? "\"UNetMidBlock2D\""
                                                                                   : "null");
    PUT("  \"attention_head_dim\": [");
    for (int i = 0; i < c->levels; i++) PUT("%s%d", i ? ", " : "", c->heads[i]);
    PUT("],\n  \"layers_per_block\": %d,\n  \"cross_attention_dim\": %lld,\n  \"norm_num_groups\": %d,\n", c->layers_per_block,
        (long long)c->cross_attention_dim, c->norm_groups);
    PUT("  \"norm_eps\": %.17g,\n  \"flip_sin_to_cos\": %s,\n  \"freq_shift\": %.17g,\n  \"use_linear_projection\": %s,\n",
        c->norm_eps, c->flip_sin_to_cos ? "true" : "false", c->freq_shift, c->linear_projection ? "true" : "false");
    if (c->num_class_embeds > 0) PUT("  \"num_class_embeds\": %lld,\n", (long long)c->num_class_embeds);
    else PUT("  \"num_class_embeds\": null,\n");
    PUT("  \"act_fn\": \"silu\"\n}\n");
#undef PUT
    return used < size ? 0 : -1;
}

// ---------------------------------------------------------------- construction


static UnetTransformer transformer_create(ParamStore *store, const char *prefix, int64_t channels, int heads,
                                          const UnetConfig *c, Rng *rng) {
    char name[256];
    UnetTransformer t = {.heads = heads};
    int64_t D = channels, ctx = c->cross_attention_dim, inner = 4 * D;
    t.norm = groupnorm_create(store, param_name(name, sizeof name, "%snorm", prefix), c->norm_groups, D, 1e-6);
    if (c->linear_projection)
        t.proj_in_linear = linear_create(store, param_name(name, sizeof name, "%sproj_in", prefix), D, D, true, rng);
    else
        t.proj_in_conv = conv2d_create(store, param_name(name, sizeof name, "%sproj_in", prefix), D, D, 1, conv2d_params(1, 0, 1, 1), true, rng);
    UnetTransformerBlock *b = &t.block;
    char block[200];
    param_name(block, sizeof block, "%stransformer_blocks.0.", prefix);
    b->norm1 = layernorm_create(store, param_name(name, sizeof name, "%snorm1", block), D, 1e-5);
    b->self_q = linear_create(store, param_name(name, sizeof name, "%sattn1.to_q", block), D, D, false, rng);
    b->self_k = linear_create(store, param_name(name, sizeof name, "%sattn1.to_k", block), D, D, false, rng);
    b->self_v = linear_create(store, param_name(name, sizeof name, "%sattn1.to_v", block), D, D, false, rng);
    b->self_out = linear_create(store, param_name(name, sizeof name, "%sattn1.to_out.0", block), D, D, true, rng);
    b->norm2 = layernorm_create(store, param_name(name, sizeof name, "%snorm2", block), D, 1e-5);
    b->cross_q = linear_create(store, param_name(name, sizeof name, "%sattn2.to_q", block), D, D, false, rng);
    b->cross_k = linear_create(store, param_name(name, sizeof name, "%sattn2.to_k", block), ctx, D, false, rng);
    b->cross_v = linear_create(store, param_name(name, sizeof name, "%sattn2.to_v", block), ctx, D, false, rng);
    b->cross_out = linear_create(store, param_name(name, sizeof name, "%sattn2.to_out.0", block), D, D, true, rng);
    b->norm3 = layernorm_create(store, param_name(name, sizeof name, "%snorm3", block), D, 1e-5);
    b->ff_in = linear_create(store, param_name(name, sizeof name, "%sff.net.0.proj", block), D, 2 * inner, true, rng);
    b->ff_out = linear_create(store, param_name(name, sizeof name, "%sff.net.2", block), inner, D, true, rng);
    if (c->linear_projection)
        t.proj_out_linear = linear_create(store, param_name(name, sizeof name, "%sproj_out", prefix), D, D, true, rng);
    else
        t.proj_out_conv = conv2d_create(store, param_name(name, sizeof name, "%sproj_out", prefix), D, D, 1, conv2d_params(1, 0, 1, 1), true, rng);
    return t;
}

// One down or up block: `count` resnets (input widths from in_width(j)), attentions when cross.
static void block_create(UnetBlock *block, ParamStore *store, const char *prefix, int count, const int64_t *in_widths,
                         int64_t out, bool cross, int heads, bool sampler, bool down, int64_t temb, const UnetConfig *c,
                         Rng *rng) {
    char name[256];
    *block = (UnetBlock){.resnet_count = count, .has_sampler = sampler};
    block->resnets = calloc((size_t)count, sizeof(ResnetBlock2d));
    if (cross) block->attentions = calloc((size_t)count, sizeof(UnetTransformer));
    if (!block->resnets || (cross && !block->attentions)) tensor_fatal("unet", "out of memory");
    for (int j = 0; j < count; j++) {
        block->resnets[j] = resnet_block2d_create(store, param_name(name, sizeof name, "%sresnets.%d.", prefix, j), in_widths[j], out, temb,
                                                  c->norm_groups, c->norm_eps, rng);
        if (cross)
            block->attentions[j] = transformer_create(store, param_name(name, sizeof name, "%sattentions.%d.", prefix, j), out, heads, c, rng);
    }
    if (sampler)
        block->sampler = conv3x3_create(store, param_name(name, sizeof name, "%s%s", prefix, down ? "downsamplers.0.conv" : "upsamplers.0.conv"), out,
                                 out, down ? 2 : 1, rng);
}

void unet_create(Unet *net, ParamStore *store, const char *prefix, UnetConfig config, Rng *rng) {
    char error[256], name[256];
    if (unet_check_config(&config, error, sizeof error) != 0) tensor_fatal("unet", "%s", error);
    const UnetConfig *c = &config;
    *net = (Unet){.config = config};
    int L = c->levels;
    int64_t base = c->block_out_channels[0], temb = 4 * base;
    net->time_embed_dim = temb;
    net->time_linear_1 = linear_create(store, param_name(name, sizeof name, "%stime_embedding.linear_1", prefix), base, temb, true, rng);
    net->time_linear_2 = linear_create(store, param_name(name, sizeof name, "%stime_embedding.linear_2", prefix), temb, temb, true, rng);
    if (c->num_class_embeds > 0) {
        net->class_embedding = params_add(store, param_name(name, sizeof name, "%sclass_embedding.weight", prefix),
                                          SHAPE(c->num_class_embeds, temb), PARAM_GROUP_DECAY);
        if (rng) init_normal(net->class_embedding, rng, 0.0, 1.0);  // nn.Embedding's default
    }
    net->conv_in = conv3x3_create(store, param_name(name, sizeof name, "%sconv_in", prefix), c->in_channels, base, 1, rng);
    int64_t widths[UNET_MAX_LEVELS + 2];
    int64_t output = base;
    for (int i = 0; i < L; i++) {
        int64_t input = output;
        output = c->block_out_channels[i];
        for (int j = 0; j < c->layers_per_block; j++) widths[j] = j == 0 ? input : output;
        char block[128];
        param_name(block, sizeof block, "%sdown_blocks.%d.", prefix, i);
        block_create(&net->down[i], store, block, c->layers_per_block, widths, output, c->down_cross_attention[i], c->heads[i],
                     i < L - 1, true, temb, c, rng);
    }
    int64_t top = c->block_out_channels[L - 1];
    if (c->mid_block != UNET_MID_NONE)
        net->mid_resnets[0] = resnet_block2d_create(store, param_name(name, sizeof name, "%smid_block.resnets.0.", prefix), top, top, temb,
                                                    c->norm_groups, c->norm_eps, rng);
    if (c->mid_block == UNET_MID_CROSS_ATTENTION) {
        net->mid_attention = transformer_create(store, param_name(name, sizeof name, "%smid_block.attentions.0.", prefix), top,
                                                c->heads[L - 1], c, rng);
        net->mid_resnets[1] = resnet_block2d_create(store, param_name(name, sizeof name, "%smid_block.resnets.1.", prefix), top, top, temb,
                                                    c->norm_groups, c->norm_eps, rng);
    }
    output = top;
    for (int i = 0; i < L; i++) {
        int level = L - 1 - i;  // up block i works at the width of down level L-1-i
        int64_t previous = output, input = c->block_out_channels[level > 0 ? level - 1 : 0];
        output = c->block_out_channels[level];
        int count = c->layers_per_block + 1;
        for (int j = 0; j < count; j++) {
            int64_t skip = j == count - 1 ? input : output;
            widths[j] = (j == 0 ? previous : output) + skip;
        }
        char block[128];
        param_name(block, sizeof block, "%sup_blocks.%d.", prefix, i);
        block_create(&net->up[i], store, block, count, widths, output, c->up_cross_attention[i], c->heads[level], i < L - 1,
                     false, temb, c, rng);
    }
    net->norm_out = groupnorm_create(store, param_name(name, sizeof name, "%sconv_norm_out", prefix), c->norm_groups, base, c->norm_eps);
    net->conv_out = conv3x3_create(store, param_name(name, sizeof name, "%sconv_out", prefix), base, c->out_channels, 1, rng);
}

void unet_free(Unet *net) {
    for (int i = 0; i < net->config.levels; i++) {
        free(net->down[i].resnets);
        free(net->down[i].attentions);
        free(net->up[i].resnets);
        free(net->up[i].attentions);
    }
}

// ---------------------------------------------------------------- forward

Tensor *unet_timestep_embedding(Tensor *timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
    int64_t B = timesteps->shape[0], half = dim / 2;
    Tensor *t = tensor_to_device_raw(op_to_dtype(timesteps, DTYPE_F32), device_cpu());
    Tensor *out = tensor_zeros(DTYPE_F32, SHAPE(B, dim));
    float *o = tensor_f32(out);
    for (int64_t b = 0; b < B; b++) {
        float step = (float)tensor_get(t, b);
        for (int64_t i = 0; i < half; i++) {
            // Step by step in f32 as diffusers computes it: sin/cos of arguments up to ~1000 rad
            // amplify any difference in the rounded argument (1 ulp of 1000 is 6e-5).
            float exponent = (float)-log(10000.0) * (float)i / (float)((double)half - freq_shift);
            float frequency = expf(exponent);
            float argument = step * frequency;
            float s = sinf(argument), co = cosf(argument);
            o[b * dim + (flip_sin_to_cos ? half + i : i)] = s;
            o[b * dim + (flip_sin_to_cos ? i : half + i)] = co;
        }
    }
    return tensor_is_cuda(timesteps) ? tensor_to_device_raw(out, timesteps->storage->device) : out;
}

// [B, T, D] -> [B, heads, T, D / heads]
static Tensor *split_heads(Tensor *x, int heads) {
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2];
    static const int to_heads[4] = {0, 2, 1, 3};
    return op_permute(op_reshape(x, SHAPE(B, T, heads, D / heads)), to_heads);
}

static Tensor *merge_heads(Tensor *x) {
    int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], Dh = x->shape[3];
    return op_reshape(op_transpose(x, 1, 2), SHAPE(B, T, H * Dh));
}

static Tensor *transformer_block_forward(const UnetTransformerBlock *b, Tensor *x, Tensor *context, int heads) {
    // Self-attention: to_q/k/v are three bias-free Linears; one GEMM over their stacked weights
    // feeds the fused attention.
    Tensor *h = layernorm_forward(&b->norm1, x);
    const Linear qkv_layers[3] = {b->self_q, b->self_k, b->self_v};
    Tensor *qkv = linear_stacked_forward(qkv_layers, 3, h);
    x = op_add(x, linear_forward(&b->self_out, op_self_attention(qkv, heads, false, 0)));
    // Cross-attention over the conditioning states.
    h = layernorm_forward(&b->norm2, x);
    Tensor *q = split_heads(linear_forward(&b->cross_q, h), heads);
    Tensor *k = split_heads(linear_forward(&b->cross_k, context), heads);
    Tensor *v = split_heads(linear_forward(&b->cross_v, context), heads);
    x = op_add(x, linear_forward(&b->cross_out, merge_heads(op_scaled_dot_product_attention(q, k, v, NULL, false, 0))));
    // GEGLU feed-forward: [hidden | gate] -> hidden * gelu(gate).
    Tensor *projected = linear_forward(&b->ff_in, layernorm_forward(&b->norm3, x));
    int64_t inner = projected->shape[2] / 2;
    Tensor *gated = op_mul(op_narrow(projected, 2, 0, inner), op_gelu(op_narrow(projected, 2, inner, inner)));
    return op_add(x, linear_forward(&b->ff_out, gated));
}

static Tensor *transformer_forward(const UnetTransformer *t, Tensor *x, Tensor *context, bool linear_projection) {
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    static const int to_tokens[4] = {0, 2, 3, 1}, to_maps[4] = {0, 3, 1, 2};
    Tensor *h = groupnorm_forward(&t->norm, x);
    if (!linear_projection) h = conv2d_forward(&t->proj_in_conv, h);
    h = op_reshape(op_permute(h, to_tokens), SHAPE(B, H * W, C));
    if (linear_projection) h = linear_forward(&t->proj_in_linear, h);
    h = transformer_block_forward(&t->block, h, context, t->heads);
    if (linear_projection) h = linear_forward(&t->proj_out_linear, h);
    h = op_permute(op_reshape(h, SHAPE(B, H, W, C)), to_maps);
    if (!linear_projection) h = conv2d_forward(&t->proj_out_conv, h);
    return op_add(h, x);
}

Tensor *unet_forward(Unet *net, Tensor *sample, Tensor *timesteps, Tensor *context, Tensor *class_labels) {
    const UnetConfig *c = &net->config;
    char got[96];
    int64_t factor = (int64_t)1 << (c->levels - 1);
    if (sample->ndim != 4 || sample->shape[1] != c->in_channels || sample->shape[2] % factor || sample->shape[3] % factor)
        tensor_fatal("unet", "sample %s: expected [B, %lld, H, W] with H and W multiples of %lld",
                     tensor_shape_string(sample, got, sizeof got), (long long)c->in_channels, (long long)factor);
    int64_t B = sample->shape[0];
    if (timesteps->ndim != 1 || timesteps->shape[0] != B)
        tensor_fatal("unet", "timesteps %s: expected [%lld]", tensor_shape_string(timesteps, got, sizeof got), (long long)B);
    bool needs_context = c->mid_block == UNET_MID_CROSS_ATTENTION;
    for (int i = 0; i < c->levels; i++) needs_context |= c->down_cross_attention[i] || c->up_cross_attention[i];
    if (needs_context && (!context || context->ndim != 3 || context->shape[0] != B || context->shape[2] != c->cross_attention_dim))
        tensor_fatal("unet", "context %s: expected [%lld, L, %lld] for the cross-attention blocks",
                     context ? tensor_shape_string(context, got, sizeof got) : "missing", (long long)B,
                     (long long)c->cross_attention_dim);
    if ((net->class_embedding != NULL) != (class_labels != NULL))
        tensor_fatal("unet", net->class_embedding ? "class labels are required (the model has a class embedding)"
                                                  : "class labels given, but the model has no class embedding");

    Tensor *projected = unet_timestep_embedding(timesteps, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift);
    if (tensor_is_cuda(sample) && !tensor_is_cuda(projected)) projected = op_to_device(projected, sample->storage->device);
    Tensor *temb = linear_forward(&net->time_linear_2, op_silu(linear_forward(&net->time_linear_1, projected)));
    if (class_labels) temb = op_add(temb, op_embedding(net->class_embedding, class_labels));
    Tensor *temb_activated = op_silu(temb);  // every resnet's time_emb_proj takes silu(temb)

    Tensor *skips[UNET_MAX_LEVELS * 8 + 1];
    int n_skips = 0;
    Tensor *h = conv2d_forward(&net->conv_in, sample);
    skips[n_skips++] = h;
    for (int i = 0; i < c->levels; i++) {
        UnetBlock *block = &net->down[i];
        for (int j = 0; j < block->resnet_count; j++) {
            h = resnet_block2d_forward(&block->resnets[j], h, temb_activated);
            if (block->attentions) h = transformer_forward(&block->attentions[j], h, context, c->linear_projection);
            skips[n_skips++] = h;
        }
        if (block->has_sampler) skips[n_skips++] = h = conv2d_forward(&block->sampler, h);
    }
    if (c->mid_block != UNET_MID_NONE) h = resnet_block2d_forward(&net->mid_resnets[0], h, temb_activated);
    if (c->mid_block == UNET_MID_CROSS_ATTENTION) {
        h = transformer_forward(&net->mid_attention, h, context, c->linear_projection);
        h = resnet_block2d_forward(&net->mid_resnets[1], h, temb_activated);
    }
    for (int i = 0; i < c->levels; i++) {
        UnetBlock *block = &net->up[i];
        for (int j = 0; j < block->resnet_count; j++) {
            Tensor *parts[2] = {h, skips[--n_skips]};
            h = resnet_block2d_forward(&block->resnets[j], op_concat(parts, 2, 1), temb_activated);
            if (block->attentions) h = transformer_forward(&block->attentions[j], h, context, c->linear_projection);
        }
        if (block->has_sampler)
            h = conv2d_forward(&block->sampler, op_upsample_nearest2d(h, (int)h->shape[2] * 2, (int)h->shape[3] * 2));
    }
    h = op_silu(groupnorm_forward(&net->norm_out, h));
    return conv2d_forward(&net->conv_out, h);
}
