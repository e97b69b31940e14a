// Training-step throughput of the classifiers: forward + backward + SGD step (momentum 0.9,
// weight decay 5e-4) on random 32x32 inputs, in images per second, for ResNet-18 with the CIFAR
// stem and ViT-tiny with patch size 4 (batch 128, 10 classes), on omp_get_max_threads() threads;
// and the peak resident memory of the process after each model. Each model runs 2 warm-up steps,
// then steps until 10 s have passed (at least 3), and reports the median step time.
// bench/bench_train_torch.py runs the same steps in PyTorch for the side-by-side ratio.
//
//   make build/bench/bench_train && build/bench/bench_train [--batch-size N] [--seconds S] [model ...]
// Models: resnet18-cifar, vit-tiny (default both), or any classifier name (ViTs get patch 4).
// Results: docs/PERFORMANCE.md ("Training throughput").
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/classifier.h"

static void bench_model(const char *name, int64_t batch_size, double seconds) {
    char error[512];
    ClassifierOptions options = classifier_default_options(10);
    options.image_size = 32;
    options.patch_size = 4;
    Classifier *model = classifier_create(name, &options, error, sizeof error);
    if (!model) {
        fprintf(stderr, "error: %s\n", error);
        exit(1);
    }
    ParamStore *params = model->params;
    Optimizer *optimizer = optimizer_new_sgd(params->numel, 0.01, 0.9, 0, 0, 5e-4);
    classifier_add_optimizer_groups(model, optimizer, 1.0, 1.0, 5e-4);
    Tensor *x = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(batch_size, 3, 32, 32)));
    Tensor *y = tensor_keep(tensor_empty(DTYPE_I64, SHAPE(batch_size)));
    Rng rng = rng_make(1, 0);
    rng_fill_normal_f32(&rng, tensor_f32(x), batch_size * 3 * 32 * 32, 0, 1);
    for (int64_t i = 0; i < batch_size; i++) tensor_i64(y)[i] = i % 10;
    double times[1000];
    int n = 0;
    double start = now_seconds();
    for (int step = 0; n < 1000; step++) {
        double t0 = now_seconds();
        TensorScope scope = tensor_scope_begin();
        params_zero_grad(params);
        Tensor *loss = op_cross_entropy(classifier_forward(model, x, true), y, cross_entropy_defaults());
        tensor_backward(loss, NULL);
        optimizer_step(optimizer, params_values(params), params_grads(params));
        tensor_scope_end(scope);
        double t1 = now_seconds();
        if (step >= 2) times[n++] = t1 - t0;
        if (step >= 2 && n >= 3 && t1 - start > seconds) break;
    }
    qsort(times, (size_t)n, sizeof times[0], compare_doubles);
    double median = times[n / 2];
    printf("%-16s batch %lld  %2d threads  %6.1f ms/step  %7.1f images/s  (%d steps)  peak RSS %.0f MiB  %lld parameters\n",
           name, (long long)batch_size, omp_get_max_threads(), 1000 * median, (double)batch_size / median, n,
           peak_rss_mib(), (long long)params_count_elements(params));
    tensor_release(x);
    tensor_release(y);
    optimizer_free(optimizer);
    classifier_free(model);
}

int main(int argc, char **argv) {
    int64_t batch_size = 128;
    double seconds = 10;
    const char *models[16];
    int n_models = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch-size") == 0 && i + 1 < argc) batch_size = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (argv[i][0] != '-' && n_models < 16) models[n_models++] = argv[i];
        else {
            fprintf(stderr, "usage: bench_train [--batch-size N] [--seconds S] [model ...]\n");
            return 2;
        }
    }
    if (batch_size <= 0) {
        fprintf(stderr, "error: --batch-size must be positive\n");
        return 2;
    }
    if (n_models == 0) {
        models[n_models++] = "resnet18-cifar";
        models[n_models++] = "vit-tiny";
    }
    for (int i = 0; i < n_models; i++) bench_model(models[i], batch_size, seconds);
    return 0;
}
