// models/clip_text against transformers' CLIPTextModel(WithProjection) (4.40.2) from
// tests/golden/clip_text.safetensors, written by tests/ref/gen_clip_text_goldens.py (cases and
// layout in its docstring): the configuration from the transformers config JSON, every weight
// loaded by its transformers name (none left over), the final hidden states, every layer's hidden
// states, the pooled (projected) feature at the end-of-text token by both of transformers' rules,
// and every parameter's gradient; on the CPU and on the emulated CUDA device. Then errors.
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "models/clip_text.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static SafetensorsFile *golden;
static const Device CUDA0 = {DEVICE_CUDA, 0};

// f32 through 2 layers of width 32 (sums over K <= 37 in other orders than PyTorch's) and the
// LayerNorms: measured max 3e-7 of the scale; allow 1e-5. Gradients: measured max 2e-6; allow 1e-4.
static const Tolerance FORWARD = {1e-5, 1e-5};
static const Tolerance GRADIENT = {1e-4, 1e-4};
// The key projection's bias has a gradient of exactly 0 (it adds the same q.b to every score of a
// row, which softmax ignores): both sides hold rounding noise, up to 3e-7 here, against gradients
// of order 1. Every gradient may also differ by this absolute amount.
static const double GRADIENT_FLOOR = 2e-6;

static void run_case(const char *name, bool device) {
    TensorScope scope = tensor_scope_begin();
    GoldenCase *c = calloc(1, sizeof *c);
    *c = (GoldenCase){.file = golden, .name = name, .device = device};
    const char *json = safetensors_metadata(golden, name);
    ClipTextConfig config;
    char error[256];
    if (!json || clip_text_config_from_json(json, &config, error, sizeof error) != 0) {
        CHECK_MSG(false, "%s: %s", name, json ? error : "no golden config");
        free(c);
        tensor_scope_end(scope);
        return;
    }
    ParamStore *store = params_new();
    ClipText net;
    clip_text_create(&net, store, "", config, NULL);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);

    Tensor *ids = golden_entry_tensor(golden_get(c, "ids"));
    if (device) ids = tensor_to_device_raw(ids, CUDA0);
    Tensor *hidden[8] = {0}, *pooled = NULL;
    Tensor *last = clip_text_forward(&net, ids, hidden, &pooled);
    golden_compare(c, "last hidden state", last, golden_get(c, "last"), FORWARD);
    golden_compare(c, "pooled", pooled, golden_get(c, "pooled"), FORWARD);
    for (int64_t i = 0; i <= config.layers; i++) {
        char what[64];
        snprintf(what, sizeof what, "hidden state %lld", (long long)i);
        golden_compare(c, what, hidden[i], golden_get(c, "hidden%lld", (long long)i), FORWARD);
    }
    Tensor *w_last = golden_entry_tensor(golden_get(c, "weights_last")), *w_pooled = golden_entry_tensor(golden_get(c, "weights_pooled"));
    if (device) w_last = tensor_to_device_raw(w_last, CUDA0), w_pooled = tensor_to_device_raw(w_pooled, CUDA0);
    tensor_backward(op_add(op_sum_all(op_mul(last, w_last)), op_sum_all(op_mul(pooled, w_pooled))), NULL);
    for (int i = 0; i < store->count; i++) {
        char what[300];
        snprintf(what, sizeof what, "grad %s", store->items[i].name);
        golden_compare_floor(c, what, store->items[i].value->grad, golden_get(c, "grad/%s", store->items[i].name), GRADIENT,
                             GRADIENT_FLOOR);
    }
    golden_check_all_used(c);
    clip_text_free(&net);
    params_free(store);
    free(c);
    tensor_scope_end(scope);
}

TEST(projected_quick_gelu_matches_transformers) { run_case("projected", false); }
TEST(legacy_eos_gelu_matches_transformers) { run_case("legacy", false); }
TEST(projected_on_device) { run_case("projected", true); }
TEST(legacy_on_device) { run_case("legacy", true); }

TEST(config_parsing) {
    ClipTextConfig c;
    char error[256];
    // SD 1.x's text_encoder/config.json (the fields that matter).
    const char *sd = "{\"architectures\": [\"CLIPTextModel\"], \"projection_dim\": 768, \"hidden_act\": \"quick_gelu\", \"hidden_size\": 768, "
                     "\"intermediate_size\": 3072, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77, "
                     "\"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"vocab_size\": 49408, \"eos_token_id\": 2}";
    CHECK_MSG(clip_text_config_from_json(sd, &c, error, sizeof error) == 0, "%s", error);
    ClipTextConfig expected = clip_text_sd1_config();
    CHECK(c.vocab_size == expected.vocab_size && c.width == expected.width && c.layers == expected.layers &&
          c.heads == expected.heads && c.intermediate == expected.intermediate && c.max_positions == expected.max_positions &&
          c.eps == expected.eps && c.quick_gelu && c.eos_token_id == 2 && c.projection_dim == 0);
    // A CLIPConfig: the text part and the shared projection width.
    CHECK(clip_text_config_from_json("{\"projection_dim\": 512, \"text_config\": {\"hidden_size\": 512}}", &c, error,
                                     sizeof error) == 0);
    CHECK(c.width == 512 && c.projection_dim == 512 && c.heads == 8 && c.eos_token_id == 49407);
    CHECK(clip_text_config_from_json("{\"hidden_act\": \"relu\"}", &c, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "hidden_act \"relu\" is not implemented"), "%s", error);
    CHECK(clip_text_config_from_json("{\"hidden_size\": 30, \"num_attention_heads\": 8}", &c, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "inconsistent sizes (hidden 30, heads 8"), "%s", error);
    CHECK(clip_text_config_from_json("{\"hidden_size\": \"big\"}", &c, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "\"hidden_size\" must be an integer"), "%s", error);
}

// SD 1.x's text encoder has 123,060,480 parameters (transformers' count for CLIPTextModel of
// openai/clip-vit-large-patch14), in 196 tensors.
TEST(sd1_parameter_count) {
    ParamStore *store = params_new();
    ClipText net;
    clip_text_create(&net, store, "", clip_text_sd1_config(), NULL);
    int64_t total = 0;
    for (int i = 0; i < store->count; i++) total += tensor_numel(store->items[i].value);
    CHECK_MSG(total == 123060480, "%lld parameters", (long long)total);
    CHECK_MSG(store->count == 196, "%d tensors", store->count);
    clip_text_free(&net);
    params_free(store);
}

// Runs in a forked child that exits through the fatal error; the model lives in globals so that
// LeakSanitizer (SANITIZE=1) sees it reachable at that exit.
ParamStore *error_store;  // not static: a write-only static could be optimised away
ClipText error_net;

static void too_many_tokens(void *context) {
    (void)context;
    error_store = params_new();
    ClipTextConfig c = clip_text_sd1_config();
    c.layers = 1;
    clip_text_create(&error_net, error_store, "", c, NULL);
    clip_text_forward(&error_net, tensor_zeros(DTYPE_I64, SHAPE(1, 78)), NULL, NULL);
}

TEST(input_errors_are_one_line) {
    CHECK(expect_fatal(too_many_tokens, NULL, "clip_text: token ids [1, 78]: expected [B, T] i64 with 1 <= T <= 77"));
}

int main(void) {
    char error[256], path[1024];
    const char *root = getenv("TAILOR_ROOT");
    snprintf(path, sizeof path, "%s/tests/golden/clip_text.safetensors", root ? root : ".");
    if (safetensors_open(path, &golden, error, sizeof error) != 0) printf("  cannot read %s: %s\n", path, error);
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    // First, before OpenMP starts threads: a forked child of a threaded process gets an extra
    // LeakSanitizer line under SANITIZE=1, and the check wants exactly one line.
    RUN_TEST(input_errors_are_one_line);
    RUN_TEST(projected_quick_gelu_matches_transformers);
    RUN_TEST(legacy_eos_gelu_matches_transformers);
    RUN_TEST(projected_on_device);
    RUN_TEST(legacy_on_device);
    RUN_TEST(config_parsing);
    RUN_TEST(sd1_parameter_count);
    if (golden) safetensors_close(golden);
    return test_summary();
}
