"""Writes tests/golden/ops.safetensors: PyTorch forward outputs and gradients of every Tailor op.

Regenerate from the repository root with Debian's Python, which has python3-torch (1.13) and numpy:

    /usr/bin/python3 tests/ref/gen_op_goldens.py

(not the pyenv `python3` that may come first on PATH: it has no torch). The output is committed;
tests/test_golden_ops.c reads it and never needs Python. Every case below must be handled by that
test (it fails on an unknown op name or on a tensor it did not use), so change both together.

Layout, for each case (one op configuration) named e.g. "conv2d_stride2_groups2":
  "<case>/in0", "<case>/in1", ...  the inputs in the C function's argument order; the index is the
                                   argument position, so an absent optional argument (NULL in C,
                                   None in torch) leaves a gap. f32 values, i64 targets/indices,
                                   u8 masks/conditions.
  "<case>/out"                     the forward output ("<case>/out0", "out1", ... for ops with
                                   several outputs: split).
  "<case>/gout"                    (differentiable cases) a random upstream gradient, shape of out
                                   ("gout0", ... for several outputs).
  "<case>/ginK"                    d(sum(out * gout))/d(inK) by torch.autograd, present exactly for
                                   the inputs that the C test marks as requiring gradients.
  "<case>/running_mean_after", "<case>/running_var_after"
                                   batch_norm: the running statistics (in3, in4) after the call.
Metadata "<case>" -> JSON {"op": "<name>", ...the op's parameters}; see each case below.

Every case has its own seed (crc32 of its name), so adding a case leaves the others' data unchanged.
"""
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_min  # noqa: E402


class _NumpyKeeping0d:
    """safetensors_min.save passes arrays through np.ascontiguousarray, which turns a 0-d array
    (a scalar loss, a 0-d operand) into shape (1,). np.require(..., "C") keeps the shape. Harmless
    once safetensors_min itself keeps 0-d shapes."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def ascontiguousarray(array):
        return np.require(array, requirements="C")


safetensors_min.np = _NumpyKeeping0d()
save = safetensors_min.save

OUT_PATH = os.path.join("tests", "golden", "ops.safetensors")

tensors = {}
metadata = {}


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))


def randn(*shape, scale=1.0, shift=0.0):
    return torch.randn(shape, dtype=torch.float32) * scale + shift


def positive(*shape, low=0.2, high=3.0):
    return torch.rand(shape, dtype=torch.float32) * (high - low) + low


def away_from_zero(*shape, margin=0.1):
    """Normal values pushed away from 0 (abs and relu-like kinks would make gradients ambiguous)."""
    x = torch.randn(shape, dtype=torch.float32)
    return x + torch.sign(x) * margin


def probs(*shape, dim=-1, scale=2.0):
    return torch.softmax(torch.randn(*shape, dtype=torch.float32) * scale, dim=dim)


def case(name, op, params, inputs, fn, no_grad=(), extra=None):
    """Records one case.

    inputs: list in the C argument order (None for an absent optional argument), made by a
    function of no arguments so that it runs after the per-case seed. fn(*inputs) returns the
    output (or a tuple of outputs). Gradients are taken for every float input except the indices
    in no_grad. extra(inputs_after_call) returns a dict of additional named tensors.
    """
    assert name not in metadata, name
    assert "/" not in name
    seed(name)
    inputs = inputs()
    for i, x in enumerate(inputs):
        if x is not None:
            tensors[f"{name}/in{i}"] = x.detach().clone()
    grad_index = [i for i, x in enumerate(inputs)
                  if x is not None and x.is_floating_point() and i not in no_grad]
    args = []
    for i, x in enumerate(inputs):
        if x is None:
            args.append(None)
        elif i in grad_index:
            args.append(x.detach().clone().requires_grad_(True))
        else:
            args.append(x.detach().clone())
    out = fn(*args)
    multi = isinstance(out, (tuple, list))
    outs = list(out) if multi else [out]
    for k, o in enumerate(outs):
        tensors[f"{name}/out{k}" if multi else f"{name}/out"] = o.detach().clone()
    if grad_index and outs[0].is_floating_point():
        gouts = [torch.randn(o.shape, dtype=torch.float32) for o in outs]
        for k, g in enumerate(gouts):
            tensors[f"{name}/gout{k}" if multi else f"{name}/gout"] = g
        grads = torch.autograd.grad(outs, [args[i] for i in grad_index], gouts)
        for i, g in zip(grad_index, grads):
            tensors[f"{name}/gin{i}"] = g.detach().clone()
    if extra is not None:
        for key, value in extra(args).items():
            tensors[f"{name}/{key}"] = value.detach().clone()
    metadata[name] = json.dumps(dict({"op": op}, **params), separators=(",", ":"))


# ---------------------------------------------------------------------------------------- elementwise
def elementwise():
    case("add_broadcast", "add", {}, lambda: [randn(2, 3, 5), randn(3, 1)], torch.add)
    case("add_same_shape_prime", "add", {}, lambda: [randn(13), randn(13)], torch.add)
    case("sub_broadcast_rank", "sub", {}, lambda: [randn(5), randn(2, 3, 5)], torch.sub)
    case("mul_broadcast_both", "mul", {}, lambda: [randn(2, 1, 7), randn(3, 1)], torch.mul)
    case("mul_scalar_tensor", "mul", {}, lambda: [randn(3, 5), randn()], torch.mul)
    case("div_broadcast", "div", {}, lambda: [randn(3, 7), positive(7, low=0.5)], torch.div)
    case("div_broadcast_numerator", "div", {},
         lambda: [randn(1, 7), away_from_zero(3, 1, margin=0.5)], torch.div)
    case("add_scalar", "add_scalar", {"scalar": 0.75}, lambda: [randn(3, 7)], lambda x: x + 0.75)
    case("mul_scalar", "mul_scalar", {"scalar": -1.5}, lambda: [randn(3, 7)], lambda x: x * -1.5)
    case("rsub_scalar", "rsub_scalar", {"scalar": 2.0}, lambda: [randn(3, 7)], lambda x: torch.rsub(x, 2.0))
    case("neg", "neg", {}, lambda: [randn(11)], torch.neg)
    case("pow_scalar_2_5", "pow_scalar", {"exponent": 2.5}, lambda: [positive(3, 7)], lambda x: torch.pow(x, 2.5))
    case("pow_scalar_3_negative_base", "pow_scalar", {"exponent": 3.0}, lambda: [randn(3, 7)],
         lambda x: torch.pow(x, 3.0))
    case("pow_scalar_minus_half", "pow_scalar", {"exponent": -0.5}, lambda: [positive(3, 7)],
         lambda x: torch.pow(x, -0.5))
    case("exp", "exp", {}, lambda: [randn(3, 7, scale=3.0)], torch.exp)
    case("log", "log", {}, lambda: [positive(3, 7, low=0.01, high=20.0)], torch.log)
    case("sqrt", "sqrt", {}, lambda: [positive(3, 7, low=0.01, high=20.0)], torch.sqrt)
    case("rsqrt", "rsqrt", {}, lambda: [positive(3, 7, low=0.05, high=20.0)], torch.rsqrt)
    case("abs", "abs", {}, lambda: [away_from_zero(3, 7)], torch.abs)
    # Values exactly on the bounds: torch passes the gradient there (low <= x <= high).
    case("clamp_both", "clamp", {"low": -0.5, "high": 0.75},
         lambda: [torch.cat([randn(19), torch.tensor([-0.5, 0.75])])], lambda x: torch.clamp(x, -0.5, 0.75))
    # null = no bound on that side (C: -INFINITY / INFINITY)
    case("clamp_low_only", "clamp", {"low": 0.1, "high": None}, lambda: [randn(4, 5)],
         lambda x: torch.clamp(x, min=0.1))
    case("clamp_high_only", "clamp", {"low": None, "high": -0.2}, lambda: [randn(4, 5)],
         lambda x: torch.clamp(x, max=-0.2))

    # Activations: normal values plus saturating extremes (overflow of exp in naive formulas).
    def activation_input():
        return torch.cat([randn(37, scale=3.0),
                          torch.tensor([-100.0, -30.0, -10.0, -1e-3, 1e-3, 10.0, 30.0, 100.0])]).reshape(5, 9)

    # Exact zeros: torch's relu gradient is 0 there, leaky_relu's is the slope (x > 0 ? 1 : slope).
    def kink_input():
        x = randn(30, scale=2.0)
        x[::7] = 0.0
        return x.reshape(5, 6)

    case("sigmoid", "sigmoid", {}, lambda: [activation_input()], torch.sigmoid)
    case("tanh", "tanh", {}, lambda: [activation_input()], torch.tanh)
    case("relu", "relu", {}, lambda: [kink_input()], torch.relu)
    case("leaky_relu", "leaky_relu", {"negative_slope": 0.2}, lambda: [kink_input()],
         lambda x: F.leaky_relu(x, 0.2))
    case("gelu", "gelu", {}, lambda: [activation_input()], F.gelu)
    case("gelu_tanh", "gelu_tanh", {}, lambda: [activation_input()], lambda x: F.gelu(x, approximate="tanh"))
    case("quick_gelu", "quick_gelu", {}, lambda: [activation_input()], lambda x: x * torch.sigmoid(1.702 * x))
    case("silu", "silu", {}, lambda: [activation_input()], F.silu)

    class GradReverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, lam):
            ctx.lam = lam
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return -ctx.lam * g, None

    case("grad_reverse", "grad_reverse", {"lambda": 0.3}, lambda: [randn(3, 5)],
         lambda x: GradReverse.apply(x, 0.3))


# ---------------------------------------------------------------------------------------- reductions
def reductions():
    case("sum_dims_0_2", "sum", {"dims": [0, 2], "keepdim": False}, lambda: [randn(3, 5, 7)],
         lambda x: torch.sum(x, dim=(0, 2)))
    case("sum_dim_1_keepdim", "sum", {"dims": [1], "keepdim": True}, lambda: [randn(3, 5, 7)],
         lambda x: torch.sum(x, dim=1, keepdim=True))
    case("sum_negative_dim", "sum", {"dims": [-1], "keepdim": False}, lambda: [randn(3, 5, 7)],
         lambda x: torch.sum(x, dim=-1))
    case("sum_all", "sum", {"dims": [], "keepdim": False}, lambda: [randn(3, 5, 7)], torch.sum)
    case("sum_all_keepdim", "sum", {"dims": [], "keepdim": True}, lambda: [randn(3, 5, 7)],
         lambda x: torch.sum(x, dim=(0, 1, 2), keepdim=True))
    case("mean_dims_0_2_keepdim", "mean", {"dims": [0, 2], "keepdim": True}, lambda: [randn(3, 5, 7)],
         lambda x: torch.mean(x, dim=(0, 2), keepdim=True))
    case("mean_dims_1_2", "mean", {"dims": [1, 2], "keepdim": False}, lambda: [randn(2, 3, 5, 7)],
         lambda x: torch.mean(x, dim=(1, 2)))
    case("mean_all", "mean", {"dims": [], "keepdim": False}, lambda: [randn(3, 5, 7)], torch.mean)
    case("mean_negative_dims_keepdim", "mean", {"dims": [-1, -3], "keepdim": True}, lambda: [randn(3, 5, 7)],
         lambda x: torch.mean(x, dim=(-1, -3), keepdim=True))
    case("var_correction0", "var", {"dims": [1], "correction": 0, "keepdim": False},
         lambda: [randn(3, 5, 7, shift=2.0)], lambda x: torch.var(x, dim=1, unbiased=False))
    case("var_correction1_keepdim", "var", {"dims": [0, 2], "correction": 1, "keepdim": True},
         lambda: [randn(3, 5, 7, shift=2.0)], lambda x: torch.var(x, dim=(0, 2), unbiased=True, keepdim=True))
    case("var_all_correction1", "var", {"dims": [], "correction": 1, "keepdim": False},
         lambda: [randn(3, 5, 7)], lambda x: torch.var(x, unbiased=True))
    # Mean 1000, spread 1: E[x^2] - E[x]^2 in f32 cancels catastrophically (ulp(1e6) = 0.06);
    # torch (Welford / two-pass) keeps ~1e-6 relative accuracy.
    case("var_large_offset", "var", {"dims": [1], "correction": 1, "keepdim": False},
         lambda: [randn(4, 40, shift=1000.0)], lambda x: torch.var(x, dim=1, unbiased=True))

    # Small integers: many ties. torch returns (and routes the gradient to) the first maximum.
    def ties(*shape):
        return torch.randint(-2, 3, shape).to(torch.float32)

    case("max_dim1_ties", "max", {"dim": 1, "keepdim": False}, lambda: [ties(3, 5, 4)],
         lambda x: torch.max(x, dim=1).values)
    case("max_last_keepdim", "max", {"dim": -1, "keepdim": True}, lambda: [randn(4, 7)],
         lambda x: torch.max(x, dim=-1, keepdim=True).values)
    case("argmax_dim1_ties", "argmax", {"dim": 1, "keepdim": False}, lambda: [ties(3, 5, 4)],
         lambda x: torch.argmax(x, dim=1))
    case("argmax_last_keepdim", "argmax", {"dim": -1, "keepdim": True}, lambda: [randn(4, 7)],
         lambda x: torch.argmax(x, dim=-1, keepdim=True))

    def large_rows():
        x = randn(4, 7, scale=2.0)
        x[1] += 80.0  # exp overflows f32 without the max shift
        x[2] -= 120.0
        return x

    case("logsumexp_last_large", "logsumexp", {"dim": -1, "keepdim": False}, lambda: [large_rows()],
         lambda x: torch.logsumexp(x, dim=-1))
    case("logsumexp_middle_keepdim", "logsumexp", {"dim": 1, "keepdim": True}, lambda: [randn(2, 5, 3)],
         lambda x: torch.logsumexp(x, dim=1, keepdim=True))
    case("softmax_last_large", "softmax", {"dim": -1}, lambda: [large_rows()], lambda x: torch.softmax(x, -1))
    case("softmax_middle", "softmax", {"dim": 1}, lambda: [randn(2, 5, 3)], lambda x: torch.softmax(x, 1))
    case("softmax_size1_dim", "softmax", {"dim": 1}, lambda: [randn(3, 1, 2)], lambda x: torch.softmax(x, 1))
    case("log_softmax_last_large", "log_softmax", {"dim": -1}, lambda: [large_rows()],
         lambda x: torch.log_softmax(x, -1))
    case("log_softmax_middle", "log_softmax", {"dim": 1}, lambda: [randn(2, 5, 3)],
         lambda x: torch.log_softmax(x, 1))


# ---------------------------------------------------------------------------------------- linear algebra
def linalg():
    case("matmul_2d", "matmul", {}, lambda: [randn(5, 7), randn(7, 3)], torch.matmul)
    case("matmul_batched_broadcast", "matmul", {}, lambda: [randn(2, 1, 5, 7), randn(3, 7, 4)], torch.matmul)
    case("matmul_fold", "matmul", {}, lambda: [randn(2, 3, 7), randn(7, 5)], torch.matmul)
    case("matmul_vector_matrix", "matmul", {}, lambda: [randn(7), randn(2, 7, 3)], torch.matmul)
    case("matmul_matrix_vector", "matmul", {}, lambda: [randn(2, 5, 7), randn(7)], torch.matmul)
    case("matmul_vector_vector", "matmul", {}, lambda: [randn(7), randn(7)], torch.matmul)
    case("matmul_outer_k1", "matmul", {}, lambda: [randn(5, 1), randn(1, 3)], torch.matmul)
    case("matmul_long_k", "matmul", {}, lambda: [randn(3, 300), randn(300, 5)], torch.matmul)
    case("linear_bias", "linear", {}, lambda: [randn(2, 3, 13), randn(5, 13), randn(5)], F.linear)
    case("linear_no_bias", "linear", {}, lambda: [randn(6, 13), randn(5, 13), None], F.linear)
    case("linear_1d_input", "linear", {}, lambda: [randn(13), randn(5, 13), randn(5)], F.linear)
    case("linear_long_k", "linear", {}, lambda: [randn(4, 257), randn(3, 257), randn(3)], F.linear)


# ---------------------------------------------------------------------------------------- conv / pool
def conv_pool():
    def conv(name, x_shape, w_shape, bias, stride=1, padding=0, dilation=1, groups=1):
        params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        case(name, "conv2d", params,
             lambda: [randn(*x_shape), randn(*w_shape, scale=0.5), randn(w_shape[0]) if bias else None],
             lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups))

    conv("conv2d_basic_pad1", (2, 3, 7, 9), (4, 3, 3, 3), True, padding=1)
    conv("conv2d_stride2_groups2", (2, 4, 9, 7), (6, 2, 3, 3), True, stride=2, padding=1, groups=2)
    conv("conv2d_dilation2_rect_kernel", (1, 3, 11, 10), (5, 3, 3, 2), True, dilation=2, padding=2)
    conv("conv2d_depthwise_nobias", (2, 5, 8, 8), (5, 1, 3, 3), False, padding=1, groups=5)
    conv("conv2d_depthwise_multiplier", (1, 3, 6, 7), (6, 1, 3, 3), True, stride=2, padding=1, groups=3)
    conv("conv2d_1x1_nobias", (3, 6, 5, 5), (7, 6, 1, 1), False)
    conv("conv2d_stride3_pad2_uneven", (2, 2, 10, 11), (3, 2, 4, 4), True, stride=3, padding=2)
    conv("conv2d_asymmetric_params", (1, 2, 9, 8), (3, 2, 3, 3), True, stride=[2, 1], padding=[0, 2],
         dilation=[1, 2])
    conv("conv2d_long_k", (2, 32, 6, 6), (8, 32, 3, 3), True, padding=1)  # K = 32*3*3 = 288
    conv("conv2d_kernel_covers_input", (3, 1, 4, 5), (2, 1, 4, 5), True)  # output 1x1
    conv("conv2d_1x1_pad2", (1, 3, 3, 4), (2, 3, 1, 1), True, padding=2)  # border = bias only

    def relu_rounded(*shape):
        # ReLU'd small integers: windows full of equal values (ties: torch takes the first maximum).
        return torch.relu(torch.randint(-3, 3, shape).to(torch.float32))

    case("max_pool2d_k3_s2_p1", "max_pool2d", {"kernel": 3, "stride": 2, "padding": 1},
         lambda: [randn(2, 3, 9, 7)], lambda x: F.max_pool2d(x, 3, 2, 1))
    case("max_pool2d_k2_s2_ties", "max_pool2d", {"kernel": 2, "stride": 2, "padding": 0},
         lambda: [relu_rounded(1, 2, 7, 7)], lambda x: F.max_pool2d(x, 2, 2, 0))
    case("max_pool2d_k3_s1_overlap", "max_pool2d", {"kernel": 3, "stride": 1, "padding": 0},
         lambda: [randn(1, 2, 6, 5)], lambda x: F.max_pool2d(x, 3, 1, 0))
    for include in (True, False):
        suffix = "include_pad" if include else "exclude_pad"
        case(f"avg_pool2d_k3_s2_p1_{suffix}", "avg_pool2d",
             {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": include},
             lambda: [randn(2, 3, 9, 7)], lambda x, inc=include: F.avg_pool2d(x, 3, 2, 1, count_include_pad=inc))
    case("avg_pool2d_k2_s1", "avg_pool2d", {"kernel": 2, "stride": 1, "padding": 0, "count_include_pad": True},
         lambda: [randn(1, 2, 5, 6)], lambda x: F.avg_pool2d(x, 2, 1, 0))

    def adaptive(name, x_shape, out_h, out_w):
        case(name, "adaptive_avg_pool2d", {"out_h": out_h, "out_w": out_w}, lambda: [randn(*x_shape)],
             lambda x: F.adaptive_avg_pool2d(x, (out_h, out_w)))

    adaptive("adaptive_avg_pool2d_7x5_to_3x2", (2, 3, 7, 5), 3, 2)
    adaptive("adaptive_avg_pool2d_10x9_to_4x4", (1, 2, 10, 9), 4, 4)
    adaptive("adaptive_avg_pool2d_global", (2, 3, 5, 7), 1, 1)
    adaptive("adaptive_avg_pool2d_upscale_3x2_to_5x4", (1, 2, 3, 2), 5, 4)

    def nearest(name, x_shape, out_h, out_w):
        case(name, "upsample_nearest2d", {"out_h": out_h, "out_w": out_w}, lambda: [randn(*x_shape)],
             lambda x: F.interpolate(x, size=(out_h, out_w), mode="nearest"))

    nearest("upsample_nearest2d_3x5_to_7x4", (1, 2, 3, 5), 7, 4)
    nearest("upsample_nearest2d_4x4_to_8x8", (2, 3, 4, 4), 8, 8)
    nearest("upsample_nearest2d_7x5_to_3x2", (1, 2, 7, 5), 3, 2)
    nearest("upsample_nearest2d_5x3_to_11x13", (1, 1, 5, 3), 11, 13)


# ---------------------------------------------------------------------------------------- normalisation
def norms():
    def bn(name, x_shape, affine, running, training, momentum, eps, shift=0.5):
        c = x_shape[1]
        params = {"training": training, "momentum": momentum, "eps": eps}

        def inputs():
            x = randn(*x_shape, scale=2.0 if shift == 0.5 else 1.0, shift=shift)
            w = randn(c, shift=1.0) if affine else None
            b = randn(c) if affine else None
            rm = randn(c, scale=0.5) if running else None
            rv = positive(c, low=0.5, high=2.0) if running else None
            return [x, w, b, rm, rv]

        def fn(x, w, b, rm, rv):
            return F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps)

        extra = (lambda args: {"running_mean_after": args[3], "running_var_after": args[4]}) if running else None
        case(name, "batch_norm", params, inputs, fn, no_grad=(3, 4), extra=extra)

    bn("batch_norm_train", (4, 3, 5, 2), True, True, True, 0.1, 1e-5)
    bn("batch_norm_train_2d_no_affine", (6, 5), False, True, True, 0.3, 1e-3)
    bn("batch_norm_train_no_running", (3, 4, 3, 3), True, False, True, 0.1, 1e-5)
    bn("batch_norm_train_3d", (2, 3, 7), True, True, True, 0.1, 1e-5)
    bn("batch_norm_eval", (3, 4, 3, 5), True, True, False, 0.1, 1e-5)
    # Inputs far from zero (mean 30, spread 1, like unnormalised pixels): a one-pass
    # E[x^2] - E[x]^2 variance loses ~5e-4 relative accuracy in f32 (fails rtol 1e-4); torch's does
    # not. (Mean 100 would make ulp(100) / spread = 8e-6 the noise floor of any f32 implementation.)
    bn("batch_norm_train_offset", (4, 3, 3, 3), True, True, True, 0.1, 1e-5, shift=30.0)

    def gn(name, x_shape, groups, affine, eps, shift=0.3):
        c = x_shape[1]
        case(name, "group_norm", {"groups": groups, "eps": eps},
             lambda: [randn(*x_shape, scale=1.5, shift=shift), randn(c, shift=1.0) if affine else None,
                      randn(c) if affine else None],
             lambda x, w, b: F.group_norm(x, groups, w, b, eps))

    gn("group_norm_g3", (2, 6, 5, 3), 3, True, 1e-5)
    gn("group_norm_g1_no_affine", (2, 4, 3, 3), 1, False, 1e-5)
    gn("group_norm_instance_3d", (2, 4, 7), 4, True, 1e-6)
    gn("group_norm_offset", (2, 4, 3, 3), 2, True, 1e-5, shift=30.0)  # see batch_norm_train_offset

    def ln(name, x_shape, affine, eps, shift=0.3):
        d = x_shape[-1]
        case(name, "layer_norm", {"eps": eps},
             lambda: [randn(*x_shape, scale=1.5, shift=shift), randn(d, shift=1.0) if affine else None,
                      randn(d) if affine else None],
             lambda x, w, b: F.layer_norm(x, (d,), w, b, eps))

    ln("layer_norm_affine", (3, 5, 37), True, 1e-5)
    ln("layer_norm_no_affine", (4, 13), False, 1e-5)
    ln("layer_norm_long_d", (2, 384), True, 1e-6)
    ln("layer_norm_offset", (3, 29), True, 1e-5, shift=30.0)  # see batch_norm_train_offset


# ---------------------------------------------------------------------------------------- indexing
def indexing():
    case("concat_dim1", "concat", {"dim": 1}, lambda: [randn(2, 3, 4), randn(2, 1, 4), randn(2, 5, 4)],
         lambda *xs: torch.cat(xs, 1))
    case("concat_dim0", "concat", {"dim": 0}, lambda: [randn(1, 3), randn(4, 3)], lambda *xs: torch.cat(xs, 0))
    case("concat_last_negative", "concat", {"dim": -1}, lambda: [randn(2, 3, 2), randn(2, 3, 5), randn(2, 3, 1)],
         lambda *xs: torch.cat(xs, -1))
    case("stack_dim0", "stack", {"dim": 0}, lambda: [randn(3, 4), randn(3, 4), randn(3, 4)],
         lambda *xs: torch.stack(xs, 0))
    case("stack_dim_last", "stack", {"dim": 2}, lambda: [randn(3, 5), randn(3, 5)], lambda *xs: torch.stack(xs, 2))
    case("stack_dim_negative", "stack", {"dim": -2}, lambda: [randn(2, 3), randn(2, 3), randn(2, 3)],
         lambda *xs: torch.stack(xs, -2))
    case("split_dim1", "split", {"sizes": [2, 3, 1], "dim": 1}, lambda: [randn(3, 6, 4)],
         lambda x: torch.split(x, [2, 3, 1], 1))
    case("split_last_negative", "split", {"sizes": [5, 2], "dim": -1}, lambda: [randn(2, 3, 7)],
         lambda x: torch.split(x, [5, 2], -1))

    # Repeated indices: the backward must accumulate.
    case("gather_dim1", "gather", {"dim": 1}, lambda: [randn(3, 5, 4), torch.randint(0, 5, (3, 6, 4))],
         lambda x, i: torch.gather(x, 1, i))
    case("gather_dim0", "gather", {"dim": 0}, lambda: [randn(4, 3), torch.randint(0, 4, (2, 3))],
         lambda x, i: torch.gather(x, 0, i))
    # torch allows index smaller than x in the non-gathered dims too.
    case("gather_last_smaller_index", "gather", {"dim": -1},
         lambda: [randn(3, 4, 6), torch.randint(0, 6, (2, 3, 2))], lambda x, i: torch.gather(x, -1, i))
    case("index_select_dim0_repeats", "index_select", {"dim": 0},
         lambda: [randn(5, 3), torch.tensor([4, 0, 4, 2], dtype=torch.int64)], lambda x, i: torch.index_select(x, 0, i))
    case("index_select_last_negative", "index_select", {"dim": -1},
         lambda: [randn(3, 4), torch.tensor([3, 3, 1], dtype=torch.int64)], lambda x, i: torch.index_select(x, -1, i))
    case("index_select_dim1", "index_select", {"dim": 1},
         lambda: [randn(2, 6, 3), torch.tensor([5, 1], dtype=torch.int64)], lambda x, i: torch.index_select(x, 1, i))
    case("embedding_2d_indices", "embedding", {}, lambda: [randn(11, 6), torch.randint(0, 11, (3, 4))],
         lambda w, i: F.embedding(i, w))
    case("embedding_1d_repeats", "embedding", {},
         lambda: [randn(7, 5), torch.tensor([3, 3, 0, 6, 3], dtype=torch.int64)], lambda w, i: F.embedding(i, w))

    def mask(*shape):
        return torch.rand(*shape) < 0.5

    case("where_broadcast_all", "where", {}, lambda: [mask(3, 1), randn(2, 1, 5), randn(3, 5)],
         lambda c, a, b: torch.where(c, a, b))
    case("where_same_shape", "where", {}, lambda: [mask(4, 6), randn(4, 6), randn(4, 6)],
         lambda c, a, b: torch.where(c, a, b))
    case("masked_fill_broadcast", "masked_fill", {"value": -10000.0}, lambda: [randn(3, 4, 5), mask(4, 1)],
         lambda x, m: x.masked_fill(m, -10000.0))
    case("masked_fill_same_shape", "masked_fill", {"value": 0.5}, lambda: [randn(3, 7), mask(3, 7)],
         lambda x, m: x.masked_fill(m, 0.5))


# ---------------------------------------------------------------------------------------- losses
def losses():
    # cross_entropy inputs: [logits, target, class_weight, sample_weight]. Params: reduction,
    # label_smoothing, ignore_index (null = none; torch's default -100 only matters when a target
    # equals it). Weights are constants (torch has no gradient for class weights).
    def ce(name, b, n, reduction="mean", smoothing=0.0, ignore=None, ignored_rows=(), class_weight=False,
           spatial=None):
        params = {"reduction": reduction, "label_smoothing": smoothing, "ignore_index": ignore}

        def inputs():
            shape = (b, n) + tuple(spatial or ())
            logits = randn(*shape, scale=2.0)
            target = torch.randint(0, n, (b,) + tuple(spatial or ()))
            for r in ignored_rows:
                target[r] = ignore
            w = positive(n, low=0.2, high=2.0) if class_weight else None
            return [logits, target, w, None]

        def fn(logits, target, w, sw):
            return F.cross_entropy(logits, target, weight=w, reduction=reduction, label_smoothing=smoothing,
                                   ignore_index=-100 if ignore is None else ignore)

        case(name, "cross_entropy", params, inputs, fn, no_grad=(2, 3))

    ce("cross_entropy_mean", 6, 11)
    ce("cross_entropy_sum", 6, 11, reduction="sum")
    ce("cross_entropy_none", 6, 11, reduction="none")
    ce("cross_entropy_label_smoothing", 5, 7, smoothing=0.1)
    ce("cross_entropy_label_smoothing_sum", 5, 7, reduction="sum", smoothing=0.2)
    ce("cross_entropy_ignore_index_default", 6, 5, ignore=-100, ignored_rows=(1, 4))
    ce("cross_entropy_ignore_index_class", 6, 5, reduction="none", ignore=2, ignored_rows=(0, 3))
    ce("cross_entropy_class_weight", 7, 5, class_weight=True)
    ce("cross_entropy_class_weight_sum", 7, 5, reduction="sum", class_weight=True)
    ce("cross_entropy_weight_ignore_smoothing", 7, 5, smoothing=0.1, ignore=-100, ignored_rows=(2,),
       class_weight=True)
    ce("cross_entropy_spatial", 2, 5, spatial=(3, 4))
    # Segmentation style: [B, N, H, W] with the void label 255 ignored (here in row 1 of batch 0).
    ce("cross_entropy_spatial_ignore_255", 2, 4, ignore=255, ignored_rows=((0, 1),), spatial=(3, 5))

    # Per-sample weights: torch has no such option. Reference: mean = sum(w * loss_none) / sum(w),
    # sum = sum(w * loss_none), none = w * loss_none. Sample weights are constants (no gradient).
    def ce_sample(name, reduction, smoothing=0.0, class_weight=False):
        params = {"reduction": reduction, "label_smoothing": smoothing, "ignore_index": None}

        def fn(logits, target, cw, sw):
            loss = F.cross_entropy(logits, target, weight=cw, reduction="none", label_smoothing=smoothing)
            if reduction == "mean":
                return (sw * loss).sum() / sw.sum()
            if reduction == "sum":
                return (sw * loss).sum()
            return sw * loss

        case(name, "cross_entropy", params,
             lambda: [randn(6, 5, scale=2.0), torch.randint(0, 5, (6,)),
                      positive(5, low=0.2, high=2.0) if class_weight else None, positive(6, low=0.1, high=3.0)],
             fn, no_grad=(2, 3))

    ce_sample("cross_entropy_sample_weight_mean", "mean")
    ce_sample("cross_entropy_sample_weight_sum", "sum")
    ce_sample("cross_entropy_sample_weight_none", "none")
    ce_sample("cross_entropy_sample_weight_smoothing", "mean", smoothing=0.1)

    # Soft labels: torch's probability targets; mean divides by the batch size.
    for reduction in ("mean", "sum", "none"):
        case(f"cross_entropy_soft_{reduction}", "cross_entropy_soft", {"reduction": reduction},
             lambda: [randn(5, 7, scale=2.0), probs(5, 7)],
             lambda x, t, r=reduction: F.cross_entropy(x, t, reduction=r))

    def bce_inputs(weight_shape):
        def inputs():
            logits = randn(4, 7, scale=3.0)
            logits[0, :3] = torch.tensor([60.0, -60.0, 0.0])  # log(1 + exp(60)) overflows naively
            target = torch.rand(4, 7)
            target[1] = (target[1] > 0.5).float()
            w = positive(*weight_shape, low=0.2, high=2.0) if weight_shape else None
            return [logits, target, w]
        return inputs

    for reduction, weight_shape in (("mean", (7,)), ("sum", None), ("none", (4, 7))):
        wname = "weight" if weight_shape else "noweight"
        case(f"bce_with_logits_{reduction}_{wname}", "bce_with_logits", {"reduction": reduction},
             bce_inputs(weight_shape),
             lambda x, t, w, r=reduction: F.binary_cross_entropy_with_logits(x, t, weight=w, reduction=r),
             no_grad=(2,))

    for reduction in ("mean", "sum", "none"):
        case(f"mse_loss_{reduction}", "mse_loss", {"reduction": reduction}, lambda: [randn(3, 7), randn(3, 7)],
             lambda a, b, r=reduction: F.mse_loss(a, b, reduction=r))
        case(f"l1_loss_{reduction}", "l1_loss", {"reduction": reduction},
             lambda: [randn(3, 7), randn(3, 7)], lambda a, b, r=reduction: F.l1_loss(a, b, reduction=r))

    # kl_div(input = log-probabilities, target). With zeros in a probability target torch uses
    # 0 * log 0 = 0; the target gradient is then infinite, so that case differentiates only the input.
    def one_hot_probs():
        t = probs(4, 6)
        t[1] = torch.nn.functional.one_hot(torch.tensor(2), 6).float()
        t[3, 0] = 0.0
        t[3] /= t[3].sum()
        return t

    case("kl_div_batchmean", "kl_div", {"reduction": "batchmean", "log_target": False},
         lambda: [torch.log_softmax(randn(4, 6), -1), probs(4, 6)],
         lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=False))
    case("kl_div_batchmean_zero_targets", "kl_div", {"reduction": "batchmean", "log_target": False},
         lambda: [torch.log_softmax(randn(4, 6), -1), one_hot_probs()],
         lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=False), no_grad=(1,))
    case("kl_div_batchmean_log_target", "kl_div", {"reduction": "batchmean", "log_target": True},
         lambda: [torch.log_softmax(randn(4, 6), -1), torch.log_softmax(randn(4, 6), -1)],
         lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=True))
    for reduction in ("sum", "mean", "none"):
        case(f"kl_div_{reduction}", "kl_div", {"reduction": reduction, "log_target": False},
             lambda: [torch.log_softmax(randn(3, 5), -1), probs(3, 5)],
             lambda x, t, r=reduction: F.kl_div(x, t, reduction=r, log_target=False))

    # entropy: as torch, -(softmax * log_softmax).sum(1), then reduced over the batch.
    def entropy(x, reduction):
        h = -(torch.softmax(x, 1) * torch.log_softmax(x, 1)).sum(1)
        return {"mean": h.mean, "sum": h.sum, "none": lambda: h}[reduction]()

    def entropy_input():
        x = randn(6, 9, scale=2.0)
        x[2, 4] = 90.0  # one-hot-like row: exp overflows without the max shift, entropy ~ 0
        return x

    for reduction in ("mean", "sum", "none"):
        case(f"entropy_{reduction}", "entropy", {"reduction": reduction}, lambda: [entropy_input()],
             lambda x, r=reduction: entropy(x, r))


# ---------------------------------------------------------------------------------------- attention
def attention():
    # torch 1.13 has no F.scaled_dot_product_attention: softmax(q k^T * scale + mask) v by hand, with
    # the conventions of the later torch function (bool mask: True = attend; causal: top-left
    # aligned tril; scale null = 1/sqrt(D)). Masks are constants here (no gradient).
    def sdpa(q, k, v, mask, causal, scale):
        d = q.shape[-1]
        s = 1.0 / math.sqrt(d) if scale is None else scale
        scores = torch.matmul(q, k.transpose(-2, -1)) * s
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask
        if causal:
            tq, tk = scores.shape[-2], scores.shape[-1]
            keep = torch.ones(tq, tk, dtype=torch.bool).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        return torch.matmul(torch.softmax(scores, -1), v)

    def attn(name, q_shape, k_shape, v_shape, mask_fn=None, causal=False, scale=None):
        def inputs():
            return [randn(*q_shape), randn(*k_shape), randn(*v_shape), mask_fn() if mask_fn else None]

        case(name, "scaled_dot_product_attention", {"causal": causal, "scale": scale}, inputs,
             lambda q, k, v, m: sdpa(q, k, v, m, causal, scale), no_grad=(3,))

    def bool_mask():
        m = torch.rand(2, 1, 5, 7) < 0.6
        m[..., 0] = True  # every query attends somewhere
        return m

    attn("sdpa_basic", (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6))
    attn("sdpa_bool_mask_broadcast", (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6), mask_fn=bool_mask)
    attn("sdpa_float_mask", (1, 2, 5, 4), (1, 2, 6, 4), (1, 2, 6, 3), mask_fn=lambda: randn(2, 5, 6))
    attn("sdpa_causal", (1, 2, 6, 4), (1, 2, 6, 4), (1, 2, 6, 5), causal=True)
    attn("sdpa_2d_explicit_scale", (5, 4), (6, 4), (6, 3), scale=0.3)


def main():
    if not os.path.isdir(os.path.join("tests", "golden")):
        sys.exit("run from the repository root: /usr/bin/python3 tests/ref/gen_op_goldens.py")
    torch.set_num_threads(1)  # deterministic accumulation order
    elementwise()
    reductions()
    linalg()
    conv_pool()
    norms()
    indexing()
    losses()
    attention()
    for name, t in tensors.items():
        assert t.dtype in (torch.float32, torch.int64, torch.bool, torch.uint8), (name, t.dtype)
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name
    save(OUT_PATH, tensors, metadata)
    print(f"{OUT_PATH}: {len(metadata)} cases, {len(tensors)} tensors, {os.path.getsize(OUT_PATH)} bytes")


if __name__ == "__main__":
    main()
