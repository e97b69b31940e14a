#include "diffusion/unet_model.h"

#include "engine/ops.h"

Tensor *unet_diffusion_model(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *context) {
    Unet *unet = context;
    Tensor *steps = timesteps->dtype == DTYPE_F32 ? timesteps : op_to_dtype(timesteps, DTYPE_F32);
    bool labels = condition && condition->dtype == DTYPE_I64;
    if (condition && !labels && condition->ndim != 3) {
        char shape[96];
        tensor_fatal("unet_diffusion_model", "condition %s: expected text states [B, L, D] or class labels [B] (i64)",
                     tensor_shape_string(condition, shape, sizeof shape));
    }
    return unet_forward(unet, x_t, steps, labels ? NULL : condition, labels ? condition : NULL);
}

Tensor *unet_null_class(const Unet *unet, Device device) {
    if (unet->config.num_class_embeds < 1) tensor_fatal("unet_null_class", "the UNet has no class embedding");
    Tensor *null = tensor_empty(DTYPE_I64, SHAPE(1));
    tensor_i64(null)[0] = unet->config.num_class_embeds - 1;
    return device.kind == DEVICE_CPU ? null : tensor_to_device_raw(null, device);
}
