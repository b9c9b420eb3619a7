"""`lwgen fit` end to end on the tiny shapes set: stages, card, sample grids, resume, refusals, bad rows."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from lwgen.cli import main
from lwgen.data import DataError
from lwgen.fit import budget, check_data
from lwgen.fit.data import stage_csv

TINY = [
    "--threads", "1", "--eval-n", "8", "--grid-n", "4",
    ("--autoencoder-args=--ae-channels 8 16 --ae-latent-channels 4 --ae-groups 4 --size 32 --batch 8 --steps 3 "
     "--warmup 1"),
    ("--diffusion-args=--unet-resolution 16 --unet-base-channels 16 --unet-channel-mult 1 2 --unet-attention-levels 1 "
     "--unet-groups 8 --unet-emb-dim 32 --unet-head-dim 16 --batch 8 --steps 3 --warmup 1"),
    "--classifier-args=--steps 3 --minutes 0 --batch 8 --widths 8 16 --blocks 1 1 --image-size 32",
    "--eval-args=--batch 8 --steps 2",
]


def fit_argv(data: Path, out: str, *more: str) -> list[str]:
    return ["fit", "--data", str(data), "--attributes", "shape", "color", "--minutes", "1", "--out", out, *TINY, *more]


@pytest.fixture(scope="module")
def fitted(shapes_dir, tmp_path_factory) -> dict:
    """A finished tiny fit (both schedules) in a temporary working folder, and what its command printed."""
    work = tmp_path_factory.mktemp("fit-work")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(fit_argv(shapes_dir, "runs/tiny"))
    finally:
        os.chdir(cwd)
    return {"rc": rc, "out": work / "runs" / "tiny", "printed": buf.getvalue(), "work": work}


def test_budget_shares_follow_the_recipe():
    both = budget(60, ("cosine", "linear"))
    assert both["classifier"] == pytest.approx(6.0)
    assert both["diffusion-cosine"] == pytest.approx(3 * both["autoencoder"], abs=1e-3)
    assert sum(both.values()) == pytest.approx(60, abs=1e-2)
    one = budget(60, ("cosine",))
    assert one["autoencoder"] == pytest.approx(13.5) and one["diffusion-cosine"] == pytest.approx(40.5)
    tuned = budget(60, ("cosine",), fine_tune=True)  # fine-tuning an autoencoder leaves the generator more time
    assert tuned["autoencoder"] == pytest.approx(4.154, abs=1e-3) and tuned["diffusion-cosine"] == pytest.approx(49.846)


def test_short_diffusion_stages_get_the_short_run_settings(tmp_path, monkeypatch):
    from lwgen import precision
    from lwgen.fit.plan import SHORT_RUN_FLAGS, FitOptions, stages

    def diffusion_argv(minutes: float, extra: list[str]) -> list[str]:
        opts = FitOptions(tmp_path, ["shape"], minutes, tmp_path / "out", schedule="linear",
                          extra={"diffusion": extra})
        return next(s.argv for s in stages(opts, "annotations.csv") if s.name == "diffusion-linear")

    short = diffusion_argv(5, ["--lr", "1e-3"])
    assert " ".join(SHORT_RUN_FLAGS) in " ".join(short)
    assert short.index("--lr") < len(short) - 2 and short[-2:] == ["--lr", "1e-3"]  # the user's flags come last
    for bf16, short_at, long_at in (("1", 5, 20), ("0", 20, 120)):  # a float32 CPU: a quarter of the steps
        monkeypatch.setenv("LWGEN_BF16", bf16)
        precision.cpu_bf16_native.cache_clear()
        assert "4.2e-3" in diffusion_argv(short_at, [])  # stages of 3.4 and 13.5 minutes
        assert "4.2e-3" not in diffusion_argv(long_at, [])  # 13.5 and 81: the defaults win (experiments.md 6, 14)
    precision.cpu_bf16_native.cache_clear()


def test_the_autoencoder_stage_fine_tunes_the_shipped_autoencoder_unless_told_otherwise(tmp_path, monkeypatch):
    from lwgen.fit.cli import autoencoder_init
    from lwgen.fit.plan import FitOptions, stages
    from lwgen.shipped import shipped_root

    shipped = shipped_root() / "emoji-autoencoder"
    assert autoencoder_init("shipped") == shipped
    opts = FitOptions(tmp_path, ["shape"], 5, tmp_path / "out", autoencoder_init=shipped)
    argv = stages(opts, "annotations.csv")[0].argv
    assert argv[argv.index("--init") + 1] == str(shipped) and argv[argv.index("--lr") + 1] == "5e-4"
    assert "--init" not in stages(FitOptions(tmp_path, ["shape"], 5, tmp_path / "out"), "annotations.csv")[0].argv
    assert autoencoder_init("shipped", ["--ae-channels", "8", "16"]) is None  # an architecture of one's own
    assert autoencoder_init("shipped", ["--size", "32"]) is None
    assert autoencoder_init("None") is None
    assert autoencoder_init(str(shipped)) == shipped
    with pytest.raises(ValueError, match=f"--autoencoder-init {tmp_path}: no checkpoint there"):
        autoencoder_init(str(tmp_path))
    monkeypatch.setenv("LWGEN_SHIPPED", "0")
    assert autoencoder_init("shipped") is None


def test_fit_writes_stages_card_and_grids(fitted, shapes_dir):
    assert fitted["rc"] == 0, fitted["printed"]
    out, printed = fitted["out"], fitted["printed"]
    names = ["autoencoder", "classifier", "diffusion-cosine", "diffusion-linear", "evaluate-cosine", "evaluate-linear"]
    for k, name in enumerate(names, 1):
        assert f"stage {k}/6: {name} (" in printed
    for folder in ("autoencoder", "classifier", "diffusion-cosine", "diffusion-linear"):
        assert (out / folder / "config.json").is_file() and (out / folder / "model.safetensors").is_file()
    card = json.loads((out / "fit.json").read_text())
    assert card["attributes"] == ["shape", "color"] and card["schedules"] == ["cosine", "linear"]
    assert card["data"]["images"] == 64 and card["data"]["skipped"] == 0
    assert sum(card["data"]["counts"]["shape"].values()) == 64
    shares = budget(1, ("cosine", "linear"))
    assert card["stages"]["diffusion-cosine"]["minutes"] == pytest.approx(shares["diffusion-cosine"])
    assert card["wall_time_s"] > 0 and all(s["seconds"] > 0 for s in card["stages"].values())
    for schedule in ("cosine", "linear"):
        metrics = card["metrics"][schedule]
        assert metrics["n"] == 8 and metrics["fid"] >= 0 and 0 <= metrics["shape_top1"] <= 1
        scored = json.loads((out / f"diffusion-{schedule}" / "eval.json").read_text())
        assert card["warnings"].get(schedule, []) == scored["warnings"]  # a classifier too weak to judge, if so
        assert all(f"warning ({schedule}): {line}" in printed for line in scored["warnings"])
        grids = card["samples"][schedule]
        assert sorted(grids) == sorted(card["data"]["counts"]["shape"])  # one grid per value of the first attribute
        for path in grids.values():
            with Image.open(out / path) as img:
                assert img.format == "PNG" and img.size == (4 * 32 + 5 * 2, 32 + 2 * 2)  # 4 images in a row
    state = json.loads((out / "fit-state.json").read_text())
    assert state["state"] == "done" and all(s["status"] == "done" for s in state["stages"].values())
    status = json.loads((out / "diffusion-cosine" / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 3 and status["preview"] == "preview.png"
    assert (out / "diffusion-cosine" / "preview.png").is_file()


def test_rerun_skips_finished_stages(fitted, shapes_dir, monkeypatch, capsys):
    out = fitted["out"]
    weights = out / "diffusion-linear" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    monkeypatch.chdir(fitted["work"])
    assert main(fit_argv(shapes_dir, "runs/tiny")) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == 6
    assert weights.stat().st_mtime_ns == before


def test_refuses_a_folder_that_is_not_the_same_fit(fitted, shapes_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(fitted["work"])
    argv = fit_argv(shapes_dir, "runs/tiny")
    argv[argv.index("color")] = "size"
    assert main(argv) == 2
    assert "holds a fit of other data" in capsys.readouterr().err
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(fit_argv(shapes_dir, str(other))) == 2
    err = capsys.readouterr().err
    assert "is not empty (it holds notes.txt) and is not an earlier fit" in err and "--force" in err
    assert (other / "notes.txt").read_text() == "mine"


def test_a_stopped_fit_resumes_its_unfinished_stage(shapes_dir, tmp_path):
    """SIGTERM in the middle of the diffusion stage: the trainer saves; the same command continues it."""
    argv = fit_argv(shapes_dir, "runs/r", "--schedule", "cosine")
    argv[argv.index(next(a for a in argv if a.startswith("--diffusion-args")))] += " --steps 100000 --save-minutes 100"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lwgen", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    status = tmp_path / "runs" / "r" / "diffusion-cosine" / "status.json"
    deadline = time.monotonic() + 60
    live = {}
    while time.monotonic() < deadline:
        try:
            live = json.loads(status.read_text())
            if live["step"] >= 5:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the diffusion stage never reported progress: " + proc.communicate()[0].decode()[-2000:])
    # the live status, rewritten while the model trains
    assert live["state"] == "running" and live["kind"] == "diffusion" and live["stage"] == "diffusion-cosine"
    assert live["images_per_s"] > 0 and live["time_left_s"] > 0 and live["elapsed_s"] > 0
    proc.send_signal(signal.SIGTERM)
    printed = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 143, printed
    assert "diffusion-cosine stopped (exit 143); run the same command again to resume" in printed
    out = tmp_path / "runs" / "r"
    state = json.loads((out / "fit-state.json").read_text())
    assert state["stages"]["autoencoder"]["status"] == "done"
    assert state["stages"]["diffusion-cosine"]["status"] == "stopped"
    assert json.loads(status.read_text())["state"] == "stopped"
    saved = json.loads((out / "diffusion-cosine" / "config.json").read_text())["progress"]["step"]
    assert saved >= 5
    # the same command, with a budget the stage has already reached: it resumes and ends at once
    argv[argv.index(next(a for a in argv if a.startswith("--diffusion-args")))] += f" --steps {saved + 2}"
    again = subprocess.run([sys.executable, "-m", "lwgen", *argv], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "stage 1/4: autoencoder (" in again.stdout and "done before, skipped" in again.stdout
    assert f"resumed from {out / 'diffusion-cosine' / 'train_state.safetensors'} at step {saved}".replace(
        str(tmp_path) + "/", "") in again.stdout + again.stderr
    state = json.loads((out / "fit-state.json").read_text())
    assert "--resume" in state["stages"]["diffusion-cosine"]["argv"] and state["state"] == "done"
    assert json.loads((out / "diffusion-cosine" / "config.json").read_text())["progress"]["step"] == saved + 2


def test_bad_rows_stop_the_fit_unless_skipped(shapes_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    df = pd.read_csv(data / "annotations.csv")
    df.loc[3, "file"] = "images/missing.png"
    (data / "images" / "broken.png").write_bytes(b"not a png")
    df.loc[7, "file"] = "images/broken.png"
    df = df.rename(columns={"file": "path"}).drop(columns=["split"])
    df.to_csv(data / "annotations.csv", index=False)
    report = check_data(data, ["shape", "color"], file_column="path")
    assert report.rows == 64 and report.images == 62
    assert [s["row"] for s in report.skipped] == [5, 9]  # CSV rows (the header is row 1)
    with pytest.raises(DataError, match="row 5: file 'images/missing.png'"):
        stage_csv(report, "path", skip_bad=False, out=tmp_path / "fit")
    csv, note = stage_csv(report, "path", skip_bad=True, out=tmp_path / "fit")
    assert "left out 2 bad rows" in note
    written = pd.read_csv(csv)
    assert len(written) == 62 and "images/missing.png" not in written["file"].tolist()
    assert (written["split"] == "val").sum() == 6 and set(written["split"]) == {"train", "val"}
    assert check_data(data, ["shape", "color"], csv=csv).skipped == []


def test_fit_stops_on_bad_rows_naming_them(shapes_dir, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    df = pd.read_csv(data / "annotations.csv")
    df.loc[3, "file"] = "images/missing.png"
    df.to_csv(data / "annotations.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert main(fit_argv(data, "runs/bad")) == 2
    err = capsys.readouterr().err
    assert "row 5: file 'images/missing.png'" in err and "--skip-bad" in err
    state = json.loads((tmp_path / "runs" / "bad" / "fit-state.json").read_text())
    assert state["state"] == "failed" and state["stages"] == {}


def test_force_replaces_what_an_earlier_fit_wrote_and_keeps_other_files(fitted, shapes_dir, tmp_path, monkeypatch,
                                                                        capsys):
    out = tmp_path / "old"
    shutil.copytree(fitted["out"], out)
    (out / "notes.txt").write_text("mine")
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    df = pd.read_csv(data / "annotations.csv")
    df.loc[0, "file"] = "images/missing.png"  # the new fit stops at its data check, after clearing --out
    df.to_csv(data / "annotations.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert main(fit_argv(data, str(out))) == 2  # another data folder: refused without --force
    assert (out / "diffusion-cosine").is_dir()
    assert main(fit_argv(data, str(out), "--force")) == 2
    assert "row 2: file 'images/missing.png'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["fit-state.json", "notes.txt"]
    state = json.loads((out / "fit-state.json").read_text())
    assert state["identity"]["data"] == str(data.resolve()) and state["state"] == "failed"


def test_the_app_lists_a_fit_beside_the_shipped_checkpoints_and_generates_from_it(fitted, monkeypatch, tmp_path):
    """From the fit's working folder, with the default search places: runs/ beside the shipped checkpoints."""
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[1] / "app.py"
    monkeypatch.chdir(fitted["work"])
    for name in ("LWGEN_CHECKPOINTS", "LWGEN_RUNS", "LWGEN_SHIPPED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LWGEN_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(app), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    box = at.selectbox(key="gen:checkpoint")
    expected = {"emoji-cosine", "emoji-linear", "runs/tiny/diffusion-cosine", "runs/tiny/diffusion-linear"}
    assert expected <= set(box.options)
    box.select("runs/tiny/diffusion-cosine").run()
    at.number_input(key="gen:count").set_value(2)
    at.number_input(key="gen:steps").set_value(2)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert len(at.image) == 2
