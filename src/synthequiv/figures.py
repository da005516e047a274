"""Report figures (matplotlib, Agg). Each function writes one PNG atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .utils import atomic_path  # noqa: E402

ARM_COLORS = {"real": "tab:blue", "closed": "tab:orange", "open": "tab:green"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def accuracy_curves(stats: list[dict], path: Path, metric: str = "accuracy") -> Path:
    """One panel per base size: accuracy vs added images/class per arm, 95 % CI bands."""
    bases = sorted({s["n_base"] for s in stats})
    fig, axes = plt.subplots(1, len(bases), figsize=(4.2 * len(bases), 3.4), squeeze=False)
    for ax, n in zip(axes[0], bases):
        base = [s for s in stats if s["n_base"] == n and s["n_add"] == 0]
        for arm in ("real", "closed", "open"):
            pts = sorted(base + [s for s in stats if s["n_base"] == n and s["arm"] == arm
                                 and s["n_add"] > 0], key=lambda s: s["n_add"])
            if len(pts) < 2:
                continue
            x = np.array([p["n_add"] for p in pts], float)
            m = np.array([p["mean"] for p in pts])
            lo = np.array([p["lo"] for p in pts])
            hi = np.array([p["hi"] for p in pts])
            ax.plot(x, m, "o-", color=ARM_COLORS[arm], label=arm, ms=4)
            ax.fill_between(x, lo, hi, color=ARM_COLORS[arm], alpha=0.18, lw=0)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(f"base {n}/class")
        ax.set_xlabel("added images per class")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric} (mean, 95 % CI)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def sample_grid(rows: list[tuple[str, torch.Tensor, torch.Tensor]], num_classes: int,
                path: Path, per_class: int = 8) -> Path:
    """Columns: `per_class` images of each set side by side; one row per class."""
    fig, axes = plt.subplots(1, len(rows), figsize=(1.0 + 0.4 * per_class * len(rows),
                                                     0.4 * num_classes + 0.8), squeeze=False)
    for ax, (title, images, labels) in zip(axes[0], rows):
        tiles = []
        for c in range(num_classes):
            ids = torch.nonzero(labels == c).flatten()[:per_class]
            row = [images[i] for i in ids] + [torch.zeros_like(images[0])] * (per_class - len(ids))
            tiles.append(torch.cat(row, dim=2))  # [C, H, W*per_class]
        grid = torch.cat(tiles, dim=1)  # [C, H*K, W*per_class]
        img = grid.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def equivalence_curves(eq_arm: dict, arm: str, k: float, path: Path) -> Path:
    """Measured (n_real⁺, n_syn) points per base size and the fitted paper formula."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    pts = eq_arm.get("points", [])
    fit = eq_arm.get("fit", {})
    bases = sorted({p["n_base"] for p in pts})
    cmap = plt.get_cmap("viridis")
    for i, n in enumerate(bases):
        color = cmap(i / max(1, len(bases) - 1))
        ok = [p for p in pts if p["n_base"] == n and p["flag"] == "ok" and p["n_real_eq"] > 0]
        bad = [p for p in pts if p["n_base"] == n and p not in ok]
        ax.plot([p["n_real_eq"] for p in ok], [p["n_syn"] for p in ok], "o", color=color,
                label=f"base {n}/class")
        ax.plot([max(p["n_real_eq"] or 0, 0) for p in bad], [p["n_syn"] for p in bad], "x",
                color=color, alpha=0.6)
        if fit.get("status") == "ok":
            r = np.linspace(0.01, 1.5, 60) * n
            syn = n * fit["c1"] ** (n / k) * (fit["c2"] ** (r / n) - 1)
            ax.plot(r, syn, "-", color=color, alpha=0.8)
    ax.set_xlabel("equivalent extra real images per class (n_real⁺)")
    ax.set_ylabel("synthetic images per class (n_syn)")
    ax.set_yscale("log")
    title = f"{arm}-set: o = matched, x = flagged (no gain / outside range)"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if bases:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
