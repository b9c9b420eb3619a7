"""Guards: no checkpoint overwritten by mistake, no file read outside the data folder, bounded inputs, one-line
OS errors, SIGTERM saves, stamped checkpoint sets, config.json validation, the Tuning page's storages, umask."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from lwgen import limits
from lwgen.checkpoint import (
    STAMP,
    TRAIN_STATE,
    CheckpointError,
    load_checkpoint,
    read_config,
    read_tensors,
)
from lwgen.cli import main
from lwgen.data import DataError, ImageTable
from lwgen.data import cli as data_cli
from lwgen.io import atomic_write_text

TINY = ["--attributes", "shape", "color", "--load-size", "32", "--unet-resolution", "16", "--unet-base-channels",
        "16", "--unet-channel-mult", "1", "2", "--unet-attention-levels", "1", "--unet-emb-dim", "32",
        "--unet-groups", "8", "--batch", "8", "--warmup", "3", "--threads", "1", "--no-progress",
        "--sample-minutes", "1000", "--text-column", ""]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes (to show that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def ckpt(tiny_checkpoints, tmp_path) -> Path:
    """A private copy of a tiny trained checkpoint (with its training state)."""
    return Path(shutil.copytree(tiny_checkpoints["cosine"], tmp_path / "ck"))


# --- overwrite guards and resume checks -------------------------------------------------------------------
def test_training_refuses_a_non_empty_out(shapes_dir, ckpt, capsys):
    before = snapshot(ckpt)
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--out", str(ckpt), "--steps", "2", *TINY]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out {ckpt} is not empty" in line and "--resume" in line and "--force" in line
    assert snapshot(ckpt) == before


def test_resume_needs_a_training_state(shapes_dir, ckpt, tmp_path, capsys):
    (ckpt / TRAIN_STATE).unlink()  # a release copy: weights and config only
    before = snapshot(ckpt)
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--out", str(ckpt), "--steps", "2", "--resume",
                 *TINY]) == 2
    assert f"--resume: {ckpt} has no training state" in one_error_line(capsys.readouterr().err)
    assert snapshot(ckpt) == before
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--out", str(tmp_path / "none"), "--steps", "2",
                 "--resume", *TINY]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "none").exists()


def test_resume_refuses_other_architecture_flags(shapes_dir, ckpt, capsys):
    before = snapshot(ckpt)
    flags = [f for f in TINY if f not in ("--attributes", "shape", "color")]
    argv = ["train", "diffusion", "--data", str(shapes_dir), "--attributes", "shape", "color", "size", "--out",
            str(ckpt), "--steps", "6", "--resume", *flags]
    i = argv.index("--unet-base-channels")
    bad = argv[:i + 1] + ["32"] + argv[i + 2:] + ["--schedule", "linear"]
    assert main(bad) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--unet-base-channels 32 (checkpoint: 16)" in line and "--schedule linear (checkpoint: cosine)" in line
    assert snapshot(ckpt) == before


def test_export_never_overwrites_by_mistake(tiny_checkpoints, ckpt, tmp_path, capsys):
    before = snapshot(ckpt)
    src = tiny_checkpoints["linear"]
    assert main(["export", "--checkpoint", str(src), "--out", str(ckpt)]) == 2
    assert "is not empty; pass --force" in one_error_line(capsys.readouterr().err)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(ckpt), "--force"]) == 2
    assert "is the --checkpoint itself" in one_error_line(capsys.readouterr().err)
    assert snapshot(ckpt) == before
    assert main(["export", "--checkpoint", str(src), "--out", str(ckpt), "--force"]) == 0
    assert not (ckpt / TRAIN_STATE).exists()  # the replaced run's state would resume the old weights
    assert read_config(ckpt)["schedule"]["name"] == "linear"


def test_export_of_a_mismatched_checkpoint_fails(ckpt, tmp_path, capsys):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["unet"]["base_channels"] = 24
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "rel")]) == 2
    assert "weights do not match config.json" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "rel").exists()


# --- path containment -------------------------------------------------------------------------------------
def test_csv_paths_must_stay_in_the_data_folder(tmp_path):
    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(root / "img" / "a.png")
    Image.new("RGB", (8, 8), (0, 200, 0)).save(tmp_path / "outside.png")
    rows = [{"file": "img/a.png", "shape": "s"}, {"file": "../outside.png", "shape": "s"},
            {"file": str(tmp_path / "outside.png"), "shape": "s"}, {"file": "img/../../outside.png", "shape": "s"}]
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    with pytest.raises(DataError, match=r"^row 3: file '\.\./outside\.png': path leads outside the data folder$"):
        ImageTable.load(root, ["shape"], size=8, progress=False, cache=False)
    table = ImageTable.load(root, ["shape"], size=8, progress=False, cache=False, skip_bad=True)
    assert table.files == ["img/a.png"]
    assert [(s["row"], s["error"]) for s in table.skipped] == [(r, "path leads outside the data folder")
                                                             for r in (3, 4, 5)]


# --- bounded inputs and the output format ----------------------------------------------------------------
@pytest.mark.parametrize("flags, named", [
    (["--guidance", "nan"], "--guidance"), (["--guidance", "inf"], "--guidance"),
    (["--guidance", "1e30"], "--guidance"),
    (["--nrow", "-3"], "--nrow"), (["--seed", str(2**64 - 1)], "--seed"), (["-n", "0"], "-n"),
    (["--steps", "0"], "--steps"), (["--out", "{tmp}/grid.gif"], "unknown image extension"),
    (["--out", "{tmp}/dir/"], "is a folder"),
    (["--guidance-interval", "2", "1"], "--guidance-interval"),
    (["--guidance-interval", "-1", "1"], "--guidance-interval"),
])
def test_sample_refuses_bad_numbers_before_work(tiny_checkpoints, tmp_path, capsys, flags, named):
    (tmp_path / "dir").mkdir()
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    argv = ["sample", "--checkpoint", str(tiny_checkpoints["cosine"]), "-n", "1", "--steps", "1",
            "--out", str(tmp_path / "grid.png"), *flags]
    assert main(argv) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not any((tmp_path / "dir").iterdir())


def test_sample_format_follows_the_extension(tiny_checkpoints, tmp_path):
    out = tmp_path / "grid.jpg"
    assert main(["sample", "--checkpoint", str(tiny_checkpoints["cosine"]), "-n", "1", "--steps", "1",
                 "--out", str(out)]) == 0
    assert Image.open(out).format == "JPEG"


def test_limits_table():
    assert limits.check("guidance", 2.5) == 2.5
    for bad in (float("nan"), float("inf"), 1e30, -1.0, "2", True):
        with pytest.raises(ValueError, match="guidance must be"):
            limits.check("guidance", bad)
    with pytest.raises(ValueError, match="--seed 2147483647 with 2 images uses seeds up to 2147483648"):
        limits.check_seeds(limits.MAX_SEED, 2, "--seed")
    from lwgen.app.runner import generate_images
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        generate_images(None, torch.zeros(1, 4), [0], steps=2, sampler="ddim", guidance=float("nan"))


# --- OS errors at the CLI boundary, checked before the work -----------------------------------------------
def test_os_errors_are_one_line_before_work(shapes_dir, tiny_checkpoints, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["sample", "--checkpoint", str(tiny_checkpoints["cosine"]), "-n", "1", "--steps", "1",
                 "--out", str(blocker / "grid.png")]) == 1
    assert str(blocker) in one_error_line(capsys.readouterr().err)
    t0 = time.monotonic()
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--out", str(blocker / "run"), "--steps", "2",
                 *TINY]) == 1
    assert str(blocker) in one_error_line(capsys.readouterr().err)
    assert time.monotonic() - t0 < 5  # refused before the data is loaded
    assert blocker.read_text() == "x"


# --- SIGTERM, stamped sets, old train states ---------------------------------------------------------------
def _cmd(data, out, *extra):
    return [sys.executable, "-m", "lwgen", "train", "diffusion", "--data", str(data), "--out", str(out),
            "--log-every", "1", *TINY, *extra]


def test_sigterm_saves_and_resume_loses_nothing(shapes_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(shapes_dir, out, "--steps", "100000", "--save-minutes", "1000"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "tb").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the loggers are made when the training loop starts
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    said, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    step = int(read_tensors(out / TRAIN_STATE)[1]["step"])
    assert step > 0 and f"terminated (SIGTERM) at step {step}; saving" in said  # no periodic save ran
    config, _ = load_checkpoint(out)
    assert config["progress"]["step"] == step
    done = subprocess.run(_cmd(shapes_dir, out, "--steps", str(step + 2), "--resume"), env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {out / TRAIN_STATE} at step {step}" in done.stdout
    assert load_checkpoint(out)[0]["progress"]["step"] == step + 2


def test_checkpoint_files_are_one_stamped_set(ckpt, tmp_path):
    stamp = read_config(ckpt)[STAMP]
    assert read_tensors(ckpt / "model.safetensors")[1][STAMP] == stamp
    assert read_tensors(ckpt / TRAIN_STATE)[1][STAMP] == stamp
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg[STAMP] = "another-save"  # a config one save behind its weights
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="come from different saves"):
        load_checkpoint(ckpt, retries=0)
    del cfg[STAMP]  # written before stamps existed: accepted
    (ckpt / "config.json").write_text(json.dumps(cfg))
    load_checkpoint(ckpt, retries=0)


def test_a_train_state_without_stamp_still_resumes(shapes_dir, ckpt, capsys):
    path = ckpt / TRAIN_STATE
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != STAMP}
    save_file(tensors, str(path), metadata=meta)  # as the code before stamps wrote it
    cfg = read_config(ckpt)
    del cfg[STAMP]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    flags = [f for f in TINY if f not in ("--attributes", "shape", "color")]
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--attributes", "shape", "color", "size", "--out",
                 str(ckpt), "--steps", "6", "--resume", "--log-every", "50", *flags]) == 0
    out = capsys.readouterr().out
    assert read_config(ckpt)["progress"]["step"] == 6
    assert "last loss nan" not in out and "last loss 0." in out  # fewer steps than --log-every


# --- data check, labels, split hint -----------------------------------------------------------------------
def test_data_check_lists_every_bad_row_by_reason(tmp_path, capsys):
    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(root / "img" / f"{i}.png")
        rows.append({"file": f"img/{i}.png", "shape": "s"})
    for i in range(4):
        rows.append({"file": f"img/missing{i}.png", "shape": "s"})
    (root / "img" / "text.png").write_text("not an image")
    rows.append({"file": "img/text.png", "shape": "s"})
    os.mkfifo(root / "img" / "pipe.png")
    rows.append({"file": "img/pipe.png", "shape": "s"})
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    base = ["--data", str(root), "--attributes", "shape", "--size", "8", "--no-cache"]
    import argparse

    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "check", *base, "--max-rows", "3"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "6 bad rows:" in err and "file not found: 4 rows" in err and "... and 1 more" in err
    assert "row 8: file 'img/missing0.png'" in err and "row 10: file 'img/missing2.png'" in err
    assert "not a regular file: 1 rows" in err and "row 13: file 'img/pipe.png' (a FIFO (named pipe))" in err
    assert "not an image: 1 rows" in err and "pass --skip-bad" in err
    args = parser.parse_args(["data", "check", *base, "--skip-bad"])
    assert args.func(args) == 0
    assert "6 images of 8x8 px" in capsys.readouterr().out


def test_split_hint(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    pd.DataFrame([{"file": "a.png", "shape": "s"}]).to_csv(root / "annotations.csv", index=False)
    with pytest.raises(DataError, match="no 'split' column .*; pass --split '' to use all rows"):
        ImageTable.load(root, ["shape"], size=8, split="train", progress=False)


# --- config.json validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, named", [
    ("resolution", 10_000_000, "unet.resolution must be an integer between 4 and 1024"),
    ("base_channels", "16", "unet.base_channels must be an integer"),
    ("channel_mult", [1, 2, 1_000_000], r"unet.channel_mult\[2\] must be"),
    ("groups", True, "unet.groups must be an integer"),
])
def test_config_json_is_validated_naming_the_key(ckpt, capsys, key, value, named):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["unet"][key] = value
    (ckpt / "config.json").write_text(json.dumps(cfg))
    before = snapshot(ckpt)
    with pytest.raises(CheckpointError, match=named):
        read_config(ckpt)
    assert main(["info", "--checkpoint", str(ckpt)]) == 2
    assert key in one_error_line(capsys.readouterr().err)
    assert snapshot(ckpt) == before


def test_training_flags_are_bounded(shapes_dir, tmp_path, capsys):
    for flags, named in ((["--lr", "nan"], "--lr must be a finite number"),
                         (["--unet-resolution", "100000"], "--unet-resolution must be an integer between")):
        assert main(["train", "diffusion", "--data", str(shapes_dir), "--out", str(tmp_path / "o"), "--steps", "2",
                     *TINY, *flags]) == 2
        assert named in one_error_line(capsys.readouterr().err)


# --- the Tuning page's storages ---------------------------------------------------------------------------
def test_tuning_page_opens_only_optuna_storages(tmp_path):
    from lwgen.app.tuning import can_create, create_storage, storage_problem

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (text)")
    con.commit()
    con.close()
    before = other.read_bytes()
    assert "without Optuna's tables" in storage_problem(f"sqlite:///{other}")
    assert other.read_bytes() == before and not can_create(f"sqlite:///{other}")
    with pytest.raises(ValueError, match="only a new SQLite file"):
        create_storage(f"sqlite:///{other}")
    assert other.read_bytes() == before
    text = tmp_path / "notes.db"
    text.write_text("just some text, long enough to be read")
    assert "not an SQLite database" in storage_problem(f"sqlite:///{text}")
    new = f"sqlite:///{tmp_path / 'new.db'}"
    assert "does not exist yet" in storage_problem(new) and can_create(new)
    create_storage(new)
    assert storage_problem(new) is None


# --- permissions ------------------------------------------------------------------------------------------
def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "a")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "b")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
