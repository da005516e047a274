"""Provided synthetic arms: images made elsewhere, or a generator trained earlier, used by a
study exactly like the sets it generates (same cell keys, analyses and report).

provided.sets        "ARM[:N]=npz:PATH" / "ARM[:N]=folder:PATH": images of the study's classes
                     (matched by name), resized to the study's shape; the first m images of
                     each class in file order make S(m), so S(40) ⊂ S(160). Fixed: the same set
                     in every replicate.
provided.generators  "ARM[:N]=DIR": a `synthequiv generator train` directory; sampled in every
                     replicate with that replicate's sampling seed, never retrained.
Everything is loaded and checked once, for every replicate, before any training
(`load_provided`, from the study's config: the entries and their checks); `provided_sets` then
gives one replicate's {(arm, n_base): SyntheticSet} from the stage's view (SyntheticConfig).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from synthequiv.generation.config import SyntheticConfig
from synthequiv.generation.families import family_of
from synthequiv.generation.provided_entries import ProvidedEntry, provided_entries
from synthequiv.generation.sampling import key_view
from synthequiv.generation.synthetic import SyntheticSet, image_hashes, match_shape
from synthequiv.inputs.splits import Splits
from synthequiv.runtime.config import RuntimeConfig
from synthequiv.utils import SynthequivError, stable_hash, tensor_digest


@dataclass
class Provided:
    """One provided entry, loaded and checked for the whole study."""

    entry: ProvidedEntry
    images: torch.Tensor | None  # sets: uint8 [K·m, C, H, W], the study's shape; None: generator
    labels: torch.Tensor | None  # sets: int64 [K·m], the study's class ids, m per class
    digest: str  # sets: content of images + labels; generators: the checkpoint file's bytes
    trained_on: str = ""  # generators: what the checkpoint's data digest was found to be
    resolution: int = 0  # generators: the model's resolution (sampling shards align to it)


def _where(e: ProvidedEntry) -> str:
    return f"provided.{e.kind}s entry '{e.text}'"


def load_provided(cfg, splits: list[Splits]) -> list[Provided]:
    """Every provided entry, loaded and checked against every replicate's splits; a problem is
    one line naming the entry, raised before any training."""
    from synthequiv.runtime.runlog import info

    entries = provided_entries(cfg)
    if not entries or not cfg.grid.syn_add_per_class:
        return []
    m = max(cfg.grid.syn_add_per_class)  # the grid's largest S(m) per class
    out = []
    for e in entries:
        if e.kind == "set":
            x, y = _load_set(e, splits, m)
            p = Provided(e, x, y, tensor_digest(x, y))
            info(f"provided set {e.arm}{'' if e.n_base is None else f':{e.n_base}'}: "
                 f"{len(y)} images ({m}/class) from {e.source}, digest {p.digest}")
        else:
            digest, trained_on, resolution = _check_generator(e, splits,
                                                              cfg.splits.base_per_class)
            _check_family(e, cfg.sampling)
            p = Provided(e, None, None, digest, trained_on, resolution)
            info(f"provided generator {e.arm}{'' if e.n_base is None else f':{e.n_base}'}: "
                 f"{e.source}, {trained_on}")
        out.append(p)
    return out


# ----------------------------------------------------------------------------- image sets


def _load_set(e: ProvidedEntry, splits: list[Splits], m: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first m images of every study class (matched by name), in the study's shape; the
    whole file is refused if any of its images is one of any replicate's test images."""
    from synthequiv.inputs.data import DataConfig, load_dataset

    ds = splits[0].dataset
    c, h, w = ds.shape
    try:  # a folder of mixed sizes is resized on load when the study's images are square
        other = load_dataset(DataConfig(source=e.source, image_size=h if h == w else 0))
    except SynthequivError as exc:
        raise SynthequivError(f"{_where(e)}: {exc}") from exc
    names = ", ".join(ds.class_names[:12]) + (", …" if ds.num_classes > 12 else "")
    unknown = [n for n in other.class_names if n not in ds.class_names]
    if unknown:
        raise SynthequivError(f"{_where(e)}: class '{unknown[0]}' is not a class of the study's "
                              f"data ({names})")
    idx = []
    for name in ds.class_names:
        if name not in other.class_names:
            raise SynthequivError(f"{_where(e)}: class '{name}' is missing (classes are matched "
                                  f"by name: {names})")
        ids = torch.nonzero(other.labels == other.class_names.index(name)).flatten()
        if len(ids) < m:
            raise SynthequivError(f"{_where(e)}: class '{name}' has {len(ids)} images, fewer "
                                  f"than the grid's largest syn_add_per_class ({m})")
        idx.append(ids[:m])
    every = match_shape(other.images, (c, h, w))  # uint8 [N, C, H, W]
    _check_no_test(every, e, splits)
    y = torch.arange(ds.num_classes).repeat_interleave(m)  # int64 [K·m]
    return every[torch.cat(idx)], y


def _test_overlap(x: torch.Tensor, splits: list[Splits]) -> tuple[int, int]:
    """(replicate, count) of the first replicate whose test images x contains; (-1, 0) if none."""
    mine = image_hashes(x)
    for r, sp in enumerate(splits):
        shared = len(mine & image_hashes(sp.test_images))
        if shared:
            return r, shared
    return -1, 0


def _check_no_test(x: torch.Tensor, e: ProvidedEntry, splits: list[Splits]) -> None:
    """Refuse a set holding any replicate's test images: its classifiers would train on them."""
    r, shared = _test_overlap(x, splits)
    if shared:
        raise SynthequivError(
            f"{_where(e)}: contains {shared} of the study's test images (replicate {r}): "
            "classifiers trained on it would see the test set")


# ----------------------------------------------------------------------------- generators


def _check_generator(e: ProvidedEntry, splits: list[Splits], bases: tuple[int, ...]
                     ) -> tuple[str, str, int]:
    """(checkpoint file digest, what it was trained on, model resolution); refuses a generator
    that does not fit the study's data or whose training images include any replicate's test
    images."""
    from synthequiv.generation.generator import CHECKPOINT_NAME, read_checkpoint

    path = Path(e.source) / CHECKPOINT_NAME
    if not path.is_file():
        raise SynthequivError(f"{_where(e)}: no generator checkpoint {path} (train one with "
                              "`synthequiv generator train`)")
    try:
        state = read_checkpoint(path, mmap=True)  # metadata only: no weights read
    except SynthequivError as exc:
        raise SynthequivError(f"{_where(e)}: {exc}") from exc
    ds = splits[0].dataset
    if not state.get("finished"):
        raise SynthequivError(f"{_where(e)}: the generator has not finished training "
                              f"(step {state.get('step')})")
    if state["num_classes"] != ds.num_classes:
        raise SynthequivError(f"{_where(e)}: the generator has {state['num_classes']} classes, "
                              f"the study's data {ds.num_classes}")
    if tuple(state["image_shape"]) != ds.shape:
        shape = "×".join(map(str, state["image_shape"]))
        raise SynthequivError(f"{_where(e)}: the generator makes {shape} images, the study's "
                              f"data is {'×'.join(map(str, ds.shape))}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    sizes = set(bases) | _trained_on_json(Path(e.source), ds.num_classes)
    return (h.hexdigest()[:12], _trained_on(e, state["data_digest"], splits, sorted(sizes)),
            int(state["backbone"].get("resolution", 0)))


def _check_family(e: ProvidedEntry, sampling) -> None:
    """The generator's family is known here and samples with the study's sampling config."""
    try:
        family_of(Path(e.source)).samplers.resolve(sampling)
    except SynthequivError as exc:
        raise SynthequivError(f"{_where(e)}: {exc}") from exc


def _trained_on_json(gen_dir: Path, num_classes: int) -> set[int]:
    """The base size a study-trained generator's trained_on.json names (n_images / classes)."""
    import json

    try:
        n = int(json.loads((gen_dir / "trained_on.json").read_text())["n_images"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n // num_classes} if n % num_classes == 0 and n > 0 else set()


def _trained_on(e: ProvidedEntry, digest: str, splits: list[Splits], sizes: list[int]) -> str:
    """Find the generator's training set among the study's base sets and pools (by content
    digest); when found, refuse it if it holds any replicate's test images. With a hold-out
    test split every replicate draws its own test set, so a generator trained on replicate 0's
    B(n) can hold replicate 1's test images."""
    from synthequiv.runtime.runlog import info

    for r0, sp in enumerate(splits):
        ds = sp.dataset
        cands = [(f"B({n})", sp.base_indices(n)) for n in sizes
                 if all(len(o) >= n for o in sp.order)]
        for name, idx in cands + [("the training pool", sp.pool_indices())]:
            x, y = ds.images[idx], ds.labels[idx]
            if tensor_digest(x, y) != digest:
                continue
            r, shared = _test_overlap(x, splits)
            if shared:
                raise SynthequivError(
                    f"{_where(e)}: it was trained on {name} of replicate {r0}, which holds "
                    f"{shared} of replicate {r}'s test images (each replicate draws its own "
                    "hold-out test set); use grid.replicates=1 or data with a test split")
            return f"trained on {name} of replicate {r0}"
    info(f"{_where(e)}: its training images are none of this study's base sets or pools, so "
         "they were not checked against the test sets")
    return "trained on images outside this study (not checked against its test sets)"


# ----------------------------------------------------------------------------- per replicate


def provided_sets(syn: SyntheticConfig, rt: RuntimeConfig, sp: Splits, run_dir: Path, device,
                  progress: bool, tag: str, provided: list[Provided]
                  ) -> dict[tuple[str, int], SyntheticSet]:
    """One replicate's provided arms (`provided`: from load_provided), {(arm, n_base):
    SyntheticSet}; an entry without a base size serves every base size."""
    out = {}
    for p in provided:
        e = p.entry
        if e.kind == "set":
            s = _set(p, sp, Path(run_dir))
        else:
            s = _generated(p, syn, rt, sp, Path(run_dir), device, progress, tag)
        out.update({(e.arm, n): s for n in _bases(syn.base_per_class, e)})
    return out


def _bases(base_per_class: tuple[int, ...], e: ProvidedEntry) -> tuple[int, ...]:
    """The base sizes an entry serves: its own, or every one when it names none."""
    return base_per_class if e.n_base is None else (e.n_base,)


def provided_keys(base_per_class: tuple[int, ...], provided: list[Provided]
                  ) -> set[tuple[str, int]]:
    """The (arm, n_base) keys `provided_sets` fills, known without sampling anything."""
    return {(p.entry.arm, n) for p in provided for n in _bases(base_per_class, p.entry)}


def _name(e: ProvidedEntry, what: str) -> str:
    return f"{e.arm}-{what}" + ("" if e.n_base is None else f"-n{e.n_base}")


def _set(p: Provided, sp: Splits, run_dir: Path) -> SyntheticSet:
    """The same set in every replicate, copied once into samples/ (the run's own record)."""
    from synthequiv.generation.sampling import save_grid_png, save_samples

    key = stable_hash("provided", p.digest)  # content: a changed file is a new set
    path = run_dir / "samples" / f"{_name(p.entry, 'provided')}-{key}.npz"
    if not path.exists():
        save_samples(path, p.images, p.labels, {"source": p.entry.source, "key": key,
                                                "entry": p.entry.text, "digest": p.digest})
        save_grid_png(path.with_suffix(".png"), p.images, p.labels, sp.dataset.num_classes)
    return SyntheticSet(key, p.entry.arm, p.images, p.labels, path, None)


def generator_target(p: Provided, syn: SyntheticConfig, sp: Splits, run_dir: Path, tag: str):
    """The samples of provided generator `p` under this replicate's sampling config (its
    seed): a synthetic.SampleTarget, sampled by the study's one pass or by `_generated`."""
    from synthequiv.generation.synthetic import SampleTarget

    ds, gen_dir, m = sp.dataset, Path(p.entry.source), syn.n_per_class
    sampling = key_view(syn.sampling, family_of(gen_dir).samplers)  # auto resolved
    key = stable_hash("provided-generator", p.digest, sampling, m, ds.shape)
    path = Path(run_dir) / "samples" / f"{_name(p.entry, 'generator')}{tag}-{key}.npz"
    meta = {"generator": str(gen_dir), "key": key, "entry": p.entry.text,
            "trained_on": p.trained_on}
    return SampleTarget(gen_dir, path, meta, syn.sampling, p.resolution)


def _generated(p: Provided, syn: SyntheticConfig, rt: RuntimeConfig, sp: Splits,
               run_dir: Path, device, progress: bool, tag: str) -> SyntheticSet:
    """Samples of a provided generator with this replicate's sampling config (its seed)."""
    from synthequiv.generation.sampling import load_samples
    from synthequiv.generation.synthetic import sample_to_files

    t, ds = generator_target(p, syn, sp, run_dir, tag), sp.dataset
    if t.path.exists():
        images, labels, _ = load_samples(t.path, t.meta["key"])
    else:
        images, labels = sample_to_files([t], syn.n_per_class, ds.num_classes, ds.shape, rt,
                                         device, progress)[t.path]
    return SyntheticSet(t.meta["key"], p.entry.arm, images, labels, t.path, t.gen_dir)
