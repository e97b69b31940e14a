// models/unet as the samplers' and losses' model (DiffusionModelFn): the condition tensor is the
// text encoder's states [B, L, D] (f32) for a cross-attention UNet, or class labels [B] (i64) for
// a class-conditional one — the null class (the embedding's last row) for guidance's
// unconditional half.
#pragma once
#include "diffusion/guidance.h"
#include "models/unet.h"

// context: the Unet. The timesteps become f32 on the sample's device, as the UNet embeds them.
Tensor *unet_diffusion_model(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *unet);
// The null-class condition [1] (i64) of a class-conditional UNet, on `device`: its last class row.
Tensor *unet_null_class(const Unet *unet, Device device);
