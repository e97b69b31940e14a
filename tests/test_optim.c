// Optimizers, schedules, gradient clipping and weight EMA against PyTorch 1.13
// (tests/golden/optim.safetensors, written by tests/ref/gen_optim_goldens.py; the layout of the flat
// buffer and the hyperparameters below are the ones in that script).
//
// Tolerances. Our element math is the same sequence of f32 operations as PyTorch's kernels, but
// ATen's AVX2 kernels fuse `a + alpha * b` into one FMA (vec::fmadd) where we round twice (C11 does
// not contract), so single elements may differ by an ulp or so per operation; over 6 steps that stays
// below ~1e-6 relative. Parameters and state are compared with |got - want| <= 1e-6 * (1 + |want|)
// -- except exp_avg_sq, whose values (g^2 ~ 1e-11 .. 1e6) only need the relative part -- and
// schedules (pure f64 formulas; torch's chainable cosine is a product of ratios) with 1e-12 relative.
// Measured: the worst element is at 0.43 of its tolerance (sgd_plain, a parameter of ~100 after
// gradients of ~1e3); Adam/AdamW parameters match bit for bit. TEST_RATIOS=1 prints every ratio.
#include <stdint.h>

#include "engine/optim.h"
#include "engine/safetensors.h"
#include "engine/schedule.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#define GOLDEN_PATH "tests/golden/optim.safetensors"
#define STEPS 6
#define N 13

static SafetensorsFile *golden;

// Copies tensor `name` (f32 or f64, `count` elements) into out as double; 0 if missing or wrong.
static int load(const char *name, double *out, int64_t count) {
    const SafetensorsEntry *e = golden ? safetensors_find(golden, name) : NULL;
    if (!e) {
        printf("  %s: no tensor '%s'\n", GOLDEN_PATH, name);
        return 0;
    }
    if ((e->dtype != DTYPE_F32 && e->dtype != DTYPE_F64) ||
        e->nbytes != (size_t)count * dtype_size(e->dtype)) {
        printf("  %s: tensor '%s' has %zu bytes of %s, expected %lld elements\n", GOLDEN_PATH, name,
               e->nbytes, dtype_name(e->dtype), (long long)count);
        return 0;
    }
    for (int64_t i = 0; i < count; i++) {
        if (e->dtype == DTYPE_F32) {
            float v;
            memcpy(&v, (const char *)e->data + i * 4, 4);
            out[i] = v;
        } else {
            memcpy(&out[i], (const char *)e->data + i * 8, 8);
        }
    }
    return 1;
}

static int load_f32(const char *name, float *out, int64_t count) {
    double tmp[STEPS * N];
    if (count > STEPS * N || !load(name, tmp, count)) return 0;
    for (int64_t i = 0; i < count; i++) out[i] = (float)tmp[i];
    return 1;
}

// Largest |got - want| / (atol + rtol |want|): <= 1 passes.
static double worst_ratio(const float *got, const double *want, int64_t n, double atol, double rtol,
                          int64_t *where) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]);
        double r = diff == 0.0 ? 0.0 : diff / (atol + rtol * fabs(want[i]));
        if (!(r <= worst)) {  // also catches NaN
            worst = isnan(r) ? INFINITY : r;
            *where = i;
        }
    }
    return worst;
}

#define CHECK_ARRAY(label, got, want, n, atol, rtol)                                             \
    do {                                                                                         \
        int64_t where_ = 0;                                                                      \
        double ratio_ = worst_ratio(got, want, n, atol, rtol, &where_);                          \
        if (getenv("TEST_RATIOS")) printf("  %-28s worst %.3g of tolerance\n", label, ratio_);  \
        CHECK_MSG(ratio_ <= 1.0, "%s: element %lld = %.9g, expected %.9g", label,                \
                  (long long)where_, (double)(got)[where_], (want)[where_]);                     \
    } while (0)

static const double param_atol = 1e-6, param_rtol = 1e-6;

typedef enum { GROUPS_NONE, GROUPS_THREE } GroupLayout;

// Runs STEPS steps from "init" with "grads" and compares with "<config>.params" after each step and
// the state buffers after the last; a non-NULL schedule sets opt->lr before each step.
static void run_config(const char *config, Optimizer *opt, GroupLayout layout, double weight_decay,
                       const Schedule *schedule, double base_lr) {
    CHECK(opt != NULL);
    if (!opt) return;
    if (layout == GROUPS_THREE) {
        // "b": lr * 0.1 with the default weight decay; "c": no decay. "a" = [0, 7) uses defaults.
        CHECK(optimizer_add_group(opt, 10, 3, 1.0, 0.0) == 0);  // added out of order on purpose
        CHECK(optimizer_add_group(opt, 7, 3, 0.1, weight_decay) == 0);
    }
    float params[N], grads[STEPS * N];
    double want[STEPS * N], lrs[STEPS];
    char name[128];
    int ok = load_f32("init", params, N) && load_f32("grads", grads, STEPS * N);
    snprintf(name, sizeof name, "%s.params", config);
    ok = ok && load(name, want, STEPS * N);
    if (schedule) {
        snprintf(name, sizeof name, "%s.lr", config);
        ok = ok && load(name, lrs, STEPS);
    }
    CHECK(ok);
    if (!ok) {
        optimizer_free(opt);
        return;
    }
    for (int step = 0; step < STEPS; step++) {
        if (schedule) {
            opt->lr = schedule_lr(schedule, base_lr, opt->step);
            CHECK_CLOSE(opt->lr, lrs[step], 0, 1e-12);
        }
        optimizer_step(opt, params, grads + step * N);
        char label[160];
        snprintf(label, sizeof label, "%s step %d", config, step + 1);
        CHECK_ARRAY(label, params, want + step * N, N, param_atol, param_rtol);
    }
    CHECK(opt->step == STEPS);
    for (int which = 1; which <= 2; which++) {
        float *state = which == 1 ? opt->state1 : opt->state2;
        snprintf(name, sizeof name, "%s.state%d", config, which);
        if (!safetensors_find(golden, name)) {
            CHECK_MSG(state == NULL, "%s: PyTorch keeps no such state", name);
            continue;
        }
        CHECK_MSG(state != NULL, "%s: missing state buffer", name);
        if (!state || !load(name, want, N)) continue;
        if (which == 2) CHECK_ARRAY(name, state, want, N, 0.0, param_rtol);  // exp_avg_sq: g^2 scale
        else CHECK_ARRAY(name, state, want, N, param_atol, param_rtol);
    }
    optimizer_free(opt);
}

TEST(sgd_matches_pytorch) {
    run_config("sgd_plain", optimizer_new_sgd(N, 0.1, 0.0, 0.0, 0, 0.0), GROUPS_NONE, 0, NULL, 0);
    run_config("sgd_momentum", optimizer_new_sgd(N, 0.05, 0.9, 0.0, 0, 1e-2), GROUPS_THREE, 1e-2,
               NULL, 0);
    run_config("sgd_nesterov", optimizer_new_sgd(N, 0.05, 0.9, 0.0, 1, 5e-4), GROUPS_THREE, 5e-4,
               NULL, 0);
    run_config("sgd_dampening", optimizer_new_sgd(N, 0.02, 0.8, 0.5, 0, 1e-2), GROUPS_NONE, 0,
               NULL, 0);
}

TEST(adam_matches_pytorch) {
    run_config("adam", optimizer_new_adam(N, 1e-2, 0.9, 0.999, 1e-8, 0.0, 0), GROUPS_NONE, 0, NULL,
               0);
    run_config("adam_l2", optimizer_new_adam(N, 1e-2, 0.9, 0.999, 1e-8, 0.1, 0), GROUPS_THREE, 0.1,
               NULL, 0);
}

TEST(adamw_matches_pytorch) {
    run_config("adamw", optimizer_new_adam(N, 1e-2, 0.9, 0.999, 1e-8, 0.05, 1), GROUPS_THREE, 0.05,
               NULL, 0);
    run_config("adamw_betas", optimizer_new_adam(N, 3e-3, 0.8, 0.99, 1e-3, 0.3, 1), GROUPS_NONE, 0,
               NULL, 0);
    // Linear warm-up over 2 steps from 0.25, then cosine to 0 (torch SequentialLR of LinearLR and
    // CosineAnnealingLR), driving the base lr; group "b" follows at 0.1x.
    Schedule schedule = schedule_cosine(STEPS, 2, 0.25, 0.0);
    run_config("adamw_cosine", optimizer_new_adam(N, 1e-2, 0.9, 0.999, 1e-8, 0.05, 1), GROUPS_THREE,
               0.05, &schedule, 1e-2);
}

TEST(optimizer_arguments_and_groups) {
    CHECK(optimizer_new_sgd(4, 0.1, 0.0, 0.0, 1, 0.0) == NULL);  // nesterov needs momentum
    CHECK(optimizer_new_sgd(4, 0.1, 0.9, 0.1, 1, 0.0) == NULL);  // and no dampening
    CHECK(optimizer_new_sgd(4, -0.1, 0.9, 0.0, 0, 0.0) == NULL);
    CHECK(optimizer_new_adam(4, 1e-3, 1.0, 0.999, 1e-8, 0.0, 0) == NULL);
    CHECK(optimizer_new_adam(4, 1e-3, 0.9, 0.999, -1.0, 0.0, 1) == NULL);
    CHECK(optimizer_new_adam(-1, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1) == NULL);

    Optimizer *opt = optimizer_new_sgd(100, 0.1, 0.0, 0.0, 0, 0.0);
    CHECK(opt && opt->state1 == NULL && opt->state2 == NULL);
    CHECK(optimizer_add_group(opt, 10, 20, 0.5, 0.0) == 0);
    CHECK(optimizer_add_group(opt, 25, 10, 1.0, 0.0) == -1);  // overlaps [10, 30)
    CHECK(optimizer_add_group(opt, 0, 11, 1.0, 0.0) == -1);   // overlaps at 10
    CHECK(optimizer_add_group(opt, 90, 11, 1.0, 0.0) == -1);  // past the end
    CHECK(optimizer_add_group(opt, -1, 2, 1.0, 0.0) == -1);
    CHECK(optimizer_add_group(opt, 30, 70, 2.0, 0.0) == 0);   // adjacent is fine
    CHECK(optimizer_add_group(opt, 0, 10, 0.0, 0.0) == 0);    // frozen: lr multiplier 0
    CHECK(opt->n_groups == 3 && opt->groups[0].start == 0 && opt->groups[1].start == 10 &&
          opt->groups[2].start == 30);
    float params[100], grads[100];
    for (int i = 0; i < 100; i++) params[i] = 1.0f, grads[i] = 1.0f;
    optimizer_step(opt, params, grads);
    CHECK(params[0] == 1.0f && params[9] == 1.0f);      // frozen
    CHECK(params[10] == 1.0f - 0.05f);                  // 0.5 x lr
    CHECK(params[30] == 1.0f - 0.2f && params[99] == 1.0f - 0.2f);
    optimizer_free(opt);

    // A large buffer (OpenMP path) gives the same result as the same values in a small one.
    const int64_t n = 200003;
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(i % 7) * 0.1f, g[i] = (float)(i % 5) - 2.0f;
    Optimizer *big = optimizer_new_adam(n, 1e-2, 0.9, 0.999, 1e-8, 0.01, 1);
    Optimizer *small = optimizer_new_adam(35, 1e-2, 0.9, 0.999, 1e-8, 0.01, 1);
    float ps[35], gs[35];
    for (int i = 0; i < 35; i++) ps[i] = p[i], gs[i] = g[i];
    for (int s = 0; s < 3; s++) {
        optimizer_step(big, p, g);
        optimizer_step(small, ps, gs);
    }
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= p[i] == ps[i % 35];
    CHECK(same);
    optimizer_free(big);
    optimizer_free(small);
    free(p);
    free(g);
}

TEST(schedules_match_pytorch) {
    enum { S = 40 };  // SCHEDULE_STEPS in the script
    const double base = 0.1;
    double want[S];
    struct {
        const char *name;
        Schedule schedule;
    } cases[6];
    cases[0].name = "schedule.step";
    cases[0].schedule = schedule_step(7, 0.5);
    cases[1].name = "schedule.multistep";
    char error[256];
    CHECK(schedule_parse("multistep:milestones=4/9/15,gamma=0.3", S, &cases[1].schedule, error,
                         sizeof error) == 0);
    cases[2].name = "schedule.cosine";
    cases[2].schedule = schedule_cosine(S, 0, 1.0, 0.01);
    cases[3].name = "schedule.warmup_cosine";
    CHECK(schedule_parse("cosine:warmup=5,start=0.1,min=0.01", S, &cases[3].schedule, error,
                         sizeof error) == 0);
    cases[4].name = "schedule.inv";
    cases[4].schedule = schedule_inv(0.001, 0.75);
    cases[5].name = "schedule.dann";
    cases[5].schedule = schedule_dann(S);
    for (int c = 0; c < 6; c++) {
        if (!load(cases[c].name, want, S)) {
            CHECK(0);
            continue;
        }
        for (int step = 0; step < S; step++) {
            double lr = schedule_lr(&cases[c].schedule, base, step);
            CHECK_MSG(fabs(lr - want[step]) <= 1e-12 * want[step], "%s step %d: %.17g, expected %.17g",
                      cases[c].name, step, lr, want[step]);
        }
    }
}

TEST(schedule_parser) {
    Schedule s;
    char error[256];
    CHECK(schedule_parse("constant", 100, &s, error, sizeof error) == 0 &&
          s.kind == SCHEDULE_CONSTANT);
    CHECK(schedule_lr(&s, 0.5, 77) == 0.5);
    CHECK(schedule_parse("step:every=10,gamma=0.5,warmup=4,start=0", 100, &s, error,
                         sizeof error) == 0);
    CHECK(schedule_lr(&s, 1.0, 0) == 0.0 && schedule_lr(&s, 1.0, 2) == 0.5);
    CHECK(schedule_lr(&s, 1.0, 4) == 1.0 && schedule_lr(&s, 1.0, 14) == 0.5);  // after warm-up: t = step - 4
    CHECK(schedule_parse("dann", 1000, &s, error, sizeof error) == 0);
    CHECK(s.kind == SCHEDULE_INVERSE && s.progress && s.gamma == 10.0 && s.power == 0.75);
    CHECK_CLOSE(schedule_lr(&s, 0.01, 1000), 0.01 * pow(11.0, -0.75), 0, 1e-15);
    CHECK(schedule_parse("inv:gamma=0.0003,power=0.5", 0, &s, error, sizeof error) == 0);
    CHECK(!s.progress && s.gamma == 0.0003 && s.power == 0.5);
    CHECK_CLOSE(schedule_lr(&s, 1.0, 10000), 1.0 / 2.0, 0, 1e-15);
    CHECK(schedule_parse("cosine:warmup=500", 10000, &s, error, sizeof error) == 0);
    CHECK_CLOSE(schedule_lr(&s, 1.0, 0), 1.0 / 3.0, 0, 1e-15);  // torch LinearLR default start
    CHECK(schedule_lr(&s, 1.0, 500) == 1.0);
    CHECK(schedule_lr(&s, 1.0, 10000) == 0.0 && schedule_lr(&s, 1.0, 20000) == 0.0);  // held at floor

    // Errors: one line naming the flag value and the problem.
    CHECK(schedule_parse("cosin", 100, &s, error, sizeof error) == -1 &&
          strstr(error, "unknown schedule 'cosin'"));
    CHECK(schedule_parse("step", 100, &s, error, sizeof error) == -1 && strstr(error, "every="));
    CHECK(schedule_parse("step:every=abc", 100, &s, error, sizeof error) == -1 &&
          strstr(error, "bad value 'abc' for 'every'"));
    CHECK(schedule_parse("cosine:power=2", 100, &s, error, sizeof error) == -1 &&
          strstr(error, "unknown option 'power'"));
    CHECK(schedule_parse("multistep:milestones=9/4", 100, &s, error, sizeof error) == -1);
    CHECK(schedule_parse("multistep:milestones=4/", 100, &s, error, sizeof error) == -1);
    CHECK(schedule_parse("cosine:warmup=100", 100, &s, error, sizeof error) == -1 &&
          strstr(error, "longer than the warm-up"));
    CHECK(schedule_parse("step:every", 100, &s, error, sizeof error) == -1 &&
          strstr(error, "key=value"));
    CHECK(strchr(error, '\n') == NULL);
}

TEST(clip_grad_norm_matches_pytorch) {
    const char *names[2] = {"clipped", "unclipped"};
    const double max_norms[2] = {1.0, 100.0};
    for (int c = 0; c < 2; c++) {
        char name[64];
        float grads[N];
        double want[N], norm[1];
        snprintf(name, sizeof name, "clip.%s.grads_in", names[c]);
        int ok = load_f32(name, grads, N);
        snprintf(name, sizeof name, "clip.%s.grads_out", names[c]);
        ok = ok && load(name, want, N);
        snprintf(name, sizeof name, "clip.%s.norm", names[c]);
        ok = ok && load(name, norm, 1);
        CHECK(ok);
        if (!ok) continue;
        double got = clip_grad_norm(grads, N, max_norms[c]);
        // torch's norm is an f32 reduction; ours is f64: agree to f32 rounding.
        CHECK_CLOSE(got, norm[0], 0, 1e-6);
        CHECK_ARRAY(names[c], grads, want, N, 1e-7, 1e-6);
    }
    // Chunked f64 accumulation over a large buffer: exact for values whose squares sum exactly.
    const int64_t n = 100000;
    float *g = malloc(n * sizeof *g);
    for (int64_t i = 0; i < n; i++) g[i] = (i % 2) ? 2.0f : -2.0f;
    double norm = clip_grad_norm(g, n, 1.0);
    CHECK(norm == sqrt(4.0 * n));
    CHECK_CLOSE(g[0], -2.0 / (sqrt(4.0 * n) + 1e-6), 0, 1e-6);
    free(g);
    float inf_grad[3] = {1.0f, INFINITY, 1.0f};
    CHECK(isinf(clip_grad_norm(inf_grad, 3, 1.0)) && inf_grad[0] == 1.0f);  // left alone
}

TEST(ema_matches_pytorch) {
    float ema[N], inputs[STEPS * N];
    double want[STEPS * N];
    int ok = load_f32("init", ema, N) && load_f32("ema.params", inputs, STEPS * N) &&
             load("ema.out", want, STEPS * N);
    CHECK(ok);
    if (!ok) return;
    for (int step = 0; step < STEPS; step++) {
        ema_update(ema, inputs + step * N, N, 0.9);
        CHECK_ARRAY("ema", ema, want + step * N, N, param_atol, param_rtol);
    }
}

int main(void) {
    char error[512];
    if (safetensors_open(GOLDEN_PATH, &golden, error, sizeof error) != 0) {
        printf("  %s (run from the repository root; regenerate with /usr/bin/python3 "
               "tests/ref/gen_optim_goldens.py)\n", error);
        golden = NULL;
    }
    RUN_TEST(sgd_matches_pytorch);
    RUN_TEST(adam_matches_pytorch);
    RUN_TEST(adamw_matches_pytorch);
    RUN_TEST(optimizer_arguments_and_groups);
    RUN_TEST(schedules_match_pytorch);
    RUN_TEST(schedule_parser);
    RUN_TEST(clip_grad_norm_matches_pytorch);
    RUN_TEST(ema_matches_pytorch);
    safetensors_close(golden);
    return test_summary();
}
