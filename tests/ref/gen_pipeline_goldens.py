"""Text-to-image sampling by diffusers' StableDiffusionPipeline on the tiny SD folder, what
tests/test_pipeline.c compares `tailor generate`'s sampling loop (diffusion/pipeline.c) against.

Run from the repository root with the reference venv (diffusers 0.27.2, transformers 4.40.2, torch 1.13):

    /work/venv-ref/bin/python tests/ref/gen_pipeline_goldens.py

Reads tests/golden/sd_tiny/diffusers/ (gen_sd_checkpoint_goldens.py) and writes
tests/golden/pipeline.safetensors:
  latents [2, 4, 8, 8]            the starting noise (torch.randn, seed 0)
  ddim/images [2, 3, 32, 32]      pipe(["a photo of a cat", "a red dog"], latents=latents,
                                  num_inference_steps=4, guidance_scale=3, eta=0, output_type="np"),
                                  DDIMScheduler from the folder's scheduler config (leading, offset 1)
  euler/images [2, 3, 32, 32]     the same with EulerDiscreteScheduler.from_config (leading spacing
                                  from the config, init_noise_sigma scaling)
  ddim_unguided/images            DDIM with guidance_scale 1 (no unconditional pass)
Images are NCHW in [0, 1] (the pipeline's output_type "np" gives NHWC; transposed here).
"""
import os

import numpy as np
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "golden")


def run(pipe, latents, scheduler, guidance):
    pipe.scheduler = scheduler
    out = pipe(["a photo of a cat", "a red dog"], latents=latents.clone(), num_inference_steps=4,
               guidance_scale=guidance, eta=0.0, output_type="np", height=32, width=32)
    return torch.from_numpy(np.ascontiguousarray(out.images.transpose(0, 3, 1, 2))).float()


def main():
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(ROOT, "sd_tiny", "diffusers"), torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.tokenizer.model_max_length = 77  # the tiny tokenizer config leaves it unset (SD 1.x: 77)
    pipe.vae.to(torch.float32)
    pipe.text_encoder.to(torch.float32)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    config = pipe.scheduler.config
    goldens = {
        "latents": latents,
        "ddim/images": run(pipe, latents, DDIMScheduler.from_config(config), 3.0),
        "euler/images": run(pipe, latents, EulerDiscreteScheduler.from_config(config), 3.0),
        "ddim_unguided/images": run(pipe, latents, DDIMScheduler.from_config(config), 1.0),
    }
    save_file({k: v.contiguous() for k, v in goldens.items()}, os.path.join(ROOT, "pipeline.safetensors"))
    for k, v in goldens.items():
        print(k, tuple(v.shape), float(v.abs().mean()))


if __name__ == "__main__":
    main()
