"""Golden tests of models/unet (diffusers' UNet2DConditionModel) against diffusers itself.

Setup: the venv of gen_model_goldens.py (Debian's torch 1.13 from the system site packages) with
diffusers pinned to a release that runs on torch 1.13:

    /work/venv-ref/bin/pip install "diffusers==0.27.2" "huggingface-hub==0.23.4"

Then, from the repository root:

    /work/venv-ref/bin/python tests/ref/gen_unet_goldens.py
        writes tests/golden/unet.safetensors (committed; tests/test_unet.c reads it).

Cases (tiny configurations, fixed seeds, f32, batch 2, 8x8 samples):
  cross         SD 1.x layout in small: CrossAttnDownBlock2D + DownBlock2D, UNetMidBlock2DCrossAttn,
                UpBlock2D + CrossAttnUpBlock2D, 1x1-conv projections, 2 heads
  cross_linear  three levels, two layers per block, use_linear_projection, heads per level [1, 2, 2]
  class         no cross-attention: DownBlock2D x2, UNetMidBlock2D (one resnet), UpBlock2D x2, a class
                embedding (5 rows), flip_sin_to_cos False, freq_shift 1, norm_eps 1e-6

Layout for each case <c> (metadata "<c>" = the diffusers config as JSON, which the C test parses
with unet_config_from_json):
  <c>/init/<name>     the state dict (every parameter perturbed by N(0, 0.05) so that the
                      GroupNorm/LayerNorm affines and biases are not at 1/0)
  <c>/sample, <c>/timesteps, <c>/context (cross cases), <c>/labels (class case), <c>/weights
  <c>/out             the UNet's output
  <c>/grad/<name>     d sum(out * weights) / d parameter
  <c>/grad_sample, <c>/grad_context   the same for the inputs (Diffusion-TTA differentiates
                      through the conditioning)
"""
import json
import os
import sys

import numpy as np
import torch
from diffusers import UNet2DConditionModel

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "golden", "unet.safetensors")

CASES = {
    "cross": dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12, attention_head_dim=2, norm_num_groups=4),
    "cross_linear": dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8, 8), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=6, attention_head_dim=(1, 2, 2), norm_num_groups=2, use_linear_projection=True),
    "class": dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D", num_class_embeds=5, flip_sin_to_cos=False, freq_shift=1,
        norm_eps=1e-6, norm_num_groups=4),
}


def config_json(model):
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items() if not k.startswith("_")}
    return json.dumps(config)


def main():
    tensors, metadata = {}, {}
    for index, (name, kwargs) in enumerate(CASES.items()):
        torch.manual_seed(100 + index)
        model = UNet2DConditionModel(**kwargs).float()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.train()  # no dropout in these configurations; train() only matters for gradients
        batch = 2
        sample = torch.randn(batch, kwargs["in_channels"], 8, 8, requires_grad=True)
        timesteps = torch.tensor([3.0, 417.0])
        cross = "cross_attention_dim" in kwargs
        context = torch.randn(batch, 5, kwargs["cross_attention_dim"], requires_grad=True) if cross else None
        labels = torch.tensor([1, 4]) if "num_class_embeds" in kwargs else None
        out = model(sample, timesteps, encoder_hidden_states=context, class_labels=labels).sample
        weights = torch.randn_like(out)
        (out * weights).sum().backward()
        metadata[name] = config_json(model)
        for key, value in model.state_dict().items():
            tensors[f"{name}/init/{key}"] = value.detach().clone()
        for key, p in model.named_parameters():
            tensors[f"{name}/grad/{key}"] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        tensors[f"{name}/sample"] = sample.detach()
        tensors[f"{name}/timesteps"] = timesteps
        tensors[f"{name}/weights"] = weights
        tensors[f"{name}/out"] = out.detach()
        tensors[f"{name}/grad_sample"] = sample.grad
        if context is not None:
            tensors[f"{name}/context"] = context.detach()
            tensors[f"{name}/grad_context"] = context.grad
        if labels is not None:
            tensors[f"{name}/labels"] = labels
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, |out| mean {out.abs().mean():.4f}")
    safetensors_min.save(OUT_PATH, tensors, metadata)
    print("wrote", os.path.normpath(OUT_PATH))


if __name__ == "__main__":
    main()
