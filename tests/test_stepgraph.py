"""CUDA-graph steps (stepgraph.py): the graphed loops of generator groups and classifier groups
give the eager loops' numbers; capture failure falls back to eager with one line; the switch.

A CUDA graph records a step's kernels once and replays them on the tensors it saw at capture.
On the CPU the stand-in backend below runs that path: warm-up calls fn, capture records fn and
runs nothing (as CUDA's does), replay calls fn after checking that fn still sees the very
objects (and tensor storages) it saw at capture — what a real replay reads. A loop that
rebound a static input, or fed a step-dependent float into fn, would fail these tests. The
real backend runs in the CUDA-only test at the end (skipped without a GPU; gpu_check.sh)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import synthequiv.stepgraph as SG
from conftest import float32_generator_training
from synthequiv import config as C
from synthequiv.classification.batched import train_classifiers
from synthequiv.classification.classifier import ClassifierConfig
from synthequiv.generation.gengroup import train_generators
from synthequiv.utils import SynthequivError
from test_gengroup import cfgs, tiny_jobs


def _seen(fn) -> dict:
    """What a replay of fn reads: its closure's objects, dicts' values, tensors' storages."""
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        v = cell.cell_contents
        out[name] = (id(v), {k: (id(t), t.data_ptr() if isinstance(t, torch.Tensor) else None)
                             for k, t in v.items()} if isinstance(v, dict) else None,
                     v.data_ptr() if isinstance(v, torch.Tensor) else None)
    return out


class _Graph:
    def __init__(self, fn, log):
        self.fn, self.log, self.seen = fn, log, _seen(fn)

    def replay(self):
        assert _seen(self.fn) == self.seen, "fn reads other objects than at capture"
        self.log.append("replay")
        self.fn()


# ops that make a CUDA stream wait for the host (a value read back, or an output size that
# depends on values): not allowed while capturing
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2",
           "unique_dim", "unique_consecutive", "repeat_interleave", "equal", "is_nonzero"}


class _NoHostSync(TorchDispatchMode):
    """Fails on any op of fn that would sync with the host on CUDA (also indexing by a
    boolean mask, which computes nonzero inside the kernel, unseen here)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        assert name not in SYNCING, f"{name} syncs with the host inside a graphed step"
        if name in ("index", "index_put", "index_put_"):
            flat = [t for a in args if isinstance(a, (list, tuple)) for t in a]
            assert not any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in flat), \
                "indexing by a boolean mask syncs with the host inside a graphed step"
        return func(*args, **(kwargs or {}))


class _Backend:
    """StepGraph's CUDA calls, on the CPU: the sequence is logged; warm-up steps (the same
    calls as the captured one) run under _NoHostSync."""

    def __init__(self, fail: bool = False):
        self.log, self.fail = [], fail

    def warmup(self, fn):
        self.log.append("warmup")
        with _NoHostSync():
            fn()

    def capture(self, fn):
        self.log.append("capture")
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        return _Graph(fn, self.log)

    def recover(self):
        self.log.append("recover")


@pytest.fixture
def graphs_on(monkeypatch):
    """StepGraph takes the CUDA path on the CPU, with the stand-in backend; returns it."""
    backend = _Backend()
    monkeypatch.setattr(SG, "use_graphs", lambda device: True)
    monkeypatch.setattr(SG, "BACKEND", backend)
    return backend


@pytest.fixture(scope="module", autouse=True)
def float32_on_cpu():
    yield from float32_generator_training()


def _train_gens(root):
    dirs = [root / f"g{i}" for i in range(3)]
    train_generators(tiny_jobs(), 3, cfgs(), dirs, progress=False)
    return [torch.load(d / "checkpoint.pt", weights_only=True) for d in dirs]


def _assert_same_states(a: dict, b: dict):
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0)
    for i, entry in a["optimizer"]["state"].items():
        for k, v in entry.items():
            torch.testing.assert_close(v, b["optimizer"]["state"][i][k], rtol=0, atol=0)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def test_graphed_generator_group_equals_eager(tmp_path, monkeypatch):
    eager = _train_gens(tmp_path / "eager")
    backend = _Backend()
    monkeypatch.setattr(SG, "use_graphs", lambda device: True)
    monkeypatch.setattr(SG, "BACKEND", backend)
    graphed = _train_gens(tmp_path / "graphed")
    # 3 eager warm-up steps, one capture (runs nothing) and its replay, then a replay per step
    assert backend.log == ["warmup"] * 3 + ["capture"] + ["replay"] * 21
    for a, b in zip(eager, graphed):
        assert b["step"] == 24 and b["finished"]
        _assert_same_states(a, b)  # the same operations in the same order: bit for bit


class _Killed(Exception):
    pass


def test_graphed_generator_group_resumes_mid_run(tmp_path, graphs_on, monkeypatch):
    """A graphed group killed right after its step-12 checkpoints resumes (with a new graph)
    to the uninterrupted graphed run's weights, bit for bit."""
    import synthequiv.generation.gengroup as GG

    full = _train_gens(tmp_path / "full")
    root = tmp_path / "killed"
    real_save = GG._save_checkpoint

    def save_then_die(path, *args):
        real_save(path, *args)
        if path.parent == root / "g2":
            raise _Killed

    monkeypatch.setattr(GG, "_save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train_gens(root)
    monkeypatch.setattr(GG, "_save_checkpoint", real_save)
    graphs_on.log.clear()
    again = _train_gens(root)
    assert graphs_on.log == ["warmup"] * 3 + ["capture"] + ["replay"] * 9  # steps 12..23
    for a, b in zip(full, again):
        _assert_same_states(a, b)


@pytest.mark.parametrize("cfg", [
    ClassifierConfig(train_steps=12),
    ClassifierConfig(train_steps=12, hflip=True, crop_pad_px=2, pad_mode="constant",
                     optimizer="adamw", lr=2e-3),
])
def test_graphed_classifier_group_equals_eager(monkeypatch, cfg, digits):
    x, y = digits.images, digits.labels
    cells = [(x[:200], y[:200], None, None), (x[:100], y[:100], x[300:400], y[300:400])]
    eager = train_classifiers(cells, [0, 1], 10, cfg)
    backend = _Backend()
    monkeypatch.setattr(SG, "use_graphs", lambda device: True)
    monkeypatch.setattr(SG, "BACKEND", backend)
    graphed = train_classifiers(cells, [0, 1], 10, cfg)
    assert backend.log == ["warmup"] * 3 + ["capture"] + ["replay"] * 9
    for a, b in zip(eager, graphed):
        sa, sb = a.state_dict(), b.state_dict()
        for k in sa:  # parameters and BatchNorm statistics, bit for bit
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_graphed_sampling_equals_eager(monkeypatch):
    """Sampling's network blocks (sampling.BlockNet): graphed = eager, bit for bit, over
    several batches, a partial last block and guidance (two passes per call)."""
    from synthequiv.generation.generator import make_generator
    from synthequiv.generation.sampling import SampleConfig, sample_images

    torch.manual_seed(0)
    gen = make_generator("8px", 3, (1, 8, 8), "v_prediction").eval()
    labels = torch.arange(50) % 3
    cfg = SampleConfig(steps=4, batch_size=16, cfg_scale=2.0)
    monkeypatch.setattr("synthequiv.generation.sampling.net_block_rows", lambda d, r: 16)
    eager = sample_images(gen, labels, cfg, progress=False)
    backend = _Backend()
    monkeypatch.setattr(SG, "use_graphs", lambda device: True)
    monkeypatch.setattr(SG, "BACKEND", backend)
    graphed = sample_images(gen, labels, cfg, progress=False)
    # 4 batches (16, 16, 16, 2 images) × 4 steps = 16 network calls on one graph
    assert backend.log == ["warmup"] * 3 + ["capture"] + ["replay"] * 13
    assert torch.equal(eager, graphed)


def test_a_failed_capture_runs_eager_with_one_line(tmp_path, monkeypatch, capsys, digits):
    """A capture that fails: one log line, the eager numbers, and later loops of the same kind
    in the process run eager without trying again (no second line); other kinds still try."""
    eager = _train_gens(tmp_path / "eager")
    backend = _Backend(fail=True)
    monkeypatch.setattr(SG, "use_graphs", lambda device: True)
    monkeypatch.setattr(SG, "BACKEND", backend)
    monkeypatch.setattr(SG, "FAILED", set())
    got = _train_gens(tmp_path / "fallback")
    assert backend.log == ["warmup"] * 3 + ["capture", "recover"]  # then eager, no replays
    again = _train_gens(tmp_path / "again")
    assert backend.log == ["warmup"] * 3 + ["capture", "recover"]  # not tried a second time
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "CUDA graphs" in ln]
    assert len(lines) == 1 and "off for generator groups (RuntimeError: operation not " \
        "permitted" in lines[0] and "run eager" in lines[0]
    for a, b, c in zip(eager, got, again):
        _assert_same_states(a, b)
        _assert_same_states(a, c)
    x, y = digits.images, digits.labels
    train_classifiers([(x[:200], y[:200], None, None)] * 2, [0, 1], 10,
                      ClassifierConfig(train_steps=6))
    assert backend.log[-2:] == ["capture", "recover"] and backend.log.count("capture") == 2


def test_the_sync_check_catches_a_host_read():
    """The stand-in's warm-up really fails a step that reads a value back (so the tests above
    show that the graphed steps do not)."""
    w = torch.ones(3)
    with pytest.raises(AssertionError, match="_local_scalar_dense syncs"):
        _Backend().warmup(lambda: float(w.sum()))
    with pytest.raises(AssertionError, match="boolean mask"):
        _Backend().warmup(lambda: w[w > 0])


def test_the_switch(monkeypatch):
    monkeypatch.delenv(SG.GRAPHS_ENV, raising=False)
    assert not SG.use_graphs("cpu")  # no graphs off CUDA, whatever the variable says
    monkeypatch.setenv(SG.GRAPHS_ENV, "1")
    assert not SG.use_graphs("cpu")
    monkeypatch.setenv(SG.GRAPHS_ENV, "0")
    assert not SG.use_graphs("cuda")
    for value in ("1", "auto", " AUTO "):
        monkeypatch.setenv(SG.GRAPHS_ENV, value)
        assert SG.use_graphs("cuda")
    monkeypatch.setenv(SG.GRAPHS_ENV, "yes")
    with pytest.raises(SynthequivError, match="SYNTHEQUIV_CUDA_GRAPHS must be auto, 0 or 1"):
        SG.use_graphs("cuda")
    with pytest.raises(SynthequivError, match="SYNTHEQUIV_CUDA_GRAPHS"):  # before any work
        C.validate(C.resolve("quick", None, []))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (gpu_check.sh)")
def test_cuda_graphed_groups_match_eager_on_a_gpu(tmp_path, monkeypatch, digits):
    """The real capture: graphed and eager groups on CUDA give the same weights (float32
    groups; kernels may pick other algorithms between runs, hence a float tolerance)."""
    results = {}
    for mode in ("0", "0-again", "1"):  # eager twice: the card's run-to-run noise, printed
        monkeypatch.setenv(SG.GRAPHS_ENV, mode[0])
        dirs = [tmp_path / mode / f"g{i}" for i in range(3)]
        train_generators(tiny_jobs(), 3, cfgs(), dirs, "cuda", progress=False)
        x, y = digits.images, digits.labels
        cells = [(x[:200], y[:200], None, None), (x[:100], y[:100], x[300:400], y[300:400])]
        models = train_classifiers(cells, [0, 1], 10, ClassifierConfig(train_steps=12), "cuda")
        results[mode] = ([torch.load(d / "checkpoint.pt", weights_only=True)["model"]
                          for d in dirs], [m.state_dict() for m in models])
        from synthequiv.generation.generator import load_generator
        from synthequiv.generation.sampling import SampleConfig, sample_images

        gen = load_generator(dirs[0], "cuda")
        results[mode] += (sample_images(gen, torch.arange(40) % 3, SampleConfig(steps=5),
                                        "cuda", progress=False),)
    # each model's relative difference over all its weights, ||a - b|| / ||a||: CUDA's
    # backward kernels are not bit-reproducible (atomics; cuDNN's heuristic may pick a
    # non-deterministic algorithm), and Adam's normalised steps amplify that rounding on
    # parameters with near-zero gradients: on an H100 one of a generator's first-conv weights
    # differed by 2.2e-5 (an element-wise rtol 1e-3 failed), and a zero-initialised GroupNorm
    # bias by 3.6e-3 of its own small norm, while the classifiers agreed to 3e-7 per tensor. A
    # graph that replays stale inputs or skips work errs by a share of the training's
    # displacement: these generators end 0.29 of their norm away from their initial weights.
    def worst(other: str) -> dict:
        out = {"generator": 0.0, "classifier": 0.0}
        for what, i in (("generator", 0), ("classifier", 1)):
            for a, b in zip(results["0"][i], results[other][i]):
                keys = [k for k in a if a[k].is_floating_point()]
                diff = sum(float((a[k].double().cpu() - b[k].double().cpu()).norm() ** 2)
                           for k in keys) ** 0.5
                norm = sum(float(a[k].double().cpu().norm() ** 2) for k in keys) ** 0.5
                out[what] = max(out[what], diff / norm)
        return out

    graphed = worst("1")
    print("largest relative difference (whole models): graphed vs eager", graphed,
          "; eager vs eager again", worst("0-again"))
    assert all(rel < 1e-3 for rel in graphed.values()), graphed
    # the same generator weights up to float rounding: pixels within a few grey levels
    assert (results["0"][2].int() - results["1"][2].int()).abs().float().mean() < 2.0
