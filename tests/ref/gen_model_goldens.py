"""Golden tests of the classifier models (models/classifier.h) against the PyTorch reference code.

Setup (once; Debian's python3-torch 1.13 and python3-torchvision 0.14 come from the system site
packages, timm is not in Debian, so it goes into a venv of its own, without its dependencies —
it needs only torch, torchvision and pyyaml (python3-yaml) for what is used here):

    /usr/bin/python3 -m venv --system-site-packages /work/venv-ref
    /work/venv-ref/bin/pip install timm==0.9.16 --no-deps

(not the pyenv `python3` that may come first on PATH: it has no torch). Then, from the repository root:

    /work/venv-ref/bin/python tests/ref/gen_model_goldens.py
        writes tests/golden/models.safetensors (committed; tests/test_models.c reads it and never
        needs Python);
    /work/venv-ref/bin/python tests/ref/gen_model_goldens.py --check-export
        the reverse direction: runs build/tests/test_models with TAILOR_MODELS_EXPORT set, which
        saves full-size models of ours (classifier_save) with an input and the logits we compute
        for it, then loads each file into the torchvision / timm / FixMatch reference model with
        load_state_dict(strict=True), compares the logits, and compares the statistics of our
        initial weights with the reference model's own initialisation. Build the test first
        (make build/tests/test_models). `--check-export DIR` checks files already exported to DIR.

Cases (tiny configurations; fixed seeds; everything in f32):
  resnet_basic       torchvision BasicBlock ResNet, layers [1,1,1,1], width 4, ImageNet stem, 32x32
  resnet_bottleneck  torchvision Bottleneck ResNet, layers [2,1,1,1], width 4, CIFAR stem, 16x16,
                     with tllib's bottleneck head (Linear-BatchNorm1d-ReLU, width 16) and "head"
  wrn                FixMatch-pytorch WideResNet, depth 16 (2 blocks per group), widen 2, stem 4 channels
  wrn_torchssl       the TorchSSL variant (BN eps 1e-3, conv biases), depth 10, widen 2, stem 4
  vit                timm VisionTransformer: depth 2, embed 32, heads 2, patch 4, image 16
  deit_distilled     timm VisionTransformerDistilled with the same sizes (dist_token, head_dist)

The torchvision ResNets are built from torchvision's own classes (ResNet._make_layer, BasicBlock,
Bottleneck, ResNet._forward_impl) with the stem width as a parameter (torchvision fixes it at 64,
which would make the goldens megabytes). The WideResNet reference is written out below after
kekmodel/FixMatch-pytorch models/wideresnet.py (commit 040be3b) and TorchSSL models/nets/wrn.py
with the stem width as a parameter; at width 16 its state dict is theirs (checked by --check-export
against the full-size models).

Layout, for each case <c> (metadata "<c>" -> JSON of the configuration, read by the C test to
build the same model):
  <c>/x, <c>/y                 input batch [B, 3, S, S] and labels (i64)
  <c>/init/<name>              the state dict the C model loads (weights perturbed away from the
                               1/0 initialisations so that every term shows; running statistics
                               random; num_batches_tracked i64)
  <c>/eval/logits              eval-mode logits from init (running statistics used)
  <c>/eval/pooled              eval-mode pooled features (input of the head/bottleneck)
  <c>/eval/stage<i>            (resnet_basic, vit) eval-mode feature maps of layer1..4 / tokens after each block
  <c>/train/logits, <c>/train/loss
                               train-mode logits and cross-entropy (mean) from init
  <c>/train/grad/<name>        d loss / d parameter for every trainable parameter (zeros where
                               PyTorch has no gradient: FixMatch's unused bn1)
  <c>/train/after/<name>       every buffer after that train-mode forward
  <c>/sgd/losses               [6]: train-mode losses before each of 5 SGD steps (lr 0.05,
                               momentum 0.9, weight decay 5e-4 on weights, 0 on biases, norm
                               parameters and ViT tokens/position embedding) and after the fifth
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models import resnet as tv_resnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join("tests", "golden", "models.safetensors")
NO_DECAY_NAMES = {"pos_embed", "cls_token", "dist_token"}

tensors = {}
metadata = {}


# ---------------------------------------------------------------- reference models

class SizedResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the stem width (64) as a parameter and an optional CIFAR stem and
    tllib bottleneck head. Everything else — _make_layer, the blocks, _forward_impl, the init — is
    torchvision's."""

    def __init__(self, block, layers, width=64, num_classes=1000, cifar_stem=False, bottleneck_dim=0):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # torchvision's width_per_group, not the stem width
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        features = width * 8 * block.expansion
        if bottleneck_dim:
            self.fc = nn.Identity()
            self.bottleneck = nn.Sequential(nn.Linear(features, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU())
            self.head = nn.Linear(bottleneck_dim, num_classes)
        else:
            self.fc = nn.Linear(features, num_classes)
            self.bottleneck = None
        for m in self.modules():  # torchvision's init (zero_init_residual=False)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def pooled(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        if self.bottleneck is None:
            return self._forward_impl(x)
        return self.head(self.bottleneck(self._forward_impl(x)))


class WrnBlock(nn.Module):
    """A pre-activation block of the FixMatch-pytorch / TorchSSL WideResNet (same names and
    semantics; see models/wideresnet.h for the quirk of the unused bn1)."""

    def __init__(self, c_in, c_out, stride, activate_before_residual, eps, conv_bias):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, momentum=0.001, eps=eps)
        self.relu1 = nn.LeakyReLU(negative_slope=0.1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.001, eps=eps)
        self.relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=conv_bias)
        self.equal = c_in == c_out
        self.convShortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride=stride, padding=0, bias=conv_bias)
        self.activate_before_residual = activate_before_residual

    def forward(self, x):
        if not self.equal and self.activate_before_residual:
            x = self.relu1(self.bn1(x))
            h = x
        else:
            o = self.relu1(self.bn1(x))  # unused when the width changes, as in the reference
            h = o if self.equal else x
        h = self.conv2(self.relu2(self.bn2(self.conv1(h))))
        return (x if self.equal else self.convShortcut(x)) + h


class WrnGroup(nn.Module):
    def __init__(self, n, c_in, c_out, stride, activate_before_residual, eps, conv_bias):
        super().__init__()
        self.layer = nn.Sequential(*[
            WrnBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, activate_before_residual, eps, conv_bias)
            for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, num_classes, depth=28, widen=2, base=16, torchssl=False):
        super().__init__()
        eps = 1e-3 if torchssl else 1e-5
        n = (depth - 4) // 6
        ch = [base, base * widen, 2 * base * widen, 4 * base * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=torchssl)
        self.block1 = WrnGroup(n, ch[0], ch[1], 1, True, eps, torchssl)
        self.block2 = WrnGroup(n, ch[1], ch[2], 2, False, eps, torchssl)
        self.block3 = WrnGroup(n, ch[2], ch[3], 2, False, eps, torchssl)
        self.bn1 = nn.BatchNorm2d(ch[3], momentum=0.001, eps=eps)
        self.relu = nn.LeakyReLU(negative_slope=0.1)
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.constant_(m.bias, 0.0)

    def pooled(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.adaptive_avg_pool2d(self.relu(self.bn1(x)), 1).flatten(1)

    def forward(self, x):
        return self.fc(self.pooled(x))


def timm_vit(distilled, **kw):
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer
    return (VisionTransformerDistilled if distilled else VisionTransformer)(**kw)


# ---------------------------------------------------------------- cases

def perturb(model, gen):
    """Moves the 1/0 initialisations (norm weights/biases, Linear biases, class token) and the BN
    running statistics to random values, so that every term of the forward and backward shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim == 1 and leaf == "weight":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and leaf == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name in ("cls_token", "dist_token"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
            elif name.endswith("num_batches_tracked"):
                b.fill_(3)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def pooled_features(model, x):
    if isinstance(model, (SizedResNet, WideResNet)):
        return model.pooled(x)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def stage_outputs(model, x):
    modules = ([model.layer1, model.layer2, model.layer3, model.layer4] if isinstance(model, SizedResNet)
               else list(model.blocks))
    outs = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach().clone())) for m in modules]
    model(x)
    for h in hooks:
        h.remove()
    return outs


def sgd_groups(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in NO_DECAY_NAMES else decay).append(p)
    return [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}]


def case(name, config, make_model, batch, size, stages=False):
    torch.manual_seed(1000 + len(metadata))
    gen = torch.Generator().manual_seed(2000 + len(metadata))
    model = make_model()
    perturb(model, gen)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, config["classes"], (batch,), generator=gen)
    init = state(model)
    tensors[f"{name}/x"] = x
    tensors[f"{name}/y"] = y
    for k, v in init.items():
        tensors[f"{name}/init/{k}"] = v

    model.eval()
    with torch.no_grad():
        tensors[f"{name}/eval/logits"] = model(x)
        tensors[f"{name}/eval/pooled"] = pooled_features(model, x)
        if stages:
            for i, s in enumerate(stage_outputs(model, x)):
                tensors[f"{name}/eval/stage{i}"] = s

    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    tensors[f"{name}/train/logits"] = logits.detach().clone()
    tensors[f"{name}/train/loss"] = loss.detach().clone()
    for k, p in model.named_parameters():
        tensors[f"{name}/train/grad/{k}"] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    for k, b in model.named_buffers():
        tensors[f"{name}/train/after/{k}"] = b.detach().clone()

    model.load_state_dict(init)
    model.zero_grad(set_to_none=True)
    opt = torch.optim.SGD(sgd_groups(model), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(F.cross_entropy(model(x), y).item())
    tensors[f"{name}/sgd/losses"] = torch.tensor(losses, dtype=torch.float32)
    metadata[name] = json.dumps(config, separators=(",", ":"))


def make_goldens():
    # SizedResNet at width 64 is torchvision's resnet18 / resnet50, name for name and shape for shape.
    for block, layers, ctor in ((tv_resnet.BasicBlock, [2, 2, 2, 2], torchvision.models.resnet18),
                                (tv_resnet.Bottleneck, [3, 4, 6, 3], torchvision.models.resnet50)):
        ours = {k: v.shape for k, v in SizedResNet(block, layers, num_classes=7).state_dict().items()}
        theirs = {k: v.shape for k, v in ctor(num_classes=7).state_dict().items()}
        assert ours == theirs, set(ours.items()) ^ set(theirs.items())
    case("resnet_basic",
         {"arch": "resnet", "block": "basic", "layers": [1, 1, 1, 1], "width": 4, "cifar_stem": False, "classes": 5,
          "bottleneck": 0},
         lambda: SizedResNet(tv_resnet.BasicBlock, [1, 1, 1, 1], width=4, num_classes=5), batch=6, size=32, stages=True)
    case("resnet_bottleneck",
         {"arch": "resnet", "block": "bottleneck", "layers": [2, 1, 1, 1], "width": 4, "cifar_stem": True, "classes": 5,
          "bottleneck": 16},
         lambda: SizedResNet(tv_resnet.Bottleneck, [2, 1, 1, 1], width=4, num_classes=5, cifar_stem=True, bottleneck_dim=16),
         batch=8, size=16)  # batch 4 makes the BatchNorm1d of the bottleneck so ill-conditioned that
                            # 5 SGD steps in f32 and f64 differ by 4e-4 in PyTorch itself
    case("wrn",
         {"arch": "wrn", "depth": 16, "widen": 2, "base": 4, "torchssl": False, "classes": 5, "bottleneck": 0},
         lambda: WideResNet(5, depth=16, widen=2, base=4), batch=4, size=16)
    case("wrn_torchssl",
         {"arch": "wrn", "depth": 10, "widen": 2, "base": 4, "torchssl": True, "classes": 5, "bottleneck": 0},
         lambda: WideResNet(5, depth=10, widen=2, base=4, torchssl=True), batch=4, size=16)
    vit_kw = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    case("vit",
         {"arch": "vit", "embed": 32, "depth": 2, "heads": 2, "patch": 4, "image": 16, "distilled": False, "classes": 5,
          "bottleneck": 0},
         lambda: timm_vit(False, **vit_kw), batch=3, size=16, stages=True)
    case("deit_distilled",
         {"arch": "vit", "embed": 32, "depth": 2, "heads": 2, "patch": 4, "image": 16, "distilled": True, "classes": 5,
          "bottleneck": 0},
         lambda: timm_vit(True, **vit_kw), batch=3, size=16)


# ---------------------------------------------------------------- the reverse direction

def read_safetensors(path):
    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out, meta


def reference_model(name, classes, image_size):
    """The PyTorch model our model `name` claims to be, freshly initialised by its own code."""
    if name.startswith("resnet"):
        depth = int(name[6:].split("-")[0])
        m = getattr(torchvision.models, f"resnet{depth}")(num_classes=classes)
        if name.endswith("-cifar"):
            m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
            m.maxpool = nn.Identity()
        return m
    if name.startswith("wrn-"):
        parts = name.split("-")
        return WideResNet(classes, depth=int(parts[1]), widen=int(parts[2]), torchssl=name.endswith("-torchssl"))
    import timm
    size = name.split("-")[1]
    variant = (f"deit_{size}_distilled_patch16_224" if name.endswith("-distilled")
               else f"{name.split('-')[0]}_{size}_patch16_224")
    return timm.create_model(variant, num_classes=classes, img_size=image_size)


def check_export(directory):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors") and not f.endswith(".io.safetensors"))
    if not files:
        sys.exit(f"{directory}: no exported models")
    failures = 0
    for f in files:
        weights, meta = read_safetensors(os.path.join(directory, f))
        io, io_meta = read_safetensors(os.path.join(directory, f[:-len(".safetensors")] + ".io.safetensors"))
        name, classes = meta["tailor.model"], int(meta["tailor.num_classes"])
        image_size = int(io_meta.get("image_size", 224))
        ref = reference_model(name, classes, image_size)
        fresh = state(ref)
        # Initialisation: our tensors against the reference code's own draw, by standard deviation
        # and mean (different random generators, so only the distributions can agree).
        worst = (0.0, "")
        for k, v in weights.items():
            if v.numel() < 3000 or not v.is_floating_point() or "running" in k:
                continue
            a, b = v.double(), fresh[k].double()
            sa, sb = a.std().item(), b.std().item()
            rel = abs(sa - sb) / max(sb, 1e-12)
            if abs(a.mean().item() - b.mean().item()) > 0.1 * max(sb, 1e-12) + 1e-9 or rel > 0.05:
                print(f"  {name}: {k}: ours mean {a.mean().item():.3g} std {sa:.4g}, reference mean {b.mean().item():.3g} std {sb:.4g}")
                failures += 1
            worst = max(worst, (rel, k))
        missing, unexpected = set(fresh) - set(weights), set(weights) - set(fresh)
        try:
            ref.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            print(f"  {name}: load_state_dict(strict=True) failed: {str(e).splitlines()[0]}")
            failures += 1
            continue
        ref.eval()
        with torch.no_grad():
            logits = ref(io["x"])
        expected = io["logits"]
        diff = (logits - expected).abs().max().item()
        scale = expected.abs().max().item()
        ok = diff <= 1e-4 * max(1.0, scale)
        failures += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {name}: strict load of {len(weights)} tensors"
              f"{' (missing ' + str(missing) + ', unexpected ' + str(unexpected) + ')' if missing or unexpected else ''}; "
              f"logits max |diff| {diff:.3g} (scale {scale:.3g}); init std worst relative difference {worst[0]:.3f} ({worst[1]})")
    print(f"{len(files)} exported models checked, {failures} problems")
    return failures == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-export", nargs="?", const="", metavar="DIR",
                        help="check our saved models against PyTorch (runs build/tests/test_models when DIR is omitted)")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join("tests", "golden")):
        sys.exit("run from the repository root: /work/venv-ref/bin/python tests/ref/gen_model_goldens.py")
    torch.set_num_threads(1)  # deterministic accumulation order
    if args.check_export is not None:
        directory = args.check_export
        if not directory:
            directory = tempfile.mkdtemp(prefix="tailor_export_")
            program = os.path.join("build", "tests", "test_models")
            if not os.path.exists(program):
                sys.exit(f"{program} not found: make build/tests/test_models first")
            env = dict(os.environ, TAILOR_MODELS_EXPORT=directory)
            subprocess.run([program], env=env, check=True, stdout=subprocess.DEVNULL)
        sys.exit(0 if check_export(directory) else 1)
    make_goldens()
    for name, t in tensors.items():
        assert t.dtype in (torch.float32, torch.int64), (name, t.dtype)
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name
    safetensors_min.save(OUT_PATH, tensors, metadata)
    size = os.path.getsize(OUT_PATH)
    print(f"{OUT_PATH}: {len(metadata)} cases, {len(tensors)} tensors, {size} bytes")
    assert size < 2 * 1024 * 1024, "keep the goldens under 2 MB"


if __name__ == "__main__":
    main()
