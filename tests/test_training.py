"""Trainer: exact resume after SIGKILL, NaN stop, LR and EMA schedules, the CLI on synthetic data."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from lwgen.checkpoint import TRAIN_STATE, load_checkpoint, read_tensors
from lwgen.cli import main
from lwgen.training import TrainConfig, TrainingError, ema_decay, lr_factor
from lwgen.training.trainer import Trainer


def _train_cmd(data, out, steps, *extra):
    return [sys.executable, "-m", "lwgen", "train", "diffusion", "--data", str(data), "--out", str(out),
            "--attributes", "shape", "color", "--load-size", "32", "--unet-resolution", "16",
            "--unet-base-channels", "16", "--unet-channel-mult", "1", "2", "--unet-attention-levels", "1",
            "--unet-emb-dim", "32", "--unet-groups", "8", "--batch", "8", "--steps", str(steps), "--warmup", "3",
            "--threads", "1", "--log-every", "1", "--no-progress", "--sample-minutes", "1000", *extra]


def test_killed_run_resumes_to_the_same_weights(shapes_dir, tmp_path):
    steps = 40
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(shapes_dir, ref, steps), check=True, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(shapes_dir, run, steps, "--save-minutes", "0"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / TRAIN_STATE).is_file():
            try:
                step = int(read_tensors(run / TRAIN_STATE)[1]["step"])
            except Exception:  # caught mid-rename on some filesystems; try again
                step = 0
            if step >= 5:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(read_tensors(run / TRAIN_STATE)[1]["step"])
    assert 5 <= killed_at < steps, "the run should have been killed part-way"
    subprocess.run(_train_cmd(shapes_dir, run, steps, "--resume"), check=True, capture_output=True)
    cfg_a, a = load_checkpoint(ref)
    cfg_b, b = load_checkpoint(run)
    assert cfg_b["progress"]["step"] == steps
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _NanTask:
    def __init__(self, model):
        self.model = model
        self.calls = 0

    def loss(self, idx, g):
        self.calls += 1
        p = next(self.model.parameters())
        return p.sum() * (float("nan") if self.calls > 3 else 0.0)


def test_nan_loss_stops_without_overwriting_the_checkpoint(tiny_checkpoints, tmp_path):
    from lwgen.pipeline import UpscaleModel

    model = UpscaleModel.from_checkpoint(tiny_checkpoints["upscaler"])
    task = _NanTask(model)
    trainer = Trainer(task, TrainConfig(steps=10, batch=2, log_every=1), tmp_path / "nan", torch.ones(4),
                      progress=False)
    with pytest.raises(TrainingError, match="loss is nan at step 3"):
        trainer.run()
    assert not (tmp_path / "nan" / "model.safetensors").exists()


def test_lr_warmup_and_cosine():
    c = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, 0.0, c) == pytest.approx(0.1)
    assert lr_factor(9, 0.09, c) == pytest.approx(1.0)
    assert lr_factor(50, 0.5, c) == pytest.approx(0.55)
    assert lr_factor(100, 1.0, c) == pytest.approx(0.1)


def test_ema_decay_warms_up():
    assert ema_decay(0, 0.999) == pytest.approx(0.1)
    assert ema_decay(10_000, 0.999) == 0.999


def test_train_config_needs_a_budget():
    with pytest.raises(ValueError, match="give a budget"):
        TrainConfig()


def test_cli_train_and_sample(shapes_dir, tmp_path, capsys):
    out = tmp_path / "ck"
    assert subprocess.run(_train_cmd(shapes_dir, out, 3), capture_output=True).returncode == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["images"] > 0 and cfg["attributes"] == ["shape", "color"]
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(out), "--set", "shape=circle", "-n", "4", "--steps", "3",
                 "--out", str(grid)]) == 0
    from PIL import Image
    assert Image.open(grid).size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    assert main(["sample", "--checkpoint", str(out), "--set", "shape=hexagon", "--out", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "unknown value 'hexagon' for attribute 'shape'; valid values: circle, cross, square, triangle" in err
    assert main(["sample", "--checkpoint", str(out), "--set", "shape", "--out", str(grid)]) == 2
    assert main(["sample", "--checkpoint", str(tmp_path / "missing"), "--out", str(grid)]) == 2
    assert main(["info", "--checkpoint", str(out)]) == 0
    assert "GMAC per forward" in capsys.readouterr().out


def test_autoencoder_fine_tune_starts_from_the_init_weights(shapes_dir, tiny_checkpoints, tmp_path, capsys):
    """`train autoencoder --init`: the init's architecture and weights, recorded in the config; a conflicting
    architecture flag or a checkpoint of another kind is refused, naming it."""
    base = ["train", "autoencoder", "--data", str(shapes_dir), "--load-size", "32", "--size", "32", "--batch", "8",
            "--warmup", "1", "--threads", "1", "--no-progress"]
    tiny = ["--ae-channels", "8", "16", "--ae-groups", "4"]
    assert main([*base, *tiny, "--out", str(tmp_path / "ae"), "--steps", "3"]) == 0
    # one step at a vanishing learning rate: the fine-tune's weights are the init's
    assert main([*base, "--init", str(tmp_path / "ae"), "--out", str(tmp_path / "ft"), "--steps", "1",
                 "--lr", "1e-12"]) == 0
    assert "started from " + str(tmp_path / "ae") in capsys.readouterr().out
    (_, init), (config, tuned) = load_checkpoint(tmp_path / "ae"), load_checkpoint(tmp_path / "ft")
    assert config["autoencoder"]["channels"] == [8, 16]
    assert config["init"]["checkpoint"] == str(tmp_path / "ae") and config["init"]["steps"] == 3
    for name, w in init.items():
        if name.startswith("ema."):
            assert torch.allclose(tuned[name], w, atol=1e-6), name
    assert main([*base, "--init", str(tmp_path / "ae"), "--ae-channels", "8", "32", "--out",
                 str(tmp_path / "x"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"--init {tmp_path / 'ae'} has another architecture: --ae-channels 8 32 (checkpoint: 8 16)" in err
    assert main([*base, "--init", str(tmp_path / "ft" / "missing"), "--out", str(tmp_path / "y"), "--steps", "1"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([*base, "--init", str(tiny_checkpoints["cosine"]), "--out", str(tmp_path / "z"), "--steps", "1"]) == 2
    assert "not an autoencoder checkpoint (kind='diffusion')" in capsys.readouterr().err


def test_logit_normal_noise_levels_favour_the_middle():
    from lwgen.training.tasks import draw_timesteps

    def share_in_middle(how: str) -> float:
        t = draw_timesteps(how, 1000, 20_000, torch.Generator().manual_seed(0))
        assert 0 <= int(t.min()) and int(t.max()) < 1000
        return float(((t >= 250) & (t < 750)).float().mean())

    assert abs(share_in_middle("uniform") - 0.5) < 0.02
    assert share_in_middle("logit-normal") > 0.7  # P(|N(0, 1)| < logit(0.75) = 1.10) = 0.73
    with pytest.raises(ValueError, match="noise_levels"):
        TrainConfig(steps=1, noise_levels="beta")
