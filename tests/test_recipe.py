"""The typed run recipe: one `prepare`, flags generated with their help, and a checkpoint that retrains itself."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

from lwgen.cli import build_parser, main
from lwgen.pipeline import DiffusionModel, load_model
from lwgen.recipe import load_autoencoder, recipe_flags

TINY_FLAGS = ["--unet-resolution", "16", "--unet-base-channels", "16", "--unet-channel-mult", "1", "2",
              "--unet-attention-levels", "1", "--unet-groups", "8", "--unet-head-dim", "16", "--unet-emb-dim", "32",
              "--batch", "8", "--load-size", "32", "--no-progress"]
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def _train_parsers() -> dict[str, argparse.ArgumentParser]:
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    return dict(train._subparsers._group_actions[0].choices)  # noqa: SLF001


def test_every_training_flag_is_described_and_each_kind_shows_only_its_own():
    parsers = _train_parsers()
    for name, parser in parsers.items():
        for action in parser._actions:  # noqa: SLF001
            if action.option_strings and action.dest != "help":
                assert (action.help or "").strip(), f"train {name} {action.option_strings[0]} has no description"
    unit_flags = {o for k in ("autoencoder", "upscaler") for a in parsers[k]._actions for o in a.option_strings}  # noqa: SLF001
    for diffusion_only in ("--cond-drop", "--attr-drop", "--text-drop", "--min-snr-gamma", "--balance-power"):
        assert diffusion_only not in unit_flags
    schedule = next(a for a in parsers["diffusion"]._actions if "--schedule" in a.option_strings)  # noqa: SLF001
    assert set(schedule.choices) == {"linear", "cosine", "sigmoid"}
    assert any("--schedule-cosine-s" in a.option_strings for a in parsers["diffusion"]._actions)  # noqa: SLF001


def test_every_flag_of_every_command_is_described():
    def undescribed(parser: argparse.ArgumentParser, path: str) -> list[str]:
        if re.search(r"\(default[^)]*\)\s+\(default", parser.format_help()):
            return [f"{path}: a flag states its default twice"]
        missing = []
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for name, child in action.choices.items():
                    missing += undescribed(child, f"{path} {name}")
            elif action.option_strings and action.dest != "help" and not (action.help or "").strip():
                missing.append(f"{path} {action.option_strings[0]}")
        return missing

    assert undescribed(build_parser(), "lwgen") == []


def test_a_checkpoint_config_trains_the_same_run_again(shapes_dir, tmp_path):
    first = tmp_path / "first"
    assert main(["train", "diffusion", "--data", str(shapes_dir), "--attributes", "shape", "color",
                 "--schedule", "linear", "--schedule-beta-end", "0.015", "--lr", "0.003", "--attr-drop", "0.3",
                 "--text-column", "", "--steps", "2", "--out", str(first), *TINY_FLAGS]) == 0
    again = tmp_path / "again"
    # no sub-command: it follows from the checkpoint; the command line overrides the budget
    assert main(["train", "--config", str(first / "config.json"), "--steps", "1", "--out", str(again)]) == 0
    a, b = (json.loads((f / "config.json").read_text()) for f in (first, again))
    for key in ("unet", "schedule", "vocab", "attributes", "data", "text", "recipe", "autoencoder"):
        assert a[key] == b[key], key
    assert a["schedule"]["name"] == "linear" and a["schedule"]["beta_end"] == 0.015
    budget_free = [{k: v for k, v in c["train"].items() if k != "steps"} for c in (a, b)]
    assert budget_free[0] == budget_free[1]
    assert (a["train"]["steps"], b["train"]["steps"]) == (2, 1)


def test_a_latent_generator_retrains_with_the_autoencoder_it_carries(tiny_latent_checkpoint, tmp_path):
    config = json.loads((tiny_latent_checkpoint / "config.json").read_text())
    command, flags = recipe_flags(config, tiny_latent_checkpoint)
    assert command == "diffusion" and flags["attributes"] == config["attributes"]
    assert flags["autoencoder"].endswith("ae")  # the recorded autoencoder checkpoint of the run
    config["recipe"]["autoencoder"] = None  # a release without the record: the generator's own autoencoder
    assert recipe_flags(config, tiny_latent_checkpoint)[1]["autoencoder"] == str(tiny_latent_checkpoint)
    ae = load_autoencoder(tiny_latent_checkpoint)
    model = DiffusionModel.from_checkpoint(tiny_latent_checkpoint)
    for k, v in model.autoencoder.state_dict().items():
        assert torch.equal(ae.net.state_dict()[k], v), k


def test_the_wrong_sub_command_for_a_checkpoint_is_named(tiny_checkpoints, capsys):
    config = tiny_checkpoints["upscaler"] / "config.json"
    assert main(["train", "diffusion", "--config", str(config), "--out", "unused"]) == 2
    assert "upscaler checkpoint" in capsys.readouterr().err
    command, flags = recipe_flags(json.loads(config.read_text()), config.parent)
    assert command == "upscaler" and flags["up_channels"] == 8 and "cond_drop" not in flags


def test_every_kind_loads_through_load_model():
    classifier = load_model(SHIPPED / "classifier")
    assert classifier.checkpoint_config["kind"] == "classifier" and "group" in classifier.vocab


def test_generate_batches_itself_and_reports_progress(tiny_checkpoints):
    model = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    cond = model.condition(model.encode({}).expand(5, -1))
    whole = model.generate(cond, seeds=range(5), steps=3, bf16=False)
    seen: list[float] = []
    parts = model.generate(cond, seeds=range(5), steps=3, bf16=False, batch=2, progress=seen.append)
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-5)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 3 * 3


def test_the_autoencoder_reports_held_out_reconstruction(shapes_dir, tmp_path, capsys):
    out = tmp_path / "ae"
    assert main(["train", "autoencoder", "--data", str(shapes_dir), "--out", str(out), "--steps", "1", "--size", "32",
                 "--load-size", "32", "--ae-channels", "8", "16", "--ae-groups", "4", "--no-progress"]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("validation"))
    assert "held-out images at 32 px" in line and "L1 0." in line and "PSNR" in line
    assert "cond_drop" not in json.loads((out / "config.json").read_text())["train"]  # a diffusion-only setting


def test_a_checkpoint_lists_the_combinations_it_was_trained_on(tiny_checkpoints, shapes_dir):
    from lwgen.projection.combinations import combinations_from_config
    from lwgen.recipe import DataConfig

    model = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    known = combinations_from_config(model.checkpoint_config)
    table = DataConfig(shapes_dir, list(model.vocab), load_size=32).load(progress=False)
    assert known is not None
    assert {tuple(r) for r in known.tolist()} == {tuple(r) for r in table.labels.tolist()}


def test_the_checkpoint_record_is_typed_and_tolerates_a_damaged_entry():
    from lwgen.record import CheckpointRecord

    config = json.loads((SHIPPED / "emoji-cosine" / "config.json").read_text())
    record = CheckpointRecord.parse(config)
    assert record.kind == "diffusion" and record.attributes[:2] == ("group", "subgroup")
    assert record.text_encoder == "all-MiniLM-L6-v2" and record.text_column == "text"
    assert record.continued is not None and record.continued.steps == config["init"]["steps"]
    assert record.total_steps == config["progress"]["step"] + config["init"]["steps"]
    assert record.progress.final_loss == config["progress"]["loss_history"][-1][1]
    damaged = {**config, "progress": {"step": "many", "loss_history": [[1, "x"]]}, "init": [], "text": None}
    bad = CheckpointRecord.parse(damaged)
    assert bad.total_steps is None and bad.progress.final_loss is None and bad.continued is None
    assert bad.text_encoder is None
