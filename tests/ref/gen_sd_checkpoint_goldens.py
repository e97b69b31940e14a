"""A tiny Stable-Diffusion-1.x-shaped model in both checkpoint formats, certified by diffusers, and
its outputs: what tests/test_sd_checkpoint.c loads (models/sd_checkpoint).

Run from the repository root with the reference venv (diffusers 0.27.2, transformers 4.40.2, torch 1.13):

    /work/venv-ref/bin/python tests/ref/gen_sd_checkpoint_goldens.py

Writes tests/golden/sd_tiny/ (committed):
  diffusers/      StableDiffusionPipeline.save_pretrained: model_index.json, unet/ (f32),
                  vae/ (f16), text_encoder/ (bf16, transformers' model.safetensors), tokenizer/
                  (a 521-token CLIP BPE vocabulary: the 512 byte symbols, 7 merges, BOS, EOS),
                  scheduler/
  ldm.safetensors the same weights under the original LDM names (model.diffusion_model.*,
                  first_stage_model.*, cond_stage_model.transformer.text_model.*), UNet bf16, VAE f32
                  (mid-block attention q/k/v/proj_out as 1x1 convs [C, C, 1, 1], as the LDM stores
                  them), text encoder f16, plus what real SD 1.x files carry besides weights: the
                  DDPM schedule buffers (betas, alphas_cumprod, ...), position_ids (i64),
                  model_ema.decay / num_updates and one flattened EMA copy of a weight.
  goldens.safetensors  outputs of the f32 models (diffusers / transformers):
      text/ids [2, 77] i64     tokenizer(["a photo of a cat", ""], padding="max_length")
      text/hidden [2, 77, 8]  CLIPTextModel(ids).last_hidden_state
      unet/sample, unet/timesteps, unet/out   UNet(sample, t, encoder_hidden_states=text/hidden)
      vae/latents, vae/decoded                AutoencoderKL.decode(latents)
      vae/image, vae/mean                     AutoencoderKL.encode(image).latent_dist.mean

Every weight is first rounded to a bfloat16 value that float16 also holds exactly, so the three
storage dtypes all hold the same numbers and both formats must load to bit-identical f32 models.

The LDM names are made here by inverting diffusers' converter (convert_from_ckpt.py) by hand; the
script then runs diffusers' own convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint /
convert_ldm_clip_checkpoint on the written file and requires every tensor to come back identical,
and reloads the diffusers folder with StableDiffusionPipeline.from_pretrained and requires the
same. So the test files are certified by diffusers, not by the mapping under test.
"""
import json
import os
import re
import shutil
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion import convert_from_ckpt
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "golden", "sd_tiny")
PROMPTS = ["a photo of a cat", ""]
MERGES = ["p h", "ph o", "t o</w>", "pho to</w>", "o f</w>", "c a", "ca t</w>"]

UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8, 8), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=8, attention_head_dim=2, norm_num_groups=2)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 8, 8), layers_per_block=2,
           down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
           norm_num_groups=2, sample_size=16)
TEXT = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, hidden_act="quick_gelu")


def write_tokenizer(folder):
    """vocab.json + merges.txt: byte symbols, byte symbols + </w>, the merges, BOS, EOS."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")), len(tokens)


def round_weights(model):
    """Every parameter + N(0, 0.05), then rounded to bf16 values that f16 holds exactly."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
            q = p.to(torch.bfloat16).float()
            q[q.half().float() != q] = 0.0  # tiny values f16 cannot hold exactly
            p.copy_(q)


# ---------------------------------------------------------------- diffusers -> LDM names (the inverse
# of diffusers' convert_from_ckpt.py, written from its code)

UNET_RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
               ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]
VAE_RESNET = [("conv_shortcut.", "nin_shortcut.")]
VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def rename_inner(rest, table):
    for new, old in table:
        if rest.startswith(new):
            return old + rest[len(new):]
    return rest


def unet_ldm_name(name, config):
    per = config["layers_per_block"] + 1
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
             "mid_block.attentions.0.": "middle_block.1."}
    for new, old in fixed.items():
        if name.startswith(new):
            return old + name[len(new):]
    m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", name)
    if m:
        return f"middle_block.{2 * int(m[1])}." + rename_inner(m[2], UNET_RESNET)
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        index = 1 + int(m[1]) * per + int(m[3])
        if m[2] == "resnets":
            return f"input_blocks.{index}.0." + rename_inner(m[4], UNET_RESNET)
        return f"input_blocks.{index}.1.{m[4]}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)
    if m:
        return f"input_blocks.{1 + int(m[1]) * per + per - 1}.0.op.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        index = int(m[1]) * per + int(m[3])
        if m[2] == "resnets":
            return f"output_blocks.{index}.0." + rename_inner(m[4], UNET_RESNET)
        return f"output_blocks.{index}.1.{m[4]}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name)
    if m:
        block = int(m[1])
        has_attention = config["up_block_types"][block].startswith("CrossAttn")
        return f"output_blocks.{block * per + per - 1}.{2 if has_attention else 1}.conv.{m[2]}"
    raise KeyError(name)


def vae_ldm_name(name, levels):
    coder, rest = name.split(".", 1) if name.startswith(("encoder.", "decoder.")) else ("", name)
    if not coder:
        return rest  # quant_conv, post_quant_conv
    fixed = {"conv_norm_out.": "norm_out.", "mid_block.resnets.0.": "mid.block_1.", "mid_block.resnets.1.": "mid.block_2."}
    for new, old in fixed.items():
        if rest.startswith(new):
            inner = rest[len(new):]
            return f"{coder}.{old}" + (rename_inner(inner, VAE_RESNET) if "block_" in old else inner)
    if rest.startswith("mid_block.attentions.0."):
        return f"{coder}.mid.attn_1." + rename_inner(rest[len("mid_block.attentions.0."):], VAE_ATTENTION)
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.*)", rest)
    if m:
        block = int(m[2]) if m[1] == "down" else levels - 1 - int(m[2])  # the LDM decoder counts up from the top
        if m[4] is not None:
            return f"{coder}.{m[1]}.{block}.block.{m[4]}." + rename_inner(m[5], VAE_RESNET)
        return f"{coder}.{m[1]}.{block}.{m[1]}sample.{m[5]}"
    return f"{coder}.{rest}"  # conv_in, conv_out


def ldm_state_dict(unet, vae, text_encoder):
    out = {}
    for name, value in unet.state_dict().items():
        out["model.diffusion_model." + unet_ldm_name(name, unet.config)] = value.to(torch.bfloat16)
    levels = len(vae.config.block_out_channels)
    for name, value in vae.state_dict().items():
        if ".mid_block.attentions.0.to_" in name and name.endswith(".weight"):
            value = value[:, :, None, None]  # the LDM's attention projections are 1x1 convs
        out["first_stage_model." + vae_ldm_name(name, levels)] = value.float()
    for name, value in text_encoder.state_dict().items():
        out["cond_stage_model.transformer." + name] = value.half()
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    # The LDM's DDPM buffers (scaled_linear betas as SD 1.x), and the EMA bookkeeping.
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1 - previous) / (1 - alphas_cumprod)
    buffers = {"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": previous,
               "sqrt_alphas_cumprod": alphas_cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
               "log_one_minus_alphas_cumprod": (1 - alphas_cumprod).log(),
               "sqrt_recip_alphas_cumprod": alphas_cumprod.rsqrt(), "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
               "posterior_variance": posterior_variance,
               "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
               "posterior_mean_coef1": betas * previous.sqrt() / (1 - alphas_cumprod),
               "posterior_mean_coef2": (1 - previous) * (1 - betas).sqrt() / (1 - alphas_cumprod)}
    out.update({k: v.float() for k, v in buffers.items()})
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    out["model_ema.diffusion_modelout2bias"] = out["model.diffusion_model.out.2.bias"].clone()
    return out


def certify_ldm(path, unet, vae, text_encoder):
    """diffusers' own converter must map the LDM file back to the diffusers weights exactly."""
    checkpoint = load_file(path)
    converted = {
        "unet": (convert_from_ckpt.convert_ldm_unet_checkpoint(dict(checkpoint), dict(unet.config)), unet),
        "vae": (convert_from_ckpt.convert_ldm_vae_checkpoint(dict(checkpoint), dict(vae.config)), vae),
    }
    fresh = CLIPTextModel(text_encoder.config)
    convert_from_ckpt.convert_ldm_clip_checkpoint(dict(checkpoint), text_encoder=fresh)
    converted["text_encoder"] = (fresh.state_dict(), text_encoder)
    for part, (state, model) in converted.items():
        reference = model.state_dict()
        assert set(state) == set(reference), (part, set(state) ^ set(reference))
        for key, value in reference.items():
            assert torch.equal(state[key].float(), value.float()), (part, key)
        print(f"certified by diffusers' converter: {part}, {len(state)} tensors")


def certify_folder(folder, unet, vae, text_encoder):
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None)
    for part, model in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        loaded = getattr(pipe, part).state_dict()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded[key].float(), value.float()), (part, key)
    print("certified by StableDiffusionPipeline.from_pretrained: the diffusers folder")


def main():
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    folder = os.path.join(OUT_DIR, "diffusers")
    scratch = os.path.join(OUT_DIR, "scratch_tokenizer")
    tokenizer, vocab_size = write_tokenizer(scratch)
    torch.manual_seed(1)
    unet = UNet2DConditionModel(**UNET).eval()
    round_weights(unet)
    vae = AutoencoderKL(**VAE).eval()
    round_weights(vae)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, **TEXT)).eval()
    round_weights(text_encoder)

    # Goldens, f32.
    ids = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = text_encoder(ids).last_hidden_state
        sample = torch.randn(2, 4, 8, 8)
        timesteps = torch.tensor([3.0, 417.0])
        unet_out = unet(sample, timesteps, encoder_hidden_states=hidden).sample
        latents = torch.randn(1, 4, 4, 4)
        decoded = vae.decode(latents).sample
        image = torch.rand(1, 3, 16, 16) * 2 - 1
        mean = vae.encode(image).latent_dist.mean
    goldens = {"text/ids": ids.long(), "text/hidden": hidden, "unet/sample": sample, "unet/timesteps": timesteps,
               "unet/out": unet_out, "vae/latents": latents, "vae/decoded": decoded, "vae/image": image, "vae/mean": mean}

    # The LDM single file.
    ldm_path = os.path.join(OUT_DIR, "ldm.safetensors")
    save_file({k: v.contiguous() for k, v in ldm_state_dict(unet, vae, text_encoder).items()}, ldm_path)
    certify_ldm(ldm_path, unet, vae, text_encoder)

    # The diffusers folder, one storage dtype per component.
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text_encoder.to(torch.bfloat16), tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    vae.float()
    text_encoder.float()
    shutil.rmtree(scratch)
    certify_folder(folder, unet, vae, text_encoder)
    assert tokenizer(PROMPTS, padding="max_length", max_length=77).input_ids == CLIPTokenizer.from_pretrained(
        os.path.join(folder, "tokenizer"))(PROMPTS, padding="max_length", max_length=77).input_ids

    safetensors_min.save(os.path.join(OUT_DIR, "goldens.safetensors"), goldens)
    total = 0
    for root, _, files in os.walk(OUT_DIR):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"ids[0] {ids[0, :8].tolist()}; parameters: unet {sum(p.numel() for p in unet.parameters())}, "
          f"vae {sum(p.numel() for p in vae.parameters())}, text {sum(p.numel() for p in text_encoder.parameters())}; "
          f"{total} bytes under {os.path.normpath(OUT_DIR)}")


if __name__ == "__main__":
    main()
