"""Config: defaults, presets, YAML round-trip, strict loading (unknown keys and types named)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from synthequiv import config as C
from synthequiv.stats.config import ARMS, cell_seeds
from synthequiv.utils import SynthequivError


def test_defaults_resolve_to_the_quick_digits_study():
    cfg = C.resolve()
    assert cfg == C.StudyConfig()
    assert cfg.name == "quick" and cfg.data.source == "digits"
    assert cfg.splits.base_per_class == (5, 10)
    assert cfg.workers == 0 and cfg.cpu_threads == 1  # one single-thread process per core
    assert cfg.grid.seeds == (0, 1) and cfg.grid.replicates == 3 and cfg.grid.arms == ARMS
    assert cell_seeds(cfg.grid, 0) == (0, 1, 2, 3, 4, 5) and cell_seeds(cfg.grid, 40) == (0, 1)
    assert len(cfg.grid.real_add_per_class) >= 4  # the real curve synthetic cells are read off


@pytest.mark.parametrize("preset", list(C.PRESETS))
def test_every_preset_builds_with_its_overrides(preset):
    cfg = C.resolve(preset)
    assert isinstance(cfg, C.StudyConfig)
    overrides = C.PRESETS[preset]
    assert cfg.name == overrides.get("name", "quick")
    for section, values in overrides.items():
        if isinstance(values, dict):
            for key, value in values.items():
                got = getattr(getattr(cfg, section), key)
                assert got == (tuple(value) if isinstance(value, list) else value), (section, key)
    # lists become tuples, so configs stay hashable and frozen
    assert isinstance(cfg.splits.base_per_class, tuple)
    hash(cfg)


@pytest.mark.parametrize("preset", list(C.PRESETS))
def test_yaml_round_trip(preset):
    cfg = C.resolve(preset)
    assert C.build(C.StudyConfig, yaml.safe_load(C.dump_yaml(cfg))) == cfg


def test_dumped_yaml_file_reproduces_the_config(tmp_path):
    cfg = C.resolve("mnist", overrides=["grid.seeds=[4,5]"])
    (tmp_path / "run.yaml").write_text(C.dump_yaml(cfg))
    assert C.resolve("quick", tmp_path / "run.yaml") == cfg


def test_precedence_preset_then_file_then_set(tmp_path):
    (tmp_path / "o.yaml").write_text("splits:\n  seed: 3\n  test_per_class: 7\n")
    cfg = C.resolve("mnist", tmp_path / "o.yaml", ["splits.seed=9"])
    assert cfg.splits.seed == 9  # --set beats the file
    assert cfg.splits.test_per_class == 7  # the file beats the default ("all")
    assert cfg.splits.base_per_class == (10, 50)  # untouched preset value kept
    assert C.PRESETS["mnist"]["splits"] == {"base_per_class": [10, 50]}


def test_set_parsing():
    assert C.parse_override("grid.seeds=[0,1]") == {"grid": {"seeds": [0, 1]}}
    assert C.parse_override("name=a=b") == {"name": "a=b"}
    assert C.resolve(overrides=["grid.seeds=[0,1]"]).grid.seeds == (0, 1)
    assert C.resolve(overrides=["grid.seeds=[0]", "grid.seeds=[7]"]).grid.seeds == (7,)


@pytest.mark.parametrize("text", ["grid.seeds", "=3", "grid.seeds=[0,"])
def test_bad_set_syntax(text):
    with pytest.raises(SynthequivError, match="--set"):
        C.parse_override(text)


# ----------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("override, key", [("sedes=1", "sedes"), ("grid.sedes=1", "grid.sedes"),
                                           ("data.sorce=x", "data.sorce")])
def test_unknown_key_is_named(override, key):
    with pytest.raises(SynthequivError, match=f"unknown config key '{key}'"):
        C.resolve(overrides=[override])


def test_unknown_key_in_yaml_file_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("grid:\n  sedes: [0]\n")
    with pytest.raises(SynthequivError, match="'grid.sedes'"):
        C.resolve(path=tmp_path / "c.yaml")


@pytest.mark.parametrize("override, match", [
    ("name=3", "'name' must be str"),
    ("splits.seed=true", "'splits.seed' must be int"),
    ("splits.seed=1.5", "'splits.seed' must be int"),
    ("data.download=yes please", "'data.download' must be bool"),
    ("grid.seeds=5", "'grid.seeds' must be a list"),
    ("grid.seeds=[0,x]", r"'grid.seeds\[1\]' must be int"),
    ("grid=1", "'grid' must be a mapping"),
    ("classifier.lr=fast", "'classifier.lr' must be a number"),
])
def test_wrong_type_is_named(override, match):
    with pytest.raises(SynthequivError, match=match):
        C.resolve(overrides=[override])


def test_numbers_coerce_to_float_fields():
    cfg = C.resolve(overrides=["generator.train_kimg=5", "classifier.lr=2e-3"])
    assert cfg.generator.train_kimg == 5.0 and type(cfg.generator.train_kimg) is float
    assert cfg.classifier.lr == 0.002  # YAML 1.1 reads 2e-3 as a string


def test_unknown_preset_lists_known():
    with pytest.raises(SynthequivError, match="unknown preset 'nope'.*quick"):
        C.resolve("nope")


@pytest.mark.parametrize("text, match", [("grid: [1, 2\n", "invalid YAML"),
                                         ("- a\n- b\n", "top level must be a mapping")])
def test_bad_yaml_file(tmp_path, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SynthequivError, match=match):
        C.resolve(path=tmp_path / "bad.yaml")


def test_missing_yaml_file(tmp_path):
    with pytest.raises(SynthequivError, match="config file not found"):
        C.resolve(path=tmp_path / "none.yaml")


def test_empty_yaml_file_means_no_overrides(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert C.resolve("pneumonia", tmp_path / "empty.yaml") == C.resolve("pneumonia")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        C.resolve().grid.seeds = (1,)


@pytest.mark.parametrize("override, match", [
    ("executor=dask", "unknown executor 'dask'"),
    ("workers=-1", "workers must be >= 0"),
    ("cpu_threads=-2", "cpu_threads must be >= 0"),
    ("generator_nproc=0", "generator_nproc must be > 0"),
    ("generator_group=-1", "generator_group must be >= 0"),
    ("generator_nproc=3", r"generator.batch_size \(64\) must be divisible by generator_nproc"),
])
def test_runtime_section_is_checked_before_anything_is_written(tmp_path, override, match):
    from synthequiv.orchestration.study import run_study

    with pytest.raises(SynthequivError, match=match):
        run_study(C.resolve(overrides=[override]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
