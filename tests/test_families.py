"""Generator families: the interface (a toy family registered here runs a study), EDM's
formulas and sampler by hand, DiT's patches, and every family end to end on digits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import synthequiv.generation.generator as G
from synthequiv import config as C
from synthequiv.generation import dit, edm, families
from synthequiv.generation.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint
from synthequiv.generation.families import get_family
from synthequiv.generation.generator import EDMConfig, GeneratorConfig
from synthequiv.generation.ranks import current
from synthequiv.generation.registry import FAMILIES, FamilyEntry
from synthequiv.generation.sampling import (
    SampleConfig,
    SamplerSet,
    class_quota_labels,
    sample_rng,
)
from synthequiv.generation.synthetic import make_job
from synthequiv.utils import SynthequivError

# 16 steps of 32 images, a checkpoint every 8 steps (as test_generator.py's TINY)
TINY = GeneratorConfig(train_kimg=0.512, batch_size=32, warmup_kimg=0.128,
                       checkpoint_every_kimg=0.256, ema_halflife_kimg=0.1)
FAMILY_NAMES = ("unet", "edm", "dit")


@pytest.fixture(autouse=True, scope="module")
def _float32():
    from conftest import float32_generator_training

    yield from float32_generator_training()


@pytest.fixture(scope="module")
def base(digits):
    """20 digits per class, uint8 [200, 1, 8, 8], int64 [200]."""
    idx = torch.cat([(digits.labels == c).nonzero().flatten()[:20] for c in range(10)])
    return digits.images[idx], digits.labels[idx]


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """TINY trained once per family: {family: checkpoint directory}."""
    x, y = base
    out = {}
    for name in FAMILY_NAMES:
        d = tmp_path_factory.mktemp(name)
        get_family(name).train(x, y, 10, dataclasses.replace(TINY, family=name), d,
                               progress=False)
        out[name] = d
    return out


# ----------------------------------------------------------------------------- EDM by hand


@pytest.mark.parametrize("sigma, c_skip, c_out, c_in, c_noise, lam", [
    # σ_data = 0.5: c_skip = .25/(σ²+.25), c_out = .5σ/√(σ²+.25), c_in = 1/√(σ²+.25),
    # c_noise = ln(σ)/4, λ = (σ²+.25)/(.5σ)²
    (0.1, 0.961538, 0.0980581, 1.961161, -0.575646, 104.0),
    (0.5, 0.5, 0.353553, 1.414214, -0.173287, 8.0),
    (2.0, 0.0588235, 0.485071, 0.485071, 0.173287, 4.25),
])
def test_edm_preconditioning_by_hand(sigma, c_skip, c_out, c_in, c_noise, lam):
    got = edm.precond(torch.tensor(sigma, dtype=torch.float64), 0.5)
    for g, want in zip(got, (c_skip, c_out, c_in, c_noise)):
        assert float(g) == pytest.approx(want, rel=1e-5)
    assert float(edm.loss_weight(torch.tensor(sigma, dtype=torch.float64), 0.5)) == \
        pytest.approx(lam, rel=1e-9)


class _Recorder(nn.Module):
    """A backbone that records its inputs and returns F = 3 (a constant)."""

    def forward(self, x, c_noise, class_labels):
        self.seen = (x.clone(), c_noise.clone(), class_labels.clone())
        return SimpleNamespace(sample=torch.full_like(x, 3.0))


def test_edm_wrapper_applies_the_preconditioning():
    net = edm.EDMPrecond(_Recorder(), 10, (1, 8, 8), 8, EDMConfig())
    x, sigma = torch.ones(2, 1, 8, 8), torch.tensor([0.5, 2.0])
    out = net(x, sigma, torch.tensor([1, 10]))
    # D = c_skip·x + c_out·F with x = 1, F = 3
    assert out[0].flatten()[0].item() == pytest.approx(0.5 + 0.353553 * 3, rel=1e-5)
    assert out[1].flatten()[0].item() == pytest.approx(0.0588235 + 0.485071 * 3, rel=1e-5)
    seen_x, seen_noise, seen_y = net.backbone.seen
    assert seen_x[0, 0, 0, 0].item() == pytest.approx(1.414214, rel=1e-5)  # c_in·x
    assert seen_noise.tolist() == pytest.approx([-0.173287, 0.173287], rel=1e-5)
    assert seen_y.tolist() == [1, 10]


def test_sigma_steps_follow_eq5():
    t = edm.sigma_steps(3, 0.002, 80.0, 7.0)
    mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    assert t == pytest.approx([80.0, mid, 0.002, 0.0])


def test_heun_equals_two_steps_by_hand():
    """N = 2: t = (σ_max, σ_min, 0); step 0 is Euler + the 2nd-order correction, step 1 (to
    σ = 0) is Euler alone, on a toy denoiser D(x; σ) = x / (1 + σ²)."""
    e = EDMConfig(sigma_min=0.5, sigma_max=4.0)
    gen = SimpleNamespace(edm=e, image_shape=(1, 2, 2), resolution=2)
    D = lambda x, s: x / (1 + float(s) ** 2)  # noqa: E731
    net = lambda x, s, y: D(x, s)  # noqa: E731
    labels = torch.zeros(3, dtype=torch.long)
    rngs = [sample_rng(0, i) for i in range(3)]
    got = edm.edm_sampler(gen, labels, rngs, SampleConfig(sampler="heun", steps=2), net)
    t0, t1 = 4.0, 0.5
    x = torch.cat([torch.randn(1, 1, 2, 2, generator=sample_rng(0, i)) for i in range(3)]) * t0
    d = (x - D(x, t0)) / t0
    x1 = x + (t1 - t0) * d
    d2 = (x1 - D(x1, t1)) / t1
    x1 = x + (t1 - t0) * (d + d2) / 2
    x2 = x1 + (0 - t1) * (x1 - D(x1, t1)) / t1
    assert torch.allclose(got, x2, rtol=1e-6, atol=1e-6)
    euler = edm.edm_sampler(gen, labels, rngs, SampleConfig(sampler="euler", steps=2), net)
    assert not torch.allclose(euler, x2)


# ----------------------------------------------------------------------------- DiT


def test_dit_patchify_round_trip():
    x = torch.randn(3, 2, 8, 12)
    tokens = dit.patchify(x, 4)  # [3, 2·3 patches, 4·4·2]
    assert tokens.shape == (3, 6, 32)
    assert torch.equal(tokens[:, 0].reshape(3, 4, 4, 2).permute(0, 3, 1, 2), x[:, :, :4, :4])
    assert torch.equal(tokens[:, 1].reshape(3, 4, 4, 2).permute(0, 3, 1, 2), x[:, :, :4, 4:8])
    assert torch.equal(dit.unpatchify(tokens, 4, 2, 8, 12), x)


def test_dit_presets_tile_and_start_as_zero():
    for name, p in dit.DIT_PRESETS.items():
        assert p.resolution % p.patch == 0 and p.width % p.heads == 0 and p.width % 4 == 0, name
    net = dit.DiT(dit.DIT_PRESETS["8px"], 1, 10)
    out = net(torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999]), torch.arange(4)).sample
    assert out.shape == (4, 1, 8, 8) and not out.any()  # adaLN-Zero: the output layer is zero
    assert dit.resolve_dit_preset("auto", (1, 28, 28)) == "32px"
    with pytest.raises(SynthequivError, match="unknown dit preset"):
        dit.resolve_dit_preset("9px", (1, 8, 8))


# ----------------------------------------------------------------------------- every family


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_trains_and_samples_on_digits(name, trained):
    """Checkpoint of the right family, finite EMA, images of the dataset's shape; image i is
    the same whatever the batch (per-image seeds), and guidance changes the images."""
    family, gen = families.load_generator(trained[name])
    assert family.name == name and not gen.training
    state = read_checkpoint(trained[name] / CHECKPOINT_NAME)
    assert state["finished"] and state["step"] == 16
    assert state["config"].get("family", "unet") == name
    labels = class_quota_labels(3, 10)
    images = family.sample(gen, labels, SampleConfig(steps=4), progress=False)
    assert images.shape == (30, 1, 8, 8) and images.dtype == torch.uint8
    assert images.float().std() > 5  # not a blank set
    part = family.sample(gen, labels[7:19], SampleConfig(steps=4, batch_size=5), progress=False,
                         index_offset=7)
    assert torch.equal(part, images[7:19])
    guided = family.sample(gen, labels, SampleConfig(steps=4, cfg_scale=2.0), progress=False)
    assert not torch.equal(guided, images)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_resumed_run_equals_uninterrupted(name, base, trained, tmp_path, monkeypatch):
    x, y = base
    cfg = dataclasses.replace(TINY, family=name)
    whole = torch.load(trained[name] / CHECKPOINT_NAME, weights_only=True)

    class Stop(Exception):
        pass

    def save_then_stop(*args, **kw):  # killed right after the halfway checkpoint
        save_checkpoint(*args, **kw)
        raise Stop

    monkeypatch.setattr(G, "_save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        get_family(name).train(x, y, 10, cfg, tmp_path, progress=False)
    assert read_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 8
    monkeypatch.setattr(G, "_save_checkpoint", save_checkpoint)
    resumed = torch.load(get_family(name).train(x, y, 10, cfg, tmp_path, progress=False),
                         weights_only=True)
    for part in ("model", "ema"):
        for k, v in whole[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)


@pytest.mark.parametrize("name", ("edm", "dit"))
def test_group_equals_alone(name, base, trained, tmp_path):
    """Two generators of the family in one batched group (gengroup.py), the first with the
    fixture's seed: its weights equal the one trained alone to float32 tolerance."""
    x, y = base
    family = get_family(name)
    cfgs = [dataclasses.replace(TINY, family=name, seed=s) for s in (0, 1)]
    assert family.grouped and family.group_key(x, 10, cfgs[0]) == family.group_key(x, 10,
                                                                                   cfgs[1])
    paths = family.train_group([(x, y), (x[:100], y[:100])], 10, cfgs,
                               [tmp_path / "a", tmp_path / "b"], progress=False)
    alone = torch.load(trained[name] / CHECKPOINT_NAME, weights_only=True)
    grouped = torch.load(paths[0], weights_only=True)
    for part in ("model", "ema"):  # ‖w_group − w_alone‖ / ‖w_alone‖, as test_gengroup.py
        a = torch.cat([v.double().flatten() for v in alone[part].values()])
        g = torch.cat([grouped[part][k].double().flatten() for k in alone[part]])
        assert ((a - g).norm() / a.norm()).item() < 1e-4, part


def test_a_checkpoint_of_another_family_is_refused(base, trained):
    x, y = base
    with pytest.raises(SynthequivError, match="another generator setup"):
        get_family("unet").train(x, y, 10, TINY, trained["edm"], progress=False)
    with pytest.raises(SynthequivError, match="trained by the edm family"):
        G.load_generator(trained["edm"])


# ----------------------------------------------------------------------------- keys and checks


def test_unet_keys_are_those_before_families(base, tmp_path):
    """The unet key hashes the config without the family fields: the same key as before
    families existed (constant from that code), whatever edm's settings; another family, or
    its settings, is another key; an explicit default sampler is auto's key."""
    x, y = base
    cfg = C.resolve("quick")

    def key(**gen):
        c = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, **gen))
        return make_job("closed-n20", x, y, 10, (1, 8, 8), 40, c.generator, c.sampling,
                        tmp_path).gen_dir.name

    # the generator directory and samples key this job had before families (commit 6be3d6a)
    assert key() == "closed-n20-564738791141"
    at25 = dataclasses.replace(cfg.sampling, steps=25)  # the default sampler steps then
    assert make_job("closed-n20", x, y, 10, (1, 8, 8), 40, cfg.generator, at25,
                    tmp_path).key == "785b7175ef72"
    assert key(edm=EDMConfig(P_mean=-1.0)) == key()
    assert len({key(), key(family="edm"), key(family="dit"),
                key(family="edm", edm=EDMConfig(P_mean=-1.0))}) == 4
    explicit = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling,
                                                                     sampler="dpmpp"))
    assert make_job("c", x, y, 10, (1, 8, 8), 40, cfg.generator, cfg.sampling, tmp_path).key == \
        make_job("c", x, y, 10, (1, 8, 8), 40, explicit.generator, explicit.sampling,
                 tmp_path).key


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_a_registry_line_names_its_family_and_samplers(name):
    """The registry's sampler names (checked without torch) are the family's own."""
    entry, family = FAMILIES[name], get_family(name)
    assert family.name == name
    assert (entry.samplers, entry.churn) == (family.samplers.names, family.samplers.churn)


@pytest.mark.parametrize("overrides, match", [
    (["generator.family=gan"], "unknown generator family 'gan'"),
    (["sampling.sampler=heun"], "unknown sampler 'heun'"),
    (["generator.family=edm", "sampling.sampler=dpmpp"], "unknown sampler 'dpmpp'"),
    (["sampling.churn=1.0"], "churn"),
    (["generator.family=edm", "generator.edm.sigma_max=0.001"], "sigma_max"),
    (["generator.family=dit", "generator.preset=9px"], "unknown dit preset"),
])
def test_bad_family_settings_are_one_line(overrides, match):
    with pytest.raises(SynthequivError, match=match):
        C.validate(C.resolve("quick", None, overrides))


# ----------------------------------------------------------------------------- a toy family


class ToyNet(nn.Module):
    """Class mean images, float [K, C, H, W] in pixel units."""

    def __init__(self, means: torch.Tensor):
        super().__init__()
        self.means = nn.Parameter(means)


def toy_sampler(*args):  # never called: ToyFamily.sample does the work
    raise AssertionError


class ToyFamily:
    """A family written from scratch against the protocol: a class's mean image plus seeded
    noise. Its checkpoint is checkpoint.py's format, so the study can find its family."""

    name = "toy"
    samplers = SamplerSet(("mean",), toy_sampler)
    grouped = False
    ddp = False

    def __init__(self):
        self.trained = []

    def check(self, cfg):
        pass

    def resolution(self, cfg, image_shape):
        return max(image_shape[1:])

    def train(self, images, labels, num_classes, cfg, out_dir, device="cpu", progress=True,
              compile=False) -> Path:
        means = torch.stack([images[labels == k].float().mean(0) for k in range(num_classes)])
        meta = {"format": 1, "config": G.config_view(cfg), "num_classes": num_classes,
                "image_shape": list(images.shape[1:]), "preset": "toy", "backbone": {}}
        net = ToyNet(means)
        save_checkpoint(Path(out_dir) / CHECKPOINT_NAME, meta, net, net,
                        torch.optim.SGD(net.parameters(), lr=0.0), 1, True, current())
        self.trained.append(Path(out_dir))
        return Path(out_dir) / CHECKPOINT_NAME

    def load(self, out_dir, device="cpu", allow_unfinished=False, compile=False):
        state = read_checkpoint(Path(out_dir) / CHECKPOINT_NAME)
        return ToyNet(state["ema"]["means"])

    def sample(self, model, labels, cfg, device="cpu", progress=True, index_offset=0,
               description="sampling"):
        noise = torch.cat([torch.randn(1, *model.means.shape[1:],
                                       generator=sample_rng(cfg.seed, index_offset + i))
                           for i in range(len(labels))])
        return (model.means[labels] + 8 * noise).round().clamp(0, 255).to(torch.uint8)

    def cost_per_kimg(self, cfg, num_classes, image_shape):
        return 0.0


TOY = ToyFamily()  # the object the toy family's registry line names


def test_a_toy_family_runs_a_study(tmp_path, monkeypatch):
    """Registered here (one registry line), the toy family trains and samples through the
    study's own code path: validation, keys, the train pass, the sampling pass, the cells."""
    from synthequiv.orchestration.study import run_study

    monkeypatch.setitem(FAMILIES, "toy", FamilyEntry(f"{__name__}:TOY", ("mean",)))
    TOY.trained.clear()
    cfg = C.resolve("quick", None, [
        "generator.family=toy", "grid.arms=[real,closed]", "grid.replicates=1",
        "grid.seeds=[0]", "splits.base_per_class=[10]", "grid.real_add_per_class=[5,10]",
        "grid.syn_add_per_class=[10]", "classifier.train_steps=10", "analysis.enabled=false",
        "device=cpu"])
    C.validate(cfg)
    run_study(cfg, tmp_path / "run", progress=False)
    assert len(TOY.trained) == 1 and TOY.trained[0].name.startswith("closed-n10")
    samples = list((tmp_path / "run" / "samples").glob("closed-n10*.npz"))
    assert len(samples) == 1
    from synthequiv.generation.sampling import load_samples

    images, labels, _ = load_samples(samples[0])
    assert images.shape == (100, 1, 8, 8) and labels.bincount().tolist() == [10] * 10
    import sqlite3

    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        arms = dict(db.execute("SELECT arm, COUNT(*) FROM cells GROUP BY arm").fetchall())
    assert arms.get("closed") == 1  # one synthetic amount, one seed, one replicate


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
@pytest.mark.parametrize("name", ("edm", "dit"))
def test_study_cli_with_a_family(name, cli, tmp_path):
    """`synthequiv study --preset quick --set generator.family=…` end to end (tiny grid)."""
    code, out, err = cli(
        "study", "--preset", "quick", "--runs-dir", tmp_path, "--name", name,
        "--set", f"generator.family={name}", "--set", "generator.train_kimg=0.64",
        "--set", "generator.warmup_kimg=0.1", "--set", "grid.replicates=1",
        "--set", "grid.seeds=[0]", "--set", "splits.base_per_class=[10]",
        "--set", "grid.real_add_per_class=[5,10]", "--set", "grid.syn_add_per_class=[10]",
        "--set", "sampling.steps=3", "--set", "classifier.train_steps=10",
        "--set", "analysis.max_images=100", "--set", "analysis.domain_train_steps=10",
        "--set", "cpu_threads=1")
    assert code == 0, err
    run = tmp_path / name
    assert (run / "report.html").exists()
    ckpts = list((run / "generators").glob("*/checkpoint.pt"))
    assert ckpts and all(read_checkpoint(p)["config"]["family"] == name for p in ckpts)
    assert len(list((run / "samples").glob("closed-n10*.npz"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ("edm", "dit"))
def test_ddp_equals_one_process(name, base, trained, tmp_path):
    """Two gloo ranks (torchrun) train what one process trains, up to float summation order
    (measured ~5e-7 relative for both families)."""
    from synthequiv.generation.distributed import train_distributed

    x, y = base
    cfg = dataclasses.replace(TINY, family=name)
    ddp = torch.load(train_distributed(x, y, 10, cfg, tmp_path, "cpu", 2, progress=False),
                     weights_only=True)
    one = torch.load(trained[name] / CHECKPOINT_NAME, weights_only=True)
    a = torch.cat([v.double().flatten() for v in one["ema"].values()])
    d = torch.cat([ddp["ema"][k].double().flatten() for k in one["ema"]])
    assert ((a - d).norm() / a.norm()).item() < 1e-4 and ddp["config"]["family"] == name


def test_generator_sample_cli_samples_any_family(tmp_path, cli):
    """`synthequiv generator sample` loads the checkpoint's own family (an edm generator
    was refused by the unet-only loader) and samples with that family's default sampler."""
    gen = tmp_path / "g"
    code, _, err = cli("generator", "train", "digits", "--base-per-class", "2", "--out", gen,
                       "--set", "generator.family=edm", "--set", "generator.train_kimg=0.064",
                       "--set", "generator.batch_size=16", "--device", "cpu")
    assert code == 0, err
    code, out, err = cli("generator", "sample", gen, "--per-class", "2", "--out",
                         tmp_path / "s.npz", "--set", "sampling.steps=2", "--device", "cpu")
    assert code == 0, err
    from synthequiv.generation.sampling import load_samples

    images, labels, meta = load_samples(tmp_path / "s.npz")
    assert images.shape == (20, 1, 8, 8) and meta["sampling"]["sampler"] == "heun"
    # a sampler is named against the checkpoint's family, not the preset's (unet): edm's euler
    # is taken, unet's dpmpp refused in one line naming edm's samplers
    code, out, err = cli("generator", "sample", gen, "--per-class", "1", "--out",
                         tmp_path / "e.npz", "--sampler", "euler", "--steps", "2",
                         "--device", "cpu")
    assert code == 0, err
    assert load_samples(tmp_path / "e.npz")[2]["sampling"]["sampler"] == "euler"
    code, out, err = cli("generator", "sample", gen, "--per-class", "1", "--out",
                         tmp_path / "d.npz", "--sampler", "dpmpp", "--device", "cpu")
    assert code == 2 and err.strip().splitlines() == [
        "error: unknown sampler 'dpmpp' for this generator family (use auto, heun, euler)"]
    assert not (tmp_path / "d.npz").exists()
