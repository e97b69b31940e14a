"""Golden tests of models/dit against the official DiT (facebookresearch/DiT, models.py).

The reference model is written out below from models.py (that repository is not a package): the
same modules, names, initialisation and forward, built on timm's PatchEmbed, Attention and Mlp as
the original is. Run with the reference venv (torch 1.13, timm 0.9.16), from the repository root:

    /work/venv-ref/bin/python tests/ref/gen_dit_goldens.py
        writes tests/golden/dit.safetensors (committed; tests/test_dit.c reads it).
    /work/venv-ref/bin/python tests/ref/gen_dit_goldens.py --count
        builds the twelve named presets at full size (ImageNet 256: latent 32x32x4, 1000 classes,
        learned sigma, class dropout 0.1) and prints their parameter counts, which
        tests/test_dit.c checks; nothing is saved.

Cases (fixed seeds, f32, batch 3, timesteps 1, 417.5, 999):
  sigma   depth 2, hidden 32, 4 heads, patch 2, input 8, 4 channels, learn_sigma (8 out), 5 classes
          with the null row (class dropout 0.1: 6 rows), labels [1, 5 (null), 3]
  plain   depth 2, hidden 48, 3 heads, patch 4, input 16, 3 channels, no learn_sigma, 5 classes,
          no null row (class dropout 0), labels [0, 4, 2]

Layout for each case <c> (metadata "<c>" = the constructor's keyword arguments as JSON):
  <c>/fresh_pos_embed  the fixed 2-D sin-cos position table as the reference initialises it
  <c>/init/<name>      the state dict, every tensor but pos_embed perturbed by N(0, 0.05) so that
                       the zero-initialised adaLN modulations and final layer take part
  <c>/x, <c>/t, <c>/y, <c>/weights
  <c>/out              the model output [B, out, H, W] (eval mode: labels are not dropped)
  <c>/grad/<name>      d sum(out * weights) / d parameter (pos_embed is fixed: no gradient)
  <c>/grad_x           the same for the input
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from timm.models.vision_transformer import Attention, Mlp, PatchEmbed

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "golden", "dit.safetensors")


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequency_dim=256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        half = self.frequency_dim // 2
        # As models.py: frequencies in f32, cos half first, then sin.
        freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)

    def forward(self, labels):
        return self.embedding_table(labels)


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, num_heads=heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(in_features=hidden, hidden_features=4 * hidden, act_layer=lambda: nn.GELU(approximate="tanh"), drop=0)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_1d(dim, positions):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim, grid_size):
    # models.py's meshgrid puts w first, so the first half encodes the column, the second the row.
    w, h = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    return np.concatenate([sincos_1d(dim // 2, w), sincos_1d(dim // 2, h)], axis=1)


class DiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 class_dropout_prob=0.1, num_classes=1000, learn_sigma=True):
        super().__init__()
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        grid = int(self.x_embedder.num_patches ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(self.pos_embed.shape[-1], grid)).float()[None])
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for layer in [b.adaLN_modulation[-1] for b in self.blocks] + [self.final_layer.adaLN_modulation[-1],
                                                                       self.final_layer.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)
        p, ch = self.patch_size, self.out_channels
        g = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], g, g, p, p, ch)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], ch, g * p, g * p)


CASES = {
    "sigma": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                  class_dropout_prob=0.1, num_classes=5, learn_sigma=True),
    "plain": dict(input_size=16, patch_size=4, in_channels=3, hidden_size=48, depth=2, num_heads=3,
                  class_dropout_prob=0.0, num_classes=5, learn_sigma=False),
}
LABELS = {"sigma": [1, 5, 3], "plain": [0, 4, 2]}

PRESETS = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}


def count_presets():
    for size, (depth, hidden, heads) in PRESETS.items():
        for patch in (2, 4, 8):
            model = DiT(patch_size=patch, hidden_size=hidden, depth=depth, num_heads=heads)
            total = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f"DiT-{size}/{patch}: {total} parameters ({trainable} trainable, pos_embed fixed)", flush=True)
            del model


def main():
    if "--count" in sys.argv:
        count_presets()
        return
    tensors, metadata = {}, {}
    for index, (name, kwargs) in enumerate(CASES.items()):
        torch.manual_seed(200 + index)
        model = DiT(**kwargs).float()
        tensors[f"{name}/fresh_pos_embed"] = model.pos_embed.detach().clone()
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key != "pos_embed":
                    p.add_(0.05 * torch.randn_like(p))
        model.eval()  # eval: the label embedder does not drop labels; no other layer differs
        batch, size, channels = 3, kwargs["input_size"], kwargs["in_channels"]
        x = torch.randn(batch, channels, size, size, requires_grad=True)
        t = torch.tensor([1.0, 417.5, 999.0])
        y = torch.tensor(LABELS[name])
        out = model(x, t, y)
        weights = torch.randn_like(out)
        (out * weights).sum().backward()
        metadata[name] = json.dumps(kwargs)
        for key, value in model.state_dict().items():
            tensors[f"{name}/init/{key}"] = value.detach().clone()
        for key, p in model.named_parameters():
            if p.requires_grad:
                tensors[f"{name}/grad/{key}"] = p.grad.detach().clone()
        tensors[f"{name}/x"] = x.detach()
        tensors[f"{name}/t"] = t
        tensors[f"{name}/y"] = y
        tensors[f"{name}/weights"] = weights
        tensors[f"{name}/out"] = out.detach()
        tensors[f"{name}/grad_x"] = x.grad
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, out {tuple(out.shape)}, "
              f"|out| mean {out.abs().mean():.4f}")
    safetensors_min.save(OUT_PATH, tensors, metadata)
    print("wrote", os.path.normpath(OUT_PATH))


if __name__ == "__main__":
    main()
