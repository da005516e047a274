"""Report figures (matplotlib, Agg). Each function writes a PNG (150 dpi) and an SVG twin
atomically and returns the PNG's path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from synthequiv.generation.levers import base_arm  # noqa: E402  (closed@cfg2+top0.5 → closed)
from synthequiv.reporting import figure_pool  # noqa: E402
from synthequiv.reporting.figure_pool import write_figure  # noqa: E402
from synthequiv.utils import check_replaceable  # noqa: E402

ARM_COLORS = {"real": "tab:blue", "closed": "tab:orange", "open": "tab:green"}
EXTRA_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
# lever variants (closed@cfg2, closed+top0.5, …): shades of their base arm's family
VARIANT_COLORS = {"closed": ("tab:red", "tab:brown", "tab:pink", "darkgoldenrod", "maroon",
                             "coral", "sienna", "orchid"),
                  "open": ("tab:olive", "tab:cyan", "darkgreen", "teal", "yellowgreen", "navy")}
MAX_GRID_CLASSES = 20  # sample grids show at most this many classes (readable at page width)


def arm_color(arm: str) -> str:
    """A provided arm's own label (e.g. sd15) gets a colour of its own, the same in every
    figure and run (a hash of the label, not its order of appearance)."""
    import zlib

    return ARM_COLORS.get(arm) or EXTRA_COLORS[zlib.crc32(arm.encode()) % len(EXTRA_COLORS)]


def arm_colors(arms) -> dict[str, str]:
    """A color per arm label, in legend order: the base arms' own colors; variants get shades
    of their base arm's family, in label order."""
    order = list(ARM_COLORS)
    rank = {a: (order.index(base_arm(a)) if base_arm(a) in order else len(order), a) for a in arms}
    out, used = {}, {}
    for arm in sorted(rank, key=rank.get):
        if arm in ARM_COLORS:
            out[arm] = ARM_COLORS[arm]
            continue
        if base_arm(arm) not in VARIANT_COLORS:  # a provided arm's own label (e.g. sd15)
            out[arm] = arm_color(arm)
            continue
        shades = VARIANT_COLORS[base_arm(arm)]
        used[base_arm(arm)] = i = used.get(base_arm(arm), -1) + 1
        out[arm] = shades[i % len(shades)]
    return out


def _save(fig, path: Path) -> Path:
    """write_figure, or (inside figure_pool.collect(), where a pool runs) in a worker: the
    file is there when the collect block ends."""
    path = Path(path)
    try:
        check_replaceable(path)  # refuse a bad target now, not in a worker
        taken = figure_pool.submit(fig, path)
    except BaseException:
        plt.close(fig)
        raise
    if not taken:
        return write_figure(fig, path)
    plt.close(fig)
    return path


def _panels(bases: list[int], width: float = 4.2, height: float = 3.4):
    fig, axes = plt.subplots(1, max(1, len(bases)), figsize=(width * max(1, len(bases)), height),
                             squeeze=False, sharey=True)
    return fig, axes[0]


# ----------------------------------------------------------------------------- accuracy


def accuracy_curves(stats: list[dict], path: Path, metric: str = "accuracy") -> Path:
    """One panel per base size (shared y axis): accuracy vs added images/class per arm, with
    95 % CI bands; every arm starts at the shared baseline (n_add 0)."""
    bases = sorted({s["n_base"] for s in stats})
    fig, axes = _panels(bases)
    arms = sorted({s["arm"] for s in stats}, key=lambda a: (a not in ARM_COLORS, a))
    colors = arm_colors(arms)
    for ax, n in zip(axes, bases):
        base = [s for s in stats if s["n_base"] == n and s["n_add"] == 0]
        for arm in arms:
            pts = sorted(base + [s for s in stats if s["n_base"] == n and s["arm"] == arm
                                 and s["n_add"] > 0], key=lambda s: s["n_add"])
            if len(pts) < 2:
                continue
            x = np.array([p["n_add"] for p in pts], float)
            color = colors[arm]
            ax.plot(x, [p["mean"] for p in pts], "o-", color=color, label=arm, ms=4)
            ax.fill_between(x, [p["lo"] for p in pts], [p["hi"] for p in pts], color=color,
                            alpha=0.18, lw=0)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(f"base {n} images/class")
        ax.set_xlabel("added images per class")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {metric} (mean over seeds, 95 % CI)")
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        axes[-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def gain_curves(gains: list[dict], path: Path) -> Path:
    """Gain over the baseline (percentage points) per arm with 95 % CIs, a zero line, and
    filled markers where the interval excludes zero."""
    bases = sorted({g["n_base"] for g in gains}) or [0]
    fig, axes = _panels(bases)
    colors = arm_colors(g["arm"] for g in gains)
    for ax, n in zip(axes, bases):
        ax.axhline(0.0, color="black", lw=0.8)
        for j, arm in enumerate(sorted({g["arm"] for g in gains})):
            gs = sorted((g for g in gains if g["n_base"] == n and g["arm"] == arm),
                        key=lambda g: g["n_add"])
            if not gs:
                continue
            color = colors[arm]
            x = np.array([g["n_add"] for g in gs], float) * (1 + 0.04 * (j - 1))  # dodge arms
            y = 100 * np.array([g["gain"] for g in gs])
            err = 100 * np.abs(np.array([[g["gain"] - g["lo"], g["hi"] - g["gain"]]
                                         for g in gs], float).T)
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="-", color=color, alpha=0.7,
                        capsize=3, lw=1)
            sig = np.array([bool(g["significant"]) for g in gs])
            ax.plot(x[sig], y[sig], "o", color=color, ms=6)
            ax.plot(x[~sig], y[~sig], "o", mfc="white", color=color, ms=6)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(f"base {n} images/class")
        ax.set_xlabel("added images per class")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gain over baseline (pts, 95 % CI)")
    handles = [Line2D([], [], color=c, marker="o", label=a) for a, c in colors.items()]
    handles += [Line2D([], [], ls="", marker="o", color="k", label="significant"),
                Line2D([], [], ls="", marker="o", mfc="white", color="k", label="not significant")]
    axes[-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- samples


def _montage(images: torch.Tensor, labels: torch.Tensor, classes: list[int], per_class: int,
             gap: int) -> np.ndarray:
    """[rows·(H+gap), per_class·(W+gap), C] uint8: one row per class, white gaps."""
    c, h, w = images.shape[1:]
    canvas = np.full((len(classes) * (h + gap) - gap, per_class * (w + gap) - gap, c), 255,
                     np.uint8)
    for r, k in enumerate(classes):
        for j, i in enumerate(torch.nonzero(labels == k).flatten()[:per_class].tolist()):
            y0, x0 = r * (h + gap), j * (w + gap)
            canvas[y0:y0 + h, x0:x0 + w] = images[i].permute(1, 2, 0).numpy()
    return canvas


def sample_grid(rows: list[tuple[str, torch.Tensor, torch.Tensor]], class_names, path: Path,
                per_class: int = 8) -> Path:
    """One column per set (e.g. real B(n), closed-set samples), one row per class, labelled;
    `per_class` images per class and set, separated by white gaps."""
    names = [str(i) for i in range(class_names)] if isinstance(class_names, int) else \
        [str(n) for n in class_names]
    classes = list(range(min(len(names), MAX_GRID_CLASSES)))
    h = rows[0][1].shape[2]
    gap = max(1, h // 8)
    fig, axes = plt.subplots(1, len(rows), squeeze=False, figsize=(
        1.2 + 0.35 * per_class * len(rows), 0.6 + 0.38 * len(classes)))
    for j, (ax, (title, images, labels)) in enumerate(zip(axes[0], rows)):
        img = _montage(images, labels, classes, per_class, gap)
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(classes))])
        ax.set_yticklabels([names[k] for k in classes] if j == 0 else [], fontsize=7)
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- equivalence


def equivalence_curves(eq_arm: dict, arm: str, k: float, path: Path) -> Path:
    """Measured (n_real⁺, n_syn) points per base size, the fitted paper formula over them with
    its exchange-rate 95 % CIs, and a note on the axes when the fit failed."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    pts, fit = eq_arm.get("points", []), eq_arm.get("fit", {})
    bases = sorted({p["n_base"] for p in pts})
    cmap, ok_fit = plt.get_cmap("viridis"), fit.get("status") == "ok"
    # the fitted formula is drawn, and its rates shown, only up to 10× the largest measured
    # synthetic amount (as in the report): beyond that the data do not constrain it
    cap = 10.0 * max([p["n_syn"] for p in pts] or [1])
    for i, n in enumerate(bases):
        color = cmap(i / max(1, len(bases) - 1))
        ok = [p for p in pts if p["n_base"] == n and p.get("usable", p["flag"] == "ok")]
        bad = [p for p in pts if p["n_base"] == n and p not in ok]
        for p in ok:  # n_real_eq with its interval; an open upper end runs to the largest
            # real amount measured and ends in an arrowhead (">": it may be larger still)
            lo, hi = p.get("n_real_eq_lo", np.nan), p.get("n_real_eq_hi", np.nan)
            xerr = None
            if np.isfinite(lo):
                if not np.isfinite(hi):
                    hi = p.get("largest_real", p["n_real_eq"])
                    ax.plot([hi], [p["n_syn"]], ">", color=color, ms=5)
                xerr = [[max(p["n_real_eq"] - lo, 0)], [max(hi - p["n_real_eq"], 0)]]
            ax.errorbar([p["n_real_eq"]], [p["n_syn"]], xerr=xerr, fmt="o", color=color,
                        capsize=2, lw=0.8)
        ax.plot([max(p["n_real_eq"] or 0, 0) for p in bad], [p["n_syn"] for p in bad], "x",
                color=color, alpha=0.6)
        if ok_fit:
            r = np.linspace(0.01, 1.5, 60) * n
            syn = n * fit["c1"] ** (n / k) * (fit["c2"] ** (r / n) - 1)
            keep = syn <= cap
            ax.plot(r[keep], syn[keep], "-", color=color, alpha=0.8)
            ex = [x for x in eq_arm.get("exchange", []) if x["n_base"] == n
                  and x.get("supported", True) and x["n_syn"] <= cap
                  and np.isfinite(x.get("lo") or np.nan)]
            for x in ex:
                lo = x["lo"] * x["n_real_plus"]
                hi = min(x["hi"] * x["n_real_plus"], cap)
                ax.errorbar([x["n_real_plus"]], [x["n_syn"]], fmt="s", color=color, ms=4,
                            yerr=[[max(x["n_syn"] - lo, 0)], [max(hi - x["n_syn"], 0)]],
                            capsize=3)
    if any(p["n_syn"] > 0 for p in pts):
        ax.set_yscale("log")
        ax.set_ylim(min(p["n_syn"] for p in pts if p["n_syn"] > 0) / 3, cap)
    if not ok_fit:
        ax.text(0.5, 0.5, f"fit failed: {fit.get('status', 'no data')}\n(too few matched "
                "points; the report gives the measured gains)", transform=ax.transAxes,
                ha="center", va="center", color="tab:red", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "tab:red"})
    handles = [Line2D([], [], ls="", marker="s", color=cmap(i / max(1, len(bases) - 1)),
                      label=f"base {n}/class") for i, n in enumerate(bases)]
    handles += [Line2D([], [], ls="", marker="o", color="gray",
                       label="matched a real gain (n_real⁺, 95 % CI)"),
                Line2D([], [], ls="", marker="x", color="gray", label="flagged (no gain / "
                       "beyond real range)")]
    if ok_fit:
        handles += [Line2D([], [], color="gray", label="fitted formula (■ rate, 95 % CI; "
                           "shown up to 10× the largest measured amount)")]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel("equivalent extra real images per class (n_real⁺)")
    ax.set_ylabel("synthetic images per class (n_syn)")
    ax.set_title(f"{arm}-set synthetic vs real images", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- analyses


def pca_maps(panels: list[tuple[np.ndarray, np.ndarray, str]], arm: str, path: Path) -> Path:
    """One 2-D PCA scatter per (features [N, D], is_fake [N], title) panel, side by side."""
    from sklearn.decomposition import PCA

    fig, axes = plt.subplots(1, len(panels), figsize=(3.9 * len(panels), 3.7), squeeze=False)
    for ax, (feats, is_fake, title) in zip(axes[0], panels):
        pca = PCA(n_components=2, random_state=0)
        z = pca.fit_transform(feats)  # [N, 2]
        ax.scatter(z[~is_fake, 0], z[~is_fake, 1], s=5, alpha=0.5, c="tab:blue", label="real")
        ax.scatter(z[is_fake, 0], z[is_fake, 1], s=5, alpha=0.5,
                   c=arm_color(base_arm(arm)), label="synthetic")
        ev = 100 * pca.explained_variance_ratio_
        ax.set_xlabel(f"principal component 1 ({ev[0]:.0f} % of variance)", fontsize=8)
        ax.set_ylabel(f"principal component 2 ({ev[1]:.0f} % of variance)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def _tile(img: torch.Tensor) -> np.ndarray:
    a = img.permute(1, 2, 0).numpy()  # [H, W, C]
    return a[..., 0] if a.shape[2] == 1 else a


def nearest_pairs(fake_x, train_x, dist: np.ndarray, idx: np.ndarray, path: Path,
                  n_pairs: int = 8) -> Path:
    """Top row: the synthetic images closest to a training image; bottom row: that image."""
    order = np.argsort(dist, kind="stable")[:n_pairs]
    fig, axes = plt.subplots(2, len(order), figsize=(1.2 * len(order) + 0.6, 2.9), squeeze=False)
    for j, i in enumerate(order):
        axes[0][j].imshow(_tile(fake_x[i]), cmap="gray", vmin=0, vmax=255)
        axes[0][j].set_title(f"d={dist[i]:.2f}", fontsize=7)
        axes[1][j].imshow(_tile(train_x[idx[i]]), cmap="gray", vmin=0, vmax=255)
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].text(-0.15, 0.5, "synthetic", transform=axes[0][0].transAxes, rotation=90,
                    va="center", ha="right", fontsize=8)
    axes[1][0].text(-0.15, 0.5, "nearest train", transform=axes[1][0].transAxes, rotation=90,
                    va="center", ha="right", fontsize=8)
    fig.suptitle("closest synthetic–training pairs (pixel L2 on [0, 1])", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
