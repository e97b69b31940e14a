// Launchers of the dropout and gradient-reversal kernels (kernels/dropout.cu). Plain C, includable
// from engine code and from nvcc-compiled sources.
//
// Dropout draws its keep decisions from Philox 4x32-10 exactly as engine/rng.c (docs/RNG.md): the
// caller reserves the blocks on the host, `first_block = rng_reserve(rng, n)`, and passes
// (rng->seed, rng->stream, first_block); element e is kept when
//     (float)(w >> 8) * 2^-24 < (float)(1 - p),   w = word e % 4 of Philox block first_block + e / 4,
// the same decision rng_fill_bernoulli_f32(rng, mask, n, (float)(1 - p)) makes for its element e, so
// a GPU run keeps the same elements as a CPU run with the same stream. As op_dropout (engine/ops.h):
// kept elements are scaled by (float)(1 / (1 - p)), dropped ones multiplied by 0 (p == 1 drops all);
// y = x * mask and dx = dy * mask with the same f32 products, so the results are bit-identical to
// the CPU op. The op returns x itself for p == 0 or outside training, drawing nothing: the caller
// does not launch then.
// All pointers are device pointers; work is ordered on `stream` (the CUDA stream; `rng_stream` is
// the RNG's stream number).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// y = x * mask; keep_mask (u8: 1 kept, 0 dropped) may be NULL.
void dropout_forward_launch(const float *x, float *y, uint8_t *keep_mask, int64_t n, double p, uint64_t seed,
                            uint64_t rng_stream, uint64_t first_block, cudaStream_t stream);
// dx = dy * mask, the mask recomputed from the same (seed, rng_stream, first_block) as the forward.
void dropout_backward_launch(const float *dy, float *dx, int64_t n, double p, uint64_t seed, uint64_t rng_stream,
                             uint64_t first_block, cudaStream_t stream);
// The mask itself, as op_dropout builds it on the CPU: keep ? (float)(1 / (1 - p)) : 0.
void dropout_mask_launch(float *mask, int64_t n, double p, uint64_t seed, uint64_t rng_stream, uint64_t first_block,
                         cudaStream_t stream);

// Gradient reversal (DANN): the forward is the identity; the backward is dx = dy * (-lambda), with
// lambda rounded to f32 first, as op_grad_reverse's CPU kernel.
void grad_reverse_backward_launch(const float *dy, float *dx, int64_t n, double lambda, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
