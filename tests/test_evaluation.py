"""Tests for lwgen.evaluation: metrics, the domain classifier, generator / up-scaler evaluation and the CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lwgen.checkpoint import CheckpointError, read_config
from lwgen.cli import main
from lwgen.data import DataError, ImageTable
from lwgen.evaluation import (
    Classifier,
    ClassifierConfig,
    evaluate_autoencoder,
    evaluate_generator,
    evaluate_upscaler,
    train_classifier,
)
from lwgen.evaluation.augment import AugmentConfig, augment, gaussian_blur
from lwgen.evaluation.classifier import derive_hierarchy
from lwgen.evaluation.conditions import condition_rows
from lwgen.evaluation.evaluate import generator_labels, weak_judge
from lwgen.evaluation.metrics import (
    fid,
    frechet_distance,
    kid,
    precision_recall,
    psnr,
    quantize,
    rgb_to_y,
    ssim,
    topk_accuracy,
)
from lwgen.evaluation.train import ClassifierTask
from lwgen.pipeline import DiffusionModel, UpscaleModel
from lwgen.training import TrainConfig

torch.set_num_threads(1)

TINY_ARCH = ClassifierConfig(image_size=32, stem_channels=8, widths=(8, 16), blocks=(1, 1))


def gaussians(n: int = 600, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


# --- distribution metrics ----------------------------------------------------------------------------------
def test_fid_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
    a, b = gaussians()
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    same = fid(a, b)
    assert same < 0.5
    shifts = [fid(a, b + s) for s in (0.5, 1.0, 2.0)]
    assert same < shifts[0] < shifts[1] < shifts[2]
    assert shifts[1] == pytest.approx(8.0, rel=0.15)  # |shift|^2 summed over 8 dimensions


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 0.0, 2.0])
    v1, v2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    expected = 5.0 + float(((v1.sqrt() - v2.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    a, b = gaussians()
    same_mean, same_std = kid(a, b, subsets=20, subset_size=200)
    shifted_mean, _ = kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same_mean) < 0.05 and same_std >= 0
    assert shifted_mean > 10 * max(abs(same_mean), 1e-3)


def test_precision_recall_on_toy_gaussians():
    real, fake = gaussians(400, 4)
    p, r = precision_recall(real, fake, k=3)
    assert p > 0.6 and r > 0.6
    p_narrow, r_narrow = precision_recall(real, 0.2 * fake, k=3)  # collapsed: precise, no coverage
    assert p_narrow > 0.95 and r_narrow < 0.2
    p_far, r_far = precision_recall(real, fake + 20, k=3)
    assert p_far == 0 and r_far == 0


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError):
        fid(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError):
        precision_recall(torch.zeros(3, 2), torch.zeros(3, 2), k=3)


def test_topk_accuracy_skips_negative_labels():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [0.0, 1.0, 2.0]])
    assert topk_accuracy(logits, torch.tensor([0, 2, 0]), 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, torch.tensor([0, 2, 0]), 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, torch.tensor([0, -1, -1]), 1) == 1.0
    assert math.isnan(topk_accuracy(logits, torch.full((3,), -1), 1))


# --- fidelity metrics --------------------------------------------------------------------------------------
def test_rgb_to_y_uses_the_bt601_studio_range():
    assert rgb_to_y(-torch.ones(1, 3, 2, 2)).unique().item() == pytest.approx(16.0)
    assert rgb_to_y(torch.ones(1, 3, 2, 2)).unique().item() == pytest.approx(235.0)


def test_psnr_is_infinite_for_identical_images_and_matches_a_known_error():
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    assert torch.isinf(psnr(x, x)).all()
    delta = 2 * 10 / 219  # shifts Y by exactly 10 levels
    assert psnr(x, x + delta) == pytest.approx(torch.full((2,), 10 * math.log10(255 ** 2 / 100)), rel=1e-6)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert ssim(x, x) == pytest.approx(torch.ones(2, dtype=torch.float64))
    noise = torch.randn(x.shape, generator=g)
    slight, strong = ssim(x, (x + 0.1 * noise).clamp(-1, 1)), ssim(x, (x + 0.5 * noise).clamp(-1, 1))
    assert (strong < slight).all() and (slight < 0.99).all() and (strong > -1).all()


def test_border_crop_ignores_the_border():
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[..., :4, :] = 1.0
    assert torch.isfinite(psnr(x, y)).all()
    assert torch.isinf(psnr(x, y, crop=4)).all()
    assert ssim(x, y, crop=4).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        psnr(x, torch.zeros(1, 3, 16, 16))


def test_quantize_lands_on_8_bit_levels():
    q = quantize(torch.linspace(-1.2, 1.2, 101))
    levels = (q + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4) and q.min() == -1 and q.max() == 1


# --- classifier --------------------------------------------------------------------------------------------
VOCAB = {"group": ["a", "b", "c"], "subgroup": [f"s{i}" for i in range(7)]}


def test_classifier_shapes_and_resizing():
    model = Classifier(ClassifierConfig(), VOCAB).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    feats, logits = model(x)
    assert feats.shape == (2, 256) and logits["group"].shape == (2, 3) and logits["subgroup"].shape == (2, 7)
    assert torch.allclose(model.features(x), feats)
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 256)  # up-sampled
    assert model.logits(torch.rand(2, 3, 256, 256))["group"].shape == (2, 3)  # area-downsampled
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2.5e6
    with pytest.raises(ValueError, match="64 px"):
        model(torch.zeros(1, 3, 32, 32))


def test_classifier_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Classifier(TINY_ARCH, VOCAB).eval()
    model.save(tmp_path / "cls", {"accuracy": {"val": {"group_top1": 0.5}}})
    loaded = Classifier.from_checkpoint(tmp_path / "cls")
    assert loaded.vocab == VOCAB and loaded.config == TINY_ARCH
    assert loaded.checkpoint_config["accuracy"]["val"]["group_top1"] == 0.5
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.allclose(loaded.features(x), model.features(x), atol=2e-2)  # fp16 weights
    cfg = read_config(tmp_path / "cls")
    cfg["kind"] = "diffusion"
    (tmp_path / "cls" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a classifier"):
        Classifier.from_checkpoint(tmp_path / "cls")


def test_augment_keeps_shape_range_and_white_background():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    y = augment(x, g)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, again)
    white = torch.ones(4, 3, 32, 32)
    clean = AugmentConfig(p_affine=1.0, p_noise=0.0, p_tone=0.0, p_blur=1.0)
    assert torch.allclose(augment(white, g, clean), white, atol=1e-5)
    assert torch.allclose(gaussian_blur(x, torch.full((6,), 1e-4)), x, atol=1e-5)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, shapes_dir) -> Path:
    """A tiny shape/color classifier trained for two steps on the shapes fixture."""
    out = tmp_path_factory.mktemp("classifier") / "classifier"
    train_classifier(shapes_dir, out, attributes=["shape", "color"], steps=2, minutes=0, batch=8,
                     architecture=TINY_ARCH, load_size=32, progress=False)
    return out


def test_train_classifier_writes_a_loadable_checkpoint(tiny_classifier):
    cfg = read_config(tiny_classifier)
    assert cfg["kind"] == "classifier" and cfg["architecture"]["widths"] == [8, 16]
    assert set(cfg["accuracy"]["val"]) == {"shape_top1", "color_top1"}
    assert 0 <= cfg["accuracy"]["val"]["shape_top1"] <= 1 and cfg["progress"]["step"] == 2
    assert cfg["dtype"] == "float16" and (tiny_classifier / "model.safetensors").stat().st_size < 5e6
    assert not (tiny_classifier / "train_state.safetensors").exists()
    assert Classifier.from_checkpoint(tiny_classifier).attributes == ["shape", "color"]


# --- evaluation --------------------------------------------------------------------------------------------
def test_condition_rows_follow_the_table():
    rows = condition_rows(5, 12, seed=1)
    assert len(rows) == 12 and sorted(rows[:10].tolist()) == sorted(list(range(5)) * 2)


def test_generator_labels_leave_unknown_values_free(tiny_checkpoints):
    model = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    values = [{"shape": model.vocab["shape"][0], "color": "violet"}, {"shape": "hexagon"}]
    labels, dropped = generator_labels(model, values)
    assert labels.shape == (2, 3) and labels[0, 0] == 0 and (labels[0, 1:] < 0).all() and (labels[1] < 0).all()
    assert dropped == {"shape": 1, "color": 2, "size": 2}


def test_evaluate_generator_on_tiny_models(tiny_checkpoints, tiny_classifier, shapes_dir):
    model = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    classifier = Classifier.from_checkpoint(tiny_classifier)
    val = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    result = evaluate_generator(model, classifier, val, n=8, steps=2, batch=4, progress=False)
    for key in ("fid", "kid", "kid_std", "shape_top1", "color_top1", "precision", "recall", "images_per_s"):
        assert isinstance(result[key], float) and math.isfinite(result[key]), key
    assert result["fid"] >= 0 and 0 <= result["precision"] <= 1 and result["n"] == 8 and result["resolution"] == 16
    assert result["pr_samples"] == len(val)
    again = evaluate_generator(model, classifier, val, n=8, steps=2, batch=8, progress=False)  # cached real features
    assert again["fid"] == pytest.approx(result["fid"], rel=1e-3)


def test_a_classifier_no_better_than_the_majority_guess_is_called_too_weak_to_judge():
    classifier = Classifier(ClassifierConfig(), VOCAB)
    targets = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 3], [2, 4]])  # group: 60 % are "a"
    right = {"group": F.one_hot(targets[:, 0], 3).float(), "subgroup": F.one_hot(targets[:, 1], 7).float()}
    assert weak_judge(classifier, right, targets) == []
    always_a = {**right, "group": F.one_hot(torch.zeros(5, dtype=torch.long), 3).float()}  # 60 %, the majority
    (warning,) = weak_judge(classifier, always_a, targets)
    assert "'group'" in warning and "60 %" in warning
    unknown = targets.clone()
    unknown[:, 0] = -1  # no real row has a group the classifier knows: nothing to judge
    assert weak_judge(classifier, always_a, unknown) == []


def test_evaluate_generator_on_a_latent_model(tiny_latent_checkpoint, tiny_classifier, shapes_dir):
    model = DiffusionModel.from_checkpoint(tiny_latent_checkpoint)
    val = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    result = evaluate_generator(model, Classifier.from_checkpoint(tiny_classifier), val, n=6, steps=2, batch=6,
                                progress=False, cache=False)
    assert result["resolution"] == model.resolution and math.isfinite(result["fid"])


def test_evaluate_upscaler_on_tiny_model(tiny_checkpoints, shapes_dir):
    upscaler = UpscaleModel.from_checkpoint(tiny_checkpoints["upscaler"])
    val = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    result = evaluate_upscaler(upscaler, val, n=4, batch=2, progress=False)
    assert result["n"] == 4 and result["scale"] == 4
    assert 5 < result["psnr_bicubic"] < 60 and 0 < result["ssim_bicubic"] <= 1
    assert result["gain_db"] == pytest.approx(result["psnr"] - result["psnr_bicubic"], abs=1e-3)


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_eval_diffusion_and_upscaler(tiny_checkpoints, tiny_classifier, shapes_dir, tmp_path, capsys):
    common = ["--classifier", str(tiny_classifier), "--data", str(shapes_dir), "--load-size", "32",
              "--no-progress", "--threads", "1"]
    out = tmp_path / "gen.json"
    rc = main(["eval", "--checkpoint", str(tiny_checkpoints["linear"]), "--n", "6", "--steps", "2",
               "--sampler", "ddim", "--out", str(out), *common])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "diffusion" and {"fid", "kid", "shape_top1", "precision", "recall"} <= set(result)
    assert "fid" in capsys.readouterr().out
    out = tmp_path / "up.json"
    assert main(["eval", "--checkpoint", str(tiny_checkpoints["upscaler"]), "--n", "3", "--out", str(out),
                 *common]) == 0
    assert {"psnr", "ssim", "psnr_bicubic", "ssim_bicubic", "gain_db"} <= set(json.loads(out.read_text()))


def test_mixup_blends_pairs_of_images_and_their_losses():
    torch.manual_seed(0)
    model = Classifier(TINY_ARCH, {"shape": ["a", "b", "c"]})
    images = torch.randint(0, 256, (6, 3, TINY_ARCH.image_size, TINY_ARCH.image_size), dtype=torch.uint8)
    labels = torch.tensor([[0], [1], [2], [0], [1], [-1]])
    config = TrainConfig(batch=6, steps=1, bf16=False)
    plain = ClassifierTask(model, images, labels, config, AugmentConfig(p_affine=0, p_blur=0, p_resample=0,
                                                                          p_noise=0, p_tone=0))
    mixed = ClassifierTask(model, images, labels, config, plain.augment_config, mixup=0.4)
    idx = torch.arange(6)
    model.eval()
    a = plain.loss(idx, torch.Generator().manual_seed(1))
    b = mixed.loss(idx, torch.Generator().manual_seed(1))
    assert torch.isfinite(a) and torch.isfinite(b) and not torch.isclose(a, b)
    with pytest.raises(ValueError, match="mixup"):
        ClassifierTask(model, images, labels, config, mixup=-1)


def test_the_text_head_adds_a_cosine_loss_for_rows_with_text():
    torch.manual_seed(0)
    arch = ClassifierConfig(image_size=32, stem_channels=8, widths=(8, 16), blocks=(1, 1), text_dim=4)
    model = Classifier(arch, {"shape": ["a", "b"]}).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([[0], [1], [0], [1]])
    clean = AugmentConfig(p_affine=0, p_blur=0, p_resample=0, p_noise=0, p_tone=0)
    config = TrainConfig(batch=4, steps=1, bf16=False)
    text = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    idx = torch.arange(4)

    def loss(**kw) -> torch.Tensor:
        return ClassifierTask(model, images, labels, config, clean, **kw).loss(idx, torch.Generator())

    plain = loss()
    assert loss(text=text, text_weight=2.0) > plain
    assert torch.isclose(loss(text=torch.zeros(4, 4)), plain)  # rows without text do not count
    with pytest.raises(ValueError, match="text head"):
        ClassifierTask(Classifier(TINY_ARCH, {"shape": ["a"]}), images, labels, config, text=text)


def test_train_classifier_with_a_text_column_learns_a_text_head(shapes_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    table = pd.read_csv(data / "annotations.csv")
    table["text"] = table["color"] + " " + table["shape"]
    table.to_csv(data / "annotations.csv", index=False)
    out = tmp_path / "cls"
    config = train_classifier(data, out, attributes=["shape"], steps=2, minutes=0, batch=8, architecture=TINY_ARCH,
                              load_size=32, progress=False, text_column="text")
    assert config["architecture"]["text_dim"] == 384 and config["train"]["text_column"] == "text"
    assert Classifier.from_checkpoint(out).text_head is not None
    with pytest.raises(DataError, match="words"):
        train_classifier(data, tmp_path / "other", attributes=["shape"], steps=1, minutes=0, architecture=TINY_ARCH,
                         load_size=32, progress=False, text_column="words")


def test_a_finer_attribute_that_decides_a_coarser_one_scores_it_too(tmp_path):
    vocab = {"group": ["a", "b"], "subgroup": ["a1", "a2", "b1"], "color": ["red", "blue", "green", "white"]}
    labels = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 2, 0], [1, 2, 3], [0, 0, 1], [-1, 2, 0]])
    hierarchy = derive_hierarchy(labels, vocab)
    assert set(hierarchy) == {"group"} and hierarchy["group"]["from"] == "subgroup"  # colour decides nothing
    assert hierarchy["group"]["p"] == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    arch = ClassifierConfig(image_size=32, stem_channels=8, widths=(8, 16), blocks=(1, 1))
    model = Classifier(arch, vocab)
    model.set_hierarchy(hierarchy)
    logits = {"group": torch.tensor([[2.0, 0.0]]), "subgroup": torch.tensor([[0.0, 0.0, 5.0]]),
              "color": torch.zeros(1, 4)}
    combined = model.combine(logits)
    assert combined["group"].argmax(1).item() == 1  # the subgroup head's confident b1 outweighs the group head
    assert torch.equal(combined["subgroup"], logits["subgroup"])
    model.save(tmp_path / "c")
    assert Classifier.from_checkpoint(tmp_path / "c").hierarchy["group"][0] == "subgroup"
    config = {**model.config_dict(), "hierarchy": {"group": {"from": "subgroup", "p": [[1.0, 0.0]]}}}
    with pytest.raises(CheckpointError, match="hierarchy subgroup -> group"):
        Classifier.from_config(config)


def test_cli_train_classifier_and_errors(shapes_dir, tmp_path, capsys):
    out = tmp_path / "cls"
    rc = main(["eval", "train-classifier", "--data", str(shapes_dir), "--out", str(out), "--steps", "1",
               "--minutes", "0", "--batch", "4", "--image-size", "32", "--widths", "8", "16", "--blocks", "1", "1",
               "--load-size", "32", "--attributes", "shape", "--no-progress", "--threads", "1", "--mixup", "0.4",
               "--dropout", "0.2"])
    cfg = read_config(out)
    assert rc == 0 and cfg["vocab"]["shape"]
    assert cfg["train"]["mixup"] == 0.4 and cfg["architecture"]["dropout"] == 0.2
    assert "shape_top1" in capsys.readouterr().out
    assert main(["eval"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "missing")]) == 2


def test_cli_eval_autoencoder_and_classifier(tiny_latent_checkpoint, tiny_classifier, shapes_dir, tmp_path):
    common = ["--classifier", str(tiny_classifier), "--data", str(shapes_dir), "--load-size", "32",
              "--no-progress", "--threads", "1", "--no-cache"]
    out = tmp_path / "ae.json"
    assert main(["eval", "--checkpoint", str(tiny_latent_checkpoint.parent / "ae"), "--out", str(out), *common]) == 0
    ae = json.loads(out.read_text())
    assert ae["kind"] == "autoencoder" and ae["resolution"] == 32 and ae["n"] > 0
    assert 0 < ae["l1"] < 2 and 0 < ae["psnr"] < 60 and -1 <= ae["ssim"] <= 1 and math.isfinite(ae["fid"])
    out = tmp_path / "cls.json"
    assert main(["eval", "--checkpoint", str(tiny_classifier), "--out", str(out), *common]) == 0
    cls = json.loads(out.read_text())
    assert cls["kind"] == "classifier" and cls["n"] == ae["n"]
    # the same classifier on the same held-out originals, reached two ways
    assert cls["shape_top1"] == ae["real_shape_top1"] and cls["color_top1"] == ae["real_color_top1"]


def test_autoencoder_that_copies_its_input_scores_perfectly(tiny_classifier, shapes_dir):
    class Copy(torch.nn.Module):
        def forward(self, x):
            return x

    val = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    result = evaluate_autoencoder(Copy(), val, 32, Classifier.from_checkpoint(tiny_classifier), progress=False,
                                  cache=False)
    assert result["l1"] == 0 and math.isinf(result["psnr"]) and result["ssim"] == pytest.approx(1, abs=1e-5)
    assert result["fid"] == pytest.approx(0, abs=1e-2)
    assert result["shape_top1"] == result["real_shape_top1"]


def test_one_attribute_alone_gives_per_value_accuracy_and_steering(tiny_checkpoints, tiny_classifier, shapes_dir):
    model = DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])
    val = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    result = evaluate_generator(model, Classifier.from_checkpoint(tiny_classifier), val, n=8, steps=2, batch=8,
                                progress=False, condition="shape")
    shapes = sorted(set(val.extra["shape"]))
    assert result["condition"] == "shape" and result["values"] == len(shapes)
    assert result["n"] == len(shapes) * max(2, -(-8 // len(shapes)))  # the same seeds for every value
    assert result["color_top1"] is None and isinstance(result["shape_top1"], float)  # only the given one is scored
    assert set(result["per_shape"]) <= set(shapes) and all(
        set(v) == {"sample_top1", "real_top1"} for v in result["per_shape"].values())
    for key in ("steering", "real_steering", "steering_same_condition", "steering_same_seed"):
        assert math.isfinite(result[key]), key
    assert result["steering"] == pytest.approx(result["steering_same_condition"] - result["steering_same_seed"],
                                               abs=2e-4)
    with pytest.raises(ValueError, match="rows, text or one of"):
        evaluate_generator(model, Classifier.from_checkpoint(tiny_classifier), val, n=2, condition="hue")


def test_steering_is_high_when_the_condition_decides_and_low_when_the_seed_does():
    from lwgen.evaluation.conditions import real_steering, steering

    ids, seeds = [0, 0, 1, 1], [0, 1, 0, 1]
    by_condition = torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]])
    by_seed = torch.tensor([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]])
    assert steering(by_condition, ids, seeds)["steering"] > 0.8
    assert steering(by_seed, ids, seeds)["steering"] < -0.8
    assert real_steering(by_condition, ["a", "a", "b", "b"])["steering"] > 0.8


def test_a_subgroup_implies_its_group():
    import pandas as pd

    from lwgen.evaluation.conditions import implied

    table = ImageTable(root=Path("."), files=["f"] * 4, rows=list(range(4)), attributes=[], vocab={},
                       labels=torch.zeros(4, 0, dtype=torch.long), images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
                       extra=pd.DataFrame({"group": ["a", "a", "b", "b"], "subgroup": ["x", "y", "z", "z"]}))
    assert implied(table, "subgroup", ["group", "subgroup"]) == {"group": {"x": "a", "y": "a", "z": "b"}}
    assert implied(table, "group", ["group", "subgroup"]) == {}
    table.extra = pd.DataFrame({"group": list("aabbcc") * 2, "subgroup": list("uvwxyz") + list("uvwxyq")})
    table.extra.loc[11, "group"] = "a"  # q alone; u..z single; now add one subgroup in two groups:
    table.extra.loc[10, "group"] = "a"  # y in groups c and a
    assert implied(table, "subgroup", ["group"], share=0.8) == {"group": dict(zip("uvwxzq", "aabbca"))}
    assert implied(table, "subgroup", ["group"], share=0.9) == {}


# --- which classifier scores what --------------------------------------------------------------------------
def copy_folder(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (folder / f).write_bytes((source / f).read_bytes())
    return folder


def test_vocabulary_mismatch_names_the_attribute_and_values():
    from lwgen.evaluation.evaluate import vocabulary_mismatch

    gen = {"shape": ["circle", "square"], "size": ["big"]}
    assert vocabulary_mismatch(gen, {"shape": ["circle", "square", "star"], "color": ["red"]}) is None
    why = vocabulary_mismatch(gen, {"shape": ["circle", "star"]})
    assert "attribute 'shape'" in why and "square" in why and "circle, star" in why
    why = vocabulary_mismatch(gen, {"group": ["animals"]})
    assert "no attribute in common" in why and "shape, size" in why and "group" in why


def test_classifier_defaults_look_inside_beside_then_shipped(tmp_path, monkeypatch):
    from lwgen.evaluation.cli import classifier_candidates, pick_classifier
    from lwgen.shipped import shipped_root

    checkpoint = tmp_path / "runs" / "mine" / "diffusion-cosine"
    monkeypatch.delenv("LWGEN_SHIPPED", raising=False)
    assert classifier_candidates(checkpoint) == [checkpoint / "classifier", checkpoint.parent / "classifier",
                                                 shipped_root() / "classifier"]
    emoji = read_config(shipped_root() / "emoji-cosine")  # the shipped generator's vocabulary fits the shipped one
    assert pick_classifier(checkpoint, emoji, None) == shipped_root() / "classifier"
    monkeypatch.chdir(tmp_path)  # wherever lwgen runs from
    assert pick_classifier(checkpoint, emoji, None) == shipped_root() / "classifier"
    monkeypatch.setenv("LWGEN_SHIPPED", "0")
    assert classifier_candidates(checkpoint) == [checkpoint / "classifier", checkpoint.parent / "classifier"]
    assert pick_classifier(checkpoint, emoji, None, required=False) is None


def test_cli_eval_finds_the_classifier_beside_the_checkpoint_and_refuses_one_that_does_not_fit(
        tiny_checkpoints, tiny_classifier, shapes_dir, tmp_path, capsys, monkeypatch):
    from lwgen.shipped import shipped_root

    monkeypatch.delenv("LWGEN_SHIPPED", raising=False)
    run = tmp_path / "runs" / "mine"  # as `lwgen fit` writes it
    checkpoint = copy_folder(tiny_checkpoints["linear"], run / "diffusion-linear")
    common = ["--data", str(shapes_dir), "--load-size", "32", "--no-progress", "--threads", "1", "--n", "4",
              "--steps", "1", "--batch", "4"]
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "no.json"), *common]) == 2
    err = capsys.readouterr().err
    assert f"no classifier fits {checkpoint}" in err and f"{run / 'classifier'}: no classifier there" in err
    assert f"{shipped_root() / 'classifier'}: no attribute in common" in err  # the shipped one scores emoji
    assert (f"lwgen eval train-classifier --data {shapes_dir} --attributes shape color size --out "
            f"{run / 'classifier'}\n" in err)
    assert f"lwgen eval --checkpoint {checkpoint} --classifier {run / 'classifier'}" in err
    assert not (tmp_path / "no.json").exists()

    copy_folder(tiny_classifier, run / "classifier")
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(out), *common]) == 0
    result = json.loads(out.read_text())
    assert result["classifier"] == str(run / "classifier") and result["shape_top1"] is not None

    other = copy_folder(tiny_classifier, tmp_path / "other")  # a classifier that never saw one of the shapes
    config = json.loads((other / "config.json").read_text())
    dropped = config["vocab"]["shape"].pop()
    (other / "config.json").write_text(json.dumps(config))
    assert main(["eval", "--checkpoint", str(checkpoint), "--classifier", str(other), *common]) == 2
    err = capsys.readouterr().err
    assert f"--classifier {other} cannot score" in err and "attribute 'shape'" in err and dropped in err
    assert f"--out {checkpoint / 'classifier'}\n" in err  # the folder beside it is taken: inside the checkpoint


def test_columns_mismatch_names_the_csv_columns(shapes_dir):
    from lwgen.evaluation.evaluate import columns_mismatch

    table = ImageTable.load(shapes_dir, [], size=32, split="val", progress=False)
    assert columns_mismatch({"shape": ["circle"]}, table) is None
    why = columns_mismatch({"group": ["animals"], "style": ["flat"]}, table)
    assert "none of the classifier's attributes (group, style)" in why and "shape" in why


def test_train_classifier_refuses_the_shipped_folder_and_guesses_no_attributes(shapes_dir, tmp_path, capsys):
    from lwgen.evaluation.train import DEFAULT_ATTRIBUTES, default_attributes
    from lwgen.shipped import shipped_root

    budget = ["--steps", "1", "--minutes", "0", "--no-progress"]
    target = shipped_root() / "classifier-test"
    assert main(["eval", "train-classifier", "--data", str(shapes_dir), "--out", str(target), "--attributes",
                 "shape", *budget]) == 2
    assert "inside the shipped checkpoints folder" in capsys.readouterr().err and not target.exists()
    assert main(["eval", "train-classifier", "--data", str(shapes_dir), "--out", str(shipped_root() / "classifier"),
                 *budget]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --out is required
        main(["eval", "train-classifier", "--data", str(shapes_dir), *budget])
    assert "--out" in capsys.readouterr().err
    assert main(["eval", "train-classifier", "--data", str(shapes_dir), "--out", str(tmp_path / "c"), *budget]) == 2
    err = capsys.readouterr().err
    assert "give --attributes" in err and "shape, color, size, split" in err and not (tmp_path / "c").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("")
    assert main(["eval", "train-classifier", "--data", str(shapes_dir), "--out", str(tmp_path / "full"),
                 "--attributes", "shape", *budget]) == 2
    assert "is not empty" in capsys.readouterr().err
    emoji = tmp_path / "emoji"
    emoji.mkdir()
    (emoji / "annotations.csv").write_text("file,name,group,subgroup,style,skin_tone,hexcode,split\n")
    assert default_attributes(emoji) == list(DEFAULT_ATTRIBUTES)
