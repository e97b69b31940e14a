// The op API: every op takes and returns tensors, works for f32 (and f64, used by gradient checks),
// records autograd when an input requires gradients, and dispatches on the device of its inputs.
// Shapes in comments use fixed letters: B batch, C channels, H/W spatial, T tokens, D features,
// N classes (or rows), K reduction length.
#pragma once
#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/tensor.h"

// ---------------------------------------------------------------- views and layout
Tensor *op_reshape(Tensor *x, Shape shape);  // one dim may be -1; copies only when a view is impossible
Tensor *op_view(Tensor *x, Shape shape);     // like reshape but fails if a copy would be needed
Tensor *op_permute(Tensor *x, const int *dims);
Tensor *op_transpose(Tensor *x, int dim0, int dim1);
Tensor *op_narrow(Tensor *x, int dim, int64_t start, int64_t length);
Tensor *op_select(Tensor *x, int dim, int64_t index);  // narrow + squeeze
Tensor *op_expand(Tensor *x, Shape shape);             // broadcast size-1 dims (-1 keeps a dim)
Tensor *op_squeeze(Tensor *x, int dim);
Tensor *op_unsqueeze(Tensor *x, int dim);
Tensor *op_flatten(Tensor *x, int start_dim, int end_dim);
Tensor *op_contiguous(Tensor *x);
Tensor *op_to_dtype(Tensor *x, DType dtype);  // differentiable between float types
Tensor *op_to_device(Tensor *x, Device device); // a copy on another device; the gradient comes back
Tensor *op_clone(Tensor *x);

// ---------------------------------------------------------------- elementwise
// Binary ops broadcast as numpy/PyTorch do.
Tensor *op_add(Tensor *a, Tensor *b);
Tensor *op_sub(Tensor *a, Tensor *b);
Tensor *op_mul(Tensor *a, Tensor *b);
Tensor *op_div(Tensor *a, Tensor *b);
Tensor *op_add_scalar(Tensor *x, double s);
Tensor *op_mul_scalar(Tensor *x, double s);
Tensor *op_rsub_scalar(Tensor *x, double s);  // s - x
Tensor *op_neg(Tensor *x);
Tensor *op_pow_scalar(Tensor *x, double exponent);
Tensor *op_exp(Tensor *x);
Tensor *op_log(Tensor *x);
Tensor *op_sqrt(Tensor *x);
Tensor *op_rsqrt(Tensor *x);
Tensor *op_abs(Tensor *x);
Tensor *op_clamp(Tensor *x, double low, double high);  // -INFINITY / INFINITY for one side
Tensor *op_sigmoid(Tensor *x);
Tensor *op_tanh(Tensor *x);
Tensor *op_relu(Tensor *x);
Tensor *op_leaky_relu(Tensor *x, double negative_slope);
Tensor *op_gelu(Tensor *x);       // x * Phi(x), the erf form
Tensor *op_gelu_tanh(Tensor *x);  // the tanh approximation
Tensor *op_quick_gelu(Tensor *x); // x * sigmoid(1.702 x), as in OpenAI CLIP
Tensor *op_silu(Tensor *x);
// Identity forward; backward multiplies the gradient by -lambda (DANN's gradient reversal layer).
Tensor *op_grad_reverse(Tensor *x, double lambda);
// where(condition != 0, a, b), broadcasting all three; condition is u8 (or any dtype).
Tensor *op_where(Tensor *condition, Tensor *a, Tensor *b);
Tensor *op_masked_fill(Tensor *x, Tensor *mask, double value);

// ---------------------------------------------------------------- reductions
// `dims` lists the reduced dimensions (negative allowed); n_dims == 0 reduces all of them.
Tensor *op_sum(Tensor *x, const int *dims, int n_dims, bool keepdim);
Tensor *op_mean(Tensor *x, const int *dims, int n_dims, bool keepdim);
// Variance with Bessel-style `correction` (0: population, 1: unbiased), as torch.var.
Tensor *op_var(Tensor *x, const int *dims, int n_dims, int correction, bool keepdim);
Tensor *op_sum_all(Tensor *x);
Tensor *op_mean_all(Tensor *x);
Tensor *op_max(Tensor *x, int dim, bool keepdim);     // values; gradient to the first maximum
Tensor *op_argmax(Tensor *x, int dim, bool keepdim);  // i64, first maximum
Tensor *op_logsumexp(Tensor *x, int dim, bool keepdim);
Tensor *op_softmax(Tensor *x, int dim);
Tensor *op_log_softmax(Tensor *x, int dim);
// Sums a gradient back to `shape` over broadcast dimensions (the inverse of broadcasting).
Tensor *op_sum_to_shape(Tensor *x, Shape shape);

// ---------------------------------------------------------------- linear algebra
// Matrix product with numpy semantics: 1-D operands are promoted, batch dims broadcast.
Tensor *op_matmul(Tensor *a, Tensor *b);
// y[..., O] = x[..., I] @ weight[O, I]^T + bias[O]; bias may be NULL.
Tensor *op_linear(Tensor *x, Tensor *weight, Tensor *bias);

// ---------------------------------------------------------------- convolution and pooling
typedef struct {
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dilation_h, dilation_w;
    int groups;
} Conv2dParams;
Conv2dParams conv2d_params(int stride, int padding, int dilation, int groups);
// x [B, Cin, H, W], weight [Cout, Cin/groups, KH, KW], bias [Cout] or NULL.
Tensor *op_conv2d(Tensor *x, Tensor *weight, Tensor *bias, Conv2dParams params);
Tensor *op_max_pool2d(Tensor *x, int kernel, int stride, int padding);
Tensor *op_avg_pool2d(Tensor *x, int kernel, int stride, int padding, bool count_include_pad);
Tensor *op_adaptive_avg_pool2d(Tensor *x, int out_h, int out_w);
Tensor *op_upsample_nearest2d(Tensor *x, int out_h, int out_w);

// ---------------------------------------------------------------- normalisation
// x [B, C, ...]. Training: normalise with batch statistics and update running_mean/var in place
// (momentum as PyTorch: running = (1 - m) running + m batch, unbiased batch variance);
// eval: use the running statistics. weight/bias/running_* may be NULL.
Tensor *op_batch_norm(Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean, Tensor *running_var,
                      bool training, double momentum, double eps);
// relu(batch_norm(x, ...)), same arguments: on the CPU one pass writes the activated output and the
// backward recomputes the ReLU mask from x (the normalised tensor is never stored).
Tensor *op_batch_norm_relu(Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean, Tensor *running_var,
                           bool training, double momentum, double eps);
Tensor *op_group_norm(Tensor *x, int groups, Tensor *weight, Tensor *bias, double eps);
// Normalises over the last dimension (D); weight/bias [D] or NULL.
Tensor *op_layer_norm(Tensor *x, Tensor *weight, Tensor *bias, double eps);

// ---------------------------------------------------------------- indexing and joining
Tensor *op_concat(Tensor *const *xs, int n, int dim);
Tensor *op_stack(Tensor *const *xs, int n, int dim);
// Splits into n pieces of the given sizes along dim (views), written into out[].
void op_split(Tensor *x, const int64_t *sizes, int n, int dim, Tensor **out);
// out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 etc.; index is i64 with x's ndim.
Tensor *op_gather(Tensor *x, int dim, Tensor *index);
Tensor *op_index_select(Tensor *x, int dim, Tensor *index);  // index 1-D i64
// weight [N, D], indices i64 of any shape -> [..., D]
Tensor *op_embedding(Tensor *weight, Tensor *indices);
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when !training.
Tensor *op_dropout(Tensor *x, double p, bool training, Rng *rng);

// ---------------------------------------------------------------- losses
typedef enum { REDUCTION_MEAN, REDUCTION_SUM, REDUCTION_NONE, REDUCTION_BATCHMEAN } Reduction;
typedef struct {
    Reduction reduction;
    double label_smoothing;   // 0 = none
    int64_t ignore_index;     // targets equal to this contribute nothing (default -100, as PyTorch; INT64_MIN: none)
    Tensor *class_weight;     // [N] or NULL
    Tensor *sample_weight;    // one weight per target element, or NULL; the mean divides by
                              // sum(w_i * class_weight[t_i]); all zero gives 0 (see ops_loss.c)
} CrossEntropyOptions;
CrossEntropyOptions cross_entropy_defaults(void);
// logits [B, N] (or [B, N, ...]), target i64 [B] (or [B, ...]).
Tensor *op_cross_entropy(Tensor *logits, Tensor *target, CrossEntropyOptions options);
// Soft labels: target probabilities [B, N]; loss = -sum target * log_softmax(logits).
Tensor *op_cross_entropy_soft(Tensor *logits, Tensor *target_probs, Reduction reduction);
Tensor *op_bce_with_logits(Tensor *logits, Tensor *target, Tensor *weight, Reduction reduction);
Tensor *op_mse_loss(Tensor *input, Tensor *target, Reduction reduction);
Tensor *op_l1_loss(Tensor *input, Tensor *target, Reduction reduction);
// As torch.nn.functional.kl_div: input is log-probabilities, target probabilities (or log when log_target).
Tensor *op_kl_div(Tensor *input, Tensor *target, Reduction reduction, bool log_target);
// Shannon entropy of softmax(logits) along dim 1, reduced over the batch.
Tensor *op_entropy(Tensor *logits, Reduction reduction);

// ---------------------------------------------------------------- attention
// q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]. mask NULL, or u8 (1 = attend, broadcast to
// [..., Tq, Tk]) or float (added to the scores). scale <= 0 means 1/sqrt(D).
Tensor *op_scaled_dot_product_attention(Tensor *q, Tensor *k, Tensor *v, Tensor *mask, bool causal, double scale);
// Multi-head self-attention from a packed projection: qkv [B, T, 3 * D] laid out as [B, T, 3, H, Dh]
// (timm's/CLIP's qkv Linear), D = heads * Dh -> [B, T, D] (heads concatenated, ready for the output
// projection). The same as splitting q, k, v per head and calling op_scaled_dot_product_attention,
// without the permute copies: on the CPU a fused kernel (engine/cpu/attention.c).
Tensor *op_self_attention(Tensor *qkv, int heads, bool causal, double scale);

// ---------------------------------------------------------------- raw helpers (no autograd)
void op_add_inplace_raw(Tensor *dst, Tensor *src);  // dst += src, same shape
void op_axpy_inplace_raw(Tensor *dst, double alpha, Tensor *src); // dst += alpha * src
