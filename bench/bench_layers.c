// Single-layer timings of the ResNet-18 (CIFAR stem) training step on the CPU: each convolution
// shape forward and backward (dx and dw together), and the batch-norm + ReLU stages, at a given
// batch size, on omp_get_max_threads() threads. Meant for A/B decisions on a shared machine: run
// it with OMP_NUM_THREADS=1, old and new binaries back to back. Median of --reps repetitions after
// one warm-up (thread CPU time on 1 thread, wall time otherwise); GFLOP/s counts 2 flops per
// multiply-add.
//
//   make build/bench/bench_layers && OMP_NUM_THREADS=1 build/bench/bench_layers [--batch-size N] [--reps R] [--unfused] [filter]
// `filter` keeps the rows whose name contains it (e.g. "layer1"); --unfused times batch norm and ReLU
// as two ops.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/autograd.h"
#include "engine/cpu/conv.h"
#include "engine/ops.h"
#include "engine/rng.h"

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const char *name;
    int c_in, c_out, size, kernel, stride, pad;
} ConvShape;

static const ConvShape CONVS[] = {
    {"stem 3->64 @32", 3, 64, 32, 3, 1, 1},
    {"layer1 64->64 @32", 64, 64, 32, 3, 1, 1},
    {"layer2.0 64->128 @32 s2", 64, 128, 32, 3, 2, 1},
    {"layer2 128->128 @16", 128, 128, 16, 3, 1, 1},
    {"layer2 down 1x1 s2", 64, 128, 32, 1, 2, 0},
    {"layer3.0 128->256 @16 s2", 128, 256, 16, 3, 2, 1},
    {"layer3 256->256 @8", 256, 256, 8, 3, 1, 1},
    {"layer4.0 256->512 @8 s2", 256, 512, 8, 3, 2, 1},
    {"layer4 512->512 @4", 512, 512, 4, 3, 1, 1},
};

typedef struct {
    const char *name;
    int channels, size;
} NormShape;

static const NormShape NORMS[] = {
    {"bn+relu layer1 64 @32", 64, 32},
    {"bn+relu layer2 128 @16", 128, 16},
    {"bn+relu layer3 256 @8", 256, 8},
    {"bn+relu layer4 512 @4", 512, 4},
};

static float *random_buffer(Rng *rng, int64_t n) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    if (!p) abort();
    rng_fill_normal_f32(rng, p, n, 0, 1);
    return p;
}

// On 1 thread, the thread's CPU time: on the shared machine the wall time of a 1-thread run also
// counts the slices the OS gives other processes (the 2 cores have no SMT, so a descheduled
// thread is simply not running). With more threads, wall time.
static double now_seconds(void) {
    if (omp_get_max_threads() > 1) return omp_get_wtime();
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Median seconds of `reps` calls of fn(arg) after one warm-up call.
static double median_time(void (*fn)(void *), void *arg, int reps) {
    double times[64];
    if (reps > 64) reps = 64;
    fn(arg);
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        fn(arg);
        times[r] = now_seconds() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], compare_doubles);
    return times[reps / 2];
}

typedef struct {
    ConvGeometry g;
    float *x, *w, *y, *dy, *dx, *dw;
} ConvCase;

static void run_conv_forward(void *arg) {
    ConvCase *c = arg;
    cpu_conv2d_forward_f32(&c->g, c->x, c->w, NULL, c->y);
}
static void run_conv_backward(void *arg) {
    ConvCase *c = arg;
    cpu_conv2d_backward_f32(&c->g, c->x, c->w, c->dy, c->dx, c->dw, NULL);
}
static void run_conv_backward_data(void *arg) {
    ConvCase *c = arg;
    cpu_conv2d_backward_f32(&c->g, c->x, c->w, c->dy, c->dx, NULL, NULL);
}
static void run_conv_backward_filter(void *arg) {
    ConvCase *c = arg;
    cpu_conv2d_backward_f32(&c->g, c->x, c->w, c->dy, NULL, c->dw, NULL);
}

typedef struct {
    Tensor *x, *weight, *bias, *running_mean, *running_var;
} NormCase;

static bool unfused;  // --unfused: op_relu(op_batch_norm(...)) instead of op_batch_norm_relu

// Training-mode batch norm + ReLU forward and backward through the ops (what models/resnet.c runs).
static void run_norm_step(void *arg) {
    NormCase *c = arg;
    TensorScope scope = tensor_scope_begin();
    Tensor *y = unfused ? op_relu(op_batch_norm(c->x, c->weight, c->bias, c->running_mean, c->running_var, true, 0.1, 1e-5))
                        : op_batch_norm_relu(c->x, c->weight, c->bias, c->running_mean, c->running_var, true, 0.1, 1e-5);
    tensor_backward(op_sum_all(y), NULL);
    tensor_scope_end(scope);
}

int main(int argc, char **argv) {
    int64_t batch = 16;
    int reps = 5;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch-size") == 0 && i + 1 < argc) batch = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--unfused") == 0) unfused = true;
        else if (argv[i][0] != '-') filter = argv[i];
        else {
            fprintf(stderr, "usage: bench_layers [--batch-size N] [--reps R] [--unfused] [filter]\n");
            return 2;
        }
    }
    if (batch < 1 || reps < 1) {
        fprintf(stderr, "error: --batch-size and --reps must be positive\n");
        return 2;
    }
    Rng rng = rng_make(7, 0);
    printf("batch %lld, %d threads, median of %d\n", (long long)batch, omp_get_max_threads(), reps);
    printf("%-26s %9s %9s %9s %9s %8s %8s\n", "conv", "fwd ms", "bwd ms", "dx ms", "dw ms", "fwd GF/s", "bwd GF/s");
    double total_fwd = 0, total_bwd = 0;
    for (size_t i = 0; i < sizeof CONVS / sizeof CONVS[0]; i++) {
        const ConvShape *s = &CONVS[i];
        if (filter && !strstr(s->name, filter)) continue;
        ConvCase c = {.g = {.batch = batch, .c_in = s->c_in, .h = s->size, .w = s->size, .c_out = s->c_out,
                            .kh = s->kernel, .kw = s->kernel, .stride_h = s->stride, .stride_w = s->stride,
                            .pad_h = s->pad, .pad_w = s->pad, .dilation_h = 1, .dilation_w = 1, .groups = 1}};
        conv_geometry_finish(&c.g);
        int64_t nx = batch * s->c_in * s->size * s->size, nw = (int64_t)s->c_out * s->c_in * s->kernel * s->kernel;
        int64_t ny = batch * s->c_out * c.g.out_h * c.g.out_w;
        c.x = random_buffer(&rng, nx);
        c.w = random_buffer(&rng, nw);
        c.y = random_buffer(&rng, ny);
        c.dy = random_buffer(&rng, ny);
        c.dx = random_buffer(&rng, nx);
        c.dw = random_buffer(&rng, nw);
        double flops = 2.0 * (double)ny * (double)(s->c_in * s->kernel * s->kernel);
        double fwd = median_time(run_conv_forward, &c, reps), bwd = median_time(run_conv_backward, &c, reps);
        double bdx = median_time(run_conv_backward_data, &c, reps), bdw = median_time(run_conv_backward_filter, &c, reps);
        total_fwd += fwd;
        total_bwd += bwd;
        printf("%-26s %9.2f %9.2f %9.2f %9.2f %8.1f %8.1f\n", s->name, 1e3 * fwd, 1e3 * bwd, 1e3 * bdx, 1e3 * bdw,
               flops / fwd * 1e-9, 2 * flops / bwd * 1e-9);
        free(c.x), free(c.w), free(c.y), free(c.dy), free(c.dx), free(c.dw);
    }
    printf("%-26s %9.2f %9.2f\n", "sum of the rows above", 1e3 * total_fwd, 1e3 * total_bwd);
    printf("%-26s %9s\n", "norm", "fwd+bwd ms");
    for (size_t i = 0; i < sizeof NORMS / sizeof NORMS[0]; i++) {
        const NormShape *s = &NORMS[i];
        if (filter && !strstr(s->name, filter)) continue;
        NormCase c = {.x = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(batch, s->channels, s->size, s->size))),
                      .weight = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(s->channels))),
                      .bias = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(s->channels))),
                      .running_mean = tensor_keep(tensor_zeros(DTYPE_F32, SHAPE(s->channels))),
                      .running_var = tensor_keep(tensor_zeros(DTYPE_F32, SHAPE(s->channels)))};
        rng_fill_normal_f32(&rng, tensor_f32(c.x), tensor_numel(c.x), 0, 1);
        rng_fill_normal_f32(&rng, tensor_f32(c.weight), s->channels, 1, 0.1f);
        rng_fill_normal_f32(&rng, tensor_f32(c.bias), s->channels, 0, 0.1f);
        tensor_requires_grad(c.x);
        tensor_requires_grad(c.weight);
        tensor_requires_grad(c.bias);
        printf("%-26s %9.2f\n", s->name, 1e3 * median_time(run_norm_step, &c, reps));
        tensor_release(c.x), tensor_release(c.weight), tensor_release(c.bias);
        tensor_release(c.running_mean), tensor_release(c.running_var);
    }
    return 0;
}
