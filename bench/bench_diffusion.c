// The small diffusion UNet on the CPU: training steps per second (forward + backward + AdamW on the
// epsilon loss, random 32x32 RGB images, random text states [B, 8, 64], uniform timesteps) and
// DDIM sampling images per second (25 steps, classifier-free guidance at 4, so 2B samples per
// model call), on omp_get_max_threads() threads; and the peak resident memory. The UNet is the
// configuration of the built-in generator's size class: block_out_channels (32, 64, 64), one
// layer per block, cross-attention at the two lower levels, 4 heads, GroupNorm 8 groups.
// bench/bench_diffusion_torch.py runs the same in diffusers/PyTorch for the side-by-side ratio.
//
//   make build/bench/bench_diffusion && build/bench/bench_diffusion [--batch-size N] [--seconds S]
// Results: docs/PERFORMANCE.md ("Diffusion UNet").
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/loss.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/sampler.h"
#include "diffusion/unet_model.h"
#include "bench/bench_timing.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/unet.h"

static UnetConfig bench_config(void) {
    UnetConfig c = unet_default_config();
    c.in_channels = c.out_channels = 3;
    c.levels = 3;
    const int64_t widths[3] = {32, 64, 64};
    for (int i = 0; i < 3; i++) {
        c.block_out_channels[i] = widths[i];
        c.heads[i] = 4;
        c.down_cross_attention[i] = i > 0;   // CrossAttnDownBlock2D at 16x16 and 8x8
        c.up_cross_attention[i] = i < 2;     // and on the way up at the same resolutions
    }
    c.layers_per_block = 1;
    c.cross_attention_dim = 64;
    c.norm_groups = 8;
    return c;
}

// The median of steps run until `seconds` have passed (at least 3, after 1 warm-up).
typedef double (*StepFn)(void *context);

static double median_time(StepFn step, void *context, double seconds, int *count) {
    double times[1000], start = now_seconds();
    int n = 0;
    for (int i = 0; n < 1000; i++) {
        double t = step(context);
        if (i >= 1) times[n++] = t;
        if (i >= 1 && n >= 3 && now_seconds() - start > seconds) break;
    }
    qsort(times, (size_t)n, sizeof times[0], compare_doubles);
    *count = n;
    return times[n / 2];
}

typedef struct {
    Unet unet;
    ParamStore *params;
    Optimizer *optimizer;
    NoiseSchedule schedule;
    Tensor *images, *context;
    Rng rng;
    int64_t batch;
} TrainBench;

static double train_step(void *arg) {
    TrainBench *b = arg;
    double t0 = now_seconds();
    TensorScope scope = tensor_scope_begin();
    params_zero_grad(b->params);
    DiffusionTrainingOptions options = {.prediction_type = PREDICTION_EPSILON};
    Tensor *loss = diffusion_training_loss(&b->schedule, unet_diffusion_model, &b->unet, b->images, b->context, options, &b->rng);
    tensor_backward(loss, NULL);
    optimizer_step(b->optimizer, params_values(b->params), params_grads(b->params));
    tensor_scope_end(scope);
    return now_seconds() - t0;
}

typedef struct {
    Unet *unet;
    Sampler sampler;
    GuidedModel model;
    int64_t batch;
    uint64_t seed;
} SampleBench;

static double sample_step(void *arg) {
    SampleBench *b = arg;
    double t0 = now_seconds();
    TensorScope scope = tensor_scope_begin();
    Rng noise = rng_make(b->seed, 0), steps = rng_make(b->seed++, 1);
    sampler_sample(&b->sampler, &b->model, diffusion_randn(&noise, DTYPE_F32, SHAPE(b->batch, 3, 32, 32), device_cpu()), &steps);
    tensor_scope_end(scope);
    return now_seconds() - t0;
}

int main(int argc, char **argv) {
    int64_t batch = 32;
    double seconds = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch-size") && i + 1 < argc) batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_diffusion [--batch-size N] [--seconds S]\n");
            return 2;
        }
    }
    if (batch < 1) return fprintf(stderr, "error: --batch-size must be positive\n"), 2;
    TrainBench train = {.batch = batch, .rng = rng_make(1, 0)};
    Rng init = rng_make(7, 0);
    train.params = params_new();
    unet_create(&train.unet, train.params, "", bench_config(), &init);
    params_finalize(train.params);
    train.optimizer = optimizer_new_adam(train.params->numel, 1e-4, 0.9, 0.999, 1e-8, 1e-2, true);
    train.schedule = noise_schedule_make(beta_schedule_from_name("linear", "bench"), 1000, 1e-4, 0.02, "bench");
    train.images = tensor_keep(diffusion_randn(&init, DTYPE_F32, SHAPE(batch, 3, 32, 32), device_cpu()));
    train.context = tensor_keep(diffusion_randn(&init, DTYPE_F32, SHAPE(batch, 8, 64), device_cpu()));
    int n;
    double t = median_time(train_step, &train, seconds, &n);
    printf("unet-small train   batch %lld  %d threads  %7.1f ms/step  %6.2f steps/s  %7.1f images/s  (%d steps)  peak RSS %.0f MiB  %lld parameters\n",
           (long long)batch, omp_get_max_threads(), 1000 * t, 1 / t, (double)batch / t, n, peak_rss_mib(),
           (long long)train.params->numel);
    fflush(stdout);
    SampleBench sample = {.unet = &train.unet, .batch = 16, .seed = 3};
    SamplerConfig config = sampler_config_defaults(SAMPLER_DDIM);
    sample.sampler = sampler_make(config, 25, "bench");
    Rng ctx = rng_make(9, 0);
    sample.model = guided_model(unet_diffusion_model, &train.unet, diffusion_randn(&ctx, DTYPE_F32, SHAPE(16, 8, 64), device_cpu()));
    sample.model.null_condition = tensor_zeros(DTYPE_F32, SHAPE(1, 8, 64));
    sample.model.guidance_scale = 4.0;
    bool was = autograd_set_enabled(false);
    t = median_time(sample_step, &sample, seconds, &n);
    autograd_set_enabled(was);
    printf("unet-small sample  batch 16  %d threads  %7.1f ms/batch  %7.2f images/s  (DDIM 25 steps, guidance 4; %d batches)  peak RSS %.0f MiB\n",
           omp_get_max_threads(), 1000 * t, 16 / t, n, peak_rss_mib());
    return 0;
}
