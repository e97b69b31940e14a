#include "models/dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet.h"

int dit_preset(const char *name, int64_t input_size, DitConfig *config) {
    static const struct {
        const char *size;
        int depth;
        int64_t hidden;
        int heads;
    } sizes[] = {{"S", 12, 384, 6}, {"B", 12, 768, 12}, {"L", 24, 1024, 16}, {"XL", 28, 1152, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int patch = 2; patch <= 8; patch *= 2) {
            char preset[32];
            snprintf(preset, sizeof preset, "DiT-%s/%d", sizes[i].size, patch);
            if (strcmp(name, preset)) continue;
            *config = (DitConfig){.depth = sizes[i].depth, .hidden = sizes[i].hidden, .heads = sizes[i].heads,
                                  .patch_size = patch, .input_size = input_size, .in_channels = 4, .num_classes = 1000,
                                  .learn_sigma = true, .null_class = true, .mlp_ratio = 4.0};
            return 0;
        }
    return -1;
}

int dit_check_config(const DitConfig *c, char *error, size_t error_size) {
#define FAIL(...) return snprintf(error, error_size, __VA_ARGS__), -1
    if (c->depth < 1) FAIL("dit: depth %d, must be >= 1", c->depth);
    if (c->heads < 1 || c->hidden < 1 || c->hidden % c->heads)
        FAIL("dit: hidden size %lld is not a multiple of %d heads", (long long)c->hidden, c->heads);
    // The 2-D sin-cos table gives each axis half the width, as sin and cos halves.
    if (c->hidden % 4) FAIL("dit: hidden size %lld is not a multiple of 4 (2-D sin-cos positions)", (long long)c->hidden);
    if (c->patch_size < 1 || c->input_size < c->patch_size || c->input_size % c->patch_size)
        FAIL("dit: input size %lld is not a multiple of patch size %lld", (long long)c->input_size, (long long)c->patch_size);
    if (c->in_channels < 1) FAIL("dit: in_channels %lld, must be >= 1", (long long)c->in_channels);
    if (c->num_classes < 1) FAIL("dit: num_classes %lld, must be >= 1", (long long)c->num_classes);
    if (!(c->mlp_ratio > 0) || (int64_t)((double)c->hidden * c->mlp_ratio) < 1)
        FAIL("dit: mlp_ratio %g gives no MLP width", c->mlp_ratio);
    return 0;
#undef FAIL
}

// The fixed position table (MAE's get_2d_sincos_pos_embed, which DiT uses): token r * grid + c gets
// [sin(c w), cos(c w), sin(r w), cos(r w)], each D / 4 wide, w_i = 10000^(-i / (D / 4)); computed in
// double as numpy does, then rounded to f32.
static void fill_sincos_positions(Tensor *table, int64_t grid, int64_t D) {
    float *out = tensor_f32(table);
    int64_t quarter = D / 4;
    for (int64_t row = 0; row < grid; row++)
        for (int64_t col = 0; col < grid; col++) {
            float *token = out + (row * grid + col) * D;
            for (int64_t i = 0; i < quarter; i++) {
                double omega = 1.0 / pow(10000.0, (double)i / (double)quarter);
                token[i] = (float)sin((double)col * omega);
                token[quarter + i] = (float)cos((double)col * omega);
                token[2 * quarter + i] = (float)sin((double)row * omega);
                token[3 * quarter + i] = (float)cos((double)row * omega);
            }
        }
}

// torch.nn.init.xavier_uniform_ over a weight seen as [out, fan_in]: U(-a, a), a = sqrt(6 / (fan_in + out)).
static void init_xavier_uniform_2d(Tensor *weight, Rng *rng) {
    double fan_out = (double)weight->shape[0], fan_in = (double)tensor_numel(weight) / fan_out;
    double bound = sqrt(6.0 / (fan_in + fan_out));
    init_uniform(weight, rng, -bound, bound);
}

// The official _basic_init: xavier-uniform weight, zero bias (linear_create leaves both zero
// without an rng).
static Linear dit_linear(ParamStore *store, const char *name, int64_t in, int64_t out, Rng *rng) {
    Linear layer = linear_create(store, name, in, out, true, NULL);
    if (rng) init_xavier_uniform_2d(layer.weight, rng);
    return layer;
}

void dit_create(Dit *net, ParamStore *store, const char *prefix, DitConfig c, Rng *rng) {
    char error[256];
    if (dit_check_config(&c, error, sizeof error) != 0) tensor_fatal("dit", "%s", error + strlen("dit: "));
    *net = (Dit){.config = c, .grid = c.input_size / c.patch_size, .out_channels = c.learn_sigma ? 2 * c.in_channels : c.in_channels};
    int64_t D = c.hidden, T = net->grid * net->grid, p = c.patch_size;
    char name[160];
    // Registered in the official state-dict order: pos_embed, x_embedder, t_embedder, y_embedder, blocks, final_layer.
    net->pos_embed = params_add_buffer(store, param_name(name, sizeof name, "%spos_embed", prefix), SHAPE(1, T, D));
    fill_sincos_positions(net->pos_embed, net->grid, D);
    // The patch conv is initialised as the Linear it is (xavier over C p p inputs), not as a conv.
    net->x_embedder = conv2d_create(store, param_name(name, sizeof name, "%sx_embedder.proj", prefix), c.in_channels, D, (int)p,
                                    conv2d_params((int)p, 0, 1, 1), true, NULL);
    if (rng) init_xavier_uniform_2d(net->x_embedder.weight, rng);
    net->t_linear_1 = linear_create(store, param_name(name, sizeof name, "%st_embedder.mlp.0", prefix), DIT_FREQUENCY_DIM, D, true, NULL);
    net->t_linear_2 = linear_create(store, param_name(name, sizeof name, "%st_embedder.mlp.2", prefix), D, D, true, NULL);
    net->label_table = params_add(store, param_name(name, sizeof name, "%sy_embedder.embedding_table.weight", prefix),
                                  SHAPE(c.num_classes + (c.null_class ? 1 : 0), D), PARAM_GROUP_DECAY);
    int64_t mlp_width = (int64_t)((double)D * c.mlp_ratio);
    net->blocks = calloc((size_t)c.depth, sizeof(DitBlock));
    if (!net->blocks) tensor_fatal("dit", "out of memory for %d blocks", c.depth);
    for (int i = 0; i < c.depth; i++) {
        DitBlock *b = &net->blocks[i];
        b->qkv = dit_linear(store, param_name(name, sizeof name, "%sblocks.%d.attn.qkv", prefix, i), D, 3 * D, rng);
        b->proj = dit_linear(store, param_name(name, sizeof name, "%sblocks.%d.attn.proj", prefix, i), D, D, rng);
        b->fc1 = dit_linear(store, param_name(name, sizeof name, "%sblocks.%d.mlp.fc1", prefix, i), D, mlp_width, rng);
        b->fc2 = dit_linear(store, param_name(name, sizeof name, "%sblocks.%d.mlp.fc2", prefix, i), mlp_width, D, rng);
        // adaLN-Zero (paper section 3.2): zero modulation makes every block the identity at the start.
        b->modulation = linear_create(store, param_name(name, sizeof name, "%sblocks.%d.adaLN_modulation.1", prefix, i), D, 6 * D,
                                      true, NULL);
    }
    net->final_linear = linear_create(store, param_name(name, sizeof name, "%sfinal_layer.linear", prefix), D, p * p * net->out_channels,
                                      true, NULL);
    net->final_modulation = linear_create(store, param_name(name, sizeof name, "%sfinal_layer.adaLN_modulation.1", prefix), D, 2 * D,
                                          true, NULL);
    if (rng) {
        // The label table and the timestep MLP's weights N(0, .02) (their biases stay zero).
        init_normal(net->label_table, rng, 0.0, 0.02);
        init_normal(net->t_linear_1.weight, rng, 0.0, 0.02);
        init_normal(net->t_linear_2.weight, rng, 0.0, 0.02);
    }
}

void dit_free(Dit *net) {
    free(net->blocks);
    net->blocks = NULL;
}

// h (1 + scale) + shift, with shift and scale [B, 1, D] broadcast over the tokens.
static Tensor *modulate(Tensor *h, Tensor *shift, Tensor *scale) {
    return op_add(op_mul(h, op_add_scalar(scale, 1.0)), shift);
}

// The adaLN modulation of a block or the final layer: Linear(SiLU(c)) [B, n D] split into n
// [B, 1, D] pieces (the official chunk(n, dim=1), each unsqueezed over the tokens).
static void modulation_split(const Linear *layer, Tensor *c_activated, int n, Tensor **out) {
    Tensor *m = linear_forward(layer, c_activated);
    int64_t B = m->shape[0], D = m->shape[1] / n, sizes[6];
    for (int i = 0; i < n; i++) sizes[i] = D;
    op_split(op_reshape(m, SHAPE(B, 1, n * D)), sizes, n, 2, out);
}

static Tensor *layer_norm(Tensor *x) { return op_layer_norm(x, NULL, NULL, 1e-6); }

static Tensor *block_forward(const DitBlock *b, Tensor *x, Tensor *c_activated, int heads) {
    Tensor *m[6];  // shift, scale, gate for attention; shift, scale, gate for the MLP
    modulation_split(&b->modulation, c_activated, 6, m);
    Tensor *h = modulate(layer_norm(x), m[0], m[1]);
    x = op_add(x, op_mul(m[2], linear_forward(&b->proj, op_self_attention(linear_forward(&b->qkv, h), heads, false, 0))));
    h = modulate(layer_norm(x), m[3], m[4]);
    return op_add(x, op_mul(m[5], linear_forward(&b->fc2, op_gelu_tanh(linear_forward(&b->fc1, h)))));
}

// Labels on the CPU, checked against the table: [B] i64 in [0, rows).
static void check_labels(const Dit *net, Tensor *labels, int64_t B) {
    char got[96];
    int64_t rows = net->label_table->shape[0];
    if (labels->dtype != DTYPE_I64 || labels->ndim != 1 || labels->shape[0] != B)
        tensor_fatal("dit", "labels %s %s: expected [%lld] i64 class indices", dtype_name(labels->dtype),
                     tensor_shape_string(labels, got, sizeof got), (long long)B);
    Tensor *cpu = tensor_is_cuda(labels) ? tensor_to_device_raw(labels, device_cpu()) : labels;
    for (int64_t i = 0; i < B; i++) {
        int64_t label = (int64_t)tensor_get(cpu, i);
        if (label < 0 || label >= rows)
            tensor_fatal("dit", "label %lld at index %lld outside [0, %lld]%s", (long long)label, (long long)i, (long long)rows - 1,
                         net->config.null_class ? " (the last is the null class)" : " (the model has no null class)");
    }
}

Tensor *dit_forward(Dit *net, Tensor *x, Tensor *timesteps, Tensor *labels) {
    const DitConfig *c = &net->config;
    char got[96];
    if (x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[2] != c->input_size || x->shape[3] != c->input_size)
        tensor_fatal("dit", "input %s, the model takes [B, %lld, %lld, %lld]", tensor_shape_string(x, got, sizeof got),
                     (long long)c->in_channels, (long long)c->input_size, (long long)c->input_size);
    int64_t B = x->shape[0], p = c->patch_size, g = net->grid, out = net->out_channels;
    if (timesteps->ndim != 1 || timesteps->shape[0] != B || !dtype_is_float(timesteps->dtype))
        tensor_fatal("dit", "timesteps %s %s: expected [%lld] float", dtype_name(timesteps->dtype),
                     tensor_shape_string(timesteps, got, sizeof got), (long long)B);
    check_labels(net, labels, B);
    Device device = net->label_table->storage->device;
    if (tensor_is_cuda(net->label_table) && !tensor_is_cuda(labels)) labels = op_to_device(labels, device);

    // Patches as tokens, row-major over the grid: [B, D, g, g] -> [B, T, D].
    Tensor *tokens = op_transpose(op_flatten(conv2d_forward(&net->x_embedder, x), 2, 3), 1, 2);
    tokens = op_add(tokens, net->pos_embed);
    // The official embedding is diffusers' with flip_sin_to_cos and no frequency shift: [cos | sin],
    // frequencies exp(-ln(10000) i / half) computed in f32.
    Tensor *frequencies = unet_timestep_embedding(timesteps, DIT_FREQUENCY_DIM, true, 0.0);
    if (tensor_is_cuda(net->label_table) && !tensor_is_cuda(frequencies)) frequencies = op_to_device(frequencies, device);
    Tensor *t_embedding = linear_forward(&net->t_linear_2, op_silu(linear_forward(&net->t_linear_1, frequencies)));
    Tensor *condition = op_add(t_embedding, op_embedding(net->label_table, labels));  // c [B, D]
    Tensor *c_activated = op_silu(condition);  // every adaLN_modulation starts with SiLU
    for (int i = 0; i < c->depth; i++) tokens = block_forward(&net->blocks[i], tokens, c_activated, c->heads);
    Tensor *m[2];  // shift, scale
    modulation_split(&net->final_modulation, c_activated, 2, m);
    Tensor *patches = linear_forward(&net->final_linear, modulate(layer_norm(tokens), m[0], m[1]));  // [B, T, p p out]
    // Unpatchify: [B, g, g, p, p, out] -> [B, out, g, p, g, p] -> [B, out, g p, g p].
    static const int to_image[6] = {0, 5, 1, 3, 2, 4};
    Tensor *image = op_permute(op_reshape(patches, SHAPE(B, g, g, p, p, out)), to_image);
    return op_reshape(image, SHAPE(B, out, g * p, g * p));
}

int64_t dit_null_class(const Dit *net) {
    if (!net->config.null_class)
        tensor_fatal("dit", "the model has no null class (trained without class dropout): classifier-free guidance needs one");
    return net->config.num_classes;
}

Tensor *dit_null_labels(const Dit *net, int64_t batch) {
    return tensor_full(DTYPE_I64, SHAPE(batch), (double)dit_null_class(net));
}

Tensor *dit_drop_labels(Tensor *labels, Tensor *drop, void *dit) {
    const Dit *net = dit;
    int64_t null_class = dit_null_class(net);
    if (labels->dtype != DTYPE_I64 || labels->ndim != 1 || drop->ndim != 1 || drop->shape[0] != labels->shape[0]) {
        char a[96], b[96];
        tensor_fatal("dit", "label dropout: labels %s and drop mask %s must both be [B]", tensor_shape_string(labels, a, sizeof a),
                     tensor_shape_string(drop, b, sizeof b));
    }
    Tensor *out = tensor_empty(DTYPE_I64, tensor_shape(labels));
    for (int64_t i = 0; i < labels->shape[0]; i++)
        tensor_set(out, i, tensor_get(drop, i) != 0 ? (double)null_class : tensor_get(labels, i));
    return tensor_is_cuda(labels) ? tensor_to_device_raw(out, labels->storage->device) : out;
}

Tensor *dit_denoiser(Tensor *x_t, Tensor *timesteps, Tensor *labels, void *dit) {
    Dit *net = dit;
    if (!labels) tensor_fatal("dit", "the denoiser needs class labels (the null class for unconditional samples)");
    Tensor *out = dit_forward(net, x_t, timesteps, labels);
    return net->config.learn_sigma ? op_narrow(out, 1, 0, net->config.in_channels) : out;
}
