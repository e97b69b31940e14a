// kbench: kernel microbenchmarks. For each kernel: first validate against the CPU op on the same
// random inputs, then (on a GPU) time it with CUDA events — warm-up, L2 flushed between runs,
// median of N — and print GB/s or TFLOP/s beside the device's roofline. On the emulated device it
// validates and says that its timings mean nothing.
//
//   kbench --list            names every kernel
//   kbench [--runs N] [name ...]   runs all kernels, or the named ones
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/elementwise.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"

typedef enum { MEASURE_BYTES, MEASURE_FLOPS } MeasureKind;

// One benchmark: builds its inputs (host reference + device copies), checks the kernel's output,
// and runs the kernel once per call of `run`.
typedef struct KernelBench KernelBench;
struct KernelBench {
    const char *name;
    const char *description;
    MeasureKind measure;
    // Prepares state, validates; returns the bytes moved or flops done by one run, or -1 if the
    // validation failed (message already printed).
    double (*prepare)(void **state);
    void (*run)(void *state);
};

static Rng bench_rng = {.seed = 2024, .stream = 9, .offset = 0};
static const Device DEVICE = {DEVICE_CUDA, 0};

static Tensor *random_tensor(Shape shape) {
    Tensor *t = tensor_empty_on(DTYPE_F32, shape, device_cpu());
    rng_fill_normal_f32(&bench_rng, tensor_f32(t), tensor_numel(t), 0.0f, 1.0f);
    return t;
}

// Largest |device - host| over the elements, relative to max(1, |host|).
static double max_relative_error(Tensor *device_result, Tensor *host_result) {
    Tensor *back = tensor_to_device_raw(device_result, device_cpu());
    double worst = 0;
    for (int64_t i = 0; i < tensor_numel(host_result); i++) {
        double expected = tensor_f32(host_result)[i], got = tensor_f32(back)[i];
        double error = fabs(got - expected) / fmax(1.0, fabs(expected));
        if (!(error <= worst)) worst = error;  // NaN sticks
    }
    return worst;
}

static bool validated(const char *name, double error, double tolerance) {
    if (error <= tolerance) return true;
    printf("%-24s FAILED validation: max relative error %.3g > %.1g\n", name, error, tolerance);
    return false;
}

// ---------------------------------------------------------------- benchmarks
// Shapes are sized for a GPU (tens of MB); the emulator runs them too, slowly, so the emulated
// build divides them (BENCH_SCALE).
static int64_t scale = 1;

typedef struct {
    Tensor *x, *y, *a, *b, *out;
    int64_t rows, cols;
} BenchState;

static double gelu_prepare(void **state) {
    BenchState *s = calloc(1, sizeof *s);
    int64_t n = (1 << 24) / scale;
    Tensor *x = random_tensor(SHAPE(n));
    s->x = tensor_keep(tensor_to_device_raw(x, DEVICE));
    s->y = tensor_keep(tensor_empty_on(DTYPE_F32, SHAPE(n), DEVICE));
    *state = s;
    unary_forward_f32_launch(UNARY_gelu, tensor_data(s->x), tensor_data(s->y), n, 0, 0, NULL);
    GPU_CHECK_LAUNCH();
    // erff on the device vs libm: a few ulp.
    if (!validated("gelu_forward", max_relative_error(s->y, op_gelu(x)), 1e-5)) return -1;
    return 2.0 * (double)n * sizeof(float);
}
static void gelu_run(void *state) {
    BenchState *s = state;
    unary_forward_f32_launch(UNARY_gelu, tensor_data(s->x), tensor_data(s->y), tensor_numel(s->x), 0, 0, NULL);
}

static double bias_add_prepare(void **state) {
    BenchState *s = calloc(1, sizeof *s);
    s->rows = 8192 / scale;
    s->cols = 1024;
    Tensor *a = random_tensor(SHAPE(s->rows, s->cols)), *b = random_tensor(SHAPE(s->cols));
    s->a = tensor_keep(tensor_to_device_raw(a, DEVICE));
    s->b = tensor_keep(tensor_to_device_raw(b, DEVICE));
    s->out = tensor_keep(op_add(s->a, s->b));
    *state = s;
    if (!validated("add_broadcast", max_relative_error(s->out, op_add(a, b)), 1e-6)) return -1;
    return (2.0 * (double)(s->rows * s->cols) + (double)s->cols) * sizeof(float);
}
static void bias_add_run(void *state) {
    BenchState *s = state;
    KernelBroadcast layout = {.ndim = 2, .shape = {s->rows, s->cols}, .stride_a = {s->cols, 1}, .stride_b = {0, 1}};
    binary_f32_launch(BINARY_ADD, tensor_data(s->a), tensor_data(s->b), tensor_data(s->out), layout, NULL);
}

static double row_sum_prepare(void **state) {
    BenchState *s = calloc(1, sizeof *s);
    s->rows = 16384 / scale;
    s->cols = 1000;
    Tensor *x = random_tensor(SHAPE(s->rows, s->cols));
    s->x = tensor_keep(tensor_to_device_raw(x, DEVICE));
    s->y = tensor_keep(tensor_empty_on(DTYPE_F32, SHAPE(s->rows), DEVICE));
    *state = s;
    reduce_f32_launch(REDUCE_SUM, tensor_data(s->x), tensor_data(s->y), NULL, s->rows, s->cols, 1, NULL, 0, NULL);
    GPU_CHECK_LAUNCH();
    int dim = 1;
    // 1000-term sums in another order: ~sqrt(1000) ulp of the magnitudes summed.
    if (!validated("reduce_sum_rows", max_relative_error(s->y, op_sum(x, &dim, 1, false)), 1e-4)) return -1;
    return (double)(s->rows * s->cols) * sizeof(float);
}
static void row_sum_run(void *state) {
    BenchState *s = state;
    reduce_f32_launch(REDUCE_SUM, tensor_data(s->x), tensor_data(s->y), NULL, s->rows, s->cols, 1, NULL, 0, NULL);
}

static double softmax_prepare(void **state) {
    BenchState *s = calloc(1, sizeof *s);
    s->rows = 16384 / scale;
    s->cols = 1000;
    Tensor *x = random_tensor(SHAPE(s->rows, s->cols));
    s->x = tensor_keep(tensor_to_device_raw(x, DEVICE));
    s->y = tensor_keep(tensor_empty_on(DTYPE_F32, SHAPE(s->rows, s->cols), DEVICE));
    *state = s;
    softmax_forward_f32_launch(tensor_data(s->x), tensor_data(s->y), s->rows, s->cols, 1, 0, NULL);
    GPU_CHECK_LAUNCH();
    if (!validated("softmax_forward", max_relative_error(s->y, op_softmax(x, 1)), 1e-5)) return -1;
    return 2.0 * (double)(s->rows * s->cols) * sizeof(float);
}
static void softmax_run(void *state) {
    BenchState *s = state;
    softmax_forward_f32_launch(tensor_data(s->x), tensor_data(s->y), s->rows, s->cols, 1, 0, NULL);
}

static double sgemm_prepare(void **state) {
    BenchState *s = calloc(1, sizeof *s);
    s->rows = 2048 / (scale > 1 ? 8 : 1);
    Tensor *a = random_tensor(SHAPE(s->rows, s->rows)), *b = random_tensor(SHAPE(s->rows, s->rows));
    s->a = tensor_keep(tensor_to_device_raw(a, DEVICE));
    s->b = tensor_keep(tensor_to_device_raw(b, DEVICE));
    s->out = tensor_keep(op_matmul(s->a, s->b));
    *state = s;
    // K-term dot products in another blocking order.
    if (!validated("sgemm", max_relative_error(s->out, op_matmul(a, b)), 1e-4)) return -1;
    return 2.0 * (double)s->rows * (double)s->rows * (double)s->rows;
}
static void sgemm_run(void *state) {
    BenchState *s = state;
    int64_t n = s->rows;
    gpu_sgemm(gpu_stream_default(), 0, 0, n, n, n, 1.0f, tensor_data(s->a), n, tensor_data(s->b), n, 0.0f, tensor_data(s->out), n);
}

static const KernelBench BENCHES[] = {
    {"gelu_forward", "elementwise unary (erf GELU), 16M floats", MEASURE_BYTES, gelu_prepare, gelu_run},
    {"add_broadcast", "broadcast add of a bias row, 8192x1024", MEASURE_BYTES, bias_add_prepare, bias_add_run},
    {"reduce_sum_rows", "row sums, 16384x1000", MEASURE_BYTES, row_sum_prepare, row_sum_run},
    {"softmax_forward", "fused online softmax, 16384x1000", MEASURE_BYTES, softmax_prepare, softmax_run},
    {"sgemm", "2048^3 GEMM (cuBLAS wrapper on a GPU)", MEASURE_FLOPS, sgemm_prepare, sgemm_run},
};
enum { BENCH_COUNT = sizeof BENCHES / sizeof BENCHES[0] };

// Published peaks (fp32 non-tensor-core TFLOP/s, HBM GB/s) for the rooflines we know.
static bool roofline(const char *device, double *tflops, double *bandwidth) {
    static const struct { const char *match; double tflops, bandwidth; } known[] = {
        {"H100", 67.0, 3350.0}, {"A100-SXM4-80GB", 19.5, 2039.0}, {"A100", 19.5, 1555.0}, {"L4", 30.3, 300.0}, {"A10", 31.2, 600.0},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(device, known[i].match)) {
            *tflops = known[i].tflops;
            *bandwidth = known[i].bandwidth;
            return true;
        }
    return false;
}

static int compare_floats(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int runs = 20;
    const char *selected[64];
    int n_selected = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int b = 0; b < BENCH_COUNT; b++) printf("%-20s %s\n", BENCHES[b].name, BENCHES[b].description);
            return 0;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs > 10000) {
                fprintf(stderr, "error: kbench: --runs expects 1..10000\n");
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "error: kbench: unknown flag '%s' (kbench --list | [--runs N] [kernel ...])\n", argv[i]);
            return 2;
        } else if (n_selected < 64) {
            bool known = false;
            for (int b = 0; b < BENCH_COUNT; b++) known |= strcmp(BENCHES[b].name, argv[i]) == 0;
            if (!known) {
                fprintf(stderr, "error: kbench: no kernel named '%s' (see kbench --list)\n", argv[i]);
                return 2;
            }
            selected[n_selected++] = argv[i];
        }
    }
    if (gpu_device_count() == 0) {
        fprintf(stderr, "error: kbench: no CUDA device (backend %s)\n", gpu_backend_name());
        return 1;
    }
    bool emulated = strcmp(gpu_backend_name(), "emulated") == 0;
    if (emulated) scale = 64;
    double peak_tflops = 0, peak_bandwidth = 0;
    bool have_roofline = roofline(gpu_device_name(), &peak_tflops, &peak_bandwidth);
    printf("device: %s (%s)\n", gpu_device_name(), gpu_backend_name());
    if (emulated)
        printf("emulated device: kernels are validated against the CPU ops; the timings below measure the emulator, not a GPU,\n"
               "and mean nothing for performance (shapes divided by %lld)\n", (long long)scale);
    // An L2-sized buffer rewritten between runs so each run starts with a cold cache (50 MB > any L2 today).
    size_t flush_bytes = emulated ? 0 : (size_t)64 << 20;
    void *flush = flush_bytes ? gpu_alloc(flush_bytes) : NULL;
    int failures = 0;
    GpuEvent *start = gpu_event_create(), *stop = gpu_event_create();
    for (int b = 0; b < BENCH_COUNT; b++) {
        const KernelBench *bench = &BENCHES[b];
        bool wanted = n_selected == 0;
        for (int i = 0; i < n_selected; i++) wanted |= strcmp(selected[i], bench->name) == 0;
        if (!wanted) continue;
        TensorScope scope = tensor_scope_begin();
        void *state = NULL;
        double work = bench->prepare(&state);
        if (work < 0) {
            failures++;
            tensor_scope_end(scope);
            free(state);
            continue;
        }
        int repetitions = emulated ? 1 : runs;
        float *times = malloc((size_t)repetitions * sizeof(float));
        for (int warm = 0; warm < (emulated ? 0 : 3); warm++) bench->run(state);
        for (int r = 0; r < repetitions; r++) {
            if (flush) gpu_memset_async(flush, r & 0xff, flush_bytes, gpu_stream_default());
            gpu_event_record(start, gpu_stream_default());
            bench->run(state);
            gpu_event_record(stop, gpu_stream_default());
            gpu_event_synchronize(stop);
            times[r] = gpu_event_elapsed_ms(start, stop);
        }
        GPU_CHECK_LAUNCH();
        qsort(times, (size_t)repetitions, sizeof(float), compare_floats);
        double ms = times[repetitions / 2];
        double rate = ms > 0 ? work / (ms * 1e-3) : 0;
        if (bench->measure == MEASURE_BYTES)
            printf("%-20s ok   median %9.3f ms  %9.1f GB/s", bench->name, ms, rate / 1e9);
        else
            printf("%-20s ok   median %9.3f ms  %9.2f TFLOP/s", bench->name, ms, rate / 1e12);
        if (have_roofline && !emulated) {
            double fraction = bench->measure == MEASURE_BYTES ? rate / 1e9 / peak_bandwidth : rate / 1e12 / peak_tflops;
            printf("  (%.0f%% of %s roofline)", 100 * fraction, bench->measure == MEASURE_BYTES ? "bandwidth" : "fp32");
        }
        printf("\n");
        free(times);
        BenchState *s = state;
        tensor_release(s->x);
        tensor_release(s->y);
        tensor_release(s->a);
        tensor_release(s->b);
        tensor_release(s->out);
        free(state);
        tensor_scope_end(scope);
    }
    gpu_event_destroy(start);
    gpu_event_destroy(stop);
    if (flush) gpu_free(flush);
    printf("%d kernel(s) failed validation\n", failures);
    return failures ? 1 : 0;
}
