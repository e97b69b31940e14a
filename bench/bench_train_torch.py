"""PyTorch's side of bench/bench_train.c: the same training steps (forward + backward + SGD with
momentum 0.9 and weight decay 5e-4, cross-entropy, random 32x32 inputs, 10 classes, batch 128) for
torchvision's ResNet-18 with the CIFAR stem (3x3 conv stride 1, no max-pool) and timm's ViT-tiny
with patch size 4, on the same number of threads; median step time after 2 warm-up steps, steps
until the time budget is spent (at least 3), and the peak resident memory. Not a test.

    /usr/bin/python3 bench/bench_train_torch.py [--threads N] [--batch-size N] [--seconds S]

Needs Debian's python3-torch / python3-torchvision; for the ViT, timm on the path (the tests/ref
venv: /work/venv-ref/bin/python bench/bench_train_torch.py; see tests/ref/gen_model_goldens.py).

BLAS: Debian's torch 1.13 is built with BLAS_INFO=generic, i.e. it calls whatever libblas.so.3
the system's alternatives point at, and on this machine that is netlib's reference BLAS
(single-threaded, ~4 GFLOP/s). Convolutions go through oneDNN and do not care, but every matmul
(nn.Linear, attention's bmm) does: ViT-tiny measured 1.0 images/s, 124 s per step, all of it in
netlib's sgemm_ -- an artefact of the install, not PyTorch's speed. For a fair comparison run with
an optimised BLAS, without touching the system, e.g. Debian's OpenBLAS unpacked locally:

    apt-get download libopenblas0-pthread && dpkg-deb -x libopenblas0-pthread_*.deb /tmp/oblas
    LD_LIBRARY_PATH=/tmp/oblas/usr/lib/x86_64-linux-gnu/openblas-pthread \
        /work/venv-ref/bin/python bench/bench_train_torch.py

The script prints which libblas the process loaded, and warns when it is the reference one.
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS default to --threads (set before torch is imported).
"""
import argparse
import os
import resource
import statistics
import sys
import time


def _threads_from_argv():
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "2"


# BLAS libraries read their thread counts when they are loaded, i.e. when torch is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv())

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402


def loaded_blas():
    """The BLAS shared library this process mapped (path), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        name = os.path.basename(path)
        if name.startswith(("libblas.so", "libopenblas", "libmkl_rt", "libblis")):
            return os.path.realpath(path)
    return None


def resnet18_cifar():
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def vit_tiny_patch4():
    import timm
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=10)


def bench(name, model, batch_size, seconds):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, 32, 32)
    y = torch.arange(batch_size) % 10
    model.train()
    times = []
    start = time.monotonic()
    step = 0
    while True:
        t0 = time.monotonic()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        t1 = time.monotonic()
        if step >= 2:
            times.append(t1 - t0)
            if len(times) >= 3 and t1 - start > seconds:
                break
        step += 1
    median = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:16s} batch {batch_size}  {torch.get_num_threads():2d} threads  {1000 * median:6.1f} ms/step  "
          f"{batch_size / median:7.1f} images/s  ({len(times)} steps)  peak RSS {peak:.0f} MiB  "
          f"torch {torch.__version__}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blas = loaded_blas()
    print(f"BLAS: {blas or 'unknown'}")
    if blas and "/blas/" in blas and "openblas" not in blas:
        print("warning: torch is using the reference (netlib) BLAS: its matmuls (nn.Linear, attention) are "
              "~50x slower than an optimised BLAS; see this script's docstring for running it with OpenBLAS")
    bench("resnet18-cifar", resnet18_cifar(), args.batch_size, args.seconds)
    try:
        model = vit_tiny_patch4()
    except ImportError:
        print("vit-tiny         skipped: timm not importable (run with /work/venv-ref/bin/python)")
        return
    bench("vit-tiny", model, args.batch_size, args.seconds)


if __name__ == "__main__":
    main()
