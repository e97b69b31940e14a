// models/vae against diffusers' AutoencoderKL (0.27.2) from tests/golden/vae.safetensors, written by
// tests/ref/gen_vae_goldens.py (cases and layout in its docstring): the configuration from the
// diffusers config JSON, every weight by its diffusers name (none left over), the posterior's mean
// and log-variance, the decoded mean, and the gradients of every parameter and of the images; on
// the CPU and on the emulated CUDA device. Then SD 1.x's shapes and errors.
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "models/vae.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static SafetensorsFile *golden;
static const Device CUDA0 = {DEVICE_CUDA, 0};

// f32 through ~20 convolutions, group norms and the attention, summed in other orders than
// PyTorch's: allow 1e-5 of each tensor's scale (forward) and 1e-4 (gradients); the largest measured
// error uses 12% of its allowance (gradients up to 1.9e-5 of their scale).
static const Tolerance FORWARD = {1e-5, 1e-5};
static const Tolerance GRADIENT = {1e-4, 1e-4};
// The attention's key bias has a gradient of exactly 0 (softmax ignores what it adds to a row of
// scores): both sides hold rounding noise (up to 2.4e-7 measured), so every gradient may also
// differ by this absolute amount; the case's gradients are of order 0.1-10.
static const double GRADIENT_FLOOR = 1e-6;

static Tensor *input(GoldenCase *c, const char *what) {
    Tensor *t = golden_entry_tensor(golden_get(c, "%s", what));
    return c->device ? tensor_to_device_raw(t, CUDA0) : t;
}

static void run_case(const char *name, bool device) {
    TensorScope scope = tensor_scope_begin();
    GoldenCase *c = calloc(1, sizeof *c);
    *c = (GoldenCase){.file = golden, .name = name, .device = device};
    const char *json = safetensors_metadata(golden, name);
    VaeConfig config;
    char error[256];
    if (!json || vae_config_from_json(json, &config, error, sizeof error) != 0) {
        CHECK_MSG(false, "%s: %s", name, json ? error : "no golden config");
        free(c);
        tensor_scope_end(scope);
        return;
    }
    ParamStore *store = params_new();
    Vae vae;
    vae_create(&vae, store, "", config, NULL);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);
    Tensor *images = tensor_requires_grad(op_clone(input(c, "images")));
    Tensor *logvar = NULL;
    Tensor *mean = vae_encode(&vae, images, &logvar);
    Tensor *decoded = vae_decode(&vae, mean);
    golden_compare(c, "posterior mean", mean, golden_get(c, "mean"), FORWARD);
    golden_compare(c, "posterior logvar", logvar, golden_get(c, "logvar"), FORWARD);
    golden_compare(c, "decoded", decoded, golden_get(c, "decoded"), FORWARD);
    Tensor *loss = op_add(op_add(op_sum_all(op_mul(mean, input(c, "w_mean"))), op_sum_all(op_mul(logvar, input(c, "w_logvar")))),
                          op_sum_all(op_mul(decoded, input(c, "w_decoded"))));
    tensor_backward(loss, NULL);
    for (int i = 0; i < store->count; i++) {
        char what[300];
        snprintf(what, sizeof what, "grad %s", store->items[i].name);
        golden_compare_floor(c, what, store->items[i].value->grad, golden_get(c, "grad/%s", store->items[i].name), GRADIENT,
                             GRADIENT_FLOOR);
    }
    golden_compare(c, "grad images", images->grad, golden_get(c, "grad_images"), GRADIENT);
    golden_check_all_used(c);
    vae_free(&vae);
    params_free(store);
    free(c);
    tensor_scope_end(scope);
}

TEST(small_matches_diffusers) { run_case("small", false); }
TEST(deep_matches_diffusers) { run_case("deep", false); }
TEST(small_on_device) { run_case("small", true); }
TEST(deep_on_device) { run_case("deep", true); }

// SD 1.x's VAE has 83,653,863 parameters (diffusers' count for AutoencoderKL of
// stable-diffusion-v1-5) in 248 tensors; its config.json parses to vae_sd1_config().
TEST(sd1_shapes_and_config) {
    const char *sd = "{\"_class_name\": \"AutoencoderKL\", \"act_fn\": \"silu\", \"block_out_channels\": [128, 256, 512, 512], "
                     "\"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
                     "\"DownEncoderBlock2D\"], \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 2, "
                     "\"norm_num_groups\": 32, \"out_channels\": 3, \"sample_size\": 512, \"up_block_types\": "
                     "[\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";
    VaeConfig c;
    char error[256];
    CHECK_MSG(vae_config_from_json(sd, &c, error, sizeof error) == 0, "%s", error);
    VaeConfig expected = vae_sd1_config();
    CHECK(c.levels == 4 && c.layers_per_block == expected.layers_per_block && c.latent_channels == 4 &&
          c.block_out_channels[3] == 512 && c.scaling_factor == 0.18215 && c.mid_attention);
    ParamStore *store = params_new();
    Vae vae;
    vae_create(&vae, store, "", c, NULL);
    int64_t total = 0;
    for (int i = 0; i < store->count; i++) total += tensor_numel(store->items[i].value);
    CHECK_MSG(total == 83653863, "%lld parameters", (long long)total);
    CHECK_MSG(store->count == 248, "%d tensors", store->count);
    vae_free(&vae);
    params_free(store);
    CHECK(vae_config_from_json("{\"down_block_types\": [\"DownBlock2D\"]}", &c, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "down_block_types[0] = DownBlock2D: only DownEncoderBlock2D"), "%s", error);
    CHECK(vae_config_from_json("{\"block_out_channels\": [30]}", &c, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "block_out_channels[0] = 30 is not a multiple of norm_num_groups 32"), "%s", error);
}

// Runs in a forked child that exits through the fatal error; the model lives in globals so that
// LeakSanitizer (SANITIZE=1) sees it reachable at that exit.
ParamStore *error_store;  // not static: a write-only static could be optimised away
Vae error_vae;

static void odd_image(void *context) {
    (void)context;
    error_store = params_new();
    VaeConfig c = vae_sd1_config();
    c.block_out_channels[0] = c.block_out_channels[1] = c.block_out_channels[2] = c.block_out_channels[3] = 32;
    vae_create(&error_vae, error_store, "", c, NULL);
    vae_encode(&error_vae, tensor_zeros(DTYPE_F32, SHAPE(1, 3, 12, 16)), NULL);
}

TEST(input_errors_are_one_line) {
    CHECK(expect_fatal(odd_image, NULL, "vae: images [1, 3, 12, 16]: expected [B, 3, H, W] with H and W multiples of 8"));
}

int main(void) {
    char error[256], path[1024];
    const char *root = getenv("TAILOR_ROOT");
    snprintf(path, sizeof path, "%s/tests/golden/vae.safetensors", root ? root : ".");
    if (safetensors_open(path, &golden, error, sizeof error) != 0) printf("  cannot read %s: %s\n", path, error);
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    // First, before OpenMP starts threads: a forked child of a threaded process gets an extra
    // LeakSanitizer line under SANITIZE=1, and the check wants exactly one line.
    RUN_TEST(input_errors_are_one_line);
    RUN_TEST(small_matches_diffusers);
    RUN_TEST(deep_matches_diffusers);
    RUN_TEST(small_on_device);
    RUN_TEST(deep_on_device);
    RUN_TEST(sd1_shapes_and_config);
    if (golden) safetensors_close(golden);
    return test_summary();
}
