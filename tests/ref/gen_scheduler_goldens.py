"""Writes tests/golden/schedulers.safetensors: diffusers 0.27.2 scheduler values for the C samplers.

Regenerate from the repository root with the reference virtualenv (diffusers 0.27.2, torch 1.13):

    /work/venv-ref/bin/python tests/ref/gen_scheduler_goldens.py

tests/test_diffusion_schedules.c reads the file and never needs Python. Every case has a metadata
entry "<case>" -> JSON {"kind": ..., "sampler": ..., "config": {diffusers config keys}, ...}; the C
test applies "config" key by key with sampler_config_set, so the keys are diffusers' own. Kinds:

  "schedule"   <case>/betas, <case>/alphas_cumprod (f32, [T]) of a DDIMScheduler.
  "timesteps"  <case>/timesteps for "steps" inference steps (i64 for ddpm/ddim, f32 for the Euler
               kinds, which also store <case>/sigmas [n + 1] and <case>/init_noise_sigma).
  "step"       one step at "step_index": <case>/sample, <case>/model_output, <case>/noise (the
               normal noise handed to diffusers instead of its own draw), <case>/prev_sample,
               <case>/pred_original_sample, and for the Euler kinds <case>/scaled_input
               (scale_model_input of the sample).
  "loop"       the full "steps"-step loop without noise from <case>/initial (already multiplied
               by init_noise_sigma, as the pipelines do) with the toy model
               out = tanh(x_in) * t / 1000 + 0.1 x_in (x_in the scaled input): <case>/final.
  "add_noise"  <case>/x0, <case>/noise, <case>/timesteps (i64), <case>/noisy (add_noise) and
               <case>/velocity (get_velocity) of a DDPMScheduler.
Samples are f32 [2, 3, 4, 4] from a per-case seed (crc32 of the name).
"""
import json
import os
import sys
import zlib

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
import diffusers.schedulers.scheduling_ddpm as ddpm_module
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_min  # noqa: E402

assert diffusers.__version__ == "0.27.2", diffusers.__version__

OUT_PATH = os.path.join("tests", "golden", "schedulers.safetensors")
CLASSES = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
           "euler_ancestral": EulerAncestralDiscreteScheduler}
SD_BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
SHAPE = (2, 3, 4, 4)

tensors = {}
metadata = {}


def generator(name):
    return torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))


def add(name, meta, **arrays):
    assert name not in metadata, name
    metadata[name] = json.dumps(meta, sort_keys=True)
    for key, value in arrays.items():
        tensors[f"{name}/{key}"] = value.detach().clone() if torch.is_tensor(value) else value


def make(sampler, config):
    return CLASSES[sampler](**config)


# ---------------------------------------------------------------- schedules
for label, config in [("linear", {"beta_schedule": "linear"}), ("scaled_linear", SD_BETAS),
                      ("squaredcos_cap_v2", {"beta_schedule": "squaredcos_cap_v2"})]:
    s = make("ddim", config)
    add(f"schedule_{label}", {"kind": "schedule", "sampler": "ddim", "config": config},
        betas=s.betas, alphas_cumprod=s.alphas_cumprod)

# ---------------------------------------------------------------- timesteps
SPACINGS = [("leading", {"timestep_spacing": "leading"}),
            ("leading_offset1", {"timestep_spacing": "leading", "steps_offset": 1}),
            ("trailing", {"timestep_spacing": "trailing"}),
            ("linspace", {"timestep_spacing": "linspace"})]
for sampler in ["ddim", "ddpm", "euler", "euler_ancestral"]:
    for label, spacing in SPACINGS:
        for steps in [50, 10, 7]:
            config = dict(SD_BETAS, **spacing)
            s = make(sampler, config)
            s.set_timesteps(steps)
            name = f"timesteps_{sampler}_{label}_{steps}"
            arrays = {"timesteps": s.timesteps}
            if sampler.startswith("euler"):
                arrays["sigmas"] = s.sigmas
                arrays["init_noise_sigma"] = torch.tensor([float(s.init_noise_sigma)], dtype=torch.float32)
            add(name, {"kind": "timesteps", "sampler": sampler, "config": config, "steps": steps}, **arrays)
# 61 trailing steps: numpy's arange(1000, 0, -1000/61) has 62 points, so diffusers returns 62
# timesteps ending in -1; Tailor keeps the first 61 (the golden stores those).
s = make("ddim", {"timestep_spacing": "trailing"})
s.set_timesteps(61)
assert len(s.timesteps) == 62 and s.timesteps[-1] == -1
add("timesteps_ddim_trailing_61", {"kind": "timesteps", "sampler": "ddim",
                                   "config": {"timestep_spacing": "trailing"}, "steps": 61},
    timesteps=s.timesteps[:61])


# ---------------------------------------------------------------- single steps
class SuppliedNoise:
    """Replaces a scheduler module's randn_tensor so that the step uses our noise tensor."""

    def __init__(self, module, noise):
        self.module, self.noise = module, noise

    def __enter__(self):
        self.saved = self.module.randn_tensor
        self.module.randn_tensor = lambda shape, **kwargs: self.noise.clone()

    def __exit__(self, *args):
        self.module.randn_tensor = self.saved


def step_case(name, sampler, config, steps, step_index, eta=0.0):
    """Inputs as a model would see them: sample = the forward process applied to x0 ~ N(0, 1) with
    eps ~ N(0, 1) at the step's timestep (Euler scale x0 + sigma eps for the Euler kinds), and the model
    output = the true target of the prediction type plus 0.3 N(0, 1) (an imperfect model). Unrelated
    random outputs would make the implied eps of an x0-prediction huge near t = 0 and measure only
    diffusers' float32 rounding of the coefficients."""
    g = generator(name)
    x0, eps = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    error = 0.3 * torch.randn(SHAPE, generator=g)
    noise = torch.randn(SHAPE, generator=g)
    s = make(sampler, config)
    s.set_timesteps(steps)
    if sampler.startswith("euler"):
        sigma = s.sigmas[step_index]
        sample, alpha_bar = x0 + sigma * eps, 1 / (sigma**2 + 1)
    else:
        alpha_bar = s.alphas_cumprod[s.timesteps[step_index]]
        sample = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    prediction = config.get("prediction_type", "epsilon")
    target = {"epsilon": eps, "sample": x0,
              "v_prediction": alpha_bar**0.5 * eps - (1 - alpha_bar)**0.5 * x0}[prediction]
    model_output = (target + error).to(torch.float32)
    sample = sample.to(torch.float32)
    s = make(sampler, config)
    s.set_timesteps(steps)
    t = s.timesteps[step_index]
    arrays = {"sample": sample, "model_output": model_output, "noise": noise}
    if sampler == "ddim":
        out = s.step(model_output, t, sample, eta=eta, variance_noise=noise if eta > 0 else None)
    elif sampler == "ddpm":
        with SuppliedNoise(ddpm_module, noise):
            out = s.step(model_output, t, sample)
    else:
        s.set_begin_index(step_index)
        arrays["scaled_input"] = s.scale_model_input(sample, t)
        if sampler == "euler_ancestral":
            with SuppliedNoise(euler_a_module, noise):
                out = s.step(model_output, t, sample)
        else:
            out = s.step(model_output, t, sample)
    arrays["prev_sample"] = out.prev_sample
    arrays["pred_original_sample"] = out.pred_original_sample
    meta = {"kind": "step", "sampler": sampler, "config": config, "steps": steps, "step_index": step_index}
    if sampler == "ddim":
        meta["config"] = dict(config, eta=eta)  # a step argument in diffusers, a config option in Tailor
    add(name, meta, **arrays)


for prediction in ["epsilon", "v_prediction", "sample"]:
    p = {"prediction_type": prediction}
    # DDPM: a middle step (noise added), the last step (t = 0: no noise), fixed_large, clipping off.
    step_case(f"step_ddpm_{prediction}_mid", "ddpm", dict(SD_BETAS, **p), 50, 20)
    step_case(f"step_ddpm_{prediction}_last", "ddpm", dict(SD_BETAS, **p), 50, 49)
    step_case(f"step_ddpm_{prediction}_large", "ddpm", dict(p, variance_type="fixed_large"), 10, 3)
    step_case(f"step_ddpm_{prediction}_noclip", "ddpm", dict(SD_BETAS, clip_sample=False, **p), 20, 2)
    # DDIM: eta 0 and 1, clipping on (diffusers' default) and off, SD's config (steps_offset 1,
    # set_alpha_to_one false) at the last step, trailing spacing.
    for eta in [0.0, 1.0]:
        e = f"eta{int(eta)}"
        step_case(f"step_ddim_{prediction}_{e}_clip", "ddim", dict(p), 10, 1, eta)
        step_case(f"step_ddim_{prediction}_{e}_sd", "ddim",
                  dict(SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1, **p), 50, 49, eta)
        step_case(f"step_ddim_{prediction}_{e}_trailing", "ddim",
                  dict(SD_BETAS, clip_sample=False, timestep_spacing="trailing", **p), 10, 4, eta)
for prediction in ["epsilon", "v_prediction"]:
    p = {"prediction_type": prediction}
    for sampler in ["euler", "euler_ancestral"]:
        step_case(f"step_{sampler}_{prediction}_first", sampler, dict(SD_BETAS, **p), 30, 0)
        step_case(f"step_{sampler}_{prediction}_mid", sampler, dict(SD_BETAS, **p), 30, 17)
        step_case(f"step_{sampler}_{prediction}_last", sampler, dict(SD_BETAS, **p), 30, 29)
        step_case(f"step_{sampler}_{prediction}_leading", sampler,
                  dict(SD_BETAS, timestep_spacing="leading", steps_offset=1, **p), 25, 6)
        step_case(f"step_{sampler}_{prediction}_trailing", sampler,
                  dict(SD_BETAS, timestep_spacing="trailing", **p), 10, 9)


# ---------------------------------------------------------------- full loops
def toy_model(x_in, t):
    return torch.tanh(x_in) * (float(t) / 1000) + 0.1 * x_in


def loop_case(name, sampler, config, steps):
    s = make(sampler, config)
    s.set_timesteps(steps)
    initial = torch.randn(SHAPE, generator=generator(name)) * s.init_noise_sigma
    x = initial.clone()
    for t in s.timesteps:
        out = toy_model(s.scale_model_input(x, t), t)
        x = s.step(out, t, x).prev_sample
    add(name, {"kind": "loop", "sampler": sampler, "config": config, "steps": steps}, initial=initial, final=x)


loop_case("loop_ddim_10", "ddim", dict(SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1), 10)
loop_case("loop_ddim_v_10", "ddim", {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, 10)
loop_case("loop_euler_10", "euler", dict(SD_BETAS), 10)
loop_case("loop_euler_v_10", "euler", dict(SD_BETAS, prediction_type="v_prediction", timestep_spacing="leading",
                                           steps_offset=1), 10)

# ---------------------------------------------------------------- add_noise / get_velocity
for label, config in [("linear", {}), ("scaled_linear", SD_BETAS)]:
    name = f"add_noise_{label}"
    g = generator(name)
    x0 = torch.randn((4, 3, 4, 4), generator=g)
    noise = torch.randn((4, 3, 4, 4), generator=g)
    timesteps = torch.tensor([0, 1, 500, 999], dtype=torch.int64)
    s = make("ddpm", config)
    add(name, {"kind": "add_noise", "sampler": "ddpm", "config": config}, x0=x0, noise=noise, timesteps=timesteps,
        noisy=s.add_noise(x0, noise, timesteps), velocity=s.get_velocity(x0, noise, timesteps))

safetensors_min.save(OUT_PATH, tensors, metadata)
print(f"wrote {OUT_PATH}: {len(metadata)} cases, {len(tensors)} tensors")
