// Matrix products: matmul with numpy semantics and linear layers, on the handwritten GEMM.
// Transposed views (as backward produces) are handed to the GEMM as transpose flags, not copied.
#include <string.h>

#include "engine/cpu/gemm.h"
#include "engine/gpu/gpu.h"
#include "kernels/gemm.h"
#include "engine/ops_internal.h"

// How a [batch, rows, cols] (or [rows, cols]) tensor is passed to the GEMM.
typedef struct {
    Tensor *t;  // the tensor whose data is used (possibly a contiguous copy)
    int trans;
    int64_t ld, batch_stride;
} MatrixOperand;

static MatrixOperand matrix_operand(Tensor *t) {
    int n = t->ndim;
    int64_t rows = t->shape[n - 2], cols = t->shape[n - 1];
    int64_t s_row = t->stride[n - 2], s_col = t->stride[n - 1];
    MatrixOperand m = {.t = t};
    if (n == 3) m.batch_stride = t->shape[0] == 1 ? 0 : t->stride[0];
    if ((s_col == 1 || cols == 1) && s_row >= cols) {
        m.ld = rows == 1 ? (cols > 0 ? cols : 1) : s_row;
        if (m.ld < cols) m.ld = cols;
        return m;
    }
    if ((s_row == 1 || rows == 1) && s_col >= rows) {
        m.trans = 1;
        m.ld = cols == 1 ? (rows > 0 ? rows : 1) : s_col;
        if (m.ld < rows) m.ld = rows;
        return m;
    }
    m.t = contiguous(t);
    m.ld = cols > 0 ? cols : 1;
    if (n == 3) m.batch_stride = rows * cols;
    return m;
}

static Tensor *matmul_core(Tensor *a, Tensor *b);

static void matmul_core_backward(AutogradNode *node, Tensor *g) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    int n = a->ndim;
    if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, matmul_core(g, op_transpose(b, n - 2, n - 1)));
    if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, matmul_core(op_transpose(a, n - 2, n - 1), g));
}

// a [M, K] @ b [K, N], or a [B, M, K] @ b [B, K, N] with equal batch sizes.
static Tensor *matmul_core(Tensor *a, Tensor *b) {
    int n = a->ndim;
    int64_t batch = n == 3 ? a->shape[0] : 1;
    int64_t M = a->shape[n - 2], K = a->shape[n - 1], N = b->shape[n - 1];
    Tensor *out = tensor_empty_on(a->dtype, n == 3 ? SHAPE(batch, M, N) : SHAPE(M, N), a->storage->device);
    if (M * N > 0) {
        MatrixOperand ma = matrix_operand(a), mb = matrix_operand(b);
        if (tensor_is_cuda(a) && gpu_use_vendor_libraries())  // cuBLAS on a GPU
            gpu_sgemm_strided_batched(gpu_stream_default(), ma.trans, mb.trans, M, N, K, 1.0f, tensor_f32(ma.t), ma.ld,
                                      ma.batch_stride, tensor_f32(mb.t), mb.ld, mb.batch_stride, 0.0f, tensor_f32(out), N,
                                      M * N, batch);
        else if (tensor_is_cuda(a)) {  // the handwritten tiled kernel: the fallback, and the emulated path
            sgemm_strided_batched_launch(ma.trans, mb.trans, M, N, K, 1.0f, tensor_f32(ma.t), ma.ld, ma.batch_stride,
                                         tensor_f32(mb.t), mb.ld, mb.batch_stride, 0.0f, tensor_f32(out), N, M * N, batch,
                                         gpu_stream_handle(gpu_stream_default()));
            GPU_CHECK_LAUNCH();
        } else if (a->dtype == DTYPE_F32)
            sgemm_batched(ma.trans, mb.trans, M, N, K, 1.0f, tensor_f32(ma.t), ma.ld, ma.batch_stride, tensor_f32(mb.t),
                          mb.ld, mb.batch_stride, 0.0f, tensor_f32(out), N, M * N, batch);
        else
            dgemm_batched(ma.trans, mb.trans, M, N, K, 1.0, tensor_f64(ma.t), ma.ld, ma.batch_stride, tensor_f64(mb.t),
                          mb.ld, mb.batch_stride, 0.0, tensor_f64(out), N, M * N, batch);
    }
    Tensor *inputs[2] = {a, b};
    if (autograd_needed(2, inputs)) autograd_record(out, "matmul", matmul_core_backward, 2, inputs);
    return out;
}

Tensor *op_matmul(Tensor *a, Tensor *b) {
    check_float_input_any_device("matmul", a);
    check_float_input_any_device("matmul", b);
    check_same_dtype("matmul", a, b);
    check_same_device("matmul", a, b);
    if (a->ndim == 0 || b->ndim == 0) tensor_fatal("matmul", "both operands need at least one dimension");
    bool a_vector = a->ndim == 1, b_vector = b->ndim == 1;
    if (a_vector) a = op_unsqueeze(a, 0);
    if (b_vector) b = op_unsqueeze(b, 1);
    int64_t K = a->shape[a->ndim - 1];
    if (b->shape[b->ndim - 2] != K) {
        char sa[96], sb[96];
        tensor_fatal("matmul", "inner dimensions differ: %s @ %s", tensor_shape_string(a, sa, sizeof sa),
                     tensor_shape_string(b, sb, sizeof sb));
    }
    int64_t M = a->shape[a->ndim - 2], N = b->shape[b->ndim - 1];
    Tensor *out;
    Shape out_shape;
    if (b->ndim == 2) {
        // [..., M, K] @ [K, N]: fold the batch into M, one GEMM.
        out_shape = tensor_shape(a);
        out_shape.dims[out_shape.ndim - 1] = N;
        Tensor *a2 = a->ndim == 2 ? a : op_reshape(a, SHAPE(-1, K));
        out = matmul_core(a2, b);
    } else {
        Shape batch_a = {.ndim = a->ndim - 2}, batch_b = {.ndim = b->ndim - 2};
        for (int d = 0; d < batch_a.ndim; d++) batch_a.dims[d] = a->shape[d];
        for (int d = 0; d < batch_b.ndim; d++) batch_b.dims[d] = b->shape[d];
        Shape batch = broadcast_shapes("matmul", batch_a, batch_b);
        int64_t batch_count = shape_numel(batch);
        Shape full_a = batch, full_b = batch;
        full_a.dims[full_a.ndim++] = M;
        full_a.dims[full_a.ndim++] = K;
        full_b.dims[full_b.ndim++] = K;
        full_b.dims[full_b.ndim++] = N;
        out_shape = batch;
        out_shape.dims[out_shape.ndim++] = M;
        out_shape.dims[out_shape.ndim++] = N;
        Tensor *a3 = op_reshape(op_expand(a, full_a), SHAPE(batch_count, M, K));
        Tensor *b3 = op_reshape(op_expand(b, full_b), SHAPE(batch_count, K, N));
        out = matmul_core(a3, b3);
    }
    if (a_vector) out_shape.dims[out_shape.ndim - 2] = -2;  // mark dims to drop
    if (b_vector) out_shape.dims[out_shape.ndim - 1] = -2;
    Shape final = {0};
    for (int d = 0; d < out_shape.ndim; d++)
        if (out_shape.dims[d] != -2) final.dims[final.ndim++] = out_shape.dims[d];
    return out->ndim == final.ndim && shape_equal(tensor_shape(out), final) ? out : op_reshape(out, final);
}

// ---------------------------------------------------------------- linear with bias on the CPU
// y = x W^T + b as one GEMM whose C starts as the bias rows (beta = 1): the composed form (GEMM, then
// a broadcast add) makes another pass over the output and allocates a second one. The backward is
// the composed one's: dx = dy W, dW = dy^T x, db = column sums of dy. inputs: x, weight, bias.

static void linear_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0], *weight = node->inputs[1];
    int64_t N = weight->shape[0], K = weight->shape[1];
    Tensor *g2 = op_reshape(g, SHAPE(-1, N));
    Tensor *x2 = op_reshape(x, SHAPE(-1, K));
    if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_reshape(matmul_core(g2, weight), tensor_shape(x)));
    if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, matmul_core(op_transpose(g2, 0, 1), x2));
    if (autograd_input_needs_grad(node, 2)) {
        int rows = 0;
        autograd_pass_grad(node, 2, op_sum(g2, &rows, 1, false));
    }
}

static Tensor *linear_with_bias_cpu(Tensor *x, Tensor *weight, Tensor *bias) {
    int64_t N = weight->shape[0], K = weight->shape[1], M = tensor_numel(x) / (K ? K : 1);
    Shape out_shape = tensor_shape(x);
    out_shape.dims[out_shape.ndim - 1] = N;
    Tensor *out = tensor_empty(x->dtype, out_shape);
    Tensor *x2 = contiguous(op_reshape(x, SHAPE(-1, K)));
    MatrixOperand mw = matrix_operand(weight);  // op(B) = W^T: W [N, K] read transposed
    Tensor *b = contiguous(bias);
    const size_t row_bytes = (size_t)N * dtype_size(x->dtype);
    char *y = tensor_data(out);
    const char *bias_row = tensor_data(b);
#pragma omp parallel for if (M * N >= 65536)
    for (int64_t i = 0; i < M; i++) memcpy(y + (size_t)i * row_bytes, bias_row, row_bytes);
    if (M * N > 0 && K > 0 && x->dtype == DTYPE_F32)
        sgemm(0, !mw.trans, M, N, K, 1.0f, tensor_f32(x2), K, tensor_f32(mw.t), mw.ld, 1.0f, tensor_f32(out), N);
    else if (M * N > 0 && K > 0)
        dgemm(0, !mw.trans, M, N, K, 1.0, tensor_f64(x2), K, tensor_f64(mw.t), mw.ld, 1.0, tensor_f64(out), N);
    Tensor *inputs[3] = {x, weight, bias};
    if (autograd_needed(3, inputs)) autograd_record(out, "linear", linear_backward, 3, inputs);
    return out;
}

Tensor *op_linear(Tensor *x, Tensor *weight, Tensor *bias) {
    if (weight->ndim != 2) tensor_fatal("linear", "weight must be [out_features, in_features]");
    if (x->ndim == 0 || x->shape[x->ndim - 1] != weight->shape[1]) {
        char sx[96], sw[96];
        tensor_fatal("linear", "input %s does not match weight %s (last input dim must equal in_features)",
                     tensor_shape_string(x, sx, sizeof sx), tensor_shape_string(weight, sw, sizeof sw));
    }
    if (bias && !tensor_is_cuda(x) && (x->dtype == DTYPE_F32 || x->dtype == DTYPE_F64) && x->dtype == weight->dtype && bias->dtype == weight->dtype && bias->ndim == 1 &&
        bias->shape[0] == weight->shape[0] && !tensor_is_cuda(weight) && !tensor_is_cuda(bias))
        return linear_with_bias_cpu(x, weight, bias);
    Tensor *y = op_matmul(x, op_transpose(weight, 0, 1));
    return bias ? op_add(y, bias) : y;
}
