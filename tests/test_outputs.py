"""Issue 25: one guard for every output path. Every writing command is run against every
forbidden target (inside a study's run directory, a special file, someone else's file); each
is one `error:` line, exit 2, and the target is left exactly as it was."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from synthequiv.runtime.outputs import guard_output, run_dir_of
from synthequiv.utils import SynthequivError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A fake study run directory (config.yaml beside results.sqlite), someone's files, a FIFO
    and a symlink; the working directory is tmp_path."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "x"
    (run / "samples").mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "config.yaml").write_text("name: x\n")
    (run / "results.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
    np.savez(run / "samples" / "k.npz", images=np.zeros((2, 1, 8, 8), np.uint8),
             labels=np.zeros(2, np.int64))
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "mydir").mkdir()
    (tmp_path / "mydir" / "notes.txt").write_text("mine\n")
    (tmp_path / "notes.npz").write_text("mine\n")  # not an .npz at all
    for name in ("fifo", "fifo.npz"):
        os.mkfifo(tmp_path / name)
    for name in ("link", "link.npz"):
        os.symlink(tmp_path / "notes.txt", tmp_path / name)
    np.savez(tmp_path / "a.npz", images=np.zeros((4, 1, 8, 8), np.uint8),
             labels=np.array([0, 0, 1, 1]))
    (tmp_path / "r.csv").write_text("n_base,arm,n_add,seed,accuracy\n5,real,0,0,0.5\n")
    return tmp_path


# command → argv with the output path T; "file" commands write a file at T, "dir" ones a directory
COMMANDS = {
    "data show": ("file", lambda t: ["data", "show", "digits", "--out", t]),
    "generator sample": ("file", lambda t: ["generator", "sample", "nogen", "--per-class", "1",
                                            "--out", t]),
    "export": ("file", lambda t: ["export", "runs/x", "--out", t]),
    "generator train": ("dir", lambda t: ["generator", "train", "digits", "--base-per-class",
                                          "2", "--out", t]),
    "analyze two sets": ("dir", lambda t: ["analyze", "a.npz", "a.npz", "--out", t]),
    "analyze run": ("dir", lambda t: ["analyze", "runs/x", "--out", t]),
    "fit": ("dir", lambda t: ["fit", "r.csv", "--out", t]),
}
# target kind → (path for a file-writing command, path for a directory-writing one)
TARGETS = {
    "the run's results table": ("runs/x/results.sqlite", "runs/x"),
    "a run's sample cache": ("runs/x/samples/k.npz", "runs/x/figures"),
    "a new path inside a run": ("runs/x/new.npz", "runs/x/new"),
    "a FIFO": ("fifo", "fifo"),
    "a symlink": ("link", "link"),
    "someone else's file": ("notes.txt", "mydir"),
}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes() if p.is_file()
                                       and not p.is_symlink() else None)
            for p in sorted(root.rglob("*")) if p.name != ".lock"}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_writing_command_refuses_every_forbidden_target(place, cli, command, target):
    shape, argv = COMMANDS[command]
    path = TARGETS[target][0 if shape == "file" else 1]
    if command == "export" and path.endswith(".npz"):
        path = path[:-4] + ".csv"
    if command == "generator sample":  # it writes .npz files only (another error otherwise)
        path = str(Path(path).with_suffix(".npz"))
    before = _snapshot(place)
    code, _, err = cli(*argv(path))
    assert code == 2, (command, target, err)
    assert err.startswith("error: refusing to write") and err.count("\n") == 1, err
    assert _snapshot(place) == before, (command, target)


def test_force_replaces_a_foreign_file_but_never_a_run_file(place, cli):
    code, _, err = cli("data", "show", "digits", "--out", "notes.txt", "--force")
    assert code == 0, err
    assert (place / "notes.txt").read_bytes()[:8] == PNG
    code, _, err = cli("data", "show", "digits", "--out", "runs/x/results.sqlite", "--force")
    assert code == 2 and "run directory" in err
    assert (place / "runs/x/results.sqlite").read_bytes().startswith(b"SQLite")


def test_an_earlier_output_of_the_same_kind_is_replaced(place, cli):
    assert cli("data", "show", "digits", "--out", "d.png")[0] == 0
    assert cli("data", "show", "digits", "--out", "d.png")[0] == 0  # its own kind: replaced
    assert guard_output(place / "d.png", "png") is True
    assert guard_output(place / "new.png", "png") is False


def test_a_report_may_write_into_its_own_run_only(place):
    run = place / "runs" / "x"
    assert run_dir_of(run / "figures" / "a.png") == run.resolve()
    guard_output(run / "figures" / "a.png", "png", own_run=run)  # its own run: allowed
    other = place / "runs" / "y"
    other.mkdir()
    (other / "config.yaml").write_text("name: y\n")
    (other / "data_digest.txt").write_text("abc\n")
    with pytest.raises(SynthequivError, match="run directory"):
        guard_output(other / "figures" / "a.png", "png", own_run=run)


def test_a_directory_output_with_only_a_lock_left_is_free(place):
    (place / "g").mkdir()
    (place / "g" / ".lock").write_text("")
    assert guard_output(place / "g", "generator") is False


# ----------------------------------------------------------------------------- issue 25, 3–8


def test_duplicate_class_names_are_refused_naming_them(tmp_path, cli):
    """Provided sets are matched to classes by name: [a, a, b] gave classes 0 and 1 a's images."""
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((6, 1, 8, 8), np.uint8), labels=np.array([0, 0, 1, 1, 2, 2]),
             class_names=np.array(["a", "a", "b"]))
    code, _, err = cli("data", "show", f"npz:{path}", "--out", tmp_path / "x.png")
    assert code == 2 and "duplicate class name(s) 'a'" in err and err.count("\n") == 1


def test_an_export_of_several_runs_is_fit_one_run_at_a_time(tmp_path, cli):
    rows = ["run,dataset,n_base,arm,n_add,baseline,replicate,seed,accuracy"]
    for run, acc in (("a", 0.5), ("b", 0.7)):
        for seed in (0, 1):
            rows += [f"{run},digits,5,real,0,True,0,{seed},{acc + 0.01 * seed}",
                     f"{run},digits,5,real,5,False,0,{seed},{acc + 0.05 + 0.01 * seed}",
                     f"{run},digits,5,closed,5,False,0,{seed},{acc + 0.02 + 0.01 * seed}"]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    code, _, err = cli("fit", tmp_path / "all.csv", "--out", tmp_path / "fit")
    assert code == 2 and "holds 2 runs (a, b)" in err and "--run a" in err
    code, out, err = cli("fit", tmp_path / "all.csv", "--out", tmp_path / "fit", "--run", "b")
    assert code == 0, err
    import json

    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert summary["n_cells"] == 6 and summary["name"] == "b"
    code, out, err = cli("fit", tmp_path / "all.csv", "--out", tmp_path / "fit", "--run", "a")
    assert code == 0 and "replaced the earlier fit report" in out


def test_a_grid_of_huge_images_is_drawn_from_thumbnails(tmp_path):
    """data show on 4000×4000 images asked make_grid for 1.44 GB; the grid now holds ≤ 96-px
    thumbnails (10 × 10 of them), whatever the image size."""
    import torch
    from PIL import Image

    from synthequiv.generation.sampling import save_grid_png

    x = torch.randint(0, 256, (4, 3, 2000, 3000), dtype=torch.uint8)
    save_grid_png(tmp_path / "g.png", x, torch.tensor([0, 0, 1, 1]), 2)
    w, h = Image.open(tmp_path / "g.png").size
    assert w <= 10 * (96 + 2) + 2 and h <= 2 * (64 + 2) + 2


def test_a_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from synthequiv.inputs import folder

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("RGB", (400, 300), (i, 0, 0)).save(tmp_path / c / f"{i}.png")
    decoded = []
    monkeypatch.setattr(folder, "_decode", lambda *a: decoded.append(a))
    monkeypatch.setattr("synthequiv.utils.available_memory", lambda: 1_000_000)
    with pytest.raises(SynthequivError, match=r"4 images of 400×300×3.*--image-size"):
        folder.load_folder(tmp_path)
    assert decoded == []


def test_an_npz_too_large_for_memory_is_refused_from_its_headers(tmp_path, monkeypatch):
    from synthequiv.utils import load_npz

    np.savez(tmp_path / "d.npz", images=np.zeros((100, 1, 64, 64), np.uint8))
    monkeypatch.setattr("synthequiv.utils.available_memory", lambda: 100_000)
    with pytest.raises(SynthequivError, match="needs about .* GiB of memory"):
        load_npz(tmp_path / "d.npz")


def test_analyze_of_a_run_without_analyses_asks_where_to_write(place, cli):
    (place / "runs" / "x" / "config.yaml").write_text("name: x\nanalysis:\n  enabled: false\n")
    before = _snapshot(place)
    code, _, err = cli("analyze", "runs/x")
    assert code == 2 and "analysis.enabled was false" in err and "--into-run" in err
    code, _, err = cli("analyze", "runs/x", "--out", "a", "--into-run")
    assert code == 2 and "choose one" in err
    assert _snapshot(place) == before


def test_a_dry_run_on_unreadable_data_says_so_on_stderr(tmp_path, cli):
    """It still prints a plan from the config alone (exit 0), but not only as a comment."""
    code, out, err = cli("study", "--set", f"data.source=npz:{tmp_path / 'nope.npz'}",
                         "--runs-dir", tmp_path, "--dry-run")
    assert code == 0 and "# plan: data not readable here" in out
    assert err.startswith("warning: data not readable here") and "would stop" in err
