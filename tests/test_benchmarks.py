"""The pieces of the budgeted benchmarks that decide their numbers: class mapping, the VAE baseline, the
time-to-match rule and the table writer (the runs themselves take minutes to hours: benchmarks/)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import markdown_table  # noqa: E402
from recipes import ConditionalVAE, JointClass, VAETask  # noqa: E402
from time_to_quality import time_to_match  # noqa: E402

from lwgen.training import TrainConfig  # noqa: E402

VOCAB = {"group": ["a", "b"], "subgroup": ["a1", "a2", "b1"]}


def test_joint_class_maps_seen_combinations_and_sends_the_rest_to_null():
    labels = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])
    joint = JointClass(VOCAB, labels)
    assert joint.null == 3
    cond = joint.condition(torch.stack([joint.encode({"group": "b", "subgroup": "b1"}),
                                        joint.encode({"group": "a"}),  # a free attribute: no class of its own
                                        joint.encode({"group": "b", "subgroup": "a1"})]))  # never seen together
    assert cond.tolist() == [2, 3, 3]


def test_vae_samples_depend_only_on_their_seed_and_condition():
    torch.manual_seed(0)
    vae = ConditionalVAE(VOCAB, widths=(8, 8, 16, 16), latent=8, cond_dim=16).eval()
    labels = torch.tensor([[0, 1], [1, 2], [-1, -1]])
    cond = vae.condition(labels)
    both = vae.generate(cond, seeds=[5, 6, 7], bf16=False)
    alone = vae.generate(cond[1:2], seeds=[6], bf16=False)
    assert both.shape == (3, 3, 64, 64) and both.abs().max() <= 1
    assert torch.allclose(both[1:2], alone, atol=1e-5)
    assert not torch.allclose(both[0], both[1])


def test_vae_loss_trains():
    torch.manual_seed(0)
    vae = ConditionalVAE(VOCAB, widths=(8, 8, 16, 16), latent=8, cond_dim=16)
    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    task = VAETask(vae, images, torch.tensor([[0, 0], [0, 1], [1, 2]] * 2), TrainConfig(steps=1, bf16=False))
    loss = task.loss(torch.arange(6), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and vae.encoder[0][0].weight.grad.abs().sum() > 0


def test_time_to_match_finds_the_first_budget_at_or_below_the_reference():
    rows = [{"recipe": "reference", "minutes": 10, "fid": 90.0}, {"recipe": "reference", "minutes": 60, "fid": 40.0},
            {"recipe": "lwgen", "minutes": 10, "fid": 45.0}, {"recipe": "lwgen", "minutes": 30, "fid": 12.0},
            {"recipe": "lwgen", "minutes": 60, "fid": 9.0}]
    m = time_to_match(rows, "lwgen", "reference")
    assert m["reference_fid"] == 40.0 and m["first_minutes_at_or_below"] == 30
    rows[2]["fid"] = 40.0
    assert time_to_match(rows, "lwgen", "reference")["first_minutes_at_or_below"] == 10
    assert time_to_match(rows[:2], "lwgen", "reference") is None


def test_markdown_table_formats_missing_and_float_cells():
    text = markdown_table([{"a": 0.123456, "b": None}, {"a": 12345.6, "b": "x"}], [("a", "A"), ("b", "B")])
    assert text.splitlines() == ["| A | B |", "|---|---|", "| 0.123 | - |", "| 12346 | x |"]
