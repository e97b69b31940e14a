// CPU multi-head self-attention straight from a packed qkv projection, as ViT/CLIP/DiT blocks
// compute it: qkv [B, T, 3, H, Dh] (the Linear's output [B, T, 3D] viewed per head) -> out
// [B, T, H, Dh] (= [B, T, D]). One (batch, head) at a time on each thread, its T x T scores in cache:
// no q/k/v/out permute copies and no gradient scatter through select/permute, which the composed
// op needs.
#pragma once
#include <stdint.h>

// probs: [B, H, T, T] softmax probabilities, kept for the backward. causal: query i sees keys <= i.
void cpu_self_attention_forward_f32(const float *qkv, float *out, float *probs, int64_t B, int64_t T, int64_t H,
                                    int64_t Dh, int causal, double scale);
void cpu_self_attention_forward_f64(const double *qkv, double *out, double *probs, int64_t B, int64_t T, int64_t H,
                                    int64_t Dh, int causal, double scale);
// dqkv: [B, T, 3, H, Dh], fully written.
void cpu_self_attention_backward_f32(const float *qkv, const float *probs, const float *dout, float *dqkv, int64_t B,
                                     int64_t T, int64_t H, int64_t Dh, double scale);
void cpu_self_attention_backward_f64(const double *qkv, const double *probs, const double *dout, double *dqkv,
                                     int64_t B, int64_t T, int64_t H, int64_t Dh, double scale);
