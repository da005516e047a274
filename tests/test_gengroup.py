"""Generator groups: G generators trained at once equal each trained alone; resume; the study."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

import synthequiv.generation.gengroup as GG
from conftest import float32_generator_training
from synthequiv import config as C
from synthequiv.generation.generator import GeneratorConfig, load_generator, train_generator
from synthequiv.generation.gengroup import group_key, resolve_group, train_generators
from synthequiv.utils import SynthequivError

# 24 steps of 16 images, a checkpoint at step 12, flips on: every code path of the loop
TINY = GeneratorConfig(train_kimg=0.384, batch_size=16, warmup_kimg=0.064,
                       checkpoint_every_kimg=0.192, ema_halflife_kimg=0.05, xflip=True)
SEEDS, SIZES = (0, 1, 2), (30, 20, 25)  # own seeds and own training-set sizes
# Grouped and plain convolutions round differently (~1e-7 relative after one step); Adam's
# early steps (≈ lr·sign(g)) amplify that to 6e-6–3e-5 after 24 steps at lr 4e-3 (measured).
# Another seed or another batch stream gives O(1) differences, so 1e-4 is a sharp test.
CLOSE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def float32_on_cpu():
    """Float32 generator training (conftest.float32_generator_training): the tolerance above is
    float32's. Module scope, so that the module-scoped trainings below run under it."""
    yield from float32_generator_training()


def tiny_jobs():
    """3 classes of 8×8 images; job i = the first SIZES[i] images."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(30) % 3
    return [(x[:n], y[:n]) for n in SIZES]


@pytest.fixture(scope="module")
def jobs():
    return tiny_jobs()


def cfgs():
    return [dataclasses.replace(TINY, seed=s) for s in SEEDS]


@pytest.fixture(scope="module")
def alone(jobs, tmp_path_factory):
    root = tmp_path_factory.mktemp("alone")
    return [torch.load(train_generator(x, y, 3, c, root / f"g{i}", progress=False),
                       weights_only=True) for i, ((x, y), c) in enumerate(zip(jobs, cfgs()))]


@pytest.fixture(scope="module")
def grouped(jobs, tmp_path_factory):
    root = tmp_path_factory.mktemp("grouped")
    dirs = [root / f"g{i}" for i in range(3)]
    train_generators(jobs, 3, cfgs(), dirs, progress=False)
    return dirs


def rel_diff(a: dict, b: dict) -> float:
    """‖a − b‖ / ‖a‖ over every tensor of two state_dicts."""
    va = torch.cat([v.double().flatten() for v in a.values()])
    return ((va - torch.cat([b[k].double().flatten() for k in a])).norm() / va.norm()).item()


def assert_equal_to_alone(dirs, alone):
    for d, ref in zip(dirs, alone):
        state = torch.load(d / "checkpoint.pt", weights_only=True)
        assert state["step"] == 24 and state["finished"]
        assert set(state) == set(ref)
        assert {k: state[k] for k in ("config", "data_digest", "preset")} == \
            {k: ref[k] for k in ("config", "data_digest", "preset")}
        assert rel_diff(ref["model"], state["model"]) < CLOSE
        assert rel_diff(ref["ema"], state["ema"]) < CLOSE
        ro, so = ref["optimizer"], state["optimizer"]  # torch.optim.Adam's layout, unstacked
        assert so["param_groups"] == ro["param_groups"] and so["state"].keys() == ro["state"].keys()
        for i, entry in ro["state"].items():
            assert torch.equal(so["state"][i]["step"], entry["step"])
            assert so["state"][i]["exp_avg"].shape == entry["exp_avg"].shape


def test_group_equals_each_generator_trained_alone(grouped, alone):
    assert_equal_to_alone(grouped, alone)
    # the test can fail: the generators differ from each other by far more than CLOSE
    assert rel_diff(alone[0]["model"], alone[1]["model"]) > 0.1


def test_group_checkpoints_hold_only_their_own_generator(grouped, alone):
    """A save copies the stacked tensors to the host once and slices them there: every saved
    tensor owns exactly its bytes (a view of the [G, ...] storage would save all G) — the
    group's files are the size of a generator trained alone."""
    for d in grouped:
        state = torch.load(d / "checkpoint.pt", weights_only=True)
        tensors = [*state["model"].values(), *state["ema"].values(),
                   *(v for e in state["optimizer"]["state"].values() for v in e.values())]
        assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size()
                   for t in tensors)
    sizes = {(d / "checkpoint.pt").stat().st_size for d in grouped}
    assert max(sizes) - min(sizes) < 4096, sizes  # same architecture: same bytes ± pickle


def test_group_with_the_cuda_kernel_choices_equals_alone(jobs, alone, tmp_path, monkeypatch):
    """On CUDA a group runs the math attention kernel without autocast (the fused kernels and a
    bf16 softmax fail under vmap there, H200): forced here on the CPU, the group still equals
    each generator trained alone to float32 tolerance."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # (building a context runs nothing)
    assert type(GG._group_autocast(cuda)).__name__ == "nullcontext"
    assert type(GG._group_autocast(cpu)).__name__ == "autocast"  # generator_autocast's choice
    assert type(GG._vmap_safe_attention(cpu)).__name__ == "nullcontext"
    assert type(GG._vmap_safe_attention(cuda)).__name__ != "nullcontext"  # sdpa_kernel(MATH)
    seen = []

    def math_only(device):
        seen.append(device.type)
        return sdpa_kernel([SDPBackend.MATH])

    monkeypatch.setattr(GG, "_vmap_safe_attention", math_only)
    monkeypatch.setattr(GG, "_group_autocast", lambda device: GG.contextlib.nullcontext())
    dirs = [tmp_path / f"g{i}" for i in range(3)]
    train_generators(jobs, 3, cfgs(), dirs, progress=False)
    assert seen == ["cpu"]
    assert_equal_to_alone(dirs, alone)


def test_group_checkpoints_load_and_are_reused_by_train_generator(grouped, jobs, monkeypatch):
    import synthequiv.generation.generator as G

    gen = load_generator(grouped[1])
    ema = torch.load(grouped[1] / "checkpoint.pt", weights_only=True)["ema"]
    assert not gen.training and all(torch.equal(v, ema[k]) for k, v in gen.state_dict().items())
    mtime = (grouped[0] / "checkpoint.pt").stat().st_mtime_ns
    monkeypatch.setattr(G, "_train_loop", lambda *a, **k: pytest.fail("trained again"))
    train_generator(*jobs[0], 3, cfgs()[0], grouped[0], progress=False)  # finished: returns
    monkeypatch.setattr(GG, "_train_group", lambda *a, **k: pytest.fail("trained again"))
    train_generators(jobs, 3, cfgs(), grouped, progress=False)  # all finished: skipped
    assert (grouped[0] / "checkpoint.pt").stat().st_mtime_ns == mtime


class Killed(Exception):
    pass


def test_killed_group_resumes_to_the_uninterrupted_result(jobs, alone, tmp_path, monkeypatch):
    dirs = [tmp_path / f"g{i}" for i in range(3)]
    real_save = GG._save_checkpoint

    def save_then_die(path, *args):  # killed right after the step-12 checkpoints
        real_save(path, *args)
        if path.parent == dirs[-1]:
            raise Killed

    monkeypatch.setattr(GG, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_generators(jobs, 3, cfgs(), dirs, progress=False)
    monkeypatch.undo()
    assert [torch.load(d / "checkpoint.pt", weights_only=True)["step"] for d in dirs] == [12] * 3
    # three states: g0 finished by train_generator (it resumes a group's checkpoint), g1 at
    # step 12, g2 never started; the group skips g0 and trains g1 and g2 apart (other steps)
    train_generator(*jobs[0], 3, cfgs()[0], dirs[0], progress=False)
    (dirs[2] / "checkpoint.pt").unlink()
    starts = []
    real_group = GG._train_group
    monkeypatch.setattr(GG, "_train_group", lambda runs, *a: (
        starts.append([r.start for r in runs]), real_group(runs, *a)))
    train_generators(jobs, 3, cfgs(), dirs, progress=False)
    assert sorted(starts) == [[0], [12]]
    assert_equal_to_alone(dirs, alone)


def test_another_setup_or_mixed_group_is_an_error(grouped, jobs):
    with pytest.raises(SynthequivError, match="made with another generator setup"):
        train_generators(jobs, 3, [dataclasses.replace(c, lr=1e-3) for c in cfgs()], grouped,
                         progress=False)
    mixed = cfgs()[:2] + [dataclasses.replace(TINY, batch_size=8)]
    with pytest.raises(SynthequivError, match="one preset, image shape"):
        train_generators(jobs, 3, mixed, grouped, progress=False)


def test_per_generator_clipping_equals_clip_grad_norm():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=g), 0.01 * torch.randn(3, 7, generator=g)]
    grads[0][1] *= 0.01  # generator 1 is under the limit: left as it is
    want = []
    for i in range(3):
        ps = [torch.nn.Parameter(t[i].clone()) for t in grads]
        for p, t in zip(ps, grads):
            p.grad = t[i].clone()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        want.append([p.grad for p in ps])
    GG._clip_per_generator(grads, 1.0)
    for i in range(3):
        for t, w in zip(grads, want[i]):
            torch.testing.assert_close(t[i], w)


def test_group_size_key_and_plan():
    assert resolve_group(0, "cpu") == 1 and resolve_group(5, "cpu", "32px") == 5
    with pytest.raises(SynthequivError, match="generator_group must be >= 0"):
        resolve_group(-1, "cpu")
    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    key = group_key(x, 3, TINY)
    assert key == group_key(x[:2], 3, dataclasses.replace(TINY, seed=7))  # seed, size: same
    assert key != group_key(x, 4, TINY)
    assert key != group_key(x, 3, dataclasses.replace(TINY, lr=1e-3))
    other = group_key(torch.zeros(4, 1, 12, 12, dtype=torch.uint8), 3, TINY)  # 16px preset
    assert GG.plan_groups([key, key, other, key, other], 2, "cpu") == [[0, 1], [3], [2, 4]]
    assert GG.plan_groups([key] * 3, 0, "cpu") == [[0], [1], [2]]  # auto on a CPU: alone


# ----------------------------------------------------------------------------- the study

STUDY = ["grid.arms=[real,closed]", "splits.base_per_class=[5,10]", "grid.replicates=2",
         "grid.seeds=[0]", "grid.real_add_per_class=[5]", "grid.syn_add_per_class=[5]",
         "generator.train_kimg=0.256", "generator.warmup_kimg=0.064", "sampling.steps=2",
         "classifier.train_steps=5", "analysis.enabled=false", "equivalence.bootstrap=20",
         "device=cpu"]


def test_study_groups_every_replicates_generators_with_the_same_keys(tmp_path, monkeypatch):
    """generator_group is a runtime knob: same directories, provenance and (to float
    tolerance) weights; the 4 generators of 2 replicates train as one group."""
    from synthequiv.orchestration.study import run_study

    sizes = []
    real = GG._train_group
    monkeypatch.setattr(GG, "_train_group", lambda runs, *a: (
        sizes.append(len(runs)), real(runs, *a)))
    for group in (1, 4):
        run_study(C.resolve("quick", None, STUDY + [f"generator_group={group}"]),
                  tmp_path / f"g{group}", progress=False)
    assert sizes == [4]  # group 1 trains each alone (train_generator), as before
    one, four = (sorted((tmp_path / f"g{g}" / "generators").iterdir()) for g in (1, 4))
    assert [d.name for d in one] == [d.name for d in four] and len(one) == 4
    for a, b in zip(one, four):
        assert json.loads((a / "trained_on.json").read_text()) == \
            json.loads((b / "trained_on.json").read_text())
        sa, sb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
        assert rel_diff(sa["ema"], sb["ema"]) < CLOSE
    samples = [sorted(p.name for p in (tmp_path / f"g{g}" / "samples").glob("*.npz"))
               for g in (1, 4)]
    assert samples[0] == samples[1] and len(samples[0]) == 4
    shutil.rmtree(tmp_path)
