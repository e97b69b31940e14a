"""Golden tests of models/vae against diffusers' AutoencoderKL (0.27.2; setup as in
gen_unet_goldens.py). From the repository root:

    /work/venv-ref/bin/python tests/ref/gen_vae_goldens.py
        writes tests/golden/vae.safetensors (committed; tests/test_vae.c reads it).

Cases (tiny configurations, fixed seeds, f32, batch 2):
  small   2 levels (8, 16), 1 layer per block, 4 latent channels, RGB 8x8
  deep    3 levels (4, 8, 8), 2 layers per block, 3 latent channels, 1 -> 2 image channels, 8x12

Layout for each case <c> (metadata "<c>" = the diffusers config as JSON, parsed by
vae_config_from_json):
  <c>/init/<name>   the state dict (every parameter perturbed by N(0, 0.05))
  <c>/images, <c>/w_mean, <c>/w_logvar, <c>/w_decoded
  <c>/mean, <c>/logvar    the posterior of the images (logvar clamped to [-30, 20])
  <c>/decoded             decode(mean)
  <c>/grad/<name>, <c>/grad_images
                          d (sum(mean w_mean) + sum(logvar w_logvar) + sum(decoded w_decoded)) / d ...
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "golden", "vae.safetensors")

CASES = {
    "small": (dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                   up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4, norm_num_groups=4),
              (2, 3, 8, 8)),
    "deep": (dict(in_channels=1, out_channels=2, block_out_channels=(4, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=2, latent_channels=3, norm_num_groups=2),
             (2, 1, 8, 12)),
}


def main():
    tensors, metadata = {}, {}
    for index, (name, (kwargs, shape)) in enumerate(CASES.items()):
        torch.manual_seed(300 + index)
        model = AutoencoderKL(**kwargs).float()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        images = torch.randn(*shape, requires_grad=True)
        posterior = model.encode(images).latent_dist
        decoded = model.decode(posterior.mean).sample
        w_mean, w_logvar, w_decoded = (torch.randn_like(t) for t in (posterior.mean, posterior.logvar, decoded))
        ((posterior.mean * w_mean).sum() + (posterior.logvar * w_logvar).sum() + (decoded * w_decoded).sum()).backward()
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items() if not k.startswith("_")}
        metadata[name] = json.dumps(config)
        for key, value in model.state_dict().items():
            tensors[f"{name}/init/{key}"] = value.detach().clone()
        for key, p in model.named_parameters():
            tensors[f"{name}/grad/{key}"] = p.grad.detach().clone()
        tensors.update({f"{name}/images": images.detach(), f"{name}/w_mean": w_mean, f"{name}/w_logvar": w_logvar,
                        f"{name}/w_decoded": w_decoded, f"{name}/mean": posterior.mean.detach(),
                        f"{name}/logvar": posterior.logvar.detach(), f"{name}/decoded": decoded.detach(),
                        f"{name}/grad_images": images.grad})
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters")
    safetensors_min.save(OUT_PATH, tensors, metadata)
    print("wrote", os.path.normpath(OUT_PATH))


if __name__ == "__main__":
    main()
