"""Checkpoint folders: round trip, no pickle, clear errors."""
import json

import pytest
import torch

from lwgen.checkpoint import CheckpointError, load_checkpoint
from lwgen.cli import main
from lwgen.pipeline import DiffusionModel, UpscaleModel, load_model


def test_round_trip_reproduces_samples(tiny_checkpoints, tmp_path):
    m = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    config, tensors = load_checkpoint(tiny_checkpoints["cosine"])
    assert config["kind"] == "diffusion" and config["schedule"]["name"] == "cosine"
    assert any(k.startswith("ema.") for k in tensors) and any(k.startswith("model.") for k in tensors)
    assert config["progress"]["step"] == 4 and config["vocab"]["shape"] == m.vocab["shape"]
    lab = m.encode({"shape": "circle"}).expand(2, -1)
    a = m.generate(m.condition(lab), seeds=[0, 1], steps=3, bf16=False)
    assert torch.equal(a, load_model(tiny_checkpoints["cosine"]).generate(m.condition(lab), [0, 1], 3, bf16=False))


def test_release_export_is_half_precision_and_loads(tiny_checkpoints, tmp_path):
    out = tmp_path / "release"
    assert main(["export", "--checkpoint", str(tiny_checkpoints["cosine"]), "--out", str(out)]) == 0
    _, tensors = load_checkpoint(out)
    assert all(k.startswith("ema.") for k in tensors)
    assert {v.dtype for v in tensors.values() if v.is_floating_point()} == {torch.float16}
    m = DiffusionModel.from_checkpoint(out)
    ref = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    assert torch.allclose(m.unet.stem.weight, ref.unet.stem.weight, atol=1e-3)


def test_loading_never_unpickles(tiny_checkpoints, monkeypatch):
    import pickle

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_model(tiny_checkpoints["cosine"])
    load_model(tiny_checkpoints["upscaler"])


def _copy(src, dst):
    dst.mkdir()
    for f in ("config.json", "model.safetensors"):
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_config_that_does_not_match_the_tensors(tiny_checkpoints, tmp_path):
    ck = _copy(tiny_checkpoints["cosine"], tmp_path / "bad")
    cfg = json.loads((ck / "config.json").read_text())
    cfg["unet"]["base_channels"] = 24
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"bad: weights do not match config.json: .*shape mismatches"):
        DiffusionModel.from_checkpoint(ck)


def test_missing_and_corrupt_files(tiny_checkpoints, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_model(tmp_path / "nope")
    ck = _copy(tiny_checkpoints["upscaler"], tmp_path / "up")
    (ck / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        UpscaleModel.from_checkpoint(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_model(ck)
    with pytest.raises(CheckpointError, match="not a diffusion checkpoint"):
        DiffusionModel.from_checkpoint(tiny_checkpoints["upscaler"])
