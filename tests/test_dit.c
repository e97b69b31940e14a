// models/dit against the official DiT (facebookresearch/DiT models.py, on timm 0.9.16) from
// tests/golden/dit.safetensors, written by tests/ref/gen_dit_goldens.py (its docstring has the cases
// and the layout): the fixed sin-cos position table, every weight loaded by its official name (and
// none left over), the output, and the gradients of sum(out * weights) with respect to every
// parameter and the input, on the CPU and the emulated CUDA device. Then the official
// initialisation, the presets' parameter counts, the classifier-free guidance helpers, and errors.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/guidance.h"
#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "engine/json.h"
#include "engine/safetensors.h"
#include "models/dit.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static SafetensorsFile *golden;

// The position table: f64 sin/cos rounded to f32 on both sides; pow() and numpy's ** may differ by
// an ulp of the frequency. Measured: identical. Allow 1e-6 of the table's scale (1).
static const Tolerance POSITIONS = {1e-6, 0};
// Output: f32 through 2 blocks (attention, GELU-tanh, 6 layer norms) summed in other orders than
// PyTorch's, and the timestep features' sin/cos of arguments up to 999 rad (1 ulp of the argument,
// 6e-5, moves them as much). Measured max 3.7e-7 of the output's scale: allow 1e-5.
static const Tolerance FORWARD = {1e-5, 1e-5};
// Gradients, relative to each tensor's largest: measured max 2.2e-5 (t_embedder.mlp.0.weight, whose
// inputs are those sin/cos features), elsewhere below 3e-6: allow 1e-4.
static const Tolerance GRADIENT = {1e-4, 1e-4};

static const Device CUDA0 = {DEVICE_CUDA, 0};

static Tensor *on(GoldenCase *c, Tensor *t) { return c->device ? tensor_to_device_raw(t, CUDA0) : t; }

// The reference's constructor arguments (the case's metadata) as a DitConfig.
static bool config_from_metadata(const char *name, DitConfig *config) {
    JsonValue *root = golden_case_config(golden, name);
    if (!root) return false;
    int64_t depth = 0, heads = 0;
    double dropout = -1;
    int learn_sigma = -1;
    *config = (DitConfig){.mlp_ratio = 4.0};
    bool ok = json_int64(json_get(root, "depth"), &depth) == 0 && json_int64(json_get(root, "num_heads"), &heads) == 0 &&
              json_int64(json_get(root, "hidden_size"), &config->hidden) == 0 &&
              json_int64(json_get(root, "patch_size"), &config->patch_size) == 0 &&
              json_int64(json_get(root, "input_size"), &config->input_size) == 0 &&
              json_int64(json_get(root, "in_channels"), &config->in_channels) == 0 &&
              json_int64(json_get(root, "num_classes"), &config->num_classes) == 0 &&
              json_double(json_get(root, "class_dropout_prob"), &dropout) == 0 &&
              json_bool(json_get(root, "learn_sigma"), &learn_sigma) == 0;
    json_free(root);
    CHECK_MSG(ok, "%s: incomplete configuration %s", name, safetensors_metadata(golden, name));
    config->depth = (int)depth, config->heads = (int)heads;
    config->learn_sigma = learn_sigma == 1;
    config->null_class = dropout > 0;  // the official LabelEmbedder adds the row exactly then
    return ok;
}

static void run_case(const char *name, bool device) {
    TensorScope scope = tensor_scope_begin();
    DitConfig config;
    if (!config_from_metadata(name, &config)) {
        tensor_scope_end(scope);
        return;
    }
    GoldenCase *c = golden_case_begin(golden, name, device);
    ParamStore *store = params_new();
    Dit net;
    dit_create(&net, store, "", config, NULL);
    // The table dit_create computes, before the state dict overwrites it.
    golden_compare(c, "fresh pos_embed", net.pos_embed, golden_get(c, "fresh_pos_embed"), POSITIONS);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);

    Tensor *x = tensor_requires_grad(on(c, op_clone(golden_entry_tensor(golden_get(c, "x")))));
    Tensor *t = on(c, golden_entry_tensor(golden_get(c, "t")));
    Tensor *y = on(c, golden_entry_tensor(golden_get(c, "y")));
    Tensor *out = dit_forward(&net, x, t, y);
    golden_compare(c, "output", out, golden_get(c, "out"), FORWARD);
    tensor_backward(op_sum_all(op_mul(out, on(c, golden_entry_tensor(golden_get(c, "weights"))))), NULL);
    int compared = golden_compare_parameter_grads(c, store, GRADIENT);  // pos_embed: fixed, no gradient
    // x_embedder 2, t_embedder 4, the label table, 10 per block, final_layer 4.
    CHECK_MSG(compared == 7 + 10 * config.depth + 4, "%s: %d parameter gradients", name, compared);
    golden_compare(c, "grad x", x->grad, golden_get(c, "grad_x"), GRADIENT);
    golden_case_end(c);
    dit_free(&net);
    params_free(store);
    tensor_scope_end(scope);
}

TEST(dit_learned_sigma_null_class_matches_official) { run_case("sigma", false); }
TEST(dit_patch4_without_null_class_matches_official) { run_case("plain", false); }
// On the emulated CUDA device (every CUDA thread a fiber): the kernels behind each op DiT uses.
TEST(dit_learned_sigma_on_device) { run_case("sigma", true); }
TEST(dit_patch4_on_device) { run_case("plain", true); }

static double mean_of(const Tensor *t) {
    double sum = 0;
    for (int64_t i = 0; i < tensor_numel(t); i++) sum += tensor_f32(t)[i];
    return sum / (double)tensor_numel(t);
}

static double std_of(const Tensor *t) {
    double m = mean_of(t), sum = 0;
    for (int64_t i = 0; i < tensor_numel(t); i++) sum += (tensor_f32(t)[i] - m) * (tensor_f32(t)[i] - m);
    return sqrt(sum / (double)tensor_numel(t));
}

static double max_abs(const Tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < tensor_numel(t); i++) m = fmax(m, fabs(tensor_f32(t)[i]));
    return m;
}

// U(-a, a): every value inside, the standard deviation a / sqrt(3) within 5% (>= 4096 draws: the
// estimate's own spread is ~1.5%), and the largest within 2% of a (xavier over other fans misses).
static void check_uniform(const char *what, const Tensor *t, double bound) {
    double m = max_abs(t), s = std_of(t);
    CHECK_MSG(m <= bound && m > 0.98 * bound, "%s: max |w| %g, bound %g", what, m, bound);
    CHECK_MSG(fabs(s / (bound / sqrt(3.0)) - 1) < 0.05, "%s: std %g, expected %g", what, s, bound / sqrt(3.0));
}

// The official initialisation: what must be zero is zero (so the fresh model outputs exactly zero
// and every block is the identity), and the random weights have the official distributions.
TEST(official_initialisation) {
    TensorScope scope = tensor_scope_begin();
    DitConfig c = {.depth = 2, .hidden = 64, .heads = 4, .patch_size = 4, .input_size = 16, .in_channels = 4,
                   .num_classes = 100, .learn_sigma = true, .null_class = true, .mlp_ratio = 4.0};
    ParamStore *store = params_new();
    Dit net;
    Rng rng = rng_make(7, 0);
    dit_create(&net, store, "", c, &rng);
    for (int i = 0; i < store->count; i++) {
        const char *name = store->items[i].name;
        Tensor *value = store->items[i].value;
        bool zero = strstr(name, "adaLN_modulation") || strstr(name, "final_layer.linear") || strstr(name, ".bias");
        if (zero) CHECK_MSG(max_abs(value) == 0, "%s not zero", name);
    }
    for (int i = 0; i < c.depth; i++) {
        DitBlock *b = &net.blocks[i];
        check_uniform("qkv", b->qkv.weight, sqrt(6.0 / (64 + 192)));
        check_uniform("proj", b->proj.weight, sqrt(6.0 / (64 + 64)));
        check_uniform("fc1", b->fc1.weight, sqrt(6.0 / (64 + 256)));
        check_uniform("fc2", b->fc2.weight, sqrt(6.0 / (256 + 64)));
    }
    // The patch conv as a Linear over its 4 * 4 * 4 inputs, not a conv's fan_out of 64 * 16.
    check_uniform("x_embedder", net.x_embedder.weight, sqrt(6.0 / (64 + 64)));
    CHECK_CLOSE(std_of(net.label_table), 0.02, 0.001, 0);  // 101 x 64 draws
    CHECK_CLOSE(std_of(net.t_linear_1.weight), 0.02, 0.001, 0);
    CHECK_CLOSE(std_of(net.t_linear_2.weight), 0.02, 0.001, 0);
    CHECK(net.label_table->shape[0] == 101 && net.out_channels == 8);
    params_finalize(store);
    Tensor *x = tensor_empty(DTYPE_F32, SHAPE(2, 4, 16, 16));
    rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0, 1);
    int64_t labels[2] = {3, 100};
    Tensor *out = dit_forward(&net, x, tensor_full(DTYPE_F32, SHAPE(2), 500), tensor_from_data(DTYPE_I64, SHAPE(2), labels));
    CHECK(out->shape[0] == 2 && out->shape[1] == 8 && out->shape[2] == 16 && out->shape[3] == 16);
    CHECK_MSG(max_abs(op_contiguous(out)) == 0, "fresh output not zero: %g", max_abs(op_contiguous(out)));
    dit_free(&net);
    params_free(store);
    tensor_scope_end(scope);
}

// The twelve presets at ImageNet 256 (latent 32x32x4, 1000 classes + null, learned sigma), created at
// full size without initialisation, against the official model's sum(p.numel() for p in
// model.parameters()) (which counts the fixed pos_embed) as tests/ref/gen_dit_goldens.py --count
// printed them; DiT-XL/2's 675,129,632 is also the figure the official train.py logs.
TEST(preset_parameter_counts) {
    static const struct {
        const char *name;
        int64_t total, trainable;
        int tensors;
    } presets[] = {
        {"DiT-XL/2", 675129632, 674834720, 12 + 10 * 28}, {"DiT-XL/4", 675074432, 675000704, 12 + 10 * 28},
        {"DiT-XL/8", 675683072, 675664640, 12 + 10 * 28}, {"DiT-L/2", 458102816, 457840672, 12 + 10 * 24},
        {"DiT-L/4", 458053760, 457988224, 12 + 10 * 24},  {"DiT-L/8", 458594816, 458578432, 12 + 10 * 24},
        {"DiT-B/2", 130512416, 130315808, 12 + 10 * 12},  {"DiT-B/4", 130475648, 130426496, 12 + 10 * 12},
        {"DiT-B/8", 130881536, 130869248, 12 + 10 * 12},  {"DiT-S/2", 32963360, 32865056, 12 + 10 * 12},
        {"DiT-S/4", 32945024, 32920448, 12 + 10 * 12},    {"DiT-S/8", 33148160, 33142016, 12 + 10 * 12},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        TensorScope scope = tensor_scope_begin();  // so that each model's 0.1-2.7 GB goes before the next
        DitConfig c;
        CHECK_MSG(dit_preset(presets[i].name, 32, &c) == 0, "%s unknown", presets[i].name);
        ParamStore *store = params_new();
        Dit net;
        dit_create(&net, store, "", c, NULL);
        int64_t total = 0, trainable = 0;
        for (int j = 0; j < store->count; j++) {
            total += tensor_numel(store->items[j].value);
            if (store->items[j].group >= 0) trainable += tensor_numel(store->items[j].value);
        }
        CHECK_MSG(total == presets[i].total && trainable == presets[i].trainable && store->count == presets[i].tensors,
                  "%s: %lld parameters (%lld trainable) in %d tensors", presets[i].name, (long long)total, (long long)trainable,
                  store->count);
        dit_free(&net);
        params_free(store);
        tensor_scope_end(scope);
    }
    DitConfig c;
    CHECK(dit_preset("DiT-XL/16", 32, &c) != 0 && dit_preset("DiT-M/2", 32, &c) != 0);
}

// A tiny model, with random (non-zero) weights for the helper tests. The error tests leave them zero:
// they run in a forked child, where the RNG's OpenMP fill would wait for the parent's thread pool.
static void tiny_model(Dit *net, ParamStore *store, bool null_class, bool random) {
    DitConfig c = {.depth = 1, .hidden = 16, .heads = 2, .patch_size = 2, .input_size = 4, .in_channels = 3,
                   .num_classes = 4, .learn_sigma = true, .null_class = null_class, .mlp_ratio = 4.0};
    Rng rng = rng_make(11, 0);
    dit_create(net, store, "", c, NULL);
    if (random)
        for (int i = 0; i < store->count; i++) init_normal(store->items[i].value, &rng, 0.0, 0.2);
    params_finalize(store);
}

static Tensor *random_input(int64_t B, uint64_t seed) {
    Rng rng = rng_make(seed, 0);
    Tensor *x = tensor_empty(DTYPE_F32, SHAPE(B, 3, 4, 4));
    rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0, 1);
    return x;
}

static double max_difference(Tensor *a, Tensor *b) {
    Tensor *d = op_contiguous(op_abs(op_sub(a, b)));
    return max_abs(d);
}

// Classifier-free guidance with the null class: dit_denoiser inside guidance.h's GuidedModel gives
// uncond + s (cond - uncond) of the noise channels, and label dropout swaps in the null class.
TEST(null_class_guidance_helpers) {
    TensorScope scope = tensor_scope_begin();
    ParamStore *store = params_new();
    Dit net;
    tiny_model(&net, store, true, true);
    CHECK(dit_null_class(&net) == 4);
    Tensor *null_labels = dit_null_labels(&net, 2);
    CHECK(null_labels->dtype == DTYPE_I64 && null_labels->shape[0] == 2 && tensor_get(null_labels, 0) == 4 &&
          tensor_get(null_labels, 1) == 4);
    int64_t label_values[2] = {1, 3};
    uint8_t drop_values[2] = {0, 1};
    Tensor *labels = tensor_from_data(DTYPE_I64, SHAPE(2), label_values);
    Tensor *dropped = dit_drop_labels(labels, tensor_from_data(DTYPE_U8, SHAPE(2), drop_values), &net);
    CHECK(tensor_get(dropped, 0) == 1 && tensor_get(dropped, 1) == 4 && tensor_get(labels, 1) == 3);

    Tensor *x = random_input(2, 5), *t = tensor_full(DTYPE_F32, SHAPE(2), 250);
    Tensor *cond = dit_forward(&net, x, t, labels), *uncond = dit_forward(&net, x, t, null_labels);
    Tensor *denoised = dit_denoiser(x, t, labels, &net);
    CHECK(denoised->shape[1] == 3 && max_difference(denoised, op_narrow(cond, 1, 0, 3)) == 0);
    CHECK(max_difference(cond, uncond) > 1e-3);  // the label matters
    GuidedModel guided = guided_model(dit_denoiser, &net, labels);
    guided.null_condition = dit_null_labels(&net, 1);
    guided.guidance_scale = 4.0;
    Tensor *out = guided_model_output(&guided, x, 250);
    Tensor *eps_cond = op_narrow(cond, 1, 0, 3), *eps_uncond = op_narrow(uncond, 1, 0, 3);
    Tensor *expected = op_add(eps_uncond, op_mul_scalar(op_sub(eps_cond, eps_uncond), 4.0));
    // One batched call against two separate ones: the same arithmetic per sample, up to f32 rounding.
    CHECK_MSG(max_difference(out, expected) < 1e-5, "guided output off by %g", max_difference(out, expected));
    dit_free(&net);
    params_free(store);
    tensor_scope_end(scope);
}

// ---------------------------------------------------------------- errors

// The child's model stays reachable from here until tensor_fatal exits, so that LeakSanitizer
// (SANITIZE=1) adds no report to the one error line.
static ParamStore *child_store;

static void bad_heads(void *context) {
    (void)context;
    DitConfig c;
    dit_preset("DiT-S/2", 32, &c);
    c.heads = 5;
    static Dit net;
    child_store = params_new();
    dit_create(&net, child_store, "", c, NULL);
}

// One dit_forward call on a tiny model (zero weights: the checks come before any arithmetic).
typedef struct {
    Shape x, timesteps;
    DType label_dtype;
    int64_t labels[2];  // the first x.dims[0] (at most 2) labels
    bool null_class;
} BadCall;

static void call_fails(void *context) {
    const BadCall *call = context;
    static Dit net;
    child_store = params_new();
    tiny_model(&net, child_store, call->null_class, false);
    Tensor *labels = tensor_zeros(call->label_dtype, SHAPE(call->x.dims[0]));
    for (int64_t i = 0; i < call->x.dims[0] && i < 2; i++) tensor_set(labels, i, (double)call->labels[i]);
    dit_forward(&net, tensor_zeros(DTYPE_F32, call->x), tensor_zeros(DTYPE_F32, call->timesteps), labels);
}

// Only the configuration matters to dit_null_labels.
static void null_labels_fail(void *context) {
    (void)context;
    static Dit net = {.config = {.null_class = false, .num_classes = 4}};
    dit_null_labels(&net, 2);
}

TEST(errors_are_one_line) {
    CHECK(expect_fatal(bad_heads, NULL, "dit: hidden size 384 is not a multiple of 5 heads"));
    BadCall timesteps = {SHAPE(1, 3, 4, 4), SHAPE(2), DTYPE_I64, {0}, true};
    CHECK(expect_fatal(call_fails, &timesteps, "dit: timesteps F32 [2]: expected [1] float"));
    BadCall image = {SHAPE(1, 3, 6, 4), SHAPE(1), DTYPE_I64, {0}, true};
    CHECK(expect_fatal(call_fails, &image, "dit: input [1, 3, 6, 4], the model takes [B, 3, 4, 4]"));
    BadCall label = {SHAPE(2, 3, 4, 4), SHAPE(2), DTYPE_I64, {2, 4}, false};
    CHECK(expect_fatal(call_fails, &label, "dit: label 4 at index 1 outside [0, 3] (the model has no null class)"));
    BadCall float_labels = {SHAPE(2, 3, 4, 4), SHAPE(2), DTYPE_F32, {2, 3}, true};
    CHECK(expect_fatal(call_fails, &float_labels, "dit: labels F32 [2]: expected [2] i64 class indices"));
    CHECK(expect_fatal(null_labels_fail, NULL, "dit: the model has no null class (trained without class dropout)"));
    DitConfig c;
    char error[256];
    dit_preset("DiT-B/4", 30, &c);
    CHECK(dit_check_config(&c, error, sizeof error) != 0);
    CHECK_MSG(!strcmp(error, "dit: input size 30 is not a multiple of patch size 4"), "%s", error);
    dit_preset("DiT-B/4", 32, &c);
    c.hidden = 42, c.heads = 6;
    CHECK(dit_check_config(&c, error, sizeof error) != 0);
    CHECK_MSG(!strcmp(error, "dit: hidden size 42 is not a multiple of 4 (2-D sin-cos positions)"), "%s", error);
    c.hidden = 768, c.num_classes = 0;
    CHECK(dit_check_config(&c, error, sizeof error) != 0 && strstr(error, "num_classes 0"));
    // The label at the null row is valid exactly when the model has it: label 4 of 4 classes.
    ParamStore *store = params_new();
    Dit net;
    tiny_model(&net, store, true, true);
    int64_t labels[2] = {2, 4};
    Tensor *out = dit_forward(&net, random_input(2, 1), tensor_zeros(DTYPE_F32, SHAPE(2)), tensor_from_data(DTYPE_I64, SHAPE(2), labels));
    CHECK(out->shape[1] == 6);
    dit_free(&net);
    params_free(store);
}

int main(void) {
    golden = golden_open("dit.safetensors");
    // First, while the process has one thread: the children expect_fatal forks must not inherit
    // OpenMP workers (LeakSanitizer cannot suspend them and says so on stderr).
    RUN_TEST(errors_are_one_line);
    RUN_TEST(dit_learned_sigma_null_class_matches_official);
    RUN_TEST(dit_patch4_without_null_class_matches_official);
    RUN_TEST(dit_learned_sigma_on_device);
    RUN_TEST(dit_patch4_on_device);
    RUN_TEST(official_initialisation);
    RUN_TEST(preset_parameter_counts);
    RUN_TEST(null_class_guidance_helpers);
    if (golden) safetensors_close(golden);
    return test_summary();
}
