// Optimizer updates (SGD, Adam/AdamW, EMA) and gradient clipping over flat f32 buffers (launchers in
// kernels/optim.h). Each update is one elementwise pass, memory-bound: consecutive threads take
// consecutive elements (coalesced), a grid-stride loop covers any size with a bounded grid.
//
// Bitwise agreement with engine/optim.c: every f32 operation is written as an explicit
// round-to-nearest intrinsic in the CPU's order (its comments quote the PyTorch statement each line
// implements). A plain `a * b + c` would let nvcc fuse it into one FMA (rounded once instead of
// twice) and change the last bit; __fmul_rn / __fadd_rn are never fused, __fdiv_rn and __fsqrt_rn
// are the IEEE operations (what plain / and sqrtf give without --use_fast_math, spelled out so a
// fast-math build cannot change them). Under the emulator they are the C operations themselves.
#include "kernels/cuda_compat.h"
#include "kernels/optim.h"

#include <math.h>

#define OPTIM_THREADS 256
#define OPTIM_MAX_BLOCKS 4096      // grid-stride beyond 4096 * 256 elements per pass
#define NORM_CHUNK 16384           // elements per block of the sum of squares (optim.c's CLIP_CHUNK)
#define NORM_THREADS 256
#define FULL_MASK 0xffffffffu

static unsigned int elementwise_blocks(int64_t n) {
    int64_t blocks = (n + OPTIM_THREADS - 1) / OPTIM_THREADS;
    return (unsigned int)(blocks > OPTIM_MAX_BLOCKS ? OPTIM_MAX_BLOCKS : blocks < 1 ? 1 : blocks);
}

// ------------------------------------------------------------------------------------------------
// Host-side coefficients: f64 as Python computes them, rounded to f32 where ATen casts a Python
// scalar to the tensor dtype (engine/optim.c, sgd_segment and adam_segment).
// ------------------------------------------------------------------------------------------------

CU_EXTERN_C SgdUpdateScalars sgd_update_scalars(double lr, double weight_decay, double momentum, double dampening,
                                                int nesterov, int64_t step) {
    SgdUpdateScalars k;
    k.weight_decay = (float)weight_decay;
    k.momentum = (float)momentum;
    k.one_minus_dampening = (float)(1.0 - dampening);
    k.neg_lr = (float)(-lr);
    k.has_weight_decay = weight_decay != 0.0;
    k.mode = momentum != 0.0 ? (step == 1 ? 1 : 2) : 0;
    k.nesterov = nesterov != 0;
    return k;
}

CU_EXTERN_C AdamUpdateScalars adam_update_scalars(double lr, double weight_decay, double beta1, double beta2, double eps,
                                                  int decoupled, int64_t step) {
    const double bias_correction1 = 1.0 - pow(beta1, (double)step);  // 1 - beta1 ** step
    const double bias_correction2 = 1.0 - pow(beta2, (double)step);
    AdamUpdateScalars k;
    k.weight_decay = (float)weight_decay;
    k.decay_factor = (float)(1.0 - lr * weight_decay);
    k.beta1 = (float)beta1;
    k.one_minus_beta1 = (float)(1.0 - beta1);
    k.beta2 = (float)beta2;
    k.one_minus_beta2 = (float)(1.0 - beta2);
    k.bias_correction2_sqrt = (float)sqrt(bias_correction2);
    k.eps = (float)eps;
    k.neg_step_size = (float)(-(lr / bias_correction1));  // step_size = lr / bias_correction1
    k.decoupled = decoupled != 0;
    k.has_weight_decay = weight_decay != 0.0;
    return k;
}

// ------------------------------------------------------------------------------------------------
// Updates.
// ------------------------------------------------------------------------------------------------

// torch/optim/sgd.py _single_tensor_sgd, element i of [start, start + count).
__global__ void sgd_update_kernel(float *__restrict__ params, const float *__restrict__ grads,
                                  float *__restrict__ momentum_buffer, int64_t start, int64_t count,
                                  SgdUpdateScalars k) {
    for (int64_t i = start + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < start + count;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float param = params[i];
        float d_p = grads[i];
        if (k.has_weight_decay) d_p = __fadd_rn(d_p, __fmul_rn(k.weight_decay, param));  // d_p.add(param, alpha=wd)
        if (k.mode != 0) {
            // buf = torch.clone(d_p).detach()  /  buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            const float b = k.mode == 1 ? d_p
                                        : __fadd_rn(__fmul_rn(momentum_buffer[i], k.momentum),
                                                    __fmul_rn(k.one_minus_dampening, d_p));
            momentum_buffer[i] = b;
            d_p = k.nesterov ? __fadd_rn(d_p, __fmul_rn(k.momentum, b)) : b;  // d_p.add(buf, alpha=momentum) / buf
        }
        params[i] = __fadd_rn(param, __fmul_rn(k.neg_lr, d_p));  // param.add_(d_p, alpha=-lr)
    }
}
CU_KERNEL_ARGS(sgd_update_kernel, float *, const float *, float *, int64_t, int64_t, SgdUpdateScalars);

// torch/optim/adam.py _single_tensor_adam / adamw.py _single_tensor_adamw (amsgrad=False), element i.
__global__ void adam_update_kernel(float *__restrict__ params, const float *__restrict__ grads,
                                   float *__restrict__ exp_avg, float *__restrict__ exp_avg_sq, int64_t start,
                                   int64_t count, AdamUpdateScalars k) {
    for (int64_t i = start + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < start + count;
         i += (int64_t)gridDim.x * blockDim.x) {
        float grad = grads[i], param = params[i];
        if (k.decoupled)
            param = __fmul_rn(param, k.decay_factor);  // param.mul_(1 - lr * weight_decay)
        else if (k.has_weight_decay)
            grad = __fadd_rn(grad, __fmul_rn(k.weight_decay, param));  // grad.add(param, alpha=weight_decay)
        // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        const float m = __fadd_rn(__fmul_rn(exp_avg[i], k.beta1), __fmul_rn(k.one_minus_beta1, grad));
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)   (ATen: self + value * t1 * t2)
        const float v = __fadd_rn(__fmul_rn(exp_avg_sq[i], k.beta2), __fmul_rn(__fmul_rn(k.one_minus_beta2, grad), grad));
        // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.bias_correction2_sqrt), k.eps);
        // param.addcdiv_(exp_avg, denom, value=-step_size)   (ATen: self + value * t1 / t2)
        params[i] = __fadd_rn(param, __fdiv_rn(__fmul_rn(k.neg_step_size, m), denom));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
    }
}
CU_KERNEL_ARGS(adam_update_kernel, float *, const float *, float *, float *, int64_t, int64_t, AdamUpdateScalars);

// ema_v.copy_(ema_v * decay + (1. - decay) * model_v), as optim.c: keep * ema + take * param.
__global__ void ema_update_kernel(float *__restrict__ ema, const float *__restrict__ params, int64_t n, float keep,
                                  float take) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        ema[i] = __fadd_rn(__fmul_rn(keep, ema[i]), __fmul_rn(take, params[i]));
}
CU_KERNEL_ARGS(ema_update_kernel, float *, const float *, int64_t, float, float);

CU_EXTERN_C void sgd_update_launch(float *params, const float *grads, float *momentum_buffer, int64_t start,
                                   int64_t count, SgdUpdateScalars scalars, cudaStream_t stream) {
    if (count <= 0) return;
    CU_LAUNCH(sgd_update_kernel, elementwise_blocks(count), OPTIM_THREADS, 0, stream, params, grads, momentum_buffer,
              start, count, scalars);
}

CU_EXTERN_C void adam_update_launch(float *params, const float *grads, float *exp_avg, float *exp_avg_sq, int64_t start,
                                    int64_t count, AdamUpdateScalars scalars, cudaStream_t stream) {
    if (count <= 0) return;
    CU_LAUNCH(adam_update_kernel, elementwise_blocks(count), OPTIM_THREADS, 0, stream, params, grads, exp_avg,
              exp_avg_sq, start, count, scalars);
}

CU_EXTERN_C void ema_update_launch(float *ema, const float *params, int64_t n, double decay, cudaStream_t stream) {
    if (n <= 0) return;
    CU_LAUNCH(ema_update_kernel, elementwise_blocks(n), OPTIM_THREADS, 0, stream, ema, params, n, (float)decay,
              (float)(1.0 - decay));
}

// ------------------------------------------------------------------------------------------------
// Gradient clipping.
// ------------------------------------------------------------------------------------------------

// Sum over the block (NORM_THREADS threads) in f64; thread 0 gets the total. Warp xor butterflies,
// then the 8 warp totals through shared memory; a fixed tree, so the same bits every run.
static __device__ double block_sum_f64(double v, double *warp_totals) {
    const unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(FULL_MASK, v, offset);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < NORM_THREADS / 32; w++) total += warp_totals[w];
    return total;
}

// Pass 1: block b sums grads[i]^2 over its chunk [b * NORM_CHUNK, (b + 1) * NORM_CHUNK). The square
// of an f32 is exact in f64, so nvcc's fusing of sum + g * g into one f64 FMA changes nothing.
__global__ void grad_norm_partial_kernel(const float *__restrict__ grads, int64_t n, double *__restrict__ partial) {
    __shared__ double warp_totals[NORM_THREADS / 32];
    const int64_t begin = (int64_t)blockIdx.x * NORM_CHUNK;
    const int64_t end = begin + NORM_CHUNK < n ? begin + NORM_CHUNK : n;
    double sum = 0.0;
    for (int64_t i = begin + threadIdx.x; i < end; i += NORM_THREADS) sum += (double)grads[i] * (double)grads[i];
    sum = block_sum_f64(sum, warp_totals);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}
CU_KERNEL_ARGS(grad_norm_partial_kernel, const float *, int64_t, double *);

// Pass 2: one block adds the chunk sums (thread t: chunks t, t + 256, ...; then the block tree) and
// writes the norm.
__global__ void grad_norm_final_kernel(const double *__restrict__ partial, int64_t chunks, double *__restrict__ norm) {
    __shared__ double warp_totals[NORM_THREADS / 32];
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < chunks; c += NORM_THREADS) sum += partial[c];
    sum = block_sum_f64(sum, warp_totals);
    if (threadIdx.x == 0) *norm = sqrt(sum);
}
CU_KERNEL_ARGS(grad_norm_final_kernel, const double *, int64_t, double *);

// clip_coef = max_norm / (total_norm + 1e-6) with total_norm an f32 tensor (optim.c's comment):
// (1 / ((float)norm + 1e-6f)) * (float)max_norm; applied when below 1 and the norm is finite.
__global__ void grad_clip_scale_kernel(float *__restrict__ grads, int64_t n, const double *__restrict__ norm,
                                       float max_norm) {
    const double total = *norm;
    if (!isfinite(total)) return;
    const float coef = __fmul_rn(__fdiv_rn(1.0f, __fadd_rn((float)total, 1e-6f)), max_norm);
    if (!(coef < 1.0f)) return;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        grads[i] = __fmul_rn(grads[i], coef);
}
CU_KERNEL_ARGS(grad_clip_scale_kernel, float *, int64_t, const double *, float);

__global__ void scale_f32_kernel(float *__restrict__ x, int64_t n, float factor) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], factor);
}
CU_KERNEL_ARGS(scale_f32_kernel, float *, int64_t, float);

CU_EXTERN_C size_t grad_norm_workspace_bytes(int64_t n) {
    const int64_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    return (size_t)(chunks > 0 ? chunks : 1) * sizeof(double);
}

CU_EXTERN_C void grad_norm_launch(const float *grads, int64_t n, void *workspace, double *norm, cudaStream_t stream) {
    double *partial = (double *)workspace;
    const int64_t chunks = n > 0 ? (n + NORM_CHUNK - 1) / NORM_CHUNK : 0;
    if (chunks > 0)
        CU_LAUNCH(grad_norm_partial_kernel, (unsigned int)chunks, NORM_THREADS, 0, stream, grads, n, partial);
    CU_LAUNCH(grad_norm_final_kernel, 1, NORM_THREADS, 0, stream, (const double *)partial, chunks, norm);
}

CU_EXTERN_C void grad_clip_scale_launch(float *grads, int64_t n, const double *norm, double max_norm,
                                        cudaStream_t stream) {
    if (n <= 0) return;
    CU_LAUNCH(grad_clip_scale_kernel, elementwise_blocks(n), OPTIM_THREADS, 0, stream, grads, n, norm,
              (float)max_norm);
}

CU_EXTERN_C void scale_f32_launch(float *x, int64_t n, float factor, cudaStream_t stream) {
    if (n <= 0) return;
    CU_LAUNCH(scale_f32_kernel, elementwise_blocks(n), OPTIM_THREADS, 0, stream, x, n, factor);
}
