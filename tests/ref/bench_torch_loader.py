"""torchvision's DataLoader on the cases of bench/bench_loader.c, for the side-by-side ratio in
docs/PERFORMANCE.md. Not a test; needs Debian's python3-torchvision.

    build/bench/bench_loader --keep /tmp/loader_images
    /usr/bin/python3 tests/ref/bench_torch_loader.py /tmp/loader_images

Same images, batch sizes, worker counts, 2 s per case after a warm-up of 8 batches. The strong view
uses torchvision's own RandAugment(2, 10) (14 ops, like FixMatch's pool but not identical) as the
nearest built-in stand-in for FixMatch's RandAugmentMC.
"""
import sys
import time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as T

torch.set_num_threads(1)


class TwoViews:
    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return self.first(image), self.second(image)


def run(label, root, transform, workers, batch_size):
    dataset = datasets.ImageFolder(root, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=True, prefetch_factor=2)
    images = 0
    iterator = iter(loader)
    for _ in range(8):
        next(iterator)
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        images += batch[1].shape[0]
    elapsed = time.monotonic() - start
    print(f"{label:34s} workers {workers}  {images / elapsed:8.0f} images/s")


def main():
    root = sys.argv[1]
    half = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    imagenet = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    weak = T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(), T.ToTensor(), half])
    strong = T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(),
                        T.RandAugment(2, 10), T.ToTensor(), half])
    large = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), imagenet])
    for workers in (1, 2):
        run("32x32 decode only", root + "/small", T.ToTensor(), workers, 64)
        run("32x32 weak (crop+flip)", root + "/small", weak, workers, 64)
        run("32x32 weak+strong (RandAugment)", root + "/small", TwoViews(weak, strong), workers, 64)
        run("160x120 random-resized-crop 224", root + "/large", large, workers, 32)


if __name__ == "__main__":
    main()
