#include "models/resnet_block2d.h"

#include <stdio.h>

Conv2d conv3x3_create(ParamStore *store, const char *name, int64_t in, int64_t out, int stride, Rng *rng) {
    return conv2d_create(store, name, in, out, 3, conv2d_params(stride, 1, 1, 1), true, rng);
}

ResnetBlock2d resnet_block2d_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, int64_t temb_channels,
                                    int groups, double eps, Rng *rng) {
    char name[256];
#define NAME(leaf) (snprintf(name, sizeof name, "%s%s", prefix, leaf), name)
    ResnetBlock2d r = {.has_shortcut = in != out};
    r.norm1 = groupnorm_create(store, NAME("norm1"), groups, in, eps);
    r.conv1 = conv3x3_create(store, NAME("conv1"), in, out, 1, rng);
    if (temb_channels > 0) r.time_projection = linear_create(store, NAME("time_emb_proj"), temb_channels, out, true, rng);
    r.norm2 = groupnorm_create(store, NAME("norm2"), groups, out, eps);
    r.conv2 = conv3x3_create(store, NAME("conv2"), out, out, 1, rng);
    if (r.has_shortcut) r.shortcut = conv2d_create(store, NAME("conv_shortcut"), in, out, 1, conv2d_params(1, 0, 1, 1), true, rng);
#undef NAME
    return r;
}

Tensor *resnet_block2d_forward(const ResnetBlock2d *r, Tensor *x, Tensor *temb_activated) {
    Tensor *h = conv2d_forward(&r->conv1, op_silu(groupnorm_forward(&r->norm1, x)));
    if (r->time_projection.weight) {
        Tensor *t = linear_forward(&r->time_projection, temb_activated);  // [B, out]
        h = op_add(h, op_reshape(t, SHAPE(t->shape[0], t->shape[1], 1, 1)));
    }
    h = conv2d_forward(&r->conv2, op_silu(groupnorm_forward(&r->norm2, h)));
    return op_add(r->has_shortcut ? conv2d_forward(&r->shortcut, x) : x, h);
}
