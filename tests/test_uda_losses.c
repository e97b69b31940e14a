// adapt/ losses against the Transfer-Learning-Library itself (tests/golden/uda.safetensors from
// tests/ref/gen_uda_goldens.py, which runs tllib's modules): DANN's discriminator and
// domain-adversarial loss, CDAN's conditional loss (entropy conditioning; randomized map) — value, discriminator accuracy, the reversed feature gradients, every
// parameter gradient and the BatchNorm running statistics after the step — on the CPU and the
// emulated CUDA device; the reversal schedules' values; their option errors.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapt/conditional_adversarial.h"
#include "adapt/domain_adversarial.h"
#include "engine/autograd.h"
#include "tests/check.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static SafetensorsFile *golden;
static const Device CUDA0 = {DEVICE_CUDA, 0};

// Two Linear-BatchNorm layers and a logit on 12 rows in f32, summed in other orders than PyTorch's:
// 1e-5 of each tensor's scale, as the model tests.
static const Tolerance TOL = {1e-5, 1e-5};

static Tensor *on(GoldenCase *c, Tensor *t) { return c->device ? tensor_to_device_raw(t, CUDA0) : t; }

// The comparisons every adversarial case makes after its loss: value, accuracy, the features'
// gradients, every parameter gradient and the buffers after the forward.
static void check_adversarial(GoldenCase *c, ParamStore *store, DomainAdversarialResult r, Tensor *f_s, Tensor *f_t) {
    golden_compare(c, "loss", op_reshape(r.loss, SHAPE(1)), golden_get(c, "loss"), TOL);
    CHECK_CLOSE(r.accuracy, golden_entry_get(golden_get(c, "accuracy"), 0), 1e-7, 0);  // the golden holds it in f32
    tensor_backward(r.loss, NULL);
    golden_compare(c, "grad f_s", f_s->grad, golden_get(c, "grad_f_s"), TOL);
    golden_compare(c, "grad f_t", f_t->grad, golden_get(c, "grad_f_t"), TOL);
    int compared = 0;
    for (int i = 0; i < store->count; i++) {
        const Param *p = &store->items[i];
        if (p->group < 0) continue;
        char what[160];
        snprintf(what, sizeof what, "grad %s", p->name);
        // The biases of the Linear layers before a BatchNorm cancel in its normalisation: their
        // gradient is 0 in exact arithmetic, rounding noise (1e-8, against 0.1 for the weights)
        // in both implementations. Allow that noise absolutely.
        size_t length = strlen(p->name);
        bool cancels = length >= 6 && (!strcmp(p->name + length - 6, "0.bias") || !strcmp(p->name + length - 6, "3.bias")) &&
                       strstr(p->name, "6.0.bias") == NULL;
        golden_compare_floor(c, what, p->value->grad, golden_get(c, "grad/%s", p->name), TOL, cancels ? 1e-7 : 0);
        compared++;
    }
    CHECK(compared == 10);  // 3 Linear weights and biases, 2 BatchNorm weights and biases
    for (int i = 0; i < store->count; i++) {
        const Param *p = &store->items[i];
        if (!strncmp(p->name, "map.", 4)) continue;  // CDAN's fixed random matrices: not in tllib's state dict
        if (p->group >= 0) {
            golden_get(c, "after/%s", p->name);  // parameters: unchanged by the forward
            continue;
        }
        golden_compare(c, p->name, p->value, golden_get(c, "after/%s", p->name), TOL);
    }
}

static Tensor *input(GoldenCase *c, const char *name) {
    return tensor_requires_grad(on(c, op_clone(golden_entry_tensor(golden_get(c, "%s", name)))));
}

static void dann_case(bool device) {
    TensorScope scope = tensor_scope_begin();
    GoldenCase *c = golden_case_begin(golden, "dann", device);
    ParamStore *store = params_new();
    DomainDiscriminator d;
    domain_discriminator_create(&d, store, "", 8, 16, NULL);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);
    Tensor *f_s = input(c, "f_s"), *f_t = input(c, "f_t");
    double lambda = golden_entry_get(golden_get(c, "coefficient"), 0);
    GrlSchedule warm;
    char error[256];
    CHECK(grl_schedule_parse("warm-start:max_iters=10", &warm, error, sizeof error) == 0);
    CHECK_CLOSE(grl_coefficient(&warm, 3, 0), lambda, 1e-15, 1e-12);  // tllib's coefficient at iteration 3
    check_adversarial(c, store, domain_adversarial_loss(&d, f_s, f_t, lambda, true), f_s, f_t);
    golden_case_end(c);
    params_free(store);
    tensor_scope_end(scope);
}

static void cdan_case(const char *name, bool entropy_conditioning, bool randomized, bool device) {
    TensorScope scope = tensor_scope_begin();
    GoldenCase *c = golden_case_begin(golden, name, device);
    ParamStore *store = params_new();
    ConditionalAdversarial cdan;
    conditional_adversarial_create(&cdan, store, "", 6, 4, 16, entropy_conditioning, randomized, 12, NULL);
    golden_load_state(c, store);
    params_finalize(store);
    if (device) params_to_device(store, CUDA0);
    Tensor *f_s = input(c, "f_s"), *f_t = input(c, "f_t"), *g_s = input(c, "g_s"), *g_t = input(c, "g_t");
    double lambda = golden_entry_get(golden_get(c, "coefficient"), 0);
    check_adversarial(c, store, conditional_adversarial_loss(&cdan, g_s, f_s, g_t, f_t, lambda, true), f_s, f_t);
    CHECK_MSG(!g_s->grad && !g_t->grad, "%s: the predictions are detached, yet got a gradient", name);
    golden_case_end(c);
    params_free(store);
    tensor_scope_end(scope);
}

TEST(dann_matches_tllib) { dann_case(false); }
TEST(dann_matches_tllib_on_device) { dann_case(true); }
TEST(cdan_entropy_conditioning_matches_tllib) { cdan_case("cdan_e", true, false, false); }
TEST(cdan_randomized_matches_tllib) { cdan_case("cdan_random", false, true, false); }
TEST(cdan_on_device) {
    cdan_case("cdan_e", true, false, true);
    cdan_case("cdan_random", false, true, true);
}

TEST(reversal_schedules) {
    GrlSchedule s;
    char error[256];
    CHECK(grl_schedule_parse("paper", &s, error, sizeof error) == 0);
    CHECK(grl_coefficient(&s, 0, 100) == 0.0);
    CHECK_CLOSE(grl_coefficient(&s, 50, 100), 2.0 / (1.0 + exp(-5.0)) - 1.0, 1e-15, 1e-12);
    CHECK_CLOSE(grl_coefficient(&s, 100, 100), 2.0 / (1.0 + exp(-10.0)) - 1.0, 1e-15, 1e-12);
    CHECK(grl_schedule_parse("warm-start", &s, error, sizeof error) == 0);
    CHECK(s.max_iters == 1000 && s.alpha == 1 && s.hi == 1 && s.lo == 0 && grl_coefficient(&s, 0, 5) == 0.0);
    CHECK_CLOSE(grl_coefficient(&s, 1000, 5), 2.0 / (1.0 + exp(-1.0)) - 1.0, 1e-15, 1e-12);
    CHECK(grl_schedule_parse("warm-start:alpha=2,lo=0.1,hi=0.5,max_iters=10", &s, error, sizeof error) == 0);
    CHECK_CLOSE(grl_coefficient(&s, 10, 0), 0.8 / (1.0 + exp(-2.0)) - 0.4 + 0.1, 1e-15, 1e-12);
    CHECK(grl_schedule_parse("constant:0.3", &s, error, sizeof error) == 0 && grl_coefficient(&s, 7, 9) == 0.3);
    const char *bad[] = {"linear", "constant:", "constant:-1", "warm-start:beta=1", "warm-start:max_iters=0", "warm-start:alpha"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error[0] = 0;
        CHECK_MSG(grl_schedule_parse(bad[i], &s, error, sizeof error) == -1 && strstr(error, bad[i]), "%s: %s", bad[i], error);
    }
}

int main(void) {
    golden = golden_open("uda.safetensors");
    RUN_TEST(dann_matches_tllib);
    RUN_TEST(dann_matches_tllib_on_device);
    RUN_TEST(cdan_entropy_conditioning_matches_tllib);
    RUN_TEST(cdan_randomized_matches_tllib);
    RUN_TEST(cdan_on_device);
    RUN_TEST(reversal_schedules);
    if (golden) safetensors_close(golden);
    return test_summary();
}
