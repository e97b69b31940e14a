// Launchers of the flash-attention kernels (kernels/attention.cu): scaled dot-product attention
// forward and backward, f32. Plain C, includable from engine code and from nvcc-compiled sources.
//
//   out = softmax(q k^T * scale + masks) v      per batch-head bh, without materialising the scores
//
// Layout (contiguous): q [BH, Tq, D], k [BH, Tk, D], v [BH, Tk, Dv], out [BH, Tq, Dv],
// lse [BH, Tq] (the log-sum-exp of each score row, saved by the forward for the backward).
// D and Dv are runtime values in 1 .. ATTENTION_MAX_HEAD_DIM.
//
// Masks, as engine/ops.h's op_scaled_dot_product_attention:
//   causal      query i sees keys j <= i (top-left aligned, torch's is_causal);
//   bool_mask   u8, 1 = attend, element (i, j) of batch-head bh at bool_mask[bh * stride + i * Tk + j]:
//               stride 0 broadcasts one [Tq, Tk] mask, stride Tq * Tk is a full [BH, Tq, Tk] one;
//   float_mask  added to the scores, same addressing with its own stride.
// Any combination may be given (NULL = none). A row whose every key is masked produces NaN, as the
// CPU op (softmax of an all -inf row); its lse is -inf. The backward then matches the CPU op's
// autograd too: the NaN reaches dv of every key of that batch-head, while positions removed by the
// causal rule or the boolean mask pass no gradient to q and k (torch.where's backward).
//
// scale <= 0 means 1 / sqrt(D). All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

#define ATTENTION_MAX_HEAD_DIM 128

void attention_forward_launch(const float *q, const float *k, const float *v, const uint8_t *bool_mask,
                              int64_t bool_mask_stride, const float *float_mask, int64_t float_mask_stride,
                              float *out, float *lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                              int causal, float scale, cudaStream_t stream);

size_t attention_backward_workspace_bytes(int64_t BH, int64_t Tq);
// dq [BH, Tq, D], dk [BH, Tk, D], dv [BH, Tk, Dv] are overwritten (any of them may be NULL to skip
// it). out and lse are the forward's; dout is the gradient of out. Probabilities are recomputed
// from lse (no [Tq, Tk] buffer). Deterministic: dk/dv come from one block per key tile looping over
// the query tiles, dq from one block per query tile looping over the key tiles; no atomics.
void attention_backward_launch(const float *q, const float *k, const float *v, const float *out, const float *dout,
                               const float *lse, const uint8_t *bool_mask, int64_t bool_mask_stride,
                               const float *float_mask, int64_t float_mask_stride, float *dq, float *dk, float *dv,
                               void *workspace, int64_t BH, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                               int causal, float scale, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
