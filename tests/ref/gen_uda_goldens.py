"""Golden tests of the adaptation losses (adapt/) against the Transfer-Learning-Library (tllib)
itself, whose code the methods follow.

tllib is not on the package index: give its source (a clone of github.com/thuml/Transfer-Learning-Library,
commit c4aa59e or later) with --tllib; its modules import torch, numpy, timm (and prettytable, for reports only: a stand-in is used when absent). Run from the
repository root with the reference venv (torch 1.13):

    /work/venv-ref/bin/python tests/ref/gen_uda_goldens.py --tllib /path/to/Transfer-Learning-Library

Writes tests/golden/uda.safetensors (committed; tests/test_uda_losses.c reads it).

Cases "cdan_e" and "cdan_random": tllib.alignment.cdan.ConditionalDomainAdversarialLoss with entropy
conditioning and the multilinear map (discriminator on 6 x 4 inputs), and without entropy
conditioning with the randomized map (d = 12; its random matrices saved as init/map.Rf, map.Rg),
discriminator width 16, reversal at iteration 500 of 1000, on features [5, 6] and logits [5, 4] per
domain: the same tensors as "dann" plus g_s, g_t (the logits, whose gradient is zero: detached).

Case "dann": tllib.modules.domain_discriminator.DomainDiscriminator(in_feature=8, hidden_size=16)
(Linear-BN-ReLU-Linear-BN-ReLU-Linear-Sigmoid, torch.manual_seed(0) initialisation) and
tllib.alignment.dann.DomainAdversarialLoss with a WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1,
max_iters=10) at iteration 3, in training mode, on f_s [6, 8] ~ N(0, 1), f_t [6, 8] ~ N(0.5, 1):
  dann/init/<name>         the discriminator's state dict before the step
  dann/f_s, dann/f_t       the features
  dann/coefficient         [1] the gradient-reversal coefficient tllib used
  dann/loss, dann/accuracy [1] the loss and the discriminator accuracy (tllib's percent / 100)
  dann/grad_f_s, dann/grad_f_t   gradients of the loss w.r.t. the features (reversed, scaled)
  dann/grad/<name>         gradients of the discriminator's parameters
  dann/after/<name>        the state dict after the forward (BatchNorm running statistics)
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_min  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(__file__), "..", "golden", "uda.safetensors")


def dann_case(out):
    from tllib.alignment.dann import DomainAdversarialLoss
    from tllib.modules.domain_discriminator import DomainDiscriminator
    from tllib.modules.grl import WarmStartGradientReverseLayer

    torch.manual_seed(0)
    discriminator = DomainDiscriminator(in_feature=8, hidden_size=16)
    for name, value in discriminator.state_dict().items():
        out[f"dann/init/{name}"] = value.clone().float()  # num_batches_tracked too: the C store holds f32
    f_s = torch.randn(6, 8, requires_grad=True)
    f_t = (torch.randn(6, 8) + 0.5).requires_grad_(True)
    grl = WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0, max_iters=10, auto_step=True)
    grl.iter_num = 3
    coefficient = 2.0 / (1.0 + np.exp(-3 / 10)) - 1.0
    criterion = DomainAdversarialLoss(discriminator, grl=grl).train()
    loss = criterion(f_s, f_t)
    loss.backward()
    out["dann/f_s"] = f_s.detach()
    out["dann/f_t"] = f_t.detach()
    out["dann/coefficient"] = torch.tensor([coefficient], dtype=torch.float64)
    out["dann/loss"] = loss.detach().reshape(1)
    out["dann/accuracy"] = torch.tensor([float(criterion.domain_discriminator_accuracy) / 100.0])
    out["dann/grad_f_s"] = f_s.grad
    out["dann/grad_f_t"] = f_t.grad
    for name, p in discriminator.named_parameters():
        out[f"dann/grad/{name}"] = p.grad
    for name, value in discriminator.state_dict().items():
        out[f"dann/after/{name}"] = value.clone().float()


def cdan_case(out, name, entropy_conditioning, randomized):
    from tllib.alignment.cdan import ConditionalDomainAdversarialLoss
    from tllib.modules.domain_discriminator import DomainDiscriminator

    torch.manual_seed(1)
    features, classes, dim = 6, 4, 12
    criterion = ConditionalDomainAdversarialLoss(
        DomainDiscriminator(in_feature=dim if randomized else features * classes, hidden_size=16),
        entropy_conditioning=entropy_conditioning, randomized=randomized, num_classes=classes,
        features_dim=features, randomized_dim=dim).train()
    discriminator = criterion.domain_discriminator
    for key, value in discriminator.state_dict().items():
        out[f"{name}/init/domain_discri.{key}"] = value.clone().float()
    if randomized:  # tllib's random matrices are plain attributes; Tailor keeps them as buffers
        out[f"{name}/init/map.Rf"] = criterion.map.Rf.clone()
        out[f"{name}/init/map.Rg"] = criterion.map.Rg.clone()
    f_s = torch.randn(5, features, requires_grad=True)
    f_t = (torch.randn(5, features) + 0.3).requires_grad_(True)
    g_s = (2 * torch.randn(5, classes)).requires_grad_(True)
    g_t = torch.randn(5, classes).requires_grad_(True)
    criterion.grl.iter_num = 500  # coefficient 2 / (1 + e^-0.5) - 1
    coefficient = 2.0 / (1.0 + np.exp(-0.5)) - 1.0
    loss = criterion(g_s, f_s, g_t, f_t)
    loss.backward()
    for key, value in {"f_s": f_s, "f_t": f_t, "g_s": g_s, "g_t": g_t}.items():
        out[f"{name}/{key}"] = value.detach()
    out[f"{name}/coefficient"] = torch.tensor([coefficient], dtype=torch.float64)
    out[f"{name}/loss"] = loss.detach().reshape(1)
    out[f"{name}/accuracy"] = torch.tensor([float(criterion.domain_discriminator_accuracy) / 100.0])
    out[f"{name}/grad_f_s"] = f_s.grad
    out[f"{name}/grad_f_t"] = f_t.grad
    assert g_s.grad is None or float(g_s.grad.abs().max()) == 0  # the predictions are detached
    for key, p in discriminator.named_parameters():
        out[f"{name}/grad/domain_discri.{key}"] = p.grad
    for key, value in discriminator.state_dict().items():
        out[f"{name}/after/domain_discri.{key}"] = value.clone().float()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tllib", required=True, help="a clone of Transfer-Learning-Library")
    args = parser.parse_args()
    sys.path.insert(0, args.tllib)
    # tllib's package __init__ files import every method (numba, sklearn, ...): register the
    # packages without running them, so only the modules used here (and what they import) load.
    import types
    for package in ["tllib", "tllib.alignment", "tllib.modules", "tllib.utils"]:
        module = types.ModuleType(package)
        module.__path__ = [os.path.join(args.tllib, *package.split("."))]
        sys.modules[package] = module
    # tllib.utils.metric imports prettytable for its reports only: stand in for it when absent.
    try:
        import prettytable  # noqa: F401
    except ImportError:
        sys.modules["prettytable"] = types.ModuleType("prettytable")
    if not hasattr(np, "float"):
        np.float = float  # tllib's grl.py still calls np.float, removed in numpy 1.24
    out = {}
    dann_case(out)
    cdan_case(out, "cdan_e", entropy_conditioning=True, randomized=False)
    cdan_case(out, "cdan_random", entropy_conditioning=False, randomized=True)
    safetensors_min.save(OUT_PATH, out)
    print(f"wrote {len(out)} tensors to {OUT_PATH}")


if __name__ == "__main__":
    main()
