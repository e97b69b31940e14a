#!/usr/bin/python3
"""Golden values for tests/test_optim.c from PyTorch (Debian python3-torch 1.13):
torch.optim.SGD / Adam / AdamW on small fixed parameter and gradient sequences, learning-rate
schedulers, clip_grad_norm_, and a weight EMA. Writes tests/golden/optim.safetensors.

Run from the repository root:  /usr/bin/python3 tests/ref/gen_optim_goldens.py

Layout of the flat buffer (what the C test builds with optimizer_add_group):
    [0, 7)   "a": default group (base lr, the optimizer's weight decay)
    [7, 10)  "b": lr multiplier 0.1, the optimizer's weight decay
    [10, 13) "c": lr multiplier 1, weight decay 0 (a no-decay group: biases, norms)
Tensors written (f32 unless noted):
    init [13]; grads [STEPS, 13]
    <config>.params [STEPS, 13]: parameters after each step
    <config>.state1 / .state2 [13]: momentum_buffer, or exp_avg / exp_avg_sq, after the last step
    <config>.lr [STEPS] (f64): the base lr used at each step (only for the scheduled config)
    schedule.<name> [SCHEDULE_STEPS] (f64): lr before each step for a scheduler
    clip.<name>.grads_in / .grads_out [13]; clip.<name>.norm [1]
    ema.params [STEPS, 13] inputs, ema.out [STEPS, 13] the EMA after each update (decay 0.9)
"""
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_min import save  # noqa: E402

STEPS = 6
SIZES = (7, 3, 3)
N = sum(SIZES)
SCHEDULE_STEPS = 40


def make_inputs():
    rng = np.random.RandomState(20240601)
    init = rng.uniform(-1.0, 1.0, size=N).astype(np.float32)
    grads = rng.normal(0.0, 1.0, size=(STEPS, N)).astype(np.float32)
    grads[:, 3] = 0.0  # a parameter that never gets a gradient (eps and weight decay only)
    grads[:, 4] *= 1e3  # a large gradient
    grads[:, 8] *= 1e-4  # a tiny gradient, comparable to eps for Adam's sqrt(v)
    grads[2, :] *= -2.0  # a sign flip in the middle of the run
    return init, grads


def split(flat):
    out, pos = [], 0
    for n in SIZES:
        out.append(flat[pos:pos + n])
        pos += n
    return out


def run(config, init, grads, make_optimizer, make_scheduler=None):
    params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in split(init)]
    optimizer = make_optimizer(params)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    history, lrs = [], []
    for step in range(STEPS):
        for p, g in zip(params, split(grads[step])):
            p.grad = torch.from_numpy(g.copy())
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler:
            scheduler.step()
        history.append(torch.cat([p.detach() for p in params]).numpy().copy())
    out = {f"{config}.params": np.stack(history)}
    state_names = {
        torch.optim.SGD: ("momentum_buffer", None),
        torch.optim.Adam: ("exp_avg", "exp_avg_sq"),
        torch.optim.AdamW: ("exp_avg", "exp_avg_sq"),
    }[type(optimizer)]
    for index, name in enumerate(state_names):
        if name is None or optimizer.state[params[0]].get(name) is None:
            continue  # SGD without momentum keeps momentum_buffer = None
        out[f"{config}.state{index + 1}"] = torch.cat(
            [optimizer.state[p][name].detach() for p in params]).numpy().copy()
    if scheduler:
        out[f"{config}.lr"] = np.array(lrs, dtype=np.float64)
    return out


def groups(params, lr, weight_decay):
    a, b, c = params
    return [
        {"params": [a]},
        {"params": [b], "lr": lr * 0.1},
        {"params": [c], "weight_decay": 0.0},
    ]


def optimizer_goldens(init, grads):
    out = {}
    sgd = torch.optim.SGD
    out.update(run("sgd_plain", init, grads, lambda p: sgd(p, lr=0.1)))
    out.update(run("sgd_momentum", init, grads,
                   lambda p: sgd(groups(p, 0.05, 1e-2), lr=0.05, momentum=0.9, weight_decay=1e-2)))
    out.update(run("sgd_nesterov", init, grads,
                   lambda p: sgd(groups(p, 0.05, 5e-4), lr=0.05, momentum=0.9, nesterov=True,
                                 weight_decay=5e-4)))
    out.update(run("sgd_dampening", init, grads,
                   lambda p: sgd(p, lr=0.02, momentum=0.8, dampening=0.5, weight_decay=1e-2)))
    adam, adamw = torch.optim.Adam, torch.optim.AdamW
    out.update(run("adam", init, grads, lambda p: adam(p, lr=1e-2)))
    out.update(run("adam_l2", init, grads,
                   lambda p: adam(groups(p, 1e-2, 0.1), lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.1)))
    out.update(run("adamw", init, grads,
                   lambda p: adamw(groups(p, 1e-2, 0.05), lr=1e-2, weight_decay=0.05)))
    out.update(run("adamw_betas", init, grads,
                   lambda p: adamw(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.3)))

    # AdamW driven by linear warm-up (2 steps from 0.25) then cosine to 0 over the remaining steps.
    def warmup_cosine(optimizer):
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.25, total_iters=2)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS - 2, eta_min=0.0)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[2])

    out.update(run("adamw_cosine", init, grads,
                   lambda p: adamw(groups(p, 1e-2, 0.05), lr=1e-2, weight_decay=0.05),
                   warmup_cosine))
    return out


def scheduler_lrs(make_scheduler, base_lr=0.1):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(SCHEDULE_STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs, dtype=np.float64)


def schedule_goldens():
    S = torch.optim.lr_scheduler
    base = 0.1
    out = {}
    out["schedule.step"] = scheduler_lrs(lambda o: S.StepLR(o, step_size=7, gamma=0.5))
    out["schedule.multistep"] = scheduler_lrs(lambda o: S.MultiStepLR(o, milestones=[4, 9, 15], gamma=0.3))
    out["schedule.cosine"] = scheduler_lrs(
        lambda o: S.CosineAnnealingLR(o, T_max=SCHEDULE_STEPS, eta_min=0.01 * base))
    out["schedule.warmup_cosine"] = scheduler_lrs(lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
            S.CosineAnnealingLR(o, T_max=SCHEDULE_STEPS - 5, eta_min=0.01 * base)], milestones=[5]))
    # tllib: LambdaLR(optimizer, lambda x: args.lr * (1. + args.lr_gamma * float(x)) ** (-args.lr_decay))
    # with the optimizer's lr as the multiplier (param groups carry 1.0 / 0.1); here the factor only.
    out["schedule.inv"] = scheduler_lrs(
        lambda o: S.LambdaLR(o, lambda x: (1.0 + 0.001 * float(x)) ** (-0.75)))
    # DANN paper: mu_p = mu_0 / (1 + 10 p)^0.75, p = progress in [0, 1].
    out["schedule.dann"] = scheduler_lrs(
        lambda o: S.LambdaLR(o, lambda x: (1.0 + 10.0 * x / SCHEDULE_STEPS) ** (-0.75)))
    return out


def clip_goldens(grads):
    out = {}
    for name, max_norm, g in (("clipped", 1.0, grads[0]), ("unclipped", 100.0, grads[1])):
        params = [torch.nn.Parameter(torch.zeros(n)) for n in SIZES]
        for p, part in zip(params, split(g)):
            p.grad = torch.from_numpy(part.copy())
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        out[f"clip.{name}.grads_in"] = g.copy()
        out[f"clip.{name}.grads_out"] = torch.cat([p.grad for p in params]).numpy().copy()
        out[f"clip.{name}.norm"] = np.array([norm.item()], dtype=np.float32)
    return out


def ema_goldens(init, grads):
    # timm ModelEmaV2: ema_v.copy_(ema_v * decay + (1. - decay) * model_v)
    decay = 0.9
    ema = torch.from_numpy(init.copy())
    inputs = (init[None, :] + np.cumsum(grads, axis=0)).astype(np.float32)
    outs = []
    for step in range(STEPS):
        ema.copy_(ema * decay + (1.0 - decay) * torch.from_numpy(inputs[step]))
        outs.append(ema.numpy().copy())
    return {"ema.params": inputs, "ema.out": np.stack(outs)}


def main():
    # SequentialLR itself calls scheduler.step(0) at a milestone, which warns in 1.13.
    warnings.filterwarnings("ignore", message="The epoch parameter")
    torch.set_num_threads(1)
    init, grads = make_inputs()
    tensors = {"init": init, "grads": grads}
    tensors.update(optimizer_goldens(init, grads))
    tensors.update(schedule_goldens())
    tensors.update(clip_goldens(grads))
    tensors.update(ema_goldens(init, grads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "golden", "optim.safetensors")
    save(path, tensors, {"generator": "tests/ref/gen_optim_goldens.py", "torch": torch.__version__,
                         "steps": str(STEPS)})
    print(f"wrote {path}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
