"""diffusers/PyTorch's side of bench/bench_diffusion.c: the same small UNet2DConditionModel
(block_out_channels (32, 64, 64), DownBlock2D + 2 CrossAttnDownBlock2D, 2 CrossAttnUpBlock2D +
UpBlock2D, one layer per block, cross_attention_dim 64, 4 heads, 8 norm groups), the same training
step (epsilon loss, uniform timesteps, random 32x32 RGB images and text states [B, 8, 64], AdamW
lr 1e-4 weight decay 1e-2, batch 32) and DDIM sampling (25 steps, guidance 4 with the batch doubled,
16 images), on the same number of threads; medians after a warm-up, peak resident memory. Not a
test.

    LD_LIBRARY_PATH=<OpenBLAS dir> /work/venv-ref/bin/python bench/bench_diffusion_torch.py [--threads N]

(diffusers 0.27.2 in the tests/ref venv; OpenBLAS as explained in bench/bench_train_torch.py:
Debian's torch otherwise calls netlib's reference BLAS for every Linear.)
"""
import argparse
import os
import resource
import statistics
import sys
import time

THREADS = "2"
for i, arg in enumerate(sys.argv):
    if arg == "--threads" and i + 1 < len(sys.argv):
        THREADS = sys.argv[i + 1]
os.environ.setdefault("OMP_NUM_THREADS", THREADS)
os.environ.setdefault("OPENBLAS_NUM_THREADS", THREADS)

import torch  # noqa: E402
from diffusers import DDIMScheduler, UNet2DConditionModel  # noqa: E402


def median_time(step, seconds):
    step()  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-2)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    B = args.batch_size
    images, context = torch.randn(B, 3, 32, 32), torch.randn(B, 8, 64)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        t = torch.randint(0, 1000, (B,))
        noise = torch.randn_like(images)
        noisy = scheduler.add_noise(images, noise, t)
        loss = torch.nn.functional.mse_loss(unet(noisy, t, context).sample, noise)
        loss.backward()
        optimizer.step()

    t, n = median_time(train_step, args.seconds)
    params = sum(p.numel() for p in unet.parameters())
    print(f"unet-small train   batch {B}  {args.threads} threads  {1000 * t:7.1f} ms/step  {1 / t:6.2f} steps/s  "
          f"{B / t:7.1f} images/s  ({n} steps)  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB  {params} parameters")

    sample_context = torch.randn(16, 8, 64)
    null = torch.zeros(1, 8, 64).expand(16, 8, 64)

    @torch.no_grad()
    def sample():
        scheduler.set_timesteps(25)
        x = torch.randn(16, 3, 32, 32)
        both = torch.cat([null, sample_context])
        for t in scheduler.timesteps:
            out = unet(torch.cat([x, x]), t, both).sample
            uncond, cond = out.chunk(2)
            x = scheduler.step(uncond + 4.0 * (cond - uncond), t, x).prev_sample

    t, n = median_time(sample, args.seconds)
    print(f"unet-small sample  batch 16  {args.threads} threads  {1000 * t:7.1f} ms/batch  {16 / t:7.2f} images/s  "
          f"(DDIM 25 steps, guidance 4; {n} batches)  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
