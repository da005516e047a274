"""Training throughput: synthequiv's in-memory batch loop vs a DataLoader + PIL-transform loop.

Same model, optimizer, loss, batch size, thread count and data in every arm; only the data path
differs. The reference arm is the usual torchvision recipe: per-item PIL images through
RandomCrop(padding) → ToTensor → Normalize, collated by a DataLoader (num_workers 0 and 2).

    .venv/bin/python benchmarks/classifier.py            # digits 8×8, small CNN (~1 min)
    .venv/bin/python benchmarks/classifier.py --mnist28  # + 28 px random data, ResNet-18 width 8

Timings are wall-clock, best of --repeats; on a shared machine they are noisy, the ratio less so.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from synthequiv.classification.classifier import (
    ClassifierConfig,
    build_classifier,
    build_optimizer,
    memory_format,
    train_classifier,
)


class PILDataset(Dataset):
    """The per-item reference: uint8 array → PIL image → torchvision transforms, per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pad: int):
        self.images = images.permute(0, 2, 3, 1).numpy()  # [N, H, W, C] for PIL
        self.labels = labels.numpy()
        c, size = images.shape[1], images.shape[-1]
        self.tf = transforms.Compose([
            transforms.RandomCrop(size, padding=pad, padding_mode="edge"),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * c, (0.5,) * c),  # → [-1, 1], as normalize_images
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.tf(pil), int(self.labels[i])


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def dataloader_loop(images, labels, num_classes, cfg: ClassifierConfig, workers: int) -> float:
    """Train cfg.train_steps steps reading batches from a DataLoader; returns seconds."""
    torch.manual_seed(0)
    model = build_classifier(cfg.arch, images.shape[1], images.shape[-1], num_classes, cfg.width)
    fmt = memory_format(model, torch.device("cpu"))  # as train_classifier picks it
    model = model.to(memory_format=fmt).train()
    opt, sched = build_optimizer(model, cfg, cfg.train_steps)
    loader = DataLoader(PILDataset(images, labels, cfg.crop_pad_px), batch_size=cfg.batch_size,
                        shuffle=True, drop_last=len(images) >= cfg.batch_size,
                        num_workers=workers, worker_init_fn=_one_thread)
    start, step = time.perf_counter(), 0
    while step < cfg.train_steps:  # epochs until the step budget is spent, as in the library
        for x, y in loader:
            x = x.contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == cfg.train_steps:
                break
    return time.perf_counter() - start


def in_memory_loop(images, labels, num_classes, cfg: ClassifierConfig) -> float:
    start = time.perf_counter()
    train_classifier(images, labels, num_classes, cfg, seed=0)
    return time.perf_counter() - start


def compare(name: str, images, labels, num_classes: int, cfg: ClassifierConfig, repeats: int):
    """Best-of-`repeats` images/s per arm, arms interleaved so load changes hit all of them."""
    arms = {
        "in-memory (synthequiv)": lambda: in_memory_loop(images, labels, num_classes, cfg),
        "DataLoader+PIL, 0 workers": lambda: dataloader_loop(images, labels, num_classes, cfg, 0),
        "DataLoader+PIL, 2 workers": lambda: dataloader_loop(images, labels, num_classes, cfg, 2),
    }
    best = {k: float("inf") for k in arms}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.cpu_threads or threads)  # the library's setting, for every arm
    for _ in range(repeats):
        for k, run in arms.items():
            best[k] = min(best[k], run())
    torch.set_num_threads(threads)
    n_img = cfg.train_steps * cfg.batch_size
    ref = best["in-memory (synthequiv)"]
    print(f"\n{name}: {tuple(images.shape)} uint8, arch={cfg.arch} width={cfg.width or 'default'}, "
          f"{cfg.train_steps} steps × batch {cfg.batch_size}, {cfg.cpu_threads} torch thread(s)")
    for k, sec in best.items():
        print(f"  {k:<28} {n_img / sec:9.0f} img/s  {sec:6.2f} s   in-memory is {sec / ref:5.1f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80, help="optimizer steps per arm (digits)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mnist28", action="store_true", help="also 28 px random data, ResNet-18")
    args = ap.parse_args()

    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(d.target).long()
    cfg = ClassifierConfig(train_steps=args.steps)
    compare("digits 8×8, small CNN", images, labels, 10, cfg, args.repeats)

    if args.mnist28:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (2000, 1, 28, 28), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (2000,), generator=g)
        cfg28 = dataclasses.replace(cfg, arch="resnet18", width=8, crop_pad_px=3,
                                    train_steps=max(5, args.steps // 8))
        compare("MNIST-like 28×28 random, ResNet-18", x, y, 10, cfg28, args.repeats)


if __name__ == "__main__":
    main()
