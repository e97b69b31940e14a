// Convolution, pooling and nearest upsampling on NCHW tensors (kernels in engine/cpu/conv.c and
// engine/cpu/pool.c). Shapes follow torch.nn.functional: conv2d, max_pool2d, avg_pool2d,
// adaptive_avg_pool2d, interpolate(mode='nearest').
//
// Pooling and upsampling take [B, C, H, W] or unbatched [C, H, W]; a pooling stride <= 0 means
// stride = kernel (PyTorch's default). ceil_mode and pooling dilation are not supported.
#include "engine/cpu/conv.h"
#include "engine/cpu/pool.h"
#include "engine/ops_internal.h"
#include "kernels/conv.h"
#include "kernels/pool.h"

// ---------------------------------------------------------------- conv2d

Conv2dParams conv2d_params(int stride, int padding, int dilation, int groups) {
    return (Conv2dParams){.stride_h = stride, .stride_w = stride, .pad_h = padding, .pad_w = padding,
                          .dilation_h = dilation, .dilation_w = dilation, .groups = groups};
}

static ConvGeometry conv_geometry_from_ints(const int64_t *ints) {
    ConvGeometry g = {.batch = ints[0], .c_in = ints[1], .h = ints[2], .w = ints[3], .c_out = ints[4],
                      .kh = ints[5], .kw = ints[6], .stride_h = ints[7], .stride_w = ints[8], .pad_h = ints[9],
                      .pad_w = ints[10], .dilation_h = ints[11], .dilation_w = ints[12], .groups = ints[13]};
    conv_geometry_finish(&g);
    return g;
}

static void conv_geometry_to_ints(const ConvGeometry *g, int64_t *ints) {
    const int64_t values[14] = {g->batch, g->c_in, g->h, g->w, g->c_out, g->kh, g->kw, g->stride_h,
                                g->stride_w, g->pad_h, g->pad_w, g->dilation_h, g->dilation_w, g->groups};
    for (int i = 0; i < 14; i++) ints[i] = values[i];
}

static void conv2d_backward(AutogradNode *node, Tensor *grad_y) {
    Tensor *x = node->saved[0], *w = node->saved[1];
    ConvGeometry g = conv_geometry_from_ints(node->ints);
    Tensor *gc = contiguous(grad_y);
    Tensor *dx = autograd_input_needs_grad(node, 0) ? tensor_empty_like(x) : NULL;
    Tensor *dw = autograd_input_needs_grad(node, 1) ? tensor_empty_like(w) : NULL;
    Tensor *db = node->n_inputs > 2 && autograd_input_needs_grad(node, 2)
                     ? tensor_empty_on(x->dtype, SHAPE(g.c_out), x->storage->device)
                     : NULL;
    if (tensor_is_cuda(x) && gpu_use_vendor_libraries()) {  // cuDNN on a GPU
        GpuStream *stream = gpu_stream_default();
        if (dx) gpu_conv2d_backward_data(stream, &g, tensor_data(w), tensor_data(gc), tensor_data(dx));
        if (dw) gpu_conv2d_backward_filter(stream, &g, tensor_data(x), tensor_data(gc), tensor_data(dw));
        if (db) gpu_conv2d_backward_bias(stream, &g, tensor_data(gc), tensor_data(db));
    } else if (tensor_is_cuda(x)) {
        // The implicit-GEMM kernels (kernels/conv.cu): the fallback, and the emulated path. Filter
        // and bias gradients reduce their split partials in a fixed order (deterministic).
        if (dx) conv2d_backward_data_launch(&g, tensor_data(w), tensor_data(gc), tensor_data(dx), device_stream());
        if (dw) {
            size_t bytes = conv2d_backward_filter_workspace_bytes(&g);
            void *workspace = bytes ? gpu_alloc(bytes) : NULL;
            conv2d_backward_filter_launch(&g, tensor_data(x), tensor_data(gc), tensor_data(dw), workspace, device_stream());
            if (workspace) gpu_free(workspace);  // reuse is ordered on the same stream
        }
        if (db) {
            size_t bytes = conv2d_backward_bias_workspace_bytes(&g);
            void *workspace = bytes ? gpu_alloc(bytes) : NULL;
            conv2d_backward_bias_launch(&g, tensor_data(gc), tensor_data(db), workspace, device_stream());
            if (workspace) gpu_free(workspace);
        }
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_conv2d_backward, &g, tensor_data(x), tensor_data(w), tensor_data(gc),
                       dx ? tensor_data(dx) : NULL, dw ? tensor_data(dw) : NULL, db ? tensor_data(db) : NULL);
    }
    autograd_pass_grad(node, 0, dx);
    autograd_pass_grad(node, 1, dw);
    if (db) autograd_pass_grad(node, 2, db);
}

Tensor *op_conv2d(Tensor *x, Tensor *weight, Tensor *bias, Conv2dParams p) {
    const char *op = "conv2d";
    check_float_input_any_device(op, x);
    check_float_input_any_device(op, weight);
    check_same_dtype(op, x, weight);
    check_same_device(op, x, weight);
    char sx[96], sw[96], sb[96];
    tensor_shape_string(x, sx, sizeof sx);
    tensor_shape_string(weight, sw, sizeof sw);
    if (x->ndim != 4) tensor_fatal(op, "input %s must be [B, Cin, H, W]", sx);
    if (weight->ndim != 4) tensor_fatal(op, "weight%s%s %s must be [Cout, Cin/groups, KH, KW]", weight->name[0] ? " " : "", weight->name, sw);
    if (p.stride_h < 1 || p.stride_w < 1 || p.dilation_h < 1 || p.dilation_w < 1 || p.pad_h < 0 || p.pad_w < 0 ||
        p.groups < 1)
        tensor_fatal(op, "stride (%d, %d) and dilation (%d, %d) must be >= 1, padding (%d, %d) >= 0, groups %d >= 1",
                     p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, p.pad_h, p.pad_w, p.groups);
    ConvGeometry g = {.batch = x->shape[0], .c_in = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                      .c_out = weight->shape[0], .kh = weight->shape[2], .kw = weight->shape[3],
                      .stride_h = p.stride_h, .stride_w = p.stride_w, .pad_h = p.pad_h, .pad_w = p.pad_w,
                      .dilation_h = p.dilation_h, .dilation_w = p.dilation_w, .groups = p.groups};
    if (g.c_in % g.groups || g.c_out % g.groups)
        tensor_fatal(op, "groups %lld must divide both input channels (input %s) and output channels (weight %s)",
                     (long long)g.groups, sx, sw);
    if (weight->shape[1] * g.groups != g.c_in)
        tensor_fatal(op, "input %s has %lld channels but weight %s with groups %lld expects %lld", sx,
                     (long long)g.c_in, sw, (long long)g.groups, (long long)(weight->shape[1] * g.groups));
    if (g.kh < 1 || g.kw < 1) tensor_fatal(op, "weight %s has an empty kernel", sw);
    int64_t reach_h = g.dilation_h * (g.kh - 1) + 1, reach_w = g.dilation_w * (g.kw - 1) + 1;
    if (reach_h > g.h + 2 * g.pad_h || reach_w > g.w + 2 * g.pad_w)
        tensor_fatal(op, "kernel %lldx%lld (dilation %lld, %lld: spans %lldx%lld) is larger than the padded input %lldx%lld (input %s, padding %lld, %lld)",
                     (long long)g.kh, (long long)g.kw, (long long)g.dilation_h, (long long)g.dilation_w,
                     (long long)reach_h, (long long)reach_w, (long long)(g.h + 2 * g.pad_h),
                     (long long)(g.w + 2 * g.pad_w), sx, (long long)g.pad_h, (long long)g.pad_w);
    if (bias) {
        check_float_input_any_device(op, bias);
        check_same_dtype(op, x, bias);
        check_same_device(op, x, bias);
        if (bias->ndim != 1 || bias->shape[0] != g.c_out)
            tensor_fatal(op, "bias %s must be [%lld] (weight %s)", tensor_shape_string(bias, sb, sizeof sb),
                         (long long)g.c_out, sw);
    }
    conv_geometry_finish(&g);
    Tensor *xc = contiguous(x), *wc = contiguous(weight), *bc = bias ? contiguous(bias) : NULL;
    Tensor *y = tensor_empty_on(x->dtype, SHAPE(g.batch, g.c_out, g.out_h, g.out_w), x->storage->device);
    if (tensor_is_cuda(x) && gpu_use_vendor_libraries()) {  // cuDNN on a GPU
        gpu_conv2d_forward(gpu_stream_default(), &g, tensor_data(xc), tensor_data(wc), bc ? tensor_data(bc) : NULL, tensor_data(y));
    } else if (tensor_is_cuda(x)) {  // the implicit-GEMM kernel: the fallback, and the emulated path
        conv2d_forward_launch(&g, tensor_data(xc), tensor_data(wc), bc ? tensor_data(bc) : NULL, tensor_data(y), device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_conv2d_forward, &g, tensor_data(xc), tensor_data(wc), bc ? tensor_data(bc) : NULL,
                       tensor_data(y));
    }
    Tensor *inputs[3] = {x, weight, bias};
    int n_inputs = bias ? 3 : 2;
    if (autograd_needed(n_inputs, inputs)) {
        AutogradNode *node = autograd_record(y, op, conv2d_backward, n_inputs, inputs);
        autograd_save(node, 0, xc);
        autograd_save(node, 1, wc);
        conv_geometry_to_ints(&g, node->ints);
    }
    return y;
}

// ---------------------------------------------------------------- pooling and upsampling

// The CUDA launcher name##_launch or the CPU kernel cpu_##name by x's device: same arguments.
#define POOL_DISPATCH(x, name, ...)                            \
    do {                                                       \
        if (tensor_is_cuda(x)) {                               \
            name##_launch(__VA_ARGS__, device_stream());       \
            GPU_CHECK_LAUNCH();                                \
        } else {                                               \
            DISPATCH_FLOAT(x, cpu_##name, __VA_ARGS__);        \
        }                                                      \
    } while (0)
// Node layout: ints[0..7] = planes, H, W, OH, OW, kernel, stride, pad; ints[8] = count_include_pad;
// max pooling saves its i32 indices (position of the maximum inside the plane) in saved[0].

static PoolGeometry pool_geometry_from_ints(const int64_t *ints) {
    return (PoolGeometry){.planes = ints[0], .h = ints[1], .w = ints[2], .out_h = ints[3], .out_w = ints[4],
                          .kernel = ints[5], .stride = ints[6], .pad = ints[7]};
}

static void pool_geometry_to_ints(const PoolGeometry *g, int64_t *ints) {
    const int64_t values[8] = {g->planes, g->h, g->w, g->out_h, g->out_w, g->kernel, g->stride, g->pad};
    for (int i = 0; i < 8; i++) ints[i] = values[i];
}

// Validates [B, C, H, W] or [C, H, W] and fills planes, H, W.
static PoolGeometry pool_input(const char *op, Tensor *x) {
    check_float_input_any_device(op, x);
    if (x->ndim != 3 && x->ndim != 4) {
        char s[96];
        tensor_fatal(op, "input %s must be [B, C, H, W] or [C, H, W]", tensor_shape_string(x, s, sizeof s));
    }
    PoolGeometry g = {.h = x->shape[x->ndim - 2], .w = x->shape[x->ndim - 1], .planes = 1};
    for (int d = 0; d < x->ndim - 2; d++) g.planes *= x->shape[d];
    if (g.h * g.w > INT32_MAX) tensor_fatal(op, "a plane of %lld elements is too large", (long long)(g.h * g.w));
    return g;
}

static Tensor *pool_output(Tensor *x, const PoolGeometry *g) {
    Shape shape = tensor_shape(x);
    shape.dims[shape.ndim - 2] = g->out_h;
    shape.dims[shape.ndim - 1] = g->out_w;
    return tensor_empty_on(x->dtype, shape, x->storage->device);
}

// Kernel, stride and padding checks shared by max and average pooling; fills the output size.
static void pool_window(const char *op, Tensor *x, PoolGeometry *g, int kernel, int stride, int padding) {
    if (stride <= 0) stride = kernel;
    char s[96];
    tensor_shape_string(x, s, sizeof s);
    if (kernel < 1) tensor_fatal(op, "kernel size %d must be >= 1", kernel);
    if (padding < 0 || 2 * padding > kernel)
        tensor_fatal(op, "padding %d must be between 0 and half the kernel size %d", padding, kernel);
    if (kernel > g->h + 2 * padding || kernel > g->w + 2 * padding)
        tensor_fatal(op, "kernel %dx%d is larger than the padded input (input %s, padding %d)", kernel, kernel, s,
                     padding);
    g->kernel = kernel;
    g->stride = stride;
    g->pad = padding;
    g->out_h = (g->h + 2 * padding - kernel) / stride + 1;
    g->out_w = (g->w + 2 * padding - kernel) / stride + 1;
}

static void max_pool2d_backward(AutogradNode *node, Tensor *grad_y) {
    PoolGeometry g = pool_geometry_from_ints(node->ints);
    Tensor *x = node->inputs[0], *gc = contiguous(grad_y);
    Tensor *dx = tensor_empty_like(x);
    POOL_DISPATCH(x, max_pool2d_backward, &g, tensor_data(gc), (const int32_t *)tensor_data(node->saved[0]),
                   tensor_data(dx));
    autograd_pass_grad(node, 0, dx);
}

Tensor *op_max_pool2d(Tensor *x, int kernel, int stride, int padding) {
    PoolGeometry g = pool_input("max_pool2d", x);
    pool_window("max_pool2d", x, &g, kernel, stride, padding);
    Tensor *xc = contiguous(x), *y = pool_output(x, &g);
    Tensor *index = tensor_empty_on(DTYPE_I32, tensor_shape(y), x->storage->device);
    POOL_DISPATCH(x, max_pool2d_forward, &g, tensor_data(xc), tensor_data(y), (int32_t *)tensor_data(index));
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, "max_pool2d", max_pool2d_backward, 1, &x);
        pool_geometry_to_ints(&g, node->ints);
        autograd_save(node, 0, index);
    }
    return y;
}

static void avg_pool2d_backward(AutogradNode *node, Tensor *grad_y) {
    PoolGeometry g = pool_geometry_from_ints(node->ints);
    Tensor *x = node->inputs[0], *gc = contiguous(grad_y);
    Tensor *dx = tensor_empty_like(x);
    POOL_DISPATCH(x, avg_pool2d_backward, &g, tensor_data(gc), tensor_data(dx), node->ints[8] != 0);
    autograd_pass_grad(node, 0, dx);
}

Tensor *op_avg_pool2d(Tensor *x, int kernel, int stride, int padding, bool count_include_pad) {
    PoolGeometry g = pool_input("avg_pool2d", x);
    pool_window("avg_pool2d", x, &g, kernel, stride, padding);
    Tensor *xc = contiguous(x), *y = pool_output(x, &g);
    POOL_DISPATCH(x, avg_pool2d_forward, &g, tensor_data(xc), tensor_data(y), count_include_pad);
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, "avg_pool2d", avg_pool2d_backward, 1, &x);
        pool_geometry_to_ints(&g, node->ints);
        node->ints[8] = count_include_pad;
    }
    return y;
}

// Output size checks shared by adaptive pooling and upsampling.
static void resize_output(const char *op, Tensor *x, PoolGeometry *g, int out_h, int out_w) {
    if (out_h < 1 || out_w < 1 || g->h < 1 || g->w < 1) {
        char s[96];
        tensor_fatal(op, "output size %dx%d and input %s must have non-empty planes", out_h, out_w,
                     tensor_shape_string(x, s, sizeof s));
    }
    g->out_h = out_h;
    g->out_w = out_w;
}

static void adaptive_avg_pool2d_backward(AutogradNode *node, Tensor *grad_y) {
    PoolGeometry g = pool_geometry_from_ints(node->ints);
    Tensor *x = node->inputs[0], *gc = contiguous(grad_y);
    Tensor *dx = tensor_empty_like(x);
    POOL_DISPATCH(x, adaptive_avg_pool2d_backward, &g, tensor_data(gc), tensor_data(dx));
    autograd_pass_grad(node, 0, dx);
}

Tensor *op_adaptive_avg_pool2d(Tensor *x, int out_h, int out_w) {
    PoolGeometry g = pool_input("adaptive_avg_pool2d", x);
    resize_output("adaptive_avg_pool2d", x, &g, out_h, out_w);
    Tensor *xc = contiguous(x), *y = pool_output(x, &g);
    POOL_DISPATCH(x, adaptive_avg_pool2d_forward, &g, tensor_data(xc), tensor_data(y));
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, "adaptive_avg_pool2d", adaptive_avg_pool2d_backward, 1, &x);
        pool_geometry_to_ints(&g, node->ints);
    }
    return y;
}

static void upsample_nearest2d_backward(AutogradNode *node, Tensor *grad_y) {
    PoolGeometry g = pool_geometry_from_ints(node->ints);
    Tensor *x = node->inputs[0], *gc = contiguous(grad_y);
    Tensor *dx = tensor_empty_like(x);
    POOL_DISPATCH(x, upsample_nearest2d_backward, &g, tensor_data(gc), tensor_data(dx));
    autograd_pass_grad(node, 0, dx);
}

Tensor *op_upsample_nearest2d(Tensor *x, int out_h, int out_w) {
    PoolGeometry g = pool_input("upsample_nearest2d", x);
    resize_output("upsample_nearest2d", x, &g, out_h, out_w);
    Tensor *xc = contiguous(x), *y = pool_output(x, &g);
    POOL_DISPATCH(x, upsample_nearest2d_forward, &g, tensor_data(xc), tensor_data(y));
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, "upsample_nearest2d", upsample_nearest2d_backward, 1, &x);
        pool_geometry_to_ints(&g, node->ints);
    }
    return y;
}
