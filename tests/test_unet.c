// models/unet against diffusers' UNet2DConditionModel (0.27.2) from tests/golden/unet.safetensors,
// written by tests/ref/gen_unet_goldens.py (its docstring has the cases and the layout): the
// configuration parsed from the diffusers config JSON, every weight loaded by its diffusers name
// (and none left over), the output, and the gradients of sum(out * weights) with respect to every
// parameter, the sample and the conditioning context. Then configuration errors.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "engine/safetensors.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/sampler.h"
#include "diffusion/unet_model.h"
#include "models/unet.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static SafetensorsFile *golden;

// Output: f32 through ~30 layers (convolutions with K up to 9 x 32, attention, group norms) summed in
// other orders than PyTorch's, and the timestep embedding's sin/cos of arguments up to 417 rad
// (1 ulp of the argument, 3e-5, moves them as much). Measured max 7.3e-7 of the output's scale:
// allow 1e-5.
static const Tolerance FORWARD = {1e-5, 1e-5};
// Gradients, relative to each tensor's largest: measured max ~1.7e-5 (weight gradients of the
// GroupNorm/LayerNorm affines, sums over all positions): allow 1e-4.
static const Tolerance GRADIENT = {1e-4, 1e-4};

static const Device CUDA0 = {DEVICE_CUDA, 0};

static Tensor *on(GoldenCase *c, Tensor *t) { return c->device ? tensor_to_device_raw(t, CUDA0) : t; }

static void run_case(const char *name, bool device) {
    TensorScope scope = tensor_scope_begin();
    GoldenCase *c = calloc(1, sizeof *c);
    c->file = golden;
    c->name = name;
    c->device = device;
    const char *json = safetensors_metadata(golden, name);
    CHECK_MSG(json, "golden case %s missing", name);
    UnetConfig config;
    char error[256];
    if (!json || unet_config_from_json(json, &config, error, sizeof error) != 0) {
        CHECK_MSG(false, "%s: %s", name, json ? error : "no config");
        free(c);
        tensor_scope_end(scope);
        return;
    }
    ParamStore *store = params_new();
    Unet net;
    unet_create(&net, store, "", config, NULL);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);

    Tensor *sample = tensor_requires_grad(on(c, op_clone(golden_entry_tensor(golden_get(c, "sample")))));
    Tensor *timesteps = on(c, golden_entry_tensor(golden_get(c, "timesteps")));
    const SafetensorsEntry *context_entry = golden_get(c, "context"), *labels_entry = golden_get(c, "labels");
    Tensor *context = context_entry ? tensor_requires_grad(on(c, op_clone(golden_entry_tensor(context_entry)))) : NULL;
    Tensor *labels = labels_entry ? on(c, golden_entry_tensor(labels_entry)) : NULL;
    Tensor *out = unet_forward(&net, sample, timesteps, context, labels);
    golden_compare(c, "output", out, golden_get(c, "out"), FORWARD);
    tensor_backward(op_sum_all(op_mul(out, on(c, golden_entry_tensor(golden_get(c, "weights"))))), NULL);
    for (int i = 0; i < store->count; i++) {
        char what[300];
        snprintf(what, sizeof what, "grad %s", store->items[i].name);
        golden_compare(c, what, store->items[i].value->grad, golden_get(c, "grad/%s", store->items[i].name), GRADIENT);
    }
    golden_compare(c, "grad sample", sample->grad, golden_get(c, "grad_sample"), GRADIENT);
    if (context) golden_compare(c, "grad context", context->grad, golden_get(c, "grad_context"), GRADIENT);
    golden_check_all_used(c);
    unet_free(&net);
    params_free(store);
    free(c);
    tensor_scope_end(scope);
}

TEST(unet_cross_attention_matches_diffusers) { run_case("cross", false); }
TEST(unet_linear_projection_three_levels_matches_diffusers) { run_case("cross_linear", false); }
TEST(unet_class_conditional_matches_diffusers) { run_case("class", false); }
// On the emulated CUDA device (every CUDA thread a fiber): the kernels behind each op the UNet uses.
TEST(unet_cross_attention_on_device) { run_case("cross", true); }
TEST(unet_class_conditional_on_device) { run_case("class", true); }

// A golden case's UNet with its weights, for the sampling tests.
static ParamStore *case_model(const char *name, Unet *net) {
    GoldenCase c = {.file = golden, .name = name};
    UnetConfig config;
    char error[256];
    const char *json = safetensors_metadata(golden, name);
    if (!json || unet_config_from_json(json, &config, error, sizeof error) != 0) return NULL;
    ParamStore *store = params_new();
    unet_create(net, store, "", config, NULL);
    golden_load_state(&c, store);
    params_finalize(store);
    return store;
}

static Tensor *sample(const Sampler *sampler, const GuidedModel *model, Shape shape, uint64_t seed) {
    Rng noise_rng = rng_make(seed, 0), step_rng = rng_make(seed, 1);
    return sampler_sample(sampler, model, diffusion_randn(&noise_rng, DTYPE_F32, shape, device_cpu()), &step_rng);
}

static bool bitwise_equal(Tensor *a, Tensor *b) {
    return shape_equal(tensor_shape(a), tensor_shape(b)) && !memcmp(tensor_data(a), tensor_data(b), (size_t)tensor_numel(a) * sizeof(float));
}

// The UNet as the samplers' model: a class-conditional one with the null class as guidance's
// unconditional half (DDIM with eta 1, so step noise comes from the RNG) and a text-conditional one
// (Euler ancestral); runs are reproducible from the seed, a scale of 1 is the unguided model, and
// guidance changes the result.
TEST(sampling_with_guidance) {
    if (!golden) return;
    TensorScope scope = tensor_scope_begin();
    Unet net;
    ParamStore *store = case_model("class", &net);
    CHECK(store != NULL);
    if (!store) return;
    SamplerConfig config = sampler_config_defaults(SAMPLER_DDIM);
    sampler_config_set(&config, "eta", "1.0", "test");
    Sampler ddim = sampler_make(config, 6, "test");
    Tensor *labels = tensor_empty(DTYPE_I64, SHAPE(2));
    tensor_i64(labels)[0] = 1, tensor_i64(labels)[1] = 3;
    GuidedModel guided = guided_model(unet_diffusion_model, &net, labels);
    guided.null_condition = unet_null_class(&net, device_cpu());
    guided.guidance_scale = 3.0;
    Tensor *a = sample(&ddim, &guided, SHAPE(2, 3, 8, 8), 11), *b = sample(&ddim, &guided, SHAPE(2, 3, 8, 8), 11);
    Tensor *c = sample(&ddim, &guided, SHAPE(2, 3, 8, 8), 12);
    CHECK(bitwise_equal(a, b) && !bitwise_equal(a, c));
    bool finite = true;
    for (int64_t i = 0; i < tensor_numel(a); i++) finite &= isfinite(tensor_get(a, i));
    CHECK(finite);
    GuidedModel plain = guided_model(unet_diffusion_model, &net, labels), scale_one = guided;
    scale_one.guidance_scale = 1.0;
    Tensor *unguided = sample(&ddim, &plain, SHAPE(2, 3, 8, 8), 11);
    CHECK(bitwise_equal(sample(&ddim, &scale_one, SHAPE(2, 3, 8, 8), 11), unguided));
    CHECK(!bitwise_equal(a, unguided));
    sampler_free(&ddim);
    unet_free(&net);
    params_free(store);

    store = case_model("cross", &net);
    CHECK(store != NULL);
    if (!store) return;
    Sampler euler = sampler_make(sampler_config_defaults(SAMPLER_EULER_ANCESTRAL), 5, "test");
    Rng rng = rng_make(5, 0);
    GuidedModel text = guided_model(unet_diffusion_model, &net, diffusion_randn(&rng, DTYPE_F32, SHAPE(2, 5, 12), device_cpu()));
    text.null_condition = tensor_zeros(DTYPE_F32, SHAPE(1, 5, 12));
    text.guidance_scale = 4.0;
    Tensor *x = sample(&euler, &text, SHAPE(2, 3, 8, 8), 3);
    CHECK(bitwise_equal(x, sample(&euler, &text, SHAPE(2, 3, 8, 8), 3)));
    sampler_free(&euler);
    unet_free(&net);
    params_free(store);
    tensor_scope_end(scope);
}

TEST(config_errors_are_one_line) {
    UnetConfig config;
    char error[256];
    CHECK(unet_config_from_json("{\"block_out_channels\": [32, 64], \"down_block_types\": [\"DownBlock2D\", "
                                "\"AttnDownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}",
                                &config, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "down_block_types[1] = AttnDownBlock2D"), "%s", error);
    CHECK(unet_config_from_json("{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"], "
                                "\"up_block_types\": [\"UpBlock2D\"], \"resnet_time_scale_shift\": \"scale_shift\"}",
                                &config, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "\"resnet_time_scale_shift\" has a value this UNet does not implement"), "%s", error);
    CHECK(unet_config_from_json("{\"block_out_channels\": [30], \"norm_num_groups\": 8, \"down_block_types\": "
                                "[\"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"], \"mid_block_type\": null}",
                                &config, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "block_out_channels[0] = 30 is not a multiple of norm_num_groups 8"), "%s", error);
    CHECK(unet_config_from_json("[1, 2]", &config, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "not a JSON object"), "%s", error);
    // SD 1.x's config parses: 8 heads (attention_head_dim), 768-wide text states, 4 levels.
    const char *sd = "{\"act_fn\": \"silu\", \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280], "
                     "\"center_input_sample\": false, \"cross_attention_dim\": 768, \"down_block_types\": "
                     "[\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
                     "\"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4, "
                     "\"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32, "
                     "\"out_channels\": 4, \"sample_size\": 64, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", "
                     "\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";
    CHECK_MSG(unet_config_from_json(sd, &config, error, sizeof error) == 0, "%s", error);
    CHECK(config.levels == 4 && config.heads[0] == 8 && config.heads[3] == 8 && config.cross_attention_dim == 768);
    CHECK(config.down_cross_attention[2] && !config.down_cross_attention[3] && !config.up_cross_attention[0]);
    CHECK(config.mid_block == UNET_MID_CROSS_ATTENTION && config.layers_per_block == 2);
}

// SD 1.x's UNet has 859,520,964 parameters (diffusers' count for runwayml/stable-diffusion-v1-5);
// creating it without initialising the weights checks every shape formula at full size.
TEST(sd1_parameter_count) {
    UnetConfig c = unet_sd1_config();
    ParamStore *store = params_new();
    Unet net;
    unet_create(&net, store, "", c, NULL);
    int64_t total = 0;
    for (int i = 0; i < store->count; i++) total += tensor_numel(store->items[i].value);
    CHECK_MSG(total == 859520964, "SD 1.x UNet: %lld parameters", (long long)total);
    CHECK(store->count == 686);
    unet_free(&net);
    params_free(store);
}

// The error bodies run in a forked child that exits through the fatal error; their model lives in
// globals so that LeakSanitizer (SANITIZE=1) sees it reachable at that exit.
ParamStore *error_store;  // not static: a write-only static could be optimised away
Unet error_net;

static void forward_without_context(void *context) {
    (void)context;
    UnetConfig c = unet_default_config();
    error_store = params_new();
    unet_create(&error_net, error_store, "", c, NULL);
    unet_forward(&error_net, tensor_zeros(DTYPE_F32, SHAPE(1, 4, 8, 8)), tensor_zeros(DTYPE_F32, SHAPE(1)), NULL, NULL);
}

static void forward_odd_size(void *context) {
    (void)context;
    UnetConfig c = unet_default_config();
    error_store = params_new();
    unet_create(&error_net, error_store, "", c, NULL);
    unet_forward(&error_net, tensor_zeros(DTYPE_F32, SHAPE(1, 4, 7, 8)), tensor_zeros(DTYPE_F32, SHAPE(1)),
                 tensor_zeros(DTYPE_F32, SHAPE(1, 3, 32)), NULL);
}

TEST(input_errors_are_one_line) {
    CHECK(expect_fatal(forward_without_context, NULL, "unet: context missing: expected [1, L, 32] for the cross-attention blocks"));
    CHECK(expect_fatal(forward_odd_size, NULL, "unet: sample [1, 4, 7, 8]: expected [B, 4, H, W] with H and W multiples of 2"));
}

int main(void) {
    char error[256];
    const char *root = getenv("TAILOR_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/unet.safetensors", root ? root : ".");
    if (safetensors_open(path, &golden, error, sizeof error) != 0) printf("  cannot read %s: %s\n", path, error);
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    // First, before OpenMP starts threads: a forked child of a threaded process gets an extra
    // LeakSanitizer line under SANITIZE=1, and the check wants exactly one line.
    RUN_TEST(input_errors_are_one_line);
    RUN_TEST(unet_cross_attention_matches_diffusers);
    RUN_TEST(unet_linear_projection_three_levels_matches_diffusers);
    RUN_TEST(unet_class_conditional_matches_diffusers);
    RUN_TEST(unet_cross_attention_on_device);
    RUN_TEST(unet_class_conditional_on_device);
    RUN_TEST(sampling_with_guidance);
    RUN_TEST(config_errors_are_one_line);
    RUN_TEST(sd1_parameter_count);
    if (golden) safetensors_close(golden);
    return test_summary();
}
