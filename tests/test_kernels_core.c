// Tests of the core CUDA kernels on the emulated device (kernels/emu + engine/gpu/gpu_emulated.c):
// elementwise (every unary op forward and backward, broadcast binary ops, fill, strided copy and
// f32/f16/bf16 conversion), reductions (sum, max + index, logsumexp), softmax / log-softmax forward
// and backward, fused cross-entropy. Each kernel result is compared with the CPU op (engine/cpu
// kernels, or engine/ops.h with autograd for cross-entropy) on shapes that include 1, primes and
// sizes that are not multiples of any block size; every output buffer is NaN-poisoned before each
// run (so an element a kernel forgets to write fails), and every check runs in three thread orders
// of the emulator (forward, reverse, a seeded random one: FOR_EACH_ORDER). Reductions, softmax and
// cross-entropy must also give the same bits in every order (deterministic: no atomics).
//
// Tolerances are stated next to each comparison. u = 2^-24 is the f32 unit roundoff.
#include <float.h>
#include <stdint.h>

#include "engine/autograd.h"
#include "engine/cpu/elementwise.h"
#include "engine/cpu/reduce.h"
#include "engine/dtype.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/emu/cuemu_host.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#define U_F32 (1.0 / 16777216.0)  // 2^-24, the f32 unit roundoff
#define SLACK 8                   // poisoned floats after each output, which must stay untouched

// ------------------------------------------------------------------------------------------------
// Thread orders.
// ------------------------------------------------------------------------------------------------

static const char *const ORDER_NAMES[] = {"forward", "reverse", "random:20240917"};
enum { ORDER_COUNT = sizeof ORDER_NAMES / sizeof ORDER_NAMES[0] };
static const char *order_name = "forward";

// Sets thread order number `o` and returns 1; after the last one puts the forward order back and
// returns 0. FOR_EACH_ORDER(o) { ... } runs its body once in every order (o = 0, 1, 2).
static int use_order(int o) {
    if (o >= ORDER_COUNT) {
        cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
        order_name = "forward";
        return 0;
    }
    if (cuemu_set_thread_order_string(ORDER_NAMES[o]) != 0) {
        printf("  cannot set thread order %s\n", ORDER_NAMES[o]);
        test_checks_failed_in_current++;
    }
    order_name = ORDER_NAMES[o];
    return 1;
}
#define FOR_EACH_ORDER(o) for (int o = 0; use_order(o); o++)

// ------------------------------------------------------------------------------------------------
// Kernels checked (for the report line).
// ------------------------------------------------------------------------------------------------

static const char *checked_names[64];
static int checked_count;
static void note_checked(const char *name) {
    for (int i = 0; i < checked_count; i++)
        if (strcmp(checked_names[i], name) == 0) return;
    if (checked_count < 64) checked_names[checked_count++] = name;
}

// ------------------------------------------------------------------------------------------------
// Data, device buffers, comparisons.
// ------------------------------------------------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double uniform(double low, double high) {
    return low + (high - low) * (double)(next_random() >> 11) * (1.0 / 9007199254740992.0);
}
static float *random_floats(int64_t n, double low, double high) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)uniform(low, high);
    return x;
}

static uint32_t bits_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}
static float float_of(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

// Device buffer of `bytes`, every byte 0xFF (NaN in every float type, -1 in integers).
static void *device_poisoned(size_t bytes) {
    void *p = gpu_alloc(bytes);
    gpu_memset_async(p, 0xFF, bytes, NULL);
    return p;
}
static void *device_copy(const void *host, size_t bytes) {
    void *p = gpu_alloc(bytes);
    gpu_copy_to_device(p, host, bytes);
    return p;
}
static void poison(void *device, size_t bytes) { gpu_memset_async(device, 0xFF, bytes, NULL); }

// A launch must not have left a launch-configuration error.
static void check_launch_ok(const char *what) {
    cuemu_error error = cuemu_get_last_error();
    CHECK_MSG(error == CUEMU_SUCCESS, "%s (order %s): launch error %d: %s", what, order_name, (int)error,
              cuemu_last_error_message());
}

// want NaN: got must be NaN; want infinite: got must equal it; else |got - want| <= tol.
static bool near_value(double got, double want, double tol) {
    if (want != want) return got != got;
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol;
}

static int shown_failures;  // per test: at most a few lines per kind of failure
#define CHECK_NEAR(got, want, tol, ...)                                                                       \
    do {                                                                                                      \
        double got_ = (double)(got), want_ = (double)(want), tol_ = (double)(tol);                            \
        if (!near_value(got_, want_, tol_)) {                                                                 \
            if (shown_failures++ < 12) {                                                                      \
                printf("  %s:%d: order %s: ", __FILE__, __LINE__, order_name);                                \
                printf(__VA_ARGS__);                                                                          \
                printf(": got %.9g, want %.9g (tolerance %.3g)\n", got_, want_, tol_);                        \
            }                                                                                                 \
            test_checks_failed_in_current++;                                                                  \
        }                                                                                                     \
    } while (0)

// The same bits (any NaN matches any NaN only if the bits agree too).
#define CHECK_SAME_BITS(got, want, ...)                                                                       \
    do {                                                                                                      \
        if (bits_of(got) != bits_of(want)) {                                                                  \
            if (shown_failures++ < 12) {                                                                      \
                printf("  %s:%d: order %s: ", __FILE__, __LINE__, order_name);                                \
                printf(__VA_ARGS__);                                                                          \
                printf(": bits %08x, expected %08x\n", bits_of(got), bits_of(want));                          \
            }                                                                                                 \
            test_checks_failed_in_current++;                                                                  \
        }                                                                                                     \
    } while (0)

// The SLACK floats after an output (and `before` floats in front of it) must still be poison.
static void check_untouched(const char *what, const float *device, int64_t before, int64_t n) {
    float host[SLACK + 1];
    if (before > 0) {
        gpu_copy_to_host(host, device - before, (size_t)before * sizeof(float));
        for (int64_t i = 0; i < before; i++)
            CHECK_MSG(bits_of(host[i]) == 0xFFFFFFFFu, "%s: element %lld before the output was written (order %s)", what,
                      (long long)(i - before), order_name);
    }
    gpu_copy_to_host(host, device + n, SLACK * sizeof(float));
    for (int i = 0; i < SLACK; i++)
        CHECK_MSG(bits_of(host[i]) == 0xFFFFFFFFu, "%s: element %lld past the end was written (order %s)", what,
                  (long long)(n + i), order_name);
}

// ------------------------------------------------------------------------------------------------
// Unary ops.
// ------------------------------------------------------------------------------------------------

static void unary_parameters(UnaryOp op, double *p0, double *p1, int *positive_domain) {
    const char *name = unary_op_name(op);
    *p0 = 0.75;
    *p1 = 0.25;
    *positive_domain = !strcmp(name, "log") || !strcmp(name, "sqrt") || !strcmp(name, "rsqrt") ||
                       !strcmp(name, "pow_scalar");
    if (!strcmp(name, "clamp")) *p0 = -0.5, *p1 = 0.7;
    if (!strcmp(name, "pow_scalar")) *p0 = 2.5;
    if (!strcmp(name, "leaky_relu")) *p0 = 0.01;
}

// Inputs for op tests: mostly uniform, with the special values at the front when there is room
// (NaN, +-inf, +-0, a subnormal), so both devices meet them in the scalar and the float4 code.
static float *unary_inputs(int64_t n, int positive_domain) {
    float *x = random_floats(n, positive_domain ? 0.05 : -3.0, 3.0);
    static const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, 1.0f, -1.0f};
    if (n >= 16)
        for (int i = 0; i < 8; i++) x[i] = specials[i];
    return x;
}

// Same formulas (the kernels expand engine/cpu/elementwise.h's UNARY_OP_LIST) in float: on the
// emulator the same libm float functions, so the results mostly agree to the bit (not f32 GELU,
// which the CPU evaluates itself). The tolerance,
// 4 ulps relative, is what CUDA's own libm (1-2 ulp functions) and nvcc's FMA contraction need when
// these kernels run on a GPU; a wrong formula is off by far more.
#define UNARY_RTOL (4.0 * FLT_EPSILON)

// The derivatives of the GELU family are sums of terms of opposite sign that cancel at a root of
// f' (gelu' vanishes at x = -0.7518, silu' at -1.2785): the rounding error of each term is relative
// to the term, so near the root it is not small relative to the result. The tolerance there is
// 4 ulps of the sum of the terms' magnitudes times |g|. f32 GELU on the CPU is not libm's (gelu.c),
// so the two devices meet this bound for real, not by sharing bits.
static double derivative_term_magnitude(UnaryOp op, double x) {
    const char *name = unary_op_name(op);
    if (!strcmp(name, "gelu")) return 0.5 * erfc(-x * M_SQRT1_2) + fabs(x) * exp(-0.5 * x * x) * 0.3989422804014327;
    if (!strcmp(name, "silu") || !strcmp(name, "quick_gelu")) {
        double k = !strcmp(name, "silu") ? 1.0 : 1.702, s = 1 / (1 + exp(-k * x));
        return s + k * fabs(x) * s * (1 - s);
    }
    if (!strcmp(name, "gelu_tanh")) {
        double c = 0.7978845608028654, t = tanh(c * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * fabs(x) * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    }
    return 0;
}

static double backward_tolerance(UnaryOp op, float x, float g, float reference) {
    double terms = fabs((double)g) * derivative_term_magnitude(op, x);
    double scale = fabs((double)reference);
    return UNARY_RTOL * (isfinite(terms) && terms > scale ? terms : scale);
}

TEST(unary_ops_forward_and_backward) {
    static const int64_t sizes[] = {1, 3, 4, 33, 257, 1031, 4099};
    shown_failures = 0;
    for (int op = 0; op < UNARY_COUNT; op++) {
        double p0, p1;
        int positive;
        unary_parameters((UnaryOp)op, &p0, &p1, &positive);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t n = sizes[s];
            float *x = unary_inputs(n, positive), *g = random_floats(n, -2.0, 2.0);
            float *y_ref = malloc((size_t)n * sizeof(float)), *gx_ref = malloc((size_t)n * sizeof(float));
            float *gx_null_ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
            cpu_unary_forward_f32((UnaryOp)op, x, y_ref, n, p0, p1);
            cpu_unary_backward_f32((UnaryOp)op, x, y_ref, g, gx_ref, n, p0, p1);
            cpu_unary_backward_f32((UnaryOp)op, x, NULL, g, gx_null_ref, n, p0, p1);
            // shift 0: every pointer 16-byte aligned (float4 path + scalar tail); shift 1: all offset by
            // one float (scalar path only).
            for (int shift = 0; shift < 2; shift++) {
                const size_t bytes = (size_t)(n + shift + SLACK) * sizeof(float);
                float *dx = gpu_alloc(bytes), *dy_in = gpu_alloc(bytes), *dg = gpu_alloc(bytes);
                float *dy = gpu_alloc(bytes), *dgx = gpu_alloc(bytes);
                gpu_copy_to_device(dx + shift, x, (size_t)n * sizeof(float));
                gpu_copy_to_device(dy_in + shift, y_ref, (size_t)n * sizeof(float));
                gpu_copy_to_device(dg + shift, g, (size_t)n * sizeof(float));
                FOR_EACH_ORDER(o) {
                    poison(dy, bytes);
                    unary_forward_f32_launch((UnaryOp)op, dx + shift, dy + shift, n, p0, p1, NULL);
                    check_launch_ok("unary forward");
                    gpu_copy_to_host(got, dy + shift, (size_t)n * sizeof(float));
                    for (int64_t i = 0; i < n; i++)
                        CHECK_NEAR(got[i], y_ref[i], UNARY_RTOL * fabs(y_ref[i]), "%s forward n=%lld shift=%d x[%lld]=%g",
                                   unary_op_name(op), (long long)n, shift, (long long)i, x[i]);
                    check_untouched("unary forward", dy + shift, shift, n);

                    poison(dgx, bytes);
                    unary_backward_f32_launch((UnaryOp)op, dx + shift, dy_in + shift, dg + shift, dgx + shift, n, p0,
                                              p1, NULL);
                    check_launch_ok("unary backward");
                    gpu_copy_to_host(got, dgx + shift, (size_t)n * sizeof(float));
                    for (int64_t i = 0; i < n; i++)
                        CHECK_NEAR(got[i], gx_ref[i], backward_tolerance((UnaryOp)op, x[i], g[i], gx_ref[i]),
                                   "%s backward n=%lld shift=%d x[%lld]=%g", unary_op_name(op), (long long)n, shift,
                                   (long long)i, x[i]);
                    check_untouched("unary backward", dgx + shift, shift, n);

                    // Without y (the engine may pass NULL when the derivative does not use it): reads 0.
                    poison(dgx, bytes);
                    unary_backward_f32_launch((UnaryOp)op, dx + shift, NULL, dg + shift, dgx + shift, n, p0, p1, NULL);
                    check_launch_ok("unary backward without y");
                    gpu_copy_to_host(got, dgx + shift, (size_t)n * sizeof(float));
                    for (int64_t i = 0; i < n; i++)
                        CHECK_NEAR(got[i], gx_null_ref[i], backward_tolerance((UnaryOp)op, x[i], g[i], gx_null_ref[i]),
                                   "%s backward (y NULL) n=%lld shift=%d x[%lld]=%g", unary_op_name(op), (long long)n,
                                   shift, (long long)i, x[i]);
                }
                gpu_free(dx);
                gpu_free(dy_in);
                gpu_free(dg);
                gpu_free(dy);
                gpu_free(dgx);
            }
            free(x);
            free(g);
            free(y_ref);
            free(gx_ref);
            free(gx_null_ref);
            free(got);
        }
    }
    // In place (y == x, grad_x == grad_y), float4 path.
    {
        const int64_t n = 1031;
        float *x = unary_inputs(n, 0), *y_ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        cpu_unary_forward_f32(UNARY_tanh, x, y_ref, n, 0, 0);
        FOR_EACH_ORDER(o) {
            float *d = device_copy(x, (size_t)n * sizeof(float));
            unary_forward_f32_launch(UNARY_tanh, d, d, n, 0, 0, NULL);
            check_launch_ok("unary forward in place");
            gpu_copy_to_host(got, d, (size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) CHECK_NEAR(got[i], y_ref[i], UNARY_RTOL * fabs(y_ref[i]), "tanh in place [%lld]", (long long)i);
            gpu_free(d);
        }
        free(x);
        free(y_ref);
        free(got);
    }
    // n == 0 launches nothing (and NULL pointers are fine then).
    unary_forward_f32_launch(UNARY_exp, NULL, NULL, 0, 0, 0, NULL);
    check_launch_ok("unary forward n=0");
    note_checked("unary_forward[every UNARY_OP_LIST op]");
    note_checked("unary_backward[every UNARY_OP_LIST op]");
}

// The kernels are generated from the CPU's own list, so the two cannot drift apart; the launcher
// must still dispatch every enumerator (a missing case would leave the poison in place).
TEST(unary_kernels_cover_the_cpu_op_list) {
    int listed = 0;
#define COUNT_OP(name, forward, derivative) listed++;
    UNARY_OP_LIST(COUNT_OP)
#undef COUNT_OP
    CHECK(listed == UNARY_COUNT);
    float one = 0.5f, out = NAN;
    float *d_in = device_copy(&one, sizeof one), *d_out = device_poisoned(sizeof out);
    for (int op = 0; op < UNARY_COUNT; op++) {
        poison(d_out, sizeof out);
        unary_forward_f32_launch((UnaryOp)op, d_in, d_out, 1, 0.75, 0.25, NULL);
        gpu_copy_to_host(&out, d_out, sizeof out);
        CHECK_MSG(bits_of(out) != 0xFFFFFFFFu, "op %s: the launcher has no kernel for it", unary_op_name(op));
    }
    gpu_free(d_in);
    gpu_free(d_out);
}

// ------------------------------------------------------------------------------------------------
// Binary ops over broadcast operands.
// ------------------------------------------------------------------------------------------------

typedef struct BinaryCase {
    int ndim;
    int64_t shape[KERNEL_MAX_DIMS], stride_a[KERNEL_MAX_DIMS], stride_b[KERNEL_MAX_DIMS];
    int misalign;  // offset a and out by one float (no float4)
    const char *what;
} BinaryCase;

// The extent of the elements a stride set reaches: offsets in [*low, *high].
static void stride_extent(int ndim, const int64_t *shape, const int64_t *stride, int64_t *low, int64_t *high) {
    *low = *high = 0;
    for (int d = 0; d < ndim; d++) {
        int64_t far = (shape[d] - 1) * stride[d];
        if (far < 0) *low += far;
        else *high += far;
    }
}

// Random shapes on top of the fixed cases: RANDOM_CASES per test, drawn from the seeded generator.
enum { RANDOM_CASES = 6 };

static int64_t random_below(int64_t n) { return (int64_t)(next_random() % (uint64_t)n); }

// Element strides for `shape`: the dims laid out contiguously in a random order (permute), some with
// stride 0 (broadcast, probability 1/3), some with a gap after them, one negated.
static void random_strides(int ndim, const int64_t *shape, int64_t *stride, int permute, int broadcast, int gaps,
                           int negate) {
    int order[KERNEL_MAX_DIMS];
    for (int d = 0; d < ndim; d++) order[d] = d;
    for (int d = ndim - 1; permute && d > 0; d--) {
        const int j = (int)random_below(d + 1), t = order[d];
        order[d] = order[j];
        order[j] = t;
    }
    int64_t step = 1;
    for (int j = ndim - 1; j >= 0; j--) {
        const int d = order[j];
        if (broadcast && random_below(3) == 0) {
            stride[d] = 0;
            continue;
        }
        stride[d] = step;
        step *= shape[d] + (gaps && random_below(3) == 0 ? 1 : 0);
    }
    if (negate) stride[random_below(ndim)] *= -1;
}

static const BinaryCase *random_binary_case(BinaryCase *bc) {
    memset(bc, 0, sizeof *bc);
    bc->ndim = 1 + (int)random_below(6);
    for (int d = 0; d < bc->ndim; d++) bc->shape[d] = 1 + random_below(7);
    random_strides(bc->ndim, bc->shape, bc->stride_a, 1, 1, 1, (int)random_below(2));
    random_strides(bc->ndim, bc->shape, bc->stride_b, 0, 1, 0, 0);
    bc->misalign = (int)random_below(2);
    bc->what = "random shape";
    return bc;
}

static const BinaryCase BINARY_CASES[] = {
    {1, {1031}, {1}, {1}, 0, "same shape, contiguous (float4)"},
    {1, {1031}, {1}, {1}, 1, "same shape, misaligned (scalar)"},
    {1, {4099}, {1}, {0}, 0, "tensor op scalar"},
    {1, {257}, {0}, {1}, 0, "scalar op tensor"},
    {1, {1}, {1}, {1}, 0, "one element"},
    {2, {37, 29}, {1, 0}, {0, 1}, 0, "[37,1] op [1,29]"},
    {3, {5, 7, 11}, {77, 11, 1}, {0, 0, 1}, 0, "[5,7,11] op [11] (bias)"},
    {2, {17, 13}, {1, 17}, {13, 1}, 0, "transposed a"},
    {1, {257}, {-1}, {1}, 0, "reversed a (negative stride)"},
    {2, {6, 4}, {4, 1}, {0, 0}, 0, "[6,4] op [1,1]"},
    {8, {2, 3, 1, 2, 3, 2, 1, 5}, {180, 60, 60, 30, 10, 5, 5, 1}, {0, 4, 0, 2, 0, 1, 0, 0}, 0, "8 dims"},
    {4, {3, 1, 5, 7}, {1, 0, 3, 15}, {35, 0, 7, 1}, 0, "4 dims, permuted a"},
};

TEST(binary_broadcast_ops) {
    static const BinaryOp ops[] = {BINARY_ADD, BINARY_SUB, BINARY_MUL, BINARY_DIV};
    static const char *const op_names[] = {"add", "sub", "mul", "div"};
    shown_failures = 0;
    const size_t fixed = sizeof BINARY_CASES / sizeof BINARY_CASES[0];
    for (size_t c = 0; c < fixed + RANDOM_CASES; c++) {
        BinaryCase drawn;
        const BinaryCase *bc = c < fixed ? &BINARY_CASES[c] : random_binary_case(&drawn);
        int64_t n = 1, a_low, a_high, b_low, b_high;
        for (int d = 0; d < bc->ndim; d++) n *= bc->shape[d];
        stride_extent(bc->ndim, bc->shape, bc->stride_a, &a_low, &a_high);
        stride_extent(bc->ndim, bc->shape, bc->stride_b, &b_low, &b_high);
        const int64_t a_count = a_high - a_low + 1, b_count = b_high - b_low + 1;
        float *a = random_floats(a_count, -2.0, 2.0), *b = random_floats(b_count, -2.0, 2.0);
        b[0] = 0.0f;  // a division by zero somewhere (inf or NaN on both devices)
        float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        const int shift = bc->misalign;
        float *da = gpu_alloc((size_t)(a_count + shift) * sizeof(float)), *db = device_copy(b, (size_t)b_count * sizeof(float));
        gpu_copy_to_device(da + shift, a, (size_t)a_count * sizeof(float));
        const size_t out_bytes = (size_t)(n + shift + SLACK) * sizeof(float);
        float *dout = gpu_alloc(out_bytes);
        KernelBroadcast layout;
        memset(&layout, 0, sizeof layout);
        layout.ndim = bc->ndim;
        for (int d = 0; d < bc->ndim; d++) {
            layout.shape[d] = bc->shape[d];
            layout.stride_a[d] = bc->stride_a[d];
            layout.stride_b[d] = bc->stride_b[d];
        }
        for (size_t k = 0; k < 4; k++) {
            cpu_binary_f32(ops[k], bc->ndim, bc->shape, a - a_low, bc->stride_a, b - b_low, bc->stride_b, want);
            FOR_EACH_ORDER(o) {
                poison(dout, out_bytes);
                binary_f32_launch(ops[k], da + shift - a_low, db - b_low, dout + shift, layout, NULL);
                check_launch_ok("binary");
                gpu_copy_to_host(got, dout + shift, (size_t)n * sizeof(float));
                // Exact: +, -, *, / are correctly rounded on both devices (nvcc divides IEEE-exactly
                // by default) and read the same operands.
                for (int64_t i = 0; i < n; i++)
                    CHECK_NEAR(got[i], want[i], 0.0, "%s %s [%lld]", op_names[k], bc->what, (long long)i);
                check_untouched("binary", dout + shift, shift, n);
            }
        }
        gpu_free(da);
        gpu_free(db);
        gpu_free(dout);
        free(a);
        free(b);
        free(want);
        free(got);
    }
    note_checked("binary_{add,sub,mul,div}_flat");
    note_checked("binary_{add,sub,mul,div}_strided");
}

// ------------------------------------------------------------------------------------------------
// Fill, copy, conversion. Expected values come from engine/dtype.c (f32_to_f16 ..., dtype_load /
// dtype_store): exact bits, except that a NaN only has to stay a NaN (CUDA's conversions give the
// canonical NaN 0x7fff where dtype.c keeps the sign and sets 0x7e00).
// ------------------------------------------------------------------------------------------------

static const DType FLOAT_TYPES[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};

static bool is_nan_bits(DType dtype, uint32_t bits) {
    if (dtype == DTYPE_F32) return (bits & 0x7fffffffu) > 0x7f800000u;
    if (dtype == DTYPE_F16) return (bits & 0x7fffu) > 0x7c00u;
    return (bits & 0x7fffu) > 0x7f80u;
}
static uint32_t element_bits(const void *data, DType dtype, int64_t i) {
    if (dtype == DTYPE_F32) return ((const uint32_t *)data)[i];
    return ((const uint16_t *)data)[i];
}

#define CHECK_ELEMENT_BITS(dtype, got, want, ...)                                                            \
    do {                                                                                                     \
        uint32_t got_b_ = (got), want_b_ = (want);                                                           \
        bool ok_ = is_nan_bits(dtype, want_b_) ? is_nan_bits(dtype, got_b_) : got_b_ == want_b_;            \
        if (!ok_) {                                                                                          \
            if (shown_failures++ < 12) {                                                                     \
                printf("  %s:%d: order %s: ", __FILE__, __LINE__, order_name);                               \
                printf(__VA_ARGS__);                                                                         \
                printf(": bits %#x, expected %#x\n", got_b_, want_b_);                                       \
            }                                                                                                \
            test_checks_failed_in_current++;                                                                 \
        }                                                                                                    \
    } while (0)

TEST(fill_float_types) {
    static const int64_t sizes[] = {1, 5, 8, 1031};
    static const double values[] = {1.2345678, -65519.0, 3e-8};
    shown_failures = 0;
    for (int t = 0; t < 3; t++) {
        const DType dtype = FLOAT_TYPES[t];
        const size_t size = dtype_size(dtype);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int shift = 0; shift < 2; shift++)
                for (int v = 0; v < 3; v++) {
                    const int64_t n = sizes[s];
                    const size_t bytes = (size_t)(n + shift + 16) * size;
                    char *d = gpu_alloc(bytes), *host = malloc(bytes), want[8];
                    dtype_store(want, dtype, 0, values[v]);
                    FOR_EACH_ORDER(o) {
                        poison(d, bytes);
                        CHECK(fill_launch(d + shift * size, dtype, n, values[v], NULL) == 0);
                        check_launch_ok("fill");
                        gpu_copy_to_host(host, d, bytes);
                        for (int64_t i = 0; i < n + shift + 16; i++) {
                            const bool inside = i >= shift && i < n + shift;
                            const uint32_t expected = inside ? element_bits(want, dtype, 0) : (size == 4 ? 0xFFFFFFFFu : 0xFFFFu);
                            CHECK_ELEMENT_BITS(dtype, element_bits(host, dtype, i), expected, "fill %s n=%lld shift=%d [%lld]",
                                               dtype_name(dtype), (long long)n, shift, (long long)i);
                        }
                    }
                    gpu_free(d);
                    free(host);
                }
    }
    CHECK(fill_launch(NULL, DTYPE_I32, 4, 1.0, NULL) == -1);
    note_checked("fill_u32");
    note_checked("fill_u16");
}

// Conversion tables: every f16 and bf16 bit pattern to f32 and to the other 16-bit type; and f32
// values that probe rounding (ties to even at both widths, subnormal results, overflow, NaN, inf,
// signed zeros) plus random bit patterns to f16 and bf16. Each conversion through the float4 path
// and, offset by one element, through the strided scalar path.
TEST(convert_all_patterns) {
    shown_failures = 0;
    const int64_t n16 = 65536;
    uint16_t *all16 = malloc((size_t)n16 * 2);
    for (int64_t i = 0; i < n16; i++) all16[i] = (uint16_t)i;
    // f32 probes.
    const int64_t n32 = 8192;
    float *probes = malloc((size_t)n32 * sizeof(float));
    int64_t p = 0;
    static const float fixed[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f, -65520.0f,
                                  1e-8f, 2.98e-8f, 5.96e-8f, 6.1e-5f, 3.4e38f, FLT_MIN, 1e-45f, 1.0f + 1.0f / 2048,
                                  1.0f + 3.0f / 2048, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) probes[p++] = fixed[i];
    for (int i = 0; i < 1024; i++) {  // exact ties and neighbours for both formats
        uint32_t base = (uint32_t)(next_random() & 0xffffe000u);
        probes[p++] = float_of(base | 0x1000u);  // f16 tie (13 dropped bits: 1 then zeros)
        probes[p++] = float_of((base & 0xffff0000u) | 0x8000u);  // bf16 tie
        probes[p++] = float_of(base | 0x0fffu);
    }
    while (p < n32) probes[p++] = float_of((uint32_t)next_random());

    typedef struct {
        DType from, to;
        const void *src;
        int64_t n;
    } Conversion;
    const Conversion conversions[] = {
        {DTYPE_F16, DTYPE_F32, all16, n16},  {DTYPE_BF16, DTYPE_F32, all16, n16}, {DTYPE_F16, DTYPE_BF16, all16, n16},
        {DTYPE_BF16, DTYPE_F16, all16, n16}, {DTYPE_F16, DTYPE_F16, all16, n16},  {DTYPE_BF16, DTYPE_BF16, all16, n16},
        {DTYPE_F32, DTYPE_F16, probes, n32}, {DTYPE_F32, DTYPE_BF16, probes, n32}, {DTYPE_F32, DTYPE_F32, probes, n32},
    };
    for (size_t c = 0; c < sizeof conversions / sizeof conversions[0]; c++) {
        const Conversion *cv = &conversions[c];
        const size_t in_size = dtype_size(cv->from), out_size = dtype_size(cv->to);
        char *want = malloc((size_t)cv->n * out_size), *got = malloc((size_t)cv->n * out_size);
        for (int64_t i = 0; i < cv->n; i++) {
            if (cv->from == cv->to)
                memcpy(want + i * out_size, (const char *)cv->src + i * in_size, out_size);  // a copy keeps the bits
            else
                dtype_store(want, cv->to, i, dtype_load(cv->src, cv->from, i));
        }
        for (int shift = 0; shift < 2; shift++) {
            char *dsrc = gpu_alloc((size_t)(cv->n + 1) * in_size), *ddst = gpu_alloc((size_t)(cv->n + 1) * out_size);
            gpu_copy_to_device(dsrc + shift * in_size, cv->src, (size_t)cv->n * in_size);
            FOR_EACH_ORDER(o) {
                poison(ddst, (size_t)(cv->n + 1) * out_size);
                CHECK(convert_launch(ddst + shift * out_size, cv->to, dsrc + shift * in_size, cv->from, cv->n, NULL) == 0);
                check_launch_ok("convert");
                gpu_copy_to_host(got, ddst + shift * out_size, (size_t)cv->n * out_size);
                for (int64_t i = 0; i < cv->n; i++) {
                    const uint32_t w = element_bits(want, cv->to, i), g = element_bits(got, cv->to, i);
                    if (cv->from == cv->to) {
                        CHECK_MSG(g == w, "%s copy shift=%d [%lld]: %#x vs %#x (order %s)", dtype_name(cv->to), shift,
                                  (long long)i, g, w, order_name);
                    } else {
                        CHECK_ELEMENT_BITS(cv->to, g, w, "%s -> %s shift=%d [%lld] from %#x", dtype_name(cv->from),
                                           dtype_name(cv->to), shift, (long long)i, element_bits(cv->src, cv->from, i));
                    }
                }
            }
            gpu_free(dsrc);
            gpu_free(ddst);
        }
        free(want);
        free(got);
    }
    free(all16);
    free(probes);
    CHECK(convert_launch(NULL, DTYPE_F64, NULL, DTYPE_F32, 4, NULL) == -1);
    note_checked("copy_contiguous4[f32,f16,bf16 pairs]");
}

typedef struct CopyCase {
    int ndim;
    int64_t shape[KERNEL_MAX_DIMS], dst_stride[KERNEL_MAX_DIMS], src_stride[KERNEL_MAX_DIMS];
    const char *what;
} CopyCase;

static const CopyCase *random_copy_case(CopyCase *cc) {
    memset(cc, 0, sizeof *cc);
    cc->ndim = 1 + (int)random_below(KERNEL_MAX_DIMS);
    for (int d = 0; d < cc->ndim; d++) cc->shape[d] = 1 + random_below(cc->ndim > 4 ? 3 : 7);
    random_strides(cc->ndim, cc->shape, cc->src_stride, 1, 0, 1, (int)random_below(2));
    random_strides(cc->ndim, cc->shape, cc->dst_stride, (int)random_below(2), 0, 0, (int)random_below(2));
    cc->what = "random shape";
    return cc;
}

static const CopyCase COPY_CASES[] = {
    {4, {3, 5, 7, 2}, {70, 14, 2, 1}, {1, 3, 15, 105}, "permuted source (0 3 2 1 order) to contiguous"},
    {3, {7, 1, 11}, {1, 0, 7}, {11, 11, 1}, "contiguous source to transposed destination"},
    {2, {13, 17}, {-17, 1}, {2, 26}, "flipped destination, strided source"},
    {1, {1}, {1}, {1}, "one element"},
    {1, {4099}, {1}, {3}, "every third element"},
    {8, {2, 2, 3, 1, 2, 3, 2, 2}, {288, 144, 48, 48, 24, 8, 4, 1}, {1, 2, 4, 12, 12, 24, 72, 144}, "8 dims reversed order"},
    {3, {4, 5, 6}, {30, 6, 1}, {30, 6, 1}, "contiguous both (merged to one dim)"},
};

TEST(copy_strided_all_dtype_pairs) {
    shown_failures = 0;
    const size_t fixed = sizeof COPY_CASES / sizeof COPY_CASES[0];
    for (size_t c = 0; c < fixed + RANDOM_CASES; c++) {
        CopyCase drawn;
        const CopyCase *cc = c < fixed ? &COPY_CASES[c] : random_copy_case(&drawn);
        int64_t n = 1, s_low, s_high, d_low, d_high;
        for (int d = 0; d < cc->ndim; d++) n *= cc->shape[d];
        stride_extent(cc->ndim, cc->shape, cc->src_stride, &s_low, &s_high);
        stride_extent(cc->ndim, cc->shape, cc->dst_stride, &d_low, &d_high);
        const int64_t s_count = s_high - s_low + 1, d_count = d_high - d_low + 1;
        KernelCopyLayout layout;
        memset(&layout, 0, sizeof layout);
        layout.ndim = cc->ndim;
        for (int d = 0; d < cc->ndim; d++) {
            layout.shape[d] = cc->shape[d];
            layout.dst_stride[d] = cc->dst_stride[d];
            layout.src_stride[d] = cc->src_stride[d];
        }
        float *values = random_floats(s_count, -70000.0, 70000.0);  // past f16's range at both ends
        for (int64_t i = 0; i < s_count; i += 5) values[i] = (float)uniform(-1.0, 1.0) * 1e-3f;
        for (int from = 0; from < 3; from++)
            for (int to = 0; to < 3; to++) {
                const DType src_type = FLOAT_TYPES[from], dst_type = FLOAT_TYPES[to];
                const size_t in_size = dtype_size(src_type), out_size = dtype_size(dst_type);
                char *src = malloc((size_t)s_count * in_size), *want = malloc((size_t)d_count * out_size);
                char *got = malloc((size_t)d_count * out_size);
                for (int64_t i = 0; i < s_count; i++) dtype_store(src, src_type, i, values[i]);
                memset(want, 0xFF, (size_t)d_count * out_size);  // elements the copy does not reach stay poison
                for (int64_t i = 0; i < n; i++) {
                    int64_t rest = i, os = -s_low, od = -d_low;
                    for (int d = cc->ndim - 1; d >= 0; d--) {
                        const int64_t coordinate = rest % cc->shape[d];
                        rest /= cc->shape[d];
                        os += coordinate * cc->src_stride[d];
                        od += coordinate * cc->dst_stride[d];
                    }
                    if (src_type == dst_type)
                        memcpy(want + od * out_size, src + os * in_size, out_size);
                    else
                        dtype_store(want, dst_type, od, dtype_load(src, src_type, os));
                }
                char *dsrc = device_copy(src, (size_t)s_count * in_size), *ddst = gpu_alloc((size_t)d_count * out_size);
                FOR_EACH_ORDER(o) {
                    poison(ddst, (size_t)d_count * out_size);
                    CHECK(copy_strided_launch(ddst - d_low * (int64_t)out_size, dst_type, dsrc - s_low * (int64_t)in_size,
                                              src_type, layout, NULL) == 0);
                    check_launch_ok("copy_strided");
                    gpu_copy_to_host(got, ddst, (size_t)d_count * out_size);
                    for (int64_t i = 0; i < d_count; i++)
                        CHECK_ELEMENT_BITS(dst_type, element_bits(got, dst_type, i), element_bits(want, dst_type, i),
                                           "%s: %s -> %s at %lld", cc->what, dtype_name(src_type), dtype_name(dst_type),
                                           (long long)i);
                }
                gpu_free(dsrc);
                gpu_free(ddst);
                free(src);
                free(want);
                free(got);
            }
        free(values);
    }
    note_checked("copy_strided[f32,f16,bf16 pairs]");
}

// ------------------------------------------------------------------------------------------------
// Reductions.
// ------------------------------------------------------------------------------------------------

typedef struct ReduceCase {
    int64_t outer, r, inner;
    int special;      // integer data with ties, NaNs, an all -inf column and a +inf
    int workspace;    // pass the workspace reduce_workspace_bytes asks for
    int expect_split; // the shape must ask for one (so the split path runs)
} ReduceCase;

static const ReduceCase REDUCE_CASES[] = {
    {1, 1, 1, 0, 1, 0},     {1, 7, 1, 0, 1, 0},      {13, 1, 1, 0, 1, 0},     {5, 31, 1, 0, 1, 0},
    {3, 1024, 1, 1, 1, 0},  {2, 1025, 1, 0, 1, 0},   {3, 4099, 1, 1, 1, 0},   {2, 4096, 1, 0, 1, 0},
    {1, 20011, 1, 0, 1, 1}, {1, 20011, 1, 1, 0, 0},  {1, 20011, 1, 1, 1, 1},  {17, 37, 1, 1, 1, 0},
    {7, 37, 3, 0, 1, 0},    {2, 1, 5, 0, 1, 0},      {1, 3, 33, 1, 1, 0},     {3, 1000, 5, 0, 1, 1},
    {3, 1000, 5, 1, 1, 1},  {3, 1000, 5, 0, 0, 0},   {4, 97, 64, 1, 1, 0},    {2, 13, 7, 1, 1, 0},
    {37, 3, 1, 1, 1, 0},    {100, 16, 1, 0, 1, 0},   {5, 2, 1, 1, 1, 0},      {11, 17, 1, 1, 1, 0},
};

// Random [outer, R, inner]: R up to 3000 (any of the row kernels), inner 1 half of the time.
static void random_reduction_shape(int64_t *outer, int64_t *r, int64_t *inner) {
    *outer = 1 + random_below(9);
    *r = random_below(2) ? 1 + random_below(40) : 1 + random_below(3000);
    *inner = random_below(2) ? 1 : 1 + random_below(40);
}

static const ReduceCase *random_reduce_case(ReduceCase *rc) {
    memset(rc, 0, sizeof *rc);
    random_reduction_shape(&rc->outer, &rc->r, &rc->inner);
    rc->special = (int)random_below(2);
    rc->workspace = 1;
    return rc;
}

static float *reduce_inputs(const ReduceCase *rc) {
    const int64_t n = rc->outer * rc->r * rc->inner;
    float *x = random_floats(n, -2.0, 2.0);
    if (rc->special) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)(int)uniform(-3.0, 4.0);  // many ties (and +-0)
        for (int64_t i = 0; i < n; i += 97) x[i] = NAN;                        // first NaN wins max
        // Column (0, last i) all -inf, and a +inf in column (last o, 0) when there are two columns.
        for (int64_t k = 0; k < rc->r; k++) x[k * rc->inner + rc->inner - 1] = -INFINITY;
        if (rc->outer * rc->inner > 1) x[((rc->outer - 1) * rc->r + rc->r / 2) * rc->inner] = INFINITY;
    }
    return x;
}

TEST(reductions_sum_max_logsumexp) {
    shown_failures = 0;
    const size_t fixed = sizeof REDUCE_CASES / sizeof REDUCE_CASES[0];
    for (size_t c = 0; c < fixed + RANDOM_CASES; c++) {
        ReduceCase drawn;
        const ReduceCase *rc = c < fixed ? &REDUCE_CASES[c] : random_reduce_case(&drawn);
        const int64_t outer = rc->outer, r = rc->r, inner = rc->inner, n = outer * r * inner, m = outer * inner;
        float *x = reduce_inputs(rc);
        float *want = malloc((size_t)m * sizeof(float)), *got = malloc((size_t)m * sizeof(float));
        float *first = malloc((size_t)m * sizeof(float));
        int64_t *want_index = malloc((size_t)m * sizeof(int64_t)), *got_index = malloc((size_t)m * sizeof(int64_t));
        double *magnitude = calloc((size_t)m, sizeof(double));  // sum |x| per output
        for (int64_t o = 0; o < outer; o++)
            for (int64_t k = 0; k < r; k++)
                for (int64_t i = 0; i < inner; i++) magnitude[o * inner + i] += fabs(x[(o * r + k) * inner + i]);
        float *dx = device_copy(x, (size_t)n * sizeof(float));
        float *dout = gpu_alloc((size_t)(m + SLACK) * sizeof(float));
        int64_t *dindex = gpu_alloc((size_t)m * sizeof(int64_t));
        for (int kind = REDUCE_SUM; kind <= REDUCE_LOGSUMEXP; kind++) {
            const size_t ws_bytes = reduce_workspace_bytes((ReduceKind)kind, outer, r, inner);
            if (rc->expect_split) CHECK_MSG(ws_bytes > 0, "[%lld, %lld, %lld] should split R", (long long)outer, (long long)r, (long long)inner);
            void *workspace = rc->workspace && ws_bytes ? gpu_alloc(ws_bytes) : NULL;
            if (kind == REDUCE_SUM) cpu_sum_f32(x, want, outer, r, inner);
            if (kind == REDUCE_MAX) cpu_max_f32(x, want, want_index, outer, r, inner);
            if (kind == REDUCE_LOGSUMEXP) cpu_logsumexp_f32(x, want, outer, r, inner);
            static const char *const names[] = {"sum", "max", "logsumexp"};
            FOR_EACH_ORDER(o) {
                poison(dout, (size_t)(m + SLACK) * sizeof(float));
                poison(dindex, (size_t)m * sizeof(int64_t));
                if (workspace) poison(workspace, ws_bytes);
                reduce_f32_launch((ReduceKind)kind, dx, dout, kind == REDUCE_MAX ? dindex : NULL, outer, r, inner,
                                  workspace, workspace ? ws_bytes : 0, NULL);
                check_launch_ok("reduce");
                gpu_copy_to_host(got, dout, (size_t)m * sizeof(float));
                gpu_copy_to_host(got_index, dindex, (size_t)m * sizeof(int64_t));
                check_untouched("reduce", dout, 0, m);
                for (int64_t j = 0; j < m; j++) {
                    if (kind == REDUCE_SUM) {
                        // Different summation orders (CPU: left to right; kernel: per-thread runs, then
                        // trees): each is within (r - 1) u sum|x| of the exact sum.
                        CHECK_NEAR(got[j], want[j], 2.0 * (r + 8) * U_F32 * magnitude[j], "sum [%lld,%lld,%lld] out %lld",
                                   (long long)outer, (long long)r, (long long)inner, (long long)j);
                    } else if (kind == REDUCE_MAX) {
                        // No arithmetic: the same element (first maximum, first NaN), bit for bit.
                        CHECK_SAME_BITS(got[j], want[j], "max [%lld,%lld,%lld] out %lld", (long long)outer, (long long)r,
                                        (long long)inner, (long long)j);
                        CHECK_MSG(got_index[j] == want_index[j], "max index [%lld,%lld,%lld] out %lld: %lld vs %lld (order %s)",
                                  (long long)outer, (long long)r, (long long)inner, (long long)j, (long long)got_index[j],
                                  (long long)want_index[j], order_name);
                    } else {
                        // log of a sum of r terms in (0, 1] (one is 1) in different orders, with online
                        // rescaling: each side's sum is within about (r + 4) u relative, so the logs
                        // differ by at most ~2 (r + 8) u absolute, plus rounding of m + log(s).
                        CHECK_NEAR(got[j], want[j], 2.0 * (r + 8) * U_F32 + 4.0 * U_F32 * fabs(want[j]),
                                   "logsumexp [%lld,%lld,%lld] out %lld", (long long)outer, (long long)r, (long long)inner,
                                   (long long)j);
                    }
                }
                // Deterministic: the same bits in every thread order.
                if (o == 0) memcpy(first, got, (size_t)m * sizeof(float));
                for (int64_t j = 0; j < m; j++)
                    CHECK_SAME_BITS(got[j], first[j], "%s [%lld,%lld,%lld] out %lld differs from the forward order", names[kind],
                                    (long long)outer, (long long)r, (long long)inner, (long long)j);
            }
            gpu_free(workspace);
        }
        gpu_free(dx);
        gpu_free(dout);
        gpu_free(dindex);
        free(x);
        free(want);
        free(got);
        free(first);
        free(want_index);
        free(got_index);
        free(magnitude);
    }
    // Nothing to reduce: sum 0, logsumexp -inf.
    {
        float *dout = device_poisoned(2 * sizeof(float)), got[2];
        reduce_f32_launch(REDUCE_SUM, NULL, dout, NULL, 2, 0, 1, NULL, 0, NULL);
        gpu_copy_to_host(got, dout, sizeof got);
        CHECK(got[0] == 0.0f && got[1] == 0.0f);
        reduce_f32_launch(REDUCE_LOGSUMEXP, NULL, dout, NULL, 2, 0, 1, NULL, 0, NULL);
        gpu_copy_to_host(got, dout, sizeof got);
        CHECK(got[0] == -INFINITY && got[1] == -INFINITY);
        gpu_free(dout);
    }
    note_checked("reduce_{sum,max,logsumexp}_rows_warp");
    note_checked("reduce_{sum,max,logsumexp}_rows_block");
    note_checked("reduce_{sum,max,logsumexp}_cols");
}

// ------------------------------------------------------------------------------------------------
// Softmax and log-softmax.
// ------------------------------------------------------------------------------------------------

typedef struct SoftmaxCase {
    int64_t outer, r, inner;
    int special;  // a fully masked (all -inf) column, a partly masked one, one holding +inf
} SoftmaxCase;

static const SoftmaxCase SOFTMAX_CASES[] = {
    {1, 1, 1, 0},   {6, 5, 1, 1},     {13, 37, 1, 0},  {3, 1024, 1, 1}, {2, 1031, 1, 1},
    {2, 2048, 1, 0}, {1, 5003, 1, 0}, {3, 7, 5, 1},    {2, 33, 40, 0},  {1, 1, 7, 0},
    {5, 3, 2, 1},   {2, 300, 3, 0},   {37, 3, 1, 1},   {100, 16, 1, 1}, {9, 2, 1, 0},
};

static const SoftmaxCase *random_softmax_case(SoftmaxCase *sc) {
    random_reduction_shape(&sc->outer, &sc->r, &sc->inner);
    sc->special = (int)random_below(2);
    return sc;
}

TEST(softmax_and_log_softmax_forward_backward) {
    shown_failures = 0;
    const size_t fixed = sizeof SOFTMAX_CASES / sizeof SOFTMAX_CASES[0];
    for (size_t c = 0; c < fixed + RANDOM_CASES; c++) {
        SoftmaxCase drawn;
        const SoftmaxCase *sc = c < fixed ? &SOFTMAX_CASES[c] : random_softmax_case(&drawn);
        const int64_t outer = sc->outer, r = sc->r, inner = sc->inner, n = outer * r * inner;
        // Scores in [-4, 4], so |x - max| <= 8 wherever a row is not masked.
        float *x = random_floats(n, -4.0, 4.0), *g = random_floats(n, -1.0, 1.0);
        if (sc->special) {
            for (int64_t k = 0; k < r; k++) x[k * inner] = -INFINITY;  // column (0, 0): fully masked -> NaN
            if (outer * inner > 1) {
                for (int64_t k = 0; k < r; k += 2) x[((outer - 1) * r + k) * inner + inner - 1] = -INFINITY;
                x[((outer - 1) * r + r / 2) * inner] = INFINITY;  // column (last, 0): NaN throughout, as the CPU
            }
        }
        float *y_ref = malloc((size_t)n * sizeof(float)), *gx_ref = malloc((size_t)n * sizeof(float));
        float *got = malloc((size_t)n * sizeof(float)), *first = malloc((size_t)n * sizeof(float));
        float *first_backward = malloc((size_t)n * sizeof(float));
        double *dot_scale = malloc((size_t)(outer * inner) * sizeof(double));
        float *dx = device_copy(x, (size_t)n * sizeof(float)), *dg = device_copy(g, (size_t)n * sizeof(float));
        float *dy_in = gpu_alloc((size_t)n * sizeof(float)), *dout = gpu_alloc((size_t)(n + SLACK) * sizeof(float));
        for (int log_form = 0; log_form < 2; log_form++) {
            cpu_softmax_f32(x, y_ref, outer, r, inner, log_form);
            cpu_softmax_backward_f32(y_ref, g, gx_ref, outer, r, inner, log_form);
            gpu_copy_to_device(dy_in, y_ref, (size_t)n * sizeof(float));
            // Per column: sum |g y| (softmax) or sum |g| (log-softmax), the scale of the dot product.
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++) {
                    double s = 0;
                    for (int64_t k = 0; k < r; k++) {
                        const int64_t at = (o * r + k) * inner + i;
                        s += log_form ? fabs(g[at]) : fabs(g[at] * y_ref[at]);
                    }
                    dot_scale[o * inner + i] = s;
                }
            const char *name = log_form ? "log_softmax" : "softmax";
            FOR_EACH_ORDER(o) {
                poison(dout, (size_t)(n + SLACK) * sizeof(float));
                softmax_forward_f32_launch(dx, dout, outer, r, inner, log_form, NULL);
                check_launch_ok("softmax forward");
                gpu_copy_to_host(got, dout, (size_t)n * sizeof(float));
                check_untouched("softmax forward", dout, 0, n);
                for (int64_t at = 0; at < n; at++) {
                    // The normaliser s is a sum of r terms in different orders (and rescaled online):
                    // within ~2 (r + 8) u relative of the CPU's. softmax = exp(x - m) / s: that, plus
                    // exp's error on |x - m| <= 8 (8 u) and a few roundings, relative. log_softmax =
                    // x - m - log s: the same bound absolute, plus u per rounding of |x - m| <= 8.
                    const double tol = log_form ? (2.0 * (r + 8) + 16.0) * U_F32 + 4.0 * U_F32 * fabs(y_ref[at])
                                                : (2.0 * (r + 8) + 16.0) * U_F32 * fabs(y_ref[at]);
                    CHECK_NEAR(got[at], y_ref[at], tol, "%s forward [%lld,%lld,%lld] at %lld", name, (long long)outer,
                               (long long)r, (long long)inner, (long long)at);
                }
                if (o == 0) memcpy(first, got, (size_t)n * sizeof(float));
                for (int64_t at = 0; at < n; at++)
                    CHECK_SAME_BITS(got[at], first[at], "%s forward at %lld differs from the forward order", name, (long long)at);

                poison(dout, (size_t)(n + SLACK) * sizeof(float));
                softmax_backward_f32_launch(dy_in, dg, dout, outer, r, inner, log_form, NULL);
                check_launch_ok("softmax backward");
                gpu_copy_to_host(got, dout, (size_t)n * sizeof(float));
                check_untouched("softmax backward", dout, 0, n);
                for (int64_t o2 = 0; o2 < outer; o2++)
                    for (int64_t k = 0; k < r; k++)
                        for (int64_t i = 0; i < inner; i++) {
                            const int64_t at = (o2 * r + k) * inner + i;
                            // The dot product (r terms, different orders) is within ~2 (r + 8) u
                            // sum|terms| of the CPU's; it is multiplied by y (softmax) or exp(y)
                            // (log-softmax); plus a few roundings of the result.
                            const double factor = log_form ? exp(y_ref[at]) : fabs(y_ref[at]);
                            const double tol = 2.0 * (r + 8) * U_F32 * factor * dot_scale[o2 * inner + i] +
                                               8.0 * U_F32 * (fabs(gx_ref[at]) + fabs(g[at]) + factor * dot_scale[o2 * inner + i]);
                            CHECK_NEAR(got[at], gx_ref[at], tol, "%s backward [%lld,%lld,%lld] at %lld", name,
                                       (long long)outer, (long long)r, (long long)inner, (long long)at);
                        }
                if (o == 0) memcpy(first_backward, got, (size_t)n * sizeof(float));
                for (int64_t at = 0; at < n; at++)
                    CHECK_SAME_BITS(got[at], first_backward[at], "%s backward at %lld differs from the forward order", name,
                                    (long long)at);
            }
        }
        gpu_free(dx);
        gpu_free(dg);
        gpu_free(dy_in);
        gpu_free(dout);
        free(x);
        free(g);
        free(y_ref);
        free(gx_ref);
        free(got);
        free(first);
        free(first_backward);
        free(dot_scale);
    }
    // In place (y == x): the forward reads each element before writing it.
    {
        const int64_t outer = 3, r = 2000;
        float *x = random_floats(outer * r, -4.0, 4.0), *want = malloc((size_t)(outer * r) * sizeof(float));
        float *got = malloc((size_t)(outer * r) * sizeof(float));
        cpu_softmax_f32(x, want, outer, r, 1, 0);
        FOR_EACH_ORDER(o) {
            float *d = device_copy(x, (size_t)(outer * r) * sizeof(float));
            softmax_forward_f32_launch(d, d, outer, r, 1, 0, NULL);
            check_launch_ok("softmax in place");
            gpu_copy_to_host(got, d, (size_t)(outer * r) * sizeof(float));
            for (int64_t at = 0; at < outer * r; at++)  // as above, relative
                CHECK_NEAR(got[at], want[at], (2.0 * (r + 8) + 16.0) * U_F32 * fabs(want[at]), "softmax in place at %lld", (long long)at);
            gpu_free(d);
        }
        free(x);
        free(want);
        free(got);
    }
    note_checked("softmax_forward_{rows_warp,rows_block,cols}[softmax,log_softmax]");
    note_checked("softmax_backward_{rows_warp,rows_block,cols}[softmax,log_softmax]");
}

// ------------------------------------------------------------------------------------------------
// Fused cross-entropy against op_cross_entropy (forward with REDUCTION_NONE and the reduced loss,
// backward through autograd).
// ------------------------------------------------------------------------------------------------

typedef struct CeCase {
    int64_t rows, classes;
    int class_weights, sample_weights;
    double smoothing;
    int64_t ignore_index;
    int ignore_every;  // every k-th row gets ignore_index (0: none); -1: all rows
    int sum;           // REDUCTION_SUM instead of the mean
    double grad;       // upstream gradient; 0 = NULL (1)
    int in_place;      // grad_logits == logits
    int zero_sample_weights;
    const char *what;
} CeCase;

static const CeCase CE_CASES[] = {
    {37, 10, 0, 0, 0.0, -100, 0, 0, 0.0, 0, 0, "plain mean"},
    {37, 10, 1, 0, 0.1, -100, 4, 0, 0.7, 0, 0, "class weights, smoothing, ignored rows, G = 0.7"},
    {29, 1000, 1, 1, 0.2, 3, 3, 0, 1.3, 0, 0, "1000 classes, all options, ignore_index 3"},
    {5, 1500, 1, 0, 0.1, -100, 2, 0, 0.5, 0, 0, "1500 classes (block per row)"},
    {5, 1500, 0, 0, 0.0, -100, 0, 0, 0.0, 1, 0, "1500 classes in place"},
    {37, 10, 0, 0, 0.1, -100, 0, 0, 0.0, 1, 0, "in place, smoothing"},
    {1, 1, 0, 0, 0.0, -100, 0, 0, 0.0, 0, 0, "one row, one class"},
    {23, 7, 0, 1, 0.05, -100, 5, 1, 2.0, 0, 0, "sum, sample weights"},
    {9, 5, 1, 0, 0.0, -100, -1, 0, 0.0, 0, 0, "all rows ignored: NaN"},
    {9, 5, 0, 1, 0.1, -100, 0, 0, 0.0, 0, 1, "zero sample weights: 0"},
    {40, 130, 0, 0, 0.0, INT64_MIN, 0, 0, 0.0, 0, 0, "no ignore_index"},
};

static const CeCase *random_ce_case(CeCase *cc) {
    memset(cc, 0, sizeof *cc);
    cc->rows = 1 + random_below(40);
    cc->classes = 1 + (random_below(2) ? random_below(40) : random_below(1500));
    cc->class_weights = (int)random_below(2);
    cc->sample_weights = (int)random_below(2);
    cc->smoothing = random_below(2) ? 0.0 : 0.15;
    cc->ignore_index = random_below(2) ? -100 : random_below(cc->classes);
    cc->ignore_every = (int)random_below(4);
    cc->sum = (int)random_below(2);
    cc->grad = random_below(2) ? 0.0 : 0.9;
    cc->in_place = (int)random_below(2);
    cc->what = "random case";
    return cc;
}

TEST(cross_entropy_fused) {
    shown_failures = 0;
    const size_t fixed = sizeof CE_CASES / sizeof CE_CASES[0];
    for (size_t c = 0; c < fixed + RANDOM_CASES; c++) {
        CeCase drawn;
        const CeCase *cc = c < fixed ? &CE_CASES[c] : random_ce_case(&drawn);
        const int64_t rows = cc->rows, classes = cc->classes, n = rows * classes;
        float *logits = random_floats(n, -5.0, 5.0);
        int64_t *targets = malloc((size_t)rows * sizeof(int64_t));
        for (int64_t i = 0; i < rows; i++) {
            targets[i] = (int64_t)(next_random() % (uint64_t)classes);
            if (cc->ignore_every == -1 || (cc->ignore_every > 0 && i % cc->ignore_every == 1)) targets[i] = cc->ignore_index;
        }
        float *class_weight = cc->class_weights ? random_floats(classes, 0.2, 2.0) : NULL;
        float *sample_weight = cc->sample_weights ? random_floats(rows, 0.0, 1.5) : NULL;
        if (cc->zero_sample_weights)
            for (int64_t i = 0; i < rows; i++) sample_weight[i] = 0.0f;
        // The CPU op.
        TensorScope scope = tensor_scope_begin();
        Tensor *tlogits = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(rows, classes), logits));
        Tensor *ttargets = tensor_from_data(DTYPE_I64, SHAPE(rows), targets);
        CrossEntropyOptions options = cross_entropy_defaults();
        options.reduction = cc->sum ? REDUCTION_SUM : REDUCTION_MEAN;
        options.label_smoothing = cc->smoothing;
        options.ignore_index = cc->ignore_index;
        options.class_weight = class_weight ? tensor_from_data(DTYPE_F32, SHAPE(classes), class_weight) : NULL;
        options.sample_weight = sample_weight ? tensor_from_data(DTYPE_F32, SHAPE(rows), sample_weight) : NULL;
        Tensor *loss = op_cross_entropy(tlogits, ttargets, options);
        tensor_backward(loss, cc->grad != 0.0 ? tensor_scalar(DTYPE_F32, cc->grad) : NULL);
        const float want_loss = (float)tensor_item(loss);
        float *want_grad = malloc((size_t)n * sizeof(float)), *want_rows = malloc((size_t)rows * sizeof(float));
        memcpy(want_grad, tensor_f32(tlogits->grad), (size_t)n * sizeof(float));
        options.reduction = REDUCTION_NONE;
        Tensor *row_losses = op_cross_entropy(tlogits, ttargets, options);
        memcpy(want_rows, tensor_f32(row_losses), (size_t)rows * sizeof(float));
        tensor_scope_end(scope);

        // Tolerance scales (in double, from the inputs): c_i, s_i, W, lse_i.
        const double eps = cc->smoothing, G = cc->grad != 0.0 ? cc->grad : 1.0;
        double W = 0, class_sum = 0;
        for (int64_t j = 0; j < classes; j++) class_sum += class_weight ? fabs(class_weight[j]) : 1.0;
        double *row_tol = malloc((size_t)rows * sizeof(double)), *grad_row_scale = malloc((size_t)rows * sizeof(double));
        double total_tol = 0, total_abs = 0;
        for (int64_t i = 0; i < rows; i++) {
            const bool ignored = targets[i] == cc->ignore_index;
            double ci = ignored ? 0.0 : (class_weight ? class_weight[targets[i]] : 1.0), si = ignored ? 0.0 : 1.0;
            if (sample_weight) ci *= sample_weight[i], si *= sample_weight[i];
            W += ci;
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < classes; j++) m = fmax(m, logits[i * classes + j]);
            for (int64_t j = 0; j < classes; j++) s += exp(logits[i * classes + j] - m);
            const double lse = m + log(s), nll = ignored ? 0.0 : lse - logits[i * classes + targets[i]];
            double smooth_scale = 0;
            for (int64_t j = 0; j < classes; j++)
                smooth_scale += (class_weight ? fabs(class_weight[j]) : 1.0) * (1.0 + fabs(lse - logits[i * classes + j]));
            // Both sides' normalisers (N terms, different orders) agree to ~2 (N + 8) u relative, which
            // moves every log-probability by that much absolute; the smoothing sums N such terms.
            row_tol[i] = 4.0 * (classes + 8) * U_F32 * (fabs(ci) * (1.0 + nll) + eps / classes * fabs(si) * smooth_scale);
            grad_row_scale[i] = fabs(ci) * (1.0 - eps) + eps / classes * fabs(si) * 2.0 * class_sum;
            total_tol += row_tol[i];
            total_abs += fabs(want_rows[i]);
        }
        // W == 0: the mean is NaN (compared as NaN) or, with sample weights, exactly 0.
        const double divisor = cc->sum || W == 0 ? 1.0 : fabs(W);

        float *dlogits = device_copy(logits, (size_t)n * sizeof(float));
        int64_t *dtargets = device_copy(targets, (size_t)rows * sizeof(int64_t));
        float *dclass = class_weight ? device_copy(class_weight, (size_t)classes * sizeof(float)) : NULL;
        float *dsample = sample_weight ? device_copy(sample_weight, (size_t)rows * sizeof(float)) : NULL;
        const float grad_value = (float)cc->grad;
        float *dgrad_out = cc->grad != 0.0 ? device_copy(&grad_value, sizeof grad_value) : NULL;
        float *dgrad = cc->in_place ? dlogits : gpu_alloc((size_t)(n + SLACK) * sizeof(float));
        float *drows = gpu_alloc((size_t)(rows + SLACK) * sizeof(float)), *dloss = gpu_alloc(sizeof(float));
        void *workspace = gpu_alloc(cross_entropy_workspace_bytes(rows));
        float *got_grad = malloc((size_t)n * sizeof(float)), *got_rows = malloc((size_t)rows * sizeof(float));
        float *first_grad = malloc((size_t)n * sizeof(float)), got_loss = 0, first_loss = 0;
        FOR_EACH_ORDER(o) {
            if (cc->in_place) gpu_copy_to_device(dlogits, logits, (size_t)n * sizeof(float));
            else poison(dgrad, (size_t)(n + SLACK) * sizeof(float));
            poison(drows, (size_t)(rows + SLACK) * sizeof(float));
            poison(dloss, sizeof(float));
            poison(workspace, cross_entropy_workspace_bytes(rows));
            CrossEntropyArgs args;
            memset(&args, 0, sizeof args);
            args.logits = dlogits;
            args.targets = dtargets;
            args.class_weight = dclass;
            args.sample_weight = dsample;
            args.rows = rows;
            args.classes = classes;
            args.ignore_index = cc->ignore_index;
            args.label_smoothing = (float)cc->smoothing;
            args.reduction_sum = cc->sum;
            args.grad_output = dgrad_out;
            args.row_loss = drows;
            args.loss = dloss;
            args.grad_logits = dgrad;
            args.workspace = workspace;
            cross_entropy_f32_launch(args, NULL);
            check_launch_ok("cross_entropy");
            gpu_copy_to_host(got_grad, dgrad, (size_t)n * sizeof(float));
            gpu_copy_to_host(got_rows, drows, (size_t)rows * sizeof(float));
            gpu_copy_to_host(&got_loss, dloss, sizeof(float));
            if (!cc->in_place) check_untouched("cross_entropy gradient", dgrad, 0, n);
            check_untouched("cross_entropy row losses", drows, 0, rows);
            for (int64_t i = 0; i < rows; i++)
                CHECK_NEAR(got_rows[i], want_rows[i], row_tol[i] + 4.0 * U_F32 * fabs(want_rows[i]), "%s: row loss %lld",
                           cc->what, (long long)i);
            // The reduced loss: the row bounds summed, the sum's own rounding (rows terms), / W.
            CHECK_NEAR(got_loss, want_loss, (total_tol + 2.0 * (rows + 8) * U_F32 * total_abs) / divisor + 4.0 * U_F32 * fabs(want_loss),
                       "%s: loss", cc->what);
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < classes; j++) {
                    // Probabilities within ~2 (N + 8) u relative of the CPU's (normalisers), times the
                    // row's gradient scale G / W (c_i (1 - eps) + eps / N s_i (W_c + |w_j|)).
                    const double tol = 4.0 * (classes + 8) * U_F32 * fabs(G) / divisor * grad_row_scale[i] + 1e-30;
                    CHECK_NEAR(got_grad[i * classes + j], want_grad[i * classes + j], tol, "%s: grad [%lld, %lld]", cc->what,
                               (long long)i, (long long)j);
                }
            if (o == 0) {
                memcpy(first_grad, got_grad, (size_t)n * sizeof(float));
                first_loss = got_loss;
            }
            CHECK_SAME_BITS(got_loss, first_loss, "%s: loss differs from the forward order", cc->what);
            for (int64_t at = 0; at < n; at++)
                CHECK_SAME_BITS(got_grad[at], first_grad[at], "%s: grad %lld differs from the forward order", cc->what, (long long)at);

            // Loss only (no row_loss buffer: the row losses go to the workspace), and gradient only.
            if (!cc->in_place) {
                args.row_loss = NULL;
                args.grad_logits = NULL;
                poison(dloss, sizeof(float));
                cross_entropy_f32_launch(args, NULL);
                check_launch_ok("cross_entropy loss only");
                gpu_copy_to_host(&got_loss, dloss, sizeof(float));
                CHECK_SAME_BITS(got_loss, first_loss, "%s: loss-only launch", cc->what);
                args.loss = NULL;
                args.grad_logits = dgrad;
                poison(dgrad, (size_t)(n + SLACK) * sizeof(float));
                cross_entropy_f32_launch(args, NULL);
                check_launch_ok("cross_entropy gradient only");
                gpu_copy_to_host(got_grad, dgrad, (size_t)n * sizeof(float));
                for (int64_t at = 0; at < n; at++)
                    CHECK_SAME_BITS(got_grad[at], first_grad[at], "%s: gradient-only launch, element %lld", cc->what, (long long)at);
            }
        }
        gpu_free(dlogits);
        gpu_free(dtargets);
        gpu_free(dclass);
        gpu_free(dsample);
        gpu_free(dgrad_out);
        if (!cc->in_place) gpu_free(dgrad);
        gpu_free(drows);
        gpu_free(dloss);
        gpu_free(workspace);
        free(logits);
        free(targets);
        free(class_weight);
        free(sample_weight);
        free(want_grad);
        free(want_rows);
        free(row_tol);
        free(grad_row_scale);
        free(got_grad);
        free(got_rows);
        free(first_grad);
    }
    note_checked("ce_weights");
    note_checked("ce_rows_warp");
    note_checked("ce_rows_block");
    note_checked("ce_reduce");
}

// A target outside [0, classes) (and not ignore_index): the CPU op stops with an error; the kernel
// must not read out of bounds and makes that row's loss and gradient (and the mean) NaN.
TEST(cross_entropy_invalid_target_gives_nan) {
    const int64_t rows = 4, classes = 6;
    float *logits = random_floats(rows * classes, -1.0, 1.0);
    int64_t targets[4] = {1, 6, 2, -5};
    float *dlogits = device_copy(logits, sizeof(float) * rows * classes);
    int64_t *dtargets = device_copy(targets, sizeof targets);
    float *dgrad = device_poisoned(sizeof(float) * rows * classes), *drows = device_poisoned(sizeof(float) * rows);
    float *dloss = device_poisoned(sizeof(float));
    void *workspace = gpu_alloc(cross_entropy_workspace_bytes(rows));
    FOR_EACH_ORDER(o) {
        CrossEntropyArgs args;
        memset(&args, 0, sizeof args);
        args.logits = dlogits;
        args.targets = dtargets;
        args.rows = rows;
        args.classes = classes;
        args.ignore_index = -100;
        args.row_loss = drows;
        args.loss = dloss;
        args.grad_logits = dgrad;
        args.workspace = workspace;
        cross_entropy_f32_launch(args, NULL);
        check_launch_ok("cross_entropy invalid target");
        float row_loss[4], grad[24], loss;
        gpu_copy_to_host(row_loss, drows, sizeof row_loss);
        gpu_copy_to_host(grad, dgrad, sizeof grad);
        gpu_copy_to_host(&loss, dloss, sizeof loss);
        CHECK(isfinite(row_loss[0]) && isfinite(row_loss[2]) && isnan(row_loss[1]) && isnan(row_loss[3]));
        CHECK(isnan(loss));
        for (int j = 0; j < 6; j++) CHECK(isnan(grad[6 + j]) && isnan(grad[18 + j]));
    }
    gpu_free(dlogits);
    gpu_free(dtargets);
    gpu_free(dgrad);
    gpu_free(drows);
    gpu_free(dloss);
    gpu_free(workspace);
    free(logits);
}

int main(void) {
    RUN_TEST(unary_ops_forward_and_backward);
    RUN_TEST(unary_kernels_cover_the_cpu_op_list);
    RUN_TEST(binary_broadcast_ops);
    RUN_TEST(fill_float_types);
    RUN_TEST(convert_all_patterns);
    RUN_TEST(copy_strided_all_dtype_pairs);
    RUN_TEST(reductions_sum_max_logsumexp);
    RUN_TEST(softmax_and_log_softmax_forward_backward);
    RUN_TEST(cross_entropy_fused);
    RUN_TEST(cross_entropy_invalid_target_gives_nan);
    printf("report: %d kernel groups checked: ", checked_count);
    for (int i = 0; i < checked_count; i++) printf("%s%s", i ? ", " : "", checked_names[i]);
    printf(" (orders: forward, reverse, random)\n");
    return test_summary();
}
