// Launcher of the fused cross-entropy CUDA kernels (kernels/cross_entropy.cu): for logits
// [rows, classes] and i64 class targets, softmax, per-row loss and the gradient of the reduced loss
// in one pass over each row. Plain C, includable from engine code and from nvcc-compiled sources.
//
// Semantics are engine/ops_loss.c op_cross_entropy's (PyTorch's): row i with target t_i has weight
// c_i = class_weight[t_i] * sample_weight_i (0 when t_i == ignore_index) and smoothing weight
// s_i = sample_weight_i (0 when ignored); with eps = label_smoothing, N = classes,
// W_c = sum of the class weights (N without them), lse_i = log sum_j exp(x_ij):
//   loss_i = c_i (1 - eps) (lse_i - x_{i,t_i}) + eps / N * s_i * sum_j class_weight[j] (lse_i - x_ij)
//   mean:  loss = sum_i loss_i / W with W = sum_i c_i (PyTorch's normalisation); W == 0 gives 0/0 = NaN,
//          except with sample weights, where it gives 0 (loss and gradient), as the CPU op;
//   sum:   loss = sum_i loss_i.
//   grad_ij = G * d loss / d x_ij, G the upstream gradient of the reduced loss:
//          = G / W * (c_i (1 - eps) (p_ij - [j == t_i]) + eps / N * s_i (W_c p_ij - class_weight[j]))  (mean)
// A target that is neither ignore_index nor in [0, classes) makes its row's loss and gradient NaN
// (and so the mean): the CPU op stops with an error there; a kernel cannot, and must not read out of
// bounds.
//
// Launches (all on `stream`, deterministic: fixed-order tree sums, no atomics): a one-block kernel
// sums W and W_c into the workspace; the fused row kernel (one warp per row for classes <= 1024, one
// block per row above) computes each row's max and normaliser in one online pass, then writes the
// gradient and the row loss in a second pass; a one-block kernel sums the row losses into `loss`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

typedef struct CrossEntropyArgs {
    const float *logits;         // [rows, classes], contiguous
    const int64_t *targets;      // [rows]: class indices, or ignore_index
    const float *class_weight;   // [classes] or NULL
    const float *sample_weight;  // [rows] or NULL
    int64_t rows, classes;
    int64_t ignore_index;        // PyTorch's default is -100; INT64_MIN: none
    float label_smoothing;       // eps in [0, 1]
    int reduction_sum;           // 0: mean (the gradient is the mean's), 1: sum
    const float *grad_output;    // device scalar: upstream gradient of the reduced loss; NULL = 1
    float *row_loss;             // [rows] or NULL: the per-row losses loss_i (REDUCTION_NONE's output)
    float *loss;                 // [1] or NULL: the reduced loss
    float *grad_logits;          // [rows, classes] or NULL; may equal logits (computed in place)
    float *workspace;            // cross_entropy_workspace_bytes(rows) bytes of device memory
} CrossEntropyArgs;

// 2 floats (W, W_c) + one per row (the row losses when row_loss is NULL).
size_t cross_entropy_workspace_bytes(int64_t rows);

// Nothing is launched when classes <= 0. Launch errors are left for the caller's GPU_CHECK_LAUNCH().
void cross_entropy_f32_launch(CrossEntropyArgs args, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
