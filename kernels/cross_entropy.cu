// Fused cross-entropy: softmax, per-row loss and gradient of the reduced loss in one kernel per row.
// Launcher and semantics: kernels/cross_entropy.h; reduction building blocks: reduce_common.cuh.
//
// Three launches:
//   ce_weights_kernel  one block: W = sum_i c_i and W_c = sum_j class_weight[j] (the mean's divisor
//                      and the smoothing gradient's constant) into workspace[0..1]. Reads only the
//                      targets (and weights): tiny next to the logits.
//   ce_rows_*_kernel   per row: pass 1 reads the logits once, folding the running max m and sum s of
//                      exp(x - m) (online softmax); pass 2 reads them again and writes the gradient
//                      grad_j = G' (c1 (p_j - [j == t]) + k2 (W_c p_j - w_j)), p_j = exp(x_j - m) / s,
//                      while summing w_j (x_j - m) for the smoothing loss (only when eps > 0 and the
//                      loss is wanted). Each element is read and then written by the same thread after
//                      the pass-1 reduction, and the target logit is read before it, so grad_logits may
//                      alias logits. classes <= 1024: one warp per row (8 rows per 256-thread block,
//                      coalesced lane-consecutive loads, shuffle butterflies, no barrier); above: one
//                      block per row (128-1024 threads), per-warp states in shared memory, one
//                      __syncthreads per reduction, separate shared arrays for the two reductions.
//   ce_reduce_kernel   one block: the reduced loss = sum of row losses (/ W for the mean).
// The smoothing sum is accumulated as sum_j w_j (x_j - m) (terms <= 0) and the loss formed as
// W_c log s - that sum: both parts are non-negative, so nothing cancels.
#include "kernels/cross_entropy.h"
#include "kernels/cuda_compat.h"
#include "kernels/reduce_common.cuh"

#define CE_WARP_ROW_MAX 1024
#define CE_ROWS_PER_BLOCK 8
#define CE_SMALL_BLOCK 512  // threads of the one-block kernels

// What the row kernels need of row i: the target to read (0 when ignored or invalid, so nothing is
// read out of bounds), c1 = c_i (1 - eps), k2 = eps / N * s_i, and c_i itself.
typedef struct CeRow {
    int64_t target;
    float weight;     // c_i (NaN for an invalid target)
    float smoothing;  // s_i (NaN for an invalid target)
} CeRow;

static __device__ __forceinline__ CeRow ce_row(const CrossEntropyArgs a, int64_t row) {
    const int64_t t = a.targets[row];
    const bool ignored = t == a.ignore_index, invalid = !ignored && (t < 0 || t >= a.classes);
    CeRow info;
    // As ops_loss.c: w = ignored ? 0 : 1; w *= class_weight[t] (not ignored); w *= sample_weight[i].
    info.weight = ignored ? 0.0f : 1.0f;
    if (!ignored && !invalid && a.class_weight) info.weight *= a.class_weight[t];
    info.smoothing = ignored ? 0.0f : 1.0f;
    if (a.sample_weight) {
        info.weight *= a.sample_weight[row];
        info.smoothing *= a.sample_weight[row];
    }
    if (invalid) info.weight = info.smoothing = NAN;
    info.target = ignored || invalid ? 0 : t;
    return info;
}

// ------------------------------------------------------------------------------------------------
// W and W_c.
// ------------------------------------------------------------------------------------------------

__global__ void ce_weights_kernel(CrossEntropyArgs a, float *stats) {
    __shared__ ReduceState shared_rows[32];
    __shared__ ReduceState shared_classes[32];
    ReduceState w = rs_empty(RS_SUM), wc = rs_empty(RS_SUM);
    for (int64_t i = threadIdx.x; i < a.rows; i += blockDim.x) w = rs_push(RS_SUM, w, ce_row(a, i).weight, i);
    for (int64_t j = threadIdx.x; j < a.classes; j += blockDim.x)
        wc = rs_push(RS_SUM, wc, a.class_weight ? a.class_weight[j] : 1.0f, j);
    w = rs_block_reduce(RS_SUM, w, shared_rows);
    wc = rs_block_reduce(RS_SUM, wc, shared_classes);
    if (threadIdx.x == 0) {
        stats[0] = w.value;
        stats[1] = wc.value;
    }
}
CU_KERNEL_ARGS(ce_weights_kernel, CrossEntropyArgs, float *);

// ------------------------------------------------------------------------------------------------
// The fused row kernels.
// ------------------------------------------------------------------------------------------------

// Per-row constants after pass 1.
typedef struct CeConstants {
    float m, inv_s, log_s;
    float gscale;  // G / W (mean; 0 when W == 0 with sample weights) or G (sum)
    float c1, k2, wc;
} CeConstants;

static __device__ __forceinline__ CeConstants ce_constants(const CrossEntropyArgs a, const float *stats, CeRow info,
                                                           ReduceState st) {
    CeConstants k;
    const float s = st.value == INFINITY ? NAN : st.scale;  // a +inf logit: NaN, as the CPU's inf - inf
    k.m = st.value;
    k.inv_s = 1.0f / s;
    k.log_s = logf(s);
    const float g = a.grad_output ? *a.grad_output : 1.0f, w = stats[0];
    k.gscale = a.reduction_sum ? g : (w == 0.0f && a.sample_weight ? 0.0f : g / w);
    k.c1 = info.weight * (1.0f - a.label_smoothing);
    k.k2 = a.label_smoothing / (float)a.classes * info.smoothing;
    k.wc = stats[1];
    return k;
}

// The gradient of element j (logit x), and its term of the smoothing sum.
static __device__ __forceinline__ float ce_grad(const CrossEntropyArgs a, CeConstants k, int64_t j, int64_t target,
                                                float x) {
    const float p = expf(x - k.m) * k.inv_s;
    float d = k.c1 * (j == target ? p - 1.0f : p);
    if (a.label_smoothing > 0.0f) d += k.k2 * (k.wc * p - (a.class_weight ? a.class_weight[j] : 1.0f));
    return k.gscale * d;
}

static __device__ __forceinline__ float ce_smoothing_term(const CrossEntropyArgs a, CeConstants k, int64_t j, float x) {
    return (a.class_weight ? a.class_weight[j] : 1.0f) * (x - k.m);
}

// loss_i from the target logit and the smoothing sum (as ops_loss.c: nll * c_i, then (1 - eps) * that
// + eps / N * smooth * s_i).
static __device__ __forceinline__ float ce_row_loss(const CrossEntropyArgs a, CeConstants k, CeRow info,
                                                    float target_logit, float smoothing_sum) {
    const float nll = -(target_logit - k.m - k.log_s);
    float loss = nll * info.weight;
    if (a.label_smoothing > 0.0f) {
        const float smooth = k.wc * k.log_s - smoothing_sum;
        loss = loss * (1.0f - a.label_smoothing) + smooth * info.smoothing * (a.label_smoothing / (float)a.classes);
    }
    return loss;
}

__global__ void ce_rows_warp_kernel(CrossEntropyArgs a, const float *stats, float *row_loss) {
    const int64_t row = (int64_t)blockIdx.x * CE_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (row >= a.rows) return;  // the whole warp leaves together
    const CeRow info = ce_row(a, row);
    const float *x = a.logits + row * a.classes;
    // Read before any lane writes a gradient (in-place use): __syncwarp orders the read before the
    // writes of the other lanes.
    const float target_logit = lane == 0 ? x[info.target] : 0.0f;
    __syncwarp();
    ReduceState st = rs_empty(RS_LSE);
    for (int64_t j = lane; j < a.classes; j += 32) st = rs_push(RS_LSE, st, x[j], j);
    st = rs_warp_reduce(RS_LSE, st);
    const CeConstants k = ce_constants(a, stats, info, st);
    const bool want_smoothing = row_loss && a.label_smoothing > 0.0f;
    ReduceState acc = rs_empty(RS_SUM);
    if (a.grad_logits || want_smoothing) {
        float *gx = a.grad_logits ? a.grad_logits + row * a.classes : NULL;
        for (int64_t j = lane; j < a.classes; j += 32) {
            const float xj = x[j];
            if (want_smoothing) acc = rs_push(RS_SUM, acc, ce_smoothing_term(a, k, j, xj), j);
            if (gx) gx[j] = ce_grad(a, k, j, info.target, xj);
        }
    }
    if (!row_loss) return;
    if (want_smoothing) acc = rs_warp_reduce(RS_SUM, acc);
    if (lane == 0) row_loss[row] = ce_row_loss(a, k, info, target_logit, acc.value);
}
CU_KERNEL_ARGS(ce_rows_warp_kernel, CrossEntropyArgs, const float *, float *);

__global__ void ce_rows_block_kernel(CrossEntropyArgs a, const float *stats, float *row_loss) {
    __shared__ ReduceState shared_softmax[32];
    __shared__ ReduceState shared_smoothing[32];
    const int64_t row = blockIdx.x, threads = blockDim.x;
    const CeRow info = ce_row(a, row);
    const float *x = a.logits + row * a.classes;
    // Read before the first barrier: no thread writes a gradient until every thread has passed it.
    const float target_logit = threadIdx.x == 0 ? x[info.target] : 0.0f;
    ReduceState st = rs_empty(RS_LSE);
    for (int64_t j = threadIdx.x; j < a.classes; j += threads) st = rs_push(RS_LSE, st, x[j], j);
    st = rs_block_reduce(RS_LSE, st, shared_softmax);
    const CeConstants k = ce_constants(a, stats, info, st);
    const bool want_smoothing = row_loss && a.label_smoothing > 0.0f;  // the same for the whole block
    ReduceState acc = rs_empty(RS_SUM);
    if (a.grad_logits || want_smoothing) {
        float *gx = a.grad_logits ? a.grad_logits + row * a.classes : NULL;
        for (int64_t j = threadIdx.x; j < a.classes; j += threads) {
            const float xj = x[j];
            if (want_smoothing) acc = rs_push(RS_SUM, acc, ce_smoothing_term(a, k, j, xj), j);
            if (gx) gx[j] = ce_grad(a, k, j, info.target, xj);
        }
    }
    if (!row_loss) return;
    if (want_smoothing) acc = rs_block_reduce(RS_SUM, acc, shared_smoothing);
    if (threadIdx.x == 0) row_loss[row] = ce_row_loss(a, k, info, target_logit, acc.value);
}
CU_KERNEL_ARGS(ce_rows_block_kernel, CrossEntropyArgs, const float *, float *);

// ------------------------------------------------------------------------------------------------
// The reduced loss.
// ------------------------------------------------------------------------------------------------

__global__ void ce_reduce_kernel(CrossEntropyArgs a, const float *stats, const float *row_loss) {
    __shared__ ReduceState shared[32];
    ReduceState total = rs_empty(RS_SUM);
    for (int64_t i = threadIdx.x; i < a.rows; i += blockDim.x) total = rs_push(RS_SUM, total, row_loss[i], i);
    total = rs_block_reduce(RS_SUM, total, shared);
    if (threadIdx.x == 0) {
        const float w = stats[0];
        a.loss[0] = a.reduction_sum ? total.value
                                    : (w == 0.0f && a.sample_weight ? total.value * 0.0f : total.value / w);
    }
}
CU_KERNEL_ARGS(ce_reduce_kernel, CrossEntropyArgs, const float *, const float *);

// ------------------------------------------------------------------------------------------------
// Launcher.
// ------------------------------------------------------------------------------------------------

CU_EXTERN_C size_t cross_entropy_workspace_bytes(int64_t rows) {
    return (size_t)(2 + (rows > 0 ? rows : 0)) * sizeof(float);
}

CU_EXTERN_C void cross_entropy_f32_launch(CrossEntropyArgs args, cudaStream_t stream) {
    if (args.classes <= 0 || args.rows < 0) return;
    float *stats = args.workspace;
    float *row_loss = args.row_loss ? args.row_loss : args.loss ? args.workspace + 2 : NULL;
    CU_LAUNCH(ce_weights_kernel, 1, CE_SMALL_BLOCK, 0, stream, args, stats);
    if (args.rows > 0 && (row_loss || args.grad_logits)) {
        const float *const_stats = stats;
        if (args.classes <= CE_WARP_ROW_MAX) {
            const unsigned int blocks = (unsigned int)((args.rows + CE_ROWS_PER_BLOCK - 1) / CE_ROWS_PER_BLOCK);
            CU_LAUNCH(ce_rows_warp_kernel, blocks, CE_ROWS_PER_BLOCK * 32, 0, stream, args, const_stats, row_loss);
        } else {
            CU_LAUNCH(ce_rows_block_kernel, (unsigned int)args.rows, rs_row_block_threads(args.classes), 0, stream,
                      args, const_stats, row_loss);
        }
    }
    if (args.loss) {
        const float *const_stats = stats, *const_row_loss = row_loss;
        CU_LAUNCH(ce_reduce_kernel, 1, CE_SMALL_BLOCK, 0, stream, args, const_stats, const_row_loss);
    }
}
