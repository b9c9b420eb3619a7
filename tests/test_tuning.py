"""`lwgen tune`: a tiny resumable Optuna study on synthetic shapes, its best config, and `--config` files."""
import json

import pytest
import torch

from lwgen.cli import build_parser, expand_config, main
from lwgen.diffusion import ScheduleConfig
from lwgen.tuning import Validation

TINY = ["--unet-channel-mult", "1", "2", "--unet-attention-levels", "1", "--unet-emb-dim", "32", "--unet-groups", "8",
        "--widths", "8", "16", "--batches", "4", "8", "--load-size", "32", "--threads", "1", "--no-progress",
        "--minutes-per-trial", "0.03", "--reports", "2", "--startup-trials", "2", "--val-images", "16"]


def test_study_resumes_and_its_best_config_trains(shapes_dir, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    base = ["tune", "--data", str(shapes_dir), "--attributes", "shape", "color", "--storage", storage,
            "--study", "tiny", "--out", str(tmp_path / "runs"), *TINY]
    assert main([*base, "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "0 trials so far; adding 2" in out and "study 'tiny': 2 trials (2 complete" in out
    best = tmp_path / "runs" / "tiny" / "best.json"
    assert f"--config {best}" in out
    assert main([*base, "--trials", "1"]) == 0  # the same storage and study: one more trial, not a new search
    out = capsys.readouterr().out
    assert "2 trials so far; adding 1" in out and "study 'tiny': 3 trials" in out
    import optuna

    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(len(t.intermediate_values) == 2 for t in done)  # reported every half of the budget
    assert (tmp_path / "runs" / "tiny" / "trial-0000" / "model.safetensors").is_file()
    assert not (tmp_path / "runs" / "tiny" / "trial-0000" / "train_state.safetensors").exists()

    config = json.loads(best.read_text())
    assert config["unet_base_channels"] == study.best_params["unet_base_channels"]
    assert config["lr"] == pytest.approx(study.best_params["lr"])
    trained = tmp_path / "from-config"
    assert main(["train", "diffusion", "--config", str(best), "--steps", "2", "--out", str(trained), "--log-every",
                 "1"]) == 0
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["unet"]["base_channels"] == config["unet_base_channels"]
    assert cfg["schedule"]["name"] == config["schedule"] and cfg["schedule"]["prediction"] == config["prediction"]
    assert cfg["train"]["batch"] == config["batch"] and cfg["progress"]["step"] == 2

    assert main([*base, "--trials", "1", "--attributes", "shape", "size"]) == 2  # other settings, same study name
    assert "was started with other settings" in capsys.readouterr().err


def test_config_file_gives_defaults_and_flags_override(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": "d", "attributes": ["a", "b"], "lr": 0.01, "bf16": False,
                                "unet-channel-mult": [1, 2], "skip_bad": True, "autoencoder": None}))
    parser = build_parser()
    argv = expand_config(parser, ["train", "diffusion", "--config", str(path), "--out", "o", "--lr", "0.5",
                                  "--steps", "1"])
    args = parser.parse_args(argv)
    assert args.lr == 0.5 and args.attributes == ["a", "b"] and args.bf16 is False and args.skip_bad
    assert args.unet_channel_mult == [1, 2] and args.autoencoder is None and str(args.data) == "d"
    path.write_text(json.dumps({"learning_rate": 1}))
    assert main(["train", "diffusion", "--config", str(path), "--out", "o"]) == 2
    assert "unknown setting 'learning_rate'" in capsys.readouterr().err
    assert main(["train", "diffusion", "--config", str(tmp_path / "missing.json"), "--out", "o"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_validation_measures_every_schedule_at_the_same_noise_levels():
    val = Validation(torch.zeros(64, 3, 4, 4), torch.zeros(64, 1, dtype=torch.long), max_images=32)
    assert len(val) == 32
    for name in ("linear", "cosine"):
        ac = ScheduleConfig(name).alphas_cumprod()
        t = val.timesteps(ac)
        logsnr = (ac[t] / (1 - ac[t])).log()
        assert (logsnr - val.logsnr).abs().max() < 0.1, name
