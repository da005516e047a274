"""Warm a fresh machine's caches the way an installed environment already has them.

    python3 benchmarks/warm_caches.py          # gpu_check.sh step w, before the timed steps

On the lent GPU machines' image every process compiled the source of each module it imported
(no .pyc kept: 1,965 `compile` calls, 6.9 s of a profiled quick study on an H100), and the
first matplotlib figure built the font cache. A user's pip-installed environment has the .pyc
files, and the font cache after the first run. Run with PYTHONPYCACHEPREFIX set (gpu_check.sh
sets it) this imports every synthequiv module and what the study imports lazily (diffusers'
UNet and scheduler, torchvision's ResNet, matplotlib) and draws one figure, so that later
processes read compiled bytecode and the font cache. Prints what it did and its seconds.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import tempfile
import time


def main() -> None:
    t0 = time.time()
    print(f"dont_write_bytecode={sys.dont_write_bytecode} "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE')!r} "
          f"pycache_prefix={sys.pycache_prefix!r}")
    import synthequiv

    failed = []
    names = [m.name for m in pkgutil.walk_packages(synthequiv.__path__, "synthequiv.")]
    for name in names + ["diffusers", "torchvision.models", "sklearn.linear_model",
                         "scipy.optimize", "matplotlib.pyplot"]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional extra (ray) absent: not ours to warm
            failed.append(f"{name} ({type(exc).__name__})")
    from diffusers import DDPMScheduler, UNet2DModel  # noqa: F401  (lazy submodules)

    t_imports = time.time() - t0
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="warm")
    ax.set_title("font cache")
    ax.legend()
    with tempfile.TemporaryDirectory() as tmp:
        fig.savefig(os.path.join(tmp, "warm.png"))
    plt.close(fig)
    print(f"imported {len(names)} synthequiv modules and the lazy imports in {t_imports:.1f} s; "
          f"one figure {time.time() - t0 - t_imports:.1f} s"
          + (f"; not importable: {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main()
