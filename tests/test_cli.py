"""CLI: one behaviour per test. `cli` runs `main()` in-process (the real error handling);
`script` runs a fresh interpreter to check the entry points themselves."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from synthequiv import config as C

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def table_rows(out: str) -> dict[str, list[str]]:
    """Rich table body rows keyed by their first cell (box-drawing or ASCII borders)."""
    rows = {}
    for line in out.splitlines():
        if line.count("│") >= 3 or line.count("|") >= 3:
            cells = [c.strip() for c in re.split(r"[│|]", line)[1:-1]]
            rows.setdefault(cells[0], cells)
    return rows


def assert_valid_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width >= 80 and im.height >= 80  # 10 classes of ≥ 8 px


def assert_one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- datasets


def test_datasets_lists_digits_and_mnist_path(cli, tmp_path):
    marker = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    code, out, _ = cli("datasets", "--root", tmp_path)
    assert code == 0
    rows = table_rows(out)
    assert rows["digits"][1] == "yes"
    assert rows["mnist"][1:] == ["no", str(marker)]
    marker.parent.mkdir(parents=True)
    marker.write_bytes(b"")
    assert table_rows(cli("datasets", "--root", tmp_path)[1])["mnist"][1] == "yes"


def test_datasets_shows_pneumonia_available(cli, pneumonia_root):
    rows = table_rows(cli("datasets", "--root", pneumonia_root)[1])
    assert rows["medmnist:pneumoniamnist"][1:] == ["yes", str(pneumonia_root /
                                                             "pneumoniamnist.npz")]


# ----------------------------------------------------------------------------- data show


def test_data_show_digits(cli, tmp_path, digits):
    out_png = tmp_path / "x.png"
    code, out, err = cli("data", "show", "digits", "--out", out_png)
    assert code == 0, err
    assert "10 classes, 8×8 px, 1 channel(s); test split: hold-out" in out
    rows = table_rows(out)
    for k, n in enumerate(digits.labels.bincount().tolist()):
        assert rows[str(k)] == [str(k), str(k), str(n - 50), "50"]
    assert_valid_png(out_png)


def test_data_show_npz(cli, tmp_path, mnist10k):
    counts = np.bincount(np.load(mnist10k)["labels"])
    code, out, err = cli("data", "show", f"npz:{mnist10k}", "--out", tmp_path / "m.png",
                         "--test-per-class", 100)
    assert code == 0, err
    rows = table_rows(out)
    assert [rows[str(k)][2:] for k in range(10)] == [[str(n - 100), "100"] for n in counts]
    assert_valid_png(tmp_path / "m.png")


def test_data_show_medmnist(cli, tmp_path, pneumonia_root):
    code, out, err = cli("data", "show", "medmnist:pneumoniamnist", "--root", pneumonia_root,
                         "--out", tmp_path / "p.png")
    assert code == 0, err
    assert "test split: official" in out
    rows = table_rows(out)
    assert rows["0"] == ["0", "normal", "1214", "234"]
    assert rows["1"] == ["1", "pneumonia", "3494", "390"]
    assert_valid_png(tmp_path / "p.png")


def test_data_show_default_png_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("data", "show", "digits")[0] == 0
    assert_valid_png(tmp_path / "digits_examples.png")


# ----------------------------------------------------------------------------- study --dry-run


def test_study_dry_run_prints_resolved_yaml(cli):
    code, out, err = cli("study", "--dry-run")
    assert code == 0, err
    assert "source: digits" in out
    assert C.build(C.StudyConfig, yaml.safe_load(out)) == C.resolve("quick")


def test_study_dry_run_applies_set_and_name(cli):
    code, out, _ = cli("study", "--preset", "mnist", "--dry-run", "--set", "grid.seeds=[0,1]",
                       "--name", "trial", "--device", "cpu")
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["grid"]["seeds"] == [0, 1] and cfg["name"] == "trial" and cfg["device"] == "cpu"
    assert cfg["data"]["source"] == C.PRESETS["mnist"]["data"]["source"]


def test_study_unknown_key_names_it(cli):
    code, _, err = cli("study", "--dry-run", "--set", "grid.sedes=1")
    assert "grid.sedes" in assert_one_error_line(code, err)


def test_study_invalid_yaml_config(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("grid: [1, 2\n")
    code, _, err = cli("study", "--dry-run", "--config", tmp_path / "bad.yaml")
    assert "invalid YAML" in assert_one_error_line(code, err)


# ----------------------------------------------------------------------------- bad inputs


def _corrupt_folder(tmp_path: Path) -> str:
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "imgs" / name / "ok.png")
    (tmp_path / "imgs" / "b" / "bad.png").write_bytes(np.random.default_rng(0).bytes(100))
    return f"folder:{tmp_path / 'imgs'}"


@pytest.mark.parametrize("case, expect", [
    ("missing_npz", "file not found"),
    ("corrupt_folder", "bad.png"),
    ("too_small_class", "class '0' has 178 images"),
    ("unknown_source", "unknown data source 'imagenet'"),
])
def test_data_show_bad_input_is_one_error_line(cli, tmp_path, case, expect):
    args = {
        "missing_npz": [f"npz:{tmp_path / 'none.npz'}"],
        "corrupt_folder": [_corrupt_folder(tmp_path)],
        "too_small_class": ["digits", "--test-per-class", "500"],
        "unknown_source": ["imagenet"],
    }[case]
    code, _, err = cli("data", "show", *args, "--out", tmp_path / "x.png")
    assert expect in assert_one_error_line(code, err)
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- entry points


def test_module_entry_unknown_preset_exits_2_with_one_line(script):
    proc = script("study", "--preset", "nope")
    line = assert_one_error_line(proc.returncode, proc.stderr)
    assert "unknown preset 'nope'" in line and proc.stdout == ""


def test_console_script_bad_npz_exits_2_with_one_line(script, tmp_path):
    proc = script("data", "show", f"npz:{tmp_path / 'none.npz'}", console_script=True)
    assert str(tmp_path / "none.npz") in assert_one_error_line(proc.returncode, proc.stderr)



def test_help_answers_without_loading_torch():
    """`synthequiv --help` is answered before any heavy import (torch took ~1 s of its 1.6 s)."""
    import subprocess
    import sys

    code = ("import sys\nfrom synthequiv.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "study" in proc.stdout


@pytest.mark.parametrize("argv, message", [
    (["datasets"], None),
    (["study", "--preset", "nope"], "unknown preset 'nope'"),
    (["study", "--set", "grid.seeds=x", "--dry-run"], "grid.seeds"),
    (["study", "--set", "classifier.lr=-1", "--dry-run"], "classifier.lr"),
    (["study", "--set", "data.source=bogus", "--dry-run"], "unknown data source 'bogus'"),
    (["study", "--budget", "3x"], "--budget '3x'"),
    (["fit", "/nonexistent.csv"], "file not found"),
    (["data", "show", "nope"], "unknown data source 'nope'"),
    (["study", "--device", "cuda:x", "--dry-run"], "unknown device 'cuda:x'"),
    (["study", "--set", "generator.family=foo"], "unknown generator family 'foo'"),
    (["study", "--set", "sampling.sampler=bogus"], "unknown sampler 'bogus'"),
    (["study", "--set", "grid.generator_families=[foo]"],
     "grid.generator_families: unknown generator family 'foo'"),
    (["study", "--set", "classifier.lr=-1"], "classifier.lr"),
])
def test_datasets_and_config_errors_load_no_torch(argv, message):
    """Issue 27: `datasets` and every config error answer at once — the stages' configs and
    their value checks are light modules; torch loads only for the checks that need it."""
    import subprocess
    import sys

    code = ("import sys\nfrom synthequiv import cli\nsys.argv = ['synthequiv'] + "
            f"{argv!r}\ntry:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
            "else:\n    code = 0\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "NO-TORCH" in proc.stdout, proc.stdout + proc.stderr
    if message is None:
        assert proc.stdout.strip().endswith(" 0") and "digits" in proc.stdout
    else:
        assert proc.stdout.strip().endswith(" 2") and message in proc.stderr, proc.stderr


def test_generator_train_nproc_must_split_the_batch(cli, tmp_path):
    code, _, err = cli("generator", "train", "digits", "--base-per-class", "5", "--out",
                       tmp_path / "g", "--processes", "3", "--device", "cpu")
    assert "divisible by generator_nproc (3)" in assert_one_error_line(code, err)
    assert not (tmp_path / "g").exists()
