"""Generator checkpoints: one file per generator, whatever its family.

A checkpoint is a plain dict saved with `torch.save` (loadable with weights_only=True): the
run's `run_meta` (format, config view, classes, image shape, preset, architecture, data
digest) plus the model, EMA and Adam state_dicts, the step reached and whether training
finished. Writes are atomic; a checkpoint made with another setup is refused, never resumed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synthequiv.generation.ranks import Rank
from synthequiv.utils import SynthequivError, atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"
# what training (resume) and loading read from a checkpoint
CHECKPOINT_KEYS = ("config", "num_classes", "image_shape", "preset", "backbone", "model", "ema",
                   "optimizer", "step", "finished")


def read_checkpoint(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict:
    """The checkpoint's entries, checked. `mmap` (CPU only) maps the file instead of reading
    it: a tensor's bytes are read when it is used, so a caller that copies out the EMA weights
    (sampling) or reads only the metadata (is it finished? which setup?) skips the model and
    Adam tensors — three quarters of a 32-px checkpoint. Its tensors are copy-on-write views
    of the file: for callers that copy them, not for live training state."""
    try:
        state = torch.load(path, map_location=device, weights_only=True,
                           mmap=mmap and torch.device(device).type == "cpu")
    except FileNotFoundError as exc:
        raise SynthequivError(f"no generator checkpoint at {path} (train one first)") from exc
    except Exception as exc:  # corrupt zip, foreign pickle, truncated file
        raise SynthequivError(f"cannot read generator checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != 1:
        raise SynthequivError(f"{path} is not a synthequiv generator checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["backbone"], dict):
        raise SynthequivError(f"generator checkpoint {path} is damaged (missing "
                              f"{', '.join(missing) or 'config/backbone mapping'}); delete it "
                              "to train again")
    return state


def checkpoint_family(state: dict) -> str:
    """The family a checkpoint's generator belongs to ('unet' for files that predate
    families: their config view has no 'family' entry)."""
    return str(state["config"].get("family", "unet"))


def existing_checkpoint(path: Path, meta: dict, device: torch.device | str = "cpu",
                        mmap: bool = False) -> dict | None:
    """The checkpoint at `path`, if any, checked against this run (`run_meta`): one made with
    another setup is an error, never silently resumed or reused. `mmap`: read_checkpoint's."""
    if not Path(path).exists():
        return None
    state = read_checkpoint(path, device, mmap)
    _check_compatible(path, state, meta)
    return state


def _check_compatible(path: Path, state: dict, meta: dict) -> None:
    diff = [k for k in meta if k != "config" and state.get(k) != meta[k]]
    # this run's config entries, and the family (absent = unet) wherever it is written
    diff += [f"config.{k}" for k in dict.fromkeys([*meta["config"], "family"])
             if _entry(state["config"], k) != _entry(meta["config"], k)]
    if diff:
        raise SynthequivError(f"{path} was made with another generator setup (differs in "
                              f"{', '.join(diff)}); use a new directory or delete it")


def _entry(config: dict, key: str):
    return config.get(key, "unet") if key == "family" else config.get(key)


def save_checkpoint(path: Path, meta: dict, gen: torch.nn.Module, ema: torch.nn.Module, opt,
                    step: int, finished: bool, rank: Rank) -> None:
    """Every rank checks (they hold the same weights, so they fail together); rank 0 writes."""
    if not all(torch.isfinite(p).all() for p in ema.parameters()):
        raise SynthequivError("generator weights became NaN/inf; lower generator.lr")
    if rank.main:
        atomic_torch_save({**meta, "model": gen.state_dict(), "ema": ema.state_dict(),
                           "optimizer": opt.state_dict(), "step": step, "finished": finished},
                          path)
    rank.barrier()  # no rank reads or moves on before the file is whole
