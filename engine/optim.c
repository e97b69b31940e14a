// SGD, Adam, AdamW over flat buffers, following PyTorch 1.13's _single_tensor_sgd / _single_tensor_adam
// / _single_tensor_adamw line by line (comments quote the PyTorch statement each loop implements).
// Scalars are computed in f64 and rounded to f32 where ATen casts a Python scalar to the tensor dtype.
#include "engine/optim.h"

#include "engine/gpu/gpu.h"
#include "kernels/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// Element loops shorter than this run on the calling thread.
#define OPTIM_PARALLEL_MIN 65536

static Optimizer *optimizer_alloc(OptimizerKind kind, int64_t n_params, double lr,
                                  double weight_decay) {
    if (n_params < 0 || !(lr >= 0.0) || !(weight_decay >= 0.0)) return NULL;
    Optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return NULL;
    opt->kind = kind;
    opt->lr = lr;
    opt->weight_decay = weight_decay;
    opt->n_params = n_params;
    return opt;
}

static float *state_alloc(int64_t n) { return calloc(n > 0 ? (size_t)n : 1, sizeof(float)); }

Optimizer *optimizer_new_sgd(int64_t n_params, double lr, double momentum, double dampening,
                             int nesterov, double weight_decay) {
    if (!(momentum >= 0.0)) return NULL;
    if (nesterov && (momentum <= 0.0 || dampening != 0.0)) return NULL;
    Optimizer *opt = optimizer_alloc(OPTIM_SGD, n_params, lr, weight_decay);
    if (!opt) return NULL;
    opt->momentum = momentum;
    opt->dampening = dampening;
    opt->nesterov = nesterov != 0;
    if (momentum != 0.0) {
        opt->state1 = state_alloc(n_params);
        if (!opt->state1) {
            optimizer_free(opt);
            return NULL;
        }
    }
    return opt;
}

Optimizer *optimizer_new_adam(int64_t n_params, double lr, double beta1, double beta2, double eps,
                              double weight_decay, int decoupled) {
    if (!(eps >= 0.0) || !(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0))
        return NULL;
    Optimizer *opt =
        optimizer_alloc(decoupled ? OPTIM_ADAMW : OPTIM_ADAM, n_params, lr, weight_decay);
    if (!opt) return NULL;
    opt->beta1 = beta1;
    opt->beta2 = beta2;
    opt->eps = eps;
    opt->state1 = state_alloc(n_params);
    opt->state2 = state_alloc(n_params);
    if (!opt->state1 || !opt->state2) {
        optimizer_free(opt);
        return NULL;
    }
    return opt;
}

int optimizer_add_group(Optimizer *opt, int64_t start, int64_t count, double lr_multiplier,
                        double weight_decay) {
    if (!opt || start < 0 || count < 0 || count > opt->n_params - start) return -1;
    if (!(lr_multiplier >= 0.0) || !(weight_decay >= 0.0)) return -1;
    int at = 0;  // insertion point that keeps groups sorted by start
    for (int g = 0; g < opt->n_groups; g++) {
        const ParamGroup *other = &opt->groups[g];
        if (count > 0 && other->count > 0 && start < other->start + other->count &&
            other->start < start + count)
            return -1;
        if (other->start < start || (other->start == start && other->count <= count)) at = g + 1;
    }
    ParamGroup *groups = realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *groups);
    if (!groups) return -1;
    memmove(groups + at + 1, groups + at, (size_t)(opt->n_groups - at) * sizeof *groups);
    groups[at] = (ParamGroup){start, count, lr_multiplier, weight_decay};
    opt->groups = groups;
    opt->n_groups++;
    return 0;
}

void optimizer_free(Optimizer *opt) {
    if (!opt) return;
    if (opt->on_device) {
        if (opt->state1) gpu_free(opt->state1);
        if (opt->state2) gpu_free(opt->state2);
    } else {
        free(opt->state1);
        free(opt->state2);
    }
    free(opt->groups);
    free(opt);
}

void optimizer_move_to_device(Optimizer *opt) {
    if (opt->on_device) return;
    size_t bytes = (size_t)opt->n_params * sizeof(float);
    float **buffers[2] = {&opt->state1, &opt->state2};
    for (int b = 0; b < 2; b++) {
        if (!*buffers[b]) continue;
        float *device = gpu_alloc(bytes ? bytes : 1);
        gpu_copy_to_device(device, *buffers[b], bytes);
        free(*buffers[b]);
        *buffers[b] = device;
    }
    opt->on_device = 1;
}

void optimizer_state_to_host(const Optimizer *opt, int which, float *host) {
    const float *state = which == 1 ? opt->state1 : opt->state2;
    size_t bytes = (size_t)opt->n_params * sizeof(float);
    if (opt->on_device) gpu_copy_to_host(host, state, bytes);
    else memcpy(host, state, bytes);
}

void optimizer_state_from_host(Optimizer *opt, int which, const float *host) {
    float *state = which == 1 ? opt->state1 : opt->state2;
    size_t bytes = (size_t)opt->n_params * sizeof(float);
    if (opt->on_device) gpu_copy_to_device(state, host, bytes);
    else memcpy(state, host, bytes);
}

// One contiguous range with one learning rate and weight decay.
typedef struct {
    int64_t start, count;
    double lr, weight_decay;
} Segment;

// Work is split into fixed chunks over OpenMP threads; inside a chunk, an always-inlined loop is
// called with compile-time flags, so each variant is a branch-free loop the compiler vectorizes
// (OpenMP outlines the parallel region before inlining, so the flags must not cross it).
#define OPTIM_CHUNK 16384
#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef struct {
    float weight_decay, momentum, one_minus_dampening, neg_lr;
} SgdScalars;

// for i, param in enumerate(params): ... (torch/optim/sgd.py, _single_tensor_sgd). mode: 0 = no
// momentum, 1 = first step (buf = clone(d_p)), 2 = later steps.
ALWAYS_INLINE void sgd_range(float *restrict p, const float *restrict g, float *restrict buf,
                             int64_t n, SgdScalars k, const int has_decay, const int mode,
                             const int nesterov) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float param = p[i], d_p = g[i];
        if (has_decay) d_p = d_p + k.weight_decay * param;  // d_p = d_p.add(param, alpha=weight_decay)
        if (mode != 0) {
            // buf = torch.clone(d_p).detach()  /  buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            float b = mode == 1 ? d_p : buf[i] * k.momentum + k.one_minus_dampening * d_p;
            buf[i] = b;
            d_p = nesterov ? d_p + k.momentum * b : b;  // d_p = d_p.add(buf, alpha=momentum) / d_p = buf
        }
        p[i] = param + k.neg_lr * d_p;  // param.add_(d_p, alpha=-lr)
    }
}

static void sgd_chunk(float *p, const float *g, float *buf, int64_t n, SgdScalars k, int has_decay,
                      int mode, int nesterov) {
#define SGD(D, M, NE) sgd_range(p, g, buf, n, k, D, M, NE)
    if (mode == 0) {
        if (has_decay) SGD(1, 0, 0);
        else SGD(0, 0, 0);
    } else if (mode == 1) {
        if (has_decay) nesterov ? SGD(1, 1, 1) : SGD(1, 1, 0);
        else nesterov ? SGD(0, 1, 1) : SGD(0, 1, 0);
    } else {
        if (has_decay) nesterov ? SGD(1, 2, 1) : SGD(1, 2, 0);
        else nesterov ? SGD(0, 2, 1) : SGD(0, 2, 0);
    }
#undef SGD
}

static void sgd_segment(const Optimizer *opt, Segment s, float *params, const float *grads) {
    SgdScalars k = {(float)s.weight_decay, (float)opt->momentum, (float)(1.0 - opt->dampening),
                    (float)(-s.lr)};
    const int has_decay = s.weight_decay != 0.0;
    const int mode = opt->state1 ? (opt->step == 1 ? 1 : 2) : 0;
    const int64_t n_chunks = (s.count + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t begin = s.start + c * OPTIM_CHUNK;
        int64_t n = s.count - c * OPTIM_CHUNK < OPTIM_CHUNK ? s.count - c * OPTIM_CHUNK : OPTIM_CHUNK;
        sgd_chunk(params + begin, grads + begin, opt->state1 ? opt->state1 + begin : NULL, n, k,
                  has_decay, mode, opt->nesterov);
    }
}

typedef struct {
    float weight_decay, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2;
    float bias_correction2_sqrt, eps, neg_step_size;
} AdamScalars;

// torch/optim/adam.py _single_tensor_adam and adamw.py _single_tensor_adamw (capturable=False,
// amsgrad=False, maximize=False), element i. The SSE2 path below does the same operations.
ALWAYS_INLINE void adam_element(float *restrict p, const float *restrict g, float *restrict exp_avg,
                                float *restrict exp_avg_sq, int64_t i, AdamScalars k,
                                const int decoupled, const int has_decay) {
    float grad = g[i], param = p[i];
    if (decoupled) param = param * k.decay_factor;  // param.mul_(1 - lr * weight_decay)
    else if (has_decay) grad = grad + k.weight_decay * param;  // grad = grad.add(param, alpha=weight_decay)
    // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    float m = exp_avg[i] * k.beta1 + k.one_minus_beta1 * grad;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)   (ATen: self + value * t1 * t2)
    float v = exp_avg_sq[i] * k.beta2 + k.one_minus_beta2 * grad * grad;
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    float denom = sqrtf(v) / k.bias_correction2_sqrt + k.eps;
    // param.addcdiv_(exp_avg, denom, value=-step_size)   (ATen: self + value * t1 / t2)
    p[i] = param + k.neg_step_size * m / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
}

ALWAYS_INLINE void adam_range(float *restrict p, const float *restrict g, float *restrict exp_avg,
                              float *restrict exp_avg_sq, int64_t n, AdamScalars k,
                              const int decoupled, const int has_decay) {
    int64_t i = 0;
#if defined(__SSE2__)
    // sqrtf may set errno, which keeps compilers from vectorizing the scalar loop under the
    // project's flags, so this loop is written with SSE2 intrinsics: the same IEEE f32 operations in
    // the same order (no FMA), hence bit-identical to adam_element.
    const __m128 weight_decay = _mm_set1_ps(k.weight_decay), decay_factor = _mm_set1_ps(k.decay_factor);
    const __m128 beta1 = _mm_set1_ps(k.beta1), one_minus_beta1 = _mm_set1_ps(k.one_minus_beta1);
    const __m128 beta2 = _mm_set1_ps(k.beta2), one_minus_beta2 = _mm_set1_ps(k.one_minus_beta2);
    const __m128 bias_correction2_sqrt = _mm_set1_ps(k.bias_correction2_sqrt);
    const __m128 eps = _mm_set1_ps(k.eps), neg_step_size = _mm_set1_ps(k.neg_step_size);
    for (; i + 4 <= n; i += 4) {
        __m128 grad = _mm_loadu_ps(g + i), param = _mm_loadu_ps(p + i);
        if (decoupled) param = _mm_mul_ps(param, decay_factor);
        else if (has_decay) grad = _mm_add_ps(grad, _mm_mul_ps(weight_decay, param));
        __m128 m = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(exp_avg + i), beta1),
                              _mm_mul_ps(one_minus_beta1, grad));
        __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(exp_avg_sq + i), beta2),
                              _mm_mul_ps(_mm_mul_ps(one_minus_beta2, grad), grad));
        __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(v), bias_correction2_sqrt), eps);
        _mm_storeu_ps(p + i, _mm_add_ps(param, _mm_div_ps(_mm_mul_ps(neg_step_size, m), denom)));
        _mm_storeu_ps(exp_avg + i, m);
        _mm_storeu_ps(exp_avg_sq + i, v);
    }
#endif
    for (; i < n; i++) adam_element(p, g, exp_avg, exp_avg_sq, i, k, decoupled, has_decay);
}

static void adam_segment(const Optimizer *opt, Segment s, float *params, const float *grads) {
    const double step = (double)opt->step;
    const double bias_correction1 = 1.0 - pow(opt->beta1, step);  // 1 - beta1 ** step
    const double bias_correction2 = 1.0 - pow(opt->beta2, step);
    AdamScalars k = {
        .weight_decay = (float)s.weight_decay,
        .decay_factor = (float)(1.0 - s.lr * s.weight_decay),
        .beta1 = (float)opt->beta1,
        .one_minus_beta1 = (float)(1.0 - opt->beta1),
        .beta2 = (float)opt->beta2,
        .one_minus_beta2 = (float)(1.0 - opt->beta2),
        .bias_correction2_sqrt = (float)sqrt(bias_correction2),
        .eps = (float)opt->eps,
        .neg_step_size = (float)(-(s.lr / bias_correction1)),  // step_size = lr / bias_correction1
    };
    const int decoupled = opt->kind == OPTIM_ADAMW;
    const int has_decay = s.weight_decay != 0.0;
    const int64_t n_chunks = (s.count + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t begin = s.start + c * OPTIM_CHUNK;
        int64_t n = s.count - c * OPTIM_CHUNK < OPTIM_CHUNK ? s.count - c * OPTIM_CHUNK : OPTIM_CHUNK;
        float *p = params + begin, *m = opt->state1 + begin, *v = opt->state2 + begin;
        const float *g = grads + begin;
        if (decoupled) adam_range(p, g, m, v, n, k, 1, 0);  // AdamW: decay already in decay_factor
        else if (has_decay) adam_range(p, g, m, v, n, k, 0, 1);
        else adam_range(p, g, m, v, n, k, 0, 0);
    }
}

// One segment on the device: the same coefficients, computed on the host as above, and the
// kernels' element updates (kernels/optim.h).
static void step_segment_device(const Optimizer *opt, Segment s, float *params, const float *grads) {
    struct CUstream_st *stream = gpu_stream_handle(gpu_stream_default());
    if (opt->kind == OPTIM_SGD) {
        SgdUpdateScalars scalars = sgd_update_scalars(s.lr, s.weight_decay, opt->momentum, opt->dampening, opt->nesterov, opt->step);
        sgd_update_launch(params, grads, opt->state1, s.start, s.count, scalars, stream);
    } else {
        AdamUpdateScalars scalars = adam_update_scalars(s.lr, s.weight_decay, opt->beta1, opt->beta2, opt->eps,
                                                        opt->kind == OPTIM_ADAMW, opt->step);
        adam_update_launch(params, grads, opt->state1, opt->state2, s.start, s.count, scalars, stream);
    }
    GPU_CHECK_LAUNCH();
}

static void step_segment(const Optimizer *opt, Segment s, float *params, const float *grads) {
    if (s.count <= 0) return;
    if (opt->on_device) {
        step_segment_device(opt, s, params, grads);
        return;
    }
    if (opt->kind == OPTIM_SGD) sgd_segment(opt, s, params, grads);
    else adam_segment(opt, s, params, grads);
}

void optimizer_step(Optimizer *opt, float *params, const float *grads) {
    opt->step++;  // step_t += 1 (SGD keeps no step in PyTorch; here step == 1 marks the first step)
    int64_t position = 0;
    for (int g = 0; g < opt->n_groups; g++) {
        const ParamGroup *group = &opt->groups[g];
        if (group->start > position) {
            Segment gap = {position, group->start - position, opt->lr, opt->weight_decay};
            step_segment(opt, gap, params, grads);
        }
        Segment s = {group->start, group->count, opt->lr * group->lr_multiplier, group->weight_decay};
        step_segment(opt, s, params, grads);
        if (group->start + group->count > position) position = group->start + group->count;
    }
    if (position < opt->n_params) {
        Segment tail = {position, opt->n_params - position, opt->lr, opt->weight_decay};
        step_segment(opt, tail, params, grads);
    }
}

void ema_update(float *ema, const float *params, int64_t n, double decay) {
    // ema_v.copy_(ema_v * decay + (1. - decay) * model_v)
    const float keep = (float)decay, take = (float)(1.0 - decay);
#pragma omp parallel for simd schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) ema[i] = keep * ema[i] + take * params[i];
}

// Sum of squares in f64 over fixed chunks, added in chunk order: the same bits for any thread count.
#define CLIP_CHUNK 16384

static double chunk_sum_of_squares(const float *grads, int64_t n, int64_t chunk) {
    int64_t begin = chunk * CLIP_CHUNK, end = begin + CLIP_CHUNK < n ? begin + CLIP_CHUNK : n;
    double s = 0.0;
    for (int64_t i = begin; i < end; i++) s += (double)grads[i] * grads[i];
    return s;
}

double clip_grad_norm(float *grads, int64_t n, double max_norm) {
    if (n <= 0) return 0.0;
    const int64_t n_chunks = (n + CLIP_CHUNK - 1) / CLIP_CHUNK;
    double stack_partial[64];
    double *partial = n_chunks <= 64 ? stack_partial : malloc((size_t)n_chunks * sizeof *partial);
    double sum = 0.0;
    if (partial) {
#pragma omp parallel for schedule(static) if (n >= OPTIM_PARALLEL_MIN)
        for (int64_t c = 0; c < n_chunks; c++) partial[c] = chunk_sum_of_squares(grads, n, c);
        for (int64_t c = 0; c < n_chunks; c++) sum += partial[c];
        if (partial != stack_partial) free(partial);
    } else {  // out of memory: the same sums, one thread
        for (int64_t c = 0; c < n_chunks; c++) sum += chunk_sum_of_squares(grads, n, c);
    }
    const double norm = sqrt(sum);
    if (!isfinite(norm)) return norm;
    // clip_coef = max_norm / (total_norm + 1e-6), total_norm an f32 tensor; Tensor.__rtruediv__ is
    // reciprocal() * other. clip_coef_clamped = clamp(clip_coef, max=1.0); grads.mul_(clamped).
    const float coef = (1.0f / ((float)norm + 1e-6f)) * (float)max_norm;
    if (coef < 1.0f) {
#pragma omp parallel for simd schedule(static) if (n >= OPTIM_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++) grads[i] *= coef;
    }
    return norm;
}
