"""Tests for lwgen.app: the computations behind the pages, called directly (no Streamlit)."""
from __future__ import annotations

import ast
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from lwgen.app.cards import eval_warnings, human_count, human_duration, metric_rows, model_summary, one_per_class
from lwgen.app.catalog import discover, discover_all, of_kind, preferred, read_entry
from lwgen.app.command import sample_command
from lwgen.app.conditions import (
    ANY,
    attribute_options,
    describe,
    known_combinations,
    prompt_for,
    starting_condition,
    takes_text,
)
from lwgen.app.explore import (
    TEXT,
    combine,
    first_image_per_class,
    gallery_items,
    item_features,
    match_labels,
    real_items,
    spread_subset,
    text_search,
)
from lwgen.app.images import data_uri, grid, grid_png, png_bytes, resize, to_uint8, zip_pngs
from lwgen.app.info import generator_info, weak_values
from lwgen.app.lab import click_grid, nearest, prompt_walk, vector_at
from lwgen.app.paths import display_path, search_roots
from lwgen.app.runner import (
    condition_of,
    frame_steps,
    generate_images,
    noise_shape,
    traced_sample,
    turn,
    walk_images,
    x0_image,
)
from lwgen.app.selection import captions, clicked_position, selected_indices, selection_summary
from lwgen.checkpoint import CheckpointError
from lwgen.cli import build_parser, parse_values
from lwgen.cli import main as cli_main
from lwgen.models import NULL
from lwgen.pipeline import ConditionError, DiffusionModel, UpscaleModel
from lwgen.projection import build_gallery, fit_plane, walk
from lwgen.projection.text import condition_points
from lwgen.shipped import shipped_root

torch.set_num_threads(1)
VOCAB = {"group": ["animals", "flags", "people"], "subgroup": ["cat", "dog", "europe", "face"],
         "skin_tone": ["none", "1", "2"]}
COMBOS = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 2, 0], [2, 3, 0], [2, 3, 1], [2, 3, 2]])


@pytest.fixture(scope="module")
def cosine(tiny_checkpoints) -> DiffusionModel:
    return DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])


# --- selection -> grid ----------------------------------------------------------------------------------
def test_selected_indices_reads_customdata_and_skips_background_points():
    event = {"selection": {"points": [
        {"x": 1, "y": 2, "customdata": 7}, {"x": 0, "y": 0},  # a click-grid point: no customdata
        {"customdata": [3, "extra"]}, {"customdata": 7}, {"customdata": "label"}, {"customdata": []}]}}
    assert selected_indices(event) == [7, 3]
    assert selected_indices(None) == [] and selected_indices({"selection": {"points": []}}) == []


def test_selected_indices_accepts_attribute_objects():
    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    event = Obj(selection=Obj(points=[Obj(customdata=2, x=0, y=0)], box=[], lasso=[]))
    assert selected_indices(event) == [2]


def test_captions_and_summary_for_selected_items():
    frame = pd.DataFrame({"source": ["real", "generated", "generated"], "group": ["flags", "any", "animals"],
                          "seed": [0, 4, 5]})
    assert captions(frame, [1, 2], ["group", "seed"]) == ["4", "animals · 5"]
    assert selection_summary(frame, [0, 1, 2], "source") == "3 selected: 2 generated, 1 real"
    assert selection_summary(frame, [], "source") == "nothing selected"
    many = pd.DataFrame({"v": list("abcdefg")})
    assert selection_summary(many, list(range(7)), "v", top=2).endswith("5 more values")


def test_clicked_position_point_box_lasso():
    assert clicked_position({"selection": {"points": [{"x": 1, "y": 2}, {"x": 3.5, "y": -1}]}}) == (3.5, -1.0)
    assert clicked_position({"selection": {"points": [], "box": [{"x": [0, 2], "y": [4, 6]}]}}) == (1.0, 5.0)
    lasso = {"selection": {"points": [], "box": [], "lasso": [{"x": [0, 2, 2, 0], "y": [0, 0, 2, 2]}]}}
    assert clicked_position(lasso) == (1.0, 1.0)
    assert clicked_position({"selection": {"points": [], "box": [], "lasso": []}}) is None
    assert clicked_position(None) is None


# --- conditions -----------------------------------------------------------------------------------------
def test_attribute_options_narrow_by_the_choices_above():
    opts = attribute_options(VOCAB, COMBOS, {"group": "animals"})
    assert opts["group"] == [ANY, "animals", "flags", "people"]
    assert opts["subgroup"] == [ANY, "cat", "dog"]
    assert opts["skin_tone"] == [ANY, "none"]
    opts = attribute_options(VOCAB, COMBOS, {"group": "people", "subgroup": "face"})
    assert opts["subgroup"] == [ANY, "face"] and opts["skin_tone"] == [ANY, "none", "1", "2"]
    # nothing chosen: only values that occur at all; no combinations: everything
    assert attribute_options(VOCAB, COMBOS, {})["subgroup"] == [ANY, "cat", "dog", "europe", "face"]
    assert attribute_options(VOCAB, None, {"group": "flags"})["subgroup"] == [ANY, *VOCAB["subgroup"]]


def test_attribute_options_ignore_attributes_the_combinations_never_name():
    per_group = torch.tensor([[0, NULL, NULL], [1, NULL, NULL]])  # a gallery built per first attribute
    opts = attribute_options(VOCAB, per_group, {"group": "animals"})
    assert opts["group"] == [ANY, "animals", "flags"] and opts["subgroup"] == [ANY, *VOCAB["subgroup"]]


def test_starting_condition_prefers_the_demo_then_the_first_value():
    emoji = {"group": ["animals-nature", "smileys-emotion"], "subgroup": ["animal-mammal", "face-smiling"]}
    assert starting_condition(emoji, 0) == {"group": "smileys-emotion", "subgroup": "face-smiling"}
    assert starting_condition(emoji, 1) == {"group": "animals-nature", "subgroup": "animal-mammal"}
    assert starting_condition(VOCAB, 0) == {"group": "animals"} and starting_condition(VOCAB, 1) == {"group": "people"}
    assert starting_condition({}) == {}


def test_describe():
    assert describe({"group": "flags", "subgroup": ANY}) == "group=flags"
    assert describe({"group": ANY}) == "no condition"
    assert describe({"group": "flags"}, " a red flag ") == 'group=flags, "a red flag"'
    assert describe({"group": ANY}, "a cat") == '"a cat"' and describe({}, "  ") == "no condition"


@pytest.mark.parametrize("which", ["latent", "text", "shipped"])
def test_generator_info_says_what_the_loaded_model_does(which, tiny_latent_checkpoint, tiny_text_checkpoint):
    folder = {"latent": tiny_latent_checkpoint, "text": tiny_text_checkpoint,
              "shipped": shipped_root() / "emoji-cosine"}[which]
    info, model = generator_info(read_entry(folder)), DiffusionModel.from_checkpoint(folder)
    assert (info.vocab, info.takes_text, info.resolution) == (model.vocab, model.takes_text, model.resolution)
    assert info.combinations is not None
    assert info.combinations.tolist() == known_combinations(model.checkpoint_config).tolist()


def test_generator_info_names_a_config_that_is_not_a_generators(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "diffusion", "vocab": {"a": ["b"]}}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"config\.json: not a generator's config \(KeyError: 'unet'\)"):
        generator_info(read_entry(tmp_path))


def test_the_generate_pages_widgets_need_no_torch():
    """What the Generate page imports before drawing its widgets (its top-level imports and app.py's) does not
    import torch: it loads after the button is drawn."""
    root = Path(__file__).resolve().parents[1]
    modules = set()
    for script in (root / "app.py", root / "pages/generate.py"):
        for node in ast.parse(script.read_text()).body:
            if isinstance(node, ast.Import):
                modules.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.update(f"{node.module}.{a.name}" if node.module == "lwgen.app" else node.module
                               for a in node.names)
    assert "lwgen.app.ui" in modules and "lwgen.app.info" in modules
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {sorted(modules)!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_known_combinations_prefers_config_then_gallery():
    config = {"vocab": VOCAB, "combinations": [["animals", "cat", "none"]]}
    assert known_combinations(config, COMBOS).tolist() == [[0, 0, 0]]
    assert known_combinations({"vocab": VOCAB}, COMBOS[[1, 0, 1]]).tolist() == [[0, 0, 0], [0, 1, 0]]
    assert known_combinations({"vocab": VOCAB}, None) is None


# --- command line ---------------------------------------------------------------------------------------
def test_display_path_is_relative_inside_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "checkpoints" / "a") == "checkpoints/a"
    assert display_path("checkpoints/../checkpoints/b") == "checkpoints/b"
    assert display_path("/elsewhere/c") == "/elsewhere/c"


def test_sample_command_round_trips_through_the_cli_parser(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints" / "emoji-cosine").mkdir(parents=True)
    values = {"group": "smileys-emotion", "subgroup": "face-smiling", "style": ANY, "name": "a b"}
    cmd = sample_command(tmp_path / "checkpoints" / "emoji-cosine", values, 16, 20, "dpmpp", 2.0, 0)
    assert cmd == ("lwgen sample --checkpoint checkpoints/emoji-cosine --set group=smileys-emotion "
                   "--set subgroup=face-smiling --set 'name=a b' -n 16 --steps 20 --sampler dpmpp --guidance 2 "
                   "--seed 0 --out grid.png")
    args = build_parser().parse_args(shlex.split(cmd)[1:])
    assert parse_values(args.values) == {k: v for k, v in values.items() if v != ANY}
    assert (args.n, args.steps, args.sampler, args.guidance, args.seed, args.upscale) == (16, 20, "dpmpp", 2.0, 0,
                                                                                         False)
    up = sample_command("checkpoints/emoji-cosine", {}, 4, 10, "ddim", 1.5, 7, upscaler=shipped_root() / "upscaler-x4")
    assert up.endswith("--guidance 1.5 --seed 7 --upscale --out grid.png")  # the shipped up-scaler: the default
    assert build_parser().parse_args(shlex.split(up)[1:]).upscaler == shipped_root() / "upscaler-x4"
    other = sample_command("checkpoints/emoji-cosine", {}, 4, 10, "ddim", 1.5, 7, upscaler=tmp_path / "up")
    assert "--upscale --upscaler up" in other
    worded = sample_command("checkpoints/emoji-cosine", {"group": "flags"}, 2, 5, "dpmpp", 2.0, 0,
                            prompt=" a 'red' flag ")
    assert "--set group=flags --prompt " in worded
    assert build_parser().parse_args(shlex.split(worded)[1:]).prompt == "a 'red' flag"
    assert "--prompt" not in sample_command("c", {}, 1, 1, "ddim", 1.0, 0, prompt="  ")


def test_the_shown_command_reproduces_the_grid(cosine, tiny_checkpoints, tmp_path):
    values = {"shape": "circle", "color": ANY}
    images = generate_images(cosine, condition_of(cosine, values), [3, 4, 5], 2, "dpmpp", 2.0)
    cmd = sample_command(tiny_checkpoints["cosine"], values, 3, 2, "dpmpp", 2.0, 3, out=str(tmp_path / "cli.png"))
    assert cli_main(shlex.split(cmd)[1:]) == 0
    ours = np.array(Image.open(io.BytesIO(grid_png(images))))
    assert np.array_equal(ours, np.array(Image.open(tmp_path / "cli.png")))


# --- images ---------------------------------------------------------------------------------------------
def test_grid_png_matches_the_cli_grid(tmp_path):
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    save_image((images + 1) / 2, tmp_path / "cli.png", nrow=2, padding=2, pad_value=1.0)  # as `lwgen sample` does
    ours = np.array(Image.open(io.BytesIO(grid_png(to_uint8(images)))))
    assert np.array_equal(ours, np.array(Image.open(tmp_path / "cli.png")))
    assert grid(to_uint8(images)).shape == (3, 2 + 3 * 10, 2 + 2 * 10)


def test_zip_png_and_data_uri():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    blob = zip_pngs(images, ["a.png", "b.png", "c.png"])
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert z.namelist() == ["a.png", "b.png", "c.png"]
        back = np.array(Image.open(io.BytesIO(z.read("b.png"))))
    assert np.array_equal(back, images[1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError):
        zip_pngs(images, ["a.png"])
    assert data_uri(images[0], 4).startswith("data:image/png;base64,")
    assert resize(images, 4).shape == (3, 3, 4, 4) and resize(images, 16).shape == (3, 3, 16, 16)
    assert png_bytes(images[0])[:8] == b"\x89PNG\r\n\x1a\n"


# --- catalog --------------------------------------------------------------------------------------------
def test_discover_lists_good_and_broken_checkpoints(tiny_checkpoints, tmp_path):
    for name in ("emoji-linear", "emoji-cosine"):
        (tmp_path / name).symlink_to(tiny_checkpoints[name.split("-")[1]])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text(json.dumps({"kind": "diffusion"}))
    (tmp_path / "not-a-checkpoint").mkdir()
    entries = discover(tmp_path)
    assert [e.name for e in entries] == ["broken", "emoji-cosine", "emoji-linear", "no-weights"]
    assert [e.ok for e in entries] == [False, True, True, False]
    assert "config.json" in entries[0].error and "model.safetensors" in entries[3].error
    diffusion = of_kind(entries, "diffusion")
    assert [e.name for e in diffusion] == ["emoji-cosine", "emoji-linear", "no-weights"]
    assert preferred(diffusion, "linear") == 1 and preferred(diffusion, "nothing") == 0
    assert discover(tmp_path / "missing") == []


def copy_checkpoint(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(source / f, folder / f)
    return folder


def test_the_catalog_adds_runs_and_listed_folders_to_the_shipped_checkpoints(tiny_checkpoints, tmp_path,
                                                                             monkeypatch):
    work = tmp_path / "work"  # the app started from another folder: shipped ones are found beside the package
    copy_checkpoint(tiny_checkpoints["linear"], work / "checkpoints" / "local-linear")
    copy_checkpoint(tiny_checkpoints["cosine"], work / "runs" / "mine")  # lwgen train --out runs/mine
    copy_checkpoint(tiny_checkpoints["cosine"], work / "runs" / "fit" / "diffusion-cosine")  # lwgen fit
    copy_checkpoint(tiny_checkpoints["upscaler"], work / "runs" / "fit" / "upscaler")
    copy_checkpoint(tiny_checkpoints["cosine"], work / "runs" / "tune" / "study" / "trial-0000")  # 3 levels: not
    (work / "runs" / "fit" / "config.json").write_text(json.dumps({"lr": 0.001}))  # settings, not a checkpoint
    one = copy_checkpoint(tiny_checkpoints["linear"], tmp_path / "one" / "emoji-linear")  # a checkpoint itself
    many = tmp_path / "many"
    copy_checkpoint(tiny_checkpoints["cosine"], many / "emoji-cosine")  # a folder of them; the name is shipped
    monkeypatch.chdir(work)
    monkeypatch.delenv("LWGEN_RUNS", raising=False)
    monkeypatch.delenv("LWGEN_SHIPPED", raising=False)
    monkeypatch.setenv("LWGEN_CHECKPOINTS", os.pathsep.join([str(one), str(many), str(tmp_path / "missing")]))
    entries = discover_all(search_roots())
    shipped = sorted(p.parent.name for p in shipped_root().glob("*/config.json"))
    assert {"classifier", "upscaler-x4", "emoji-cosine", "emoji-linear"} <= set(shipped)  # the repository ships them
    by_source: dict[str, list[str]] = {}
    for e in entries:
        by_source.setdefault(e.source, []).append(e.name)
    assert by_source == {"shipped": shipped, "working folder": ["local-linear"],
                         "LWGEN_CHECKPOINTS": ["one/emoji-linear", "many/emoji-cosine"],
                         "runs": ["runs/fit/diffusion-cosine", "runs/fit/upscaler", "runs/mine"]}
    assert len({e.name for e in entries}) == len(entries) and all(e.ok for e in entries)
    assert next(e for e in entries if e.name == "classifier").path == shipped_root() / "classifier"
    assert of_kind(entries, "upscaler")[0].name == "upscaler-x4"  # the shipped up-scaler stays first
    monkeypatch.setenv("LWGEN_SHIPPED", "0")
    monkeypatch.setenv("LWGEN_CHECKPOINTS", "")
    assert {e.source for e in discover_all(search_roots())} == {"working folder", "runs"}
    monkeypatch.chdir(shipped_root().parent)  # from the repository: ./checkpoints is the shipped folder, hidden
    monkeypatch.setenv("LWGEN_RUNS", str(work / "runs"))
    assert [e.source for e in discover_all(search_roots())] == ["runs"] * 3


# --- sampling -------------------------------------------------------------------------------------------
def test_generate_images_matches_generate_and_is_batch_independent(cosine):
    cond = condition_of(cosine, {"shape": "circle"})
    seen = []
    a = generate_images(cosine, cond, [3, 4, 5], 2, "ddim", 2.0, progress=lambda f, m: seen.append(f), batch=2)
    b = generate_images(cosine, cond, [5], 2, "ddim", 2.0)
    assert a.shape == (3, 3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a[2], b[0])
    direct = cosine.generate(cond.expand(3, -1), [3, 4, 5], steps=2, sampler="ddim", guidance=2.0)
    assert torch.equal(a, to_uint8(direct))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_generate_images_with_upscaler(cosine, tiny_checkpoints):
    up = UpscaleModel.from_checkpoint(tiny_checkpoints["upscaler"])
    out = generate_images(cosine, condition_of(cosine, {}), [0, 1], 1, "dpmpp", 1.0, upscaler=up)
    assert out.shape == (2, 3, 64, 64)


def test_frame_steps():
    assert frame_steps(20, 4) == [4, 9, 14, 19]
    assert frame_steps(3, 10) == [0, 1, 2]
    assert frame_steps(10, 1) == [9]


def test_traced_sample_keeps_frames_and_matches_generate(cosine):
    cond = condition_of(cosine, {"color": "red"})
    trace = traced_sample(cosine, cond, 11, 4, "dpmpp", 2.0, keep=[1, 3])
    assert [f[0] for f in trace.frames] == [1, 3] and trace.frames[0][2].shape == (3, 16, 16)
    assert trace.seconds > 0 and trace.steps == 4
    assert torch.equal(trace.image, to_uint8(cosine.generate(cond, [11], steps=4, guidance=2.0))[0])


def test_noise_shape_and_x0_images(cosine):
    assert noise_shape(cosine) == (3, 16, 16)
    pixels = torch.rand(1, 3, 4, 4) * 2 - 1
    assert torch.equal(x0_image(cosine, pixels), to_uint8(pixels))

    z = torch.rand(1, 4, 4, 4) * 2 - 1
    assert x0_image(object(), z) is None  # a latent and no decoder: no picture


def test_latent_model_pages_logic(tiny_latent_checkpoint):
    model = DiffusionModel.from_checkpoint(tiny_latent_checkpoint)
    assert noise_shape(model) == model.noise_shape and noise_shape(model)[0] == 4
    trace = traced_sample(model, condition_of(model, {}), 0, 2, "ddim", 2.0, keep=[0, 1])
    assert trace.image.shape == (3, model.resolution, model.resolution)
    assert [f[2].shape for f in trace.frames] == [(3, model.resolution, model.resolution)] * 2  # decoded x0
    s = model_summary(model)
    assert s["latent"] == (4, model.unet.config.resolution) and s["autoencoder_parameters"] > 0


def test_walk_images_share_noise_and_hit_the_endpoints(cosine):
    a, b = condition_of(cosine, {"shape": "circle"})[0], condition_of(cosine, {"shape": "square"})[0]
    images = walk_images(cosine, walk(a, b, 3, "slerp"), 2, 2, "ddim", 2.0)
    assert images.shape == (3, 3, 16, 16)
    assert torch.equal(images[0], to_uint8(cosine.generate(a[None], [2], steps=2, sampler="ddim", guidance=2.0))[0])
    assert torch.equal(images[2], to_uint8(cosine.generate(b[None], [2], steps=2, sampler="ddim", guidance=2.0))[0])


def test_turn_reports_waiting_when_the_model_is_busy():
    import threading

    lock = threading.Lock()
    messages = []
    lock.acquire()
    threading.Timer(0.05, lock.release).start()
    with turn(lock, lambda f, m: messages.append(m)):
        assert lock.locked()
    assert messages and "waiting" in messages[0] and not lock.locked()


# --- embedding lab --------------------------------------------------------------------------------------
def test_vector_at_inverts_the_map(cosine):
    vectors, _ = condition_points(cosine, None)
    plane = fit_plane(vectors.numpy())
    xy = plane.transform(vectors.numpy())
    grid_xy = click_grid(xy, n=5)
    assert grid_xy.shape == (25, 2)
    assert (grid_xy.min(0) < xy.min(0)).all() and (grid_xy.max(0) > xy.max(0)).all()
    v = vector_at(plane, (0.5, -0.25))
    assert v.shape == (1, vectors.shape[1]) and v.dtype == torch.float32
    assert np.allclose(plane.transform(v.numpy()), [[0.5, -0.25]], atol=1e-4)
    assert nearest(xy, tuple(xy[3]), 1) == [3]


# --- model cards ----------------------------------------------------------------------------------------
def test_model_summary(cosine, tiny_checkpoints, monkeypatch):
    s = model_summary(cosine)
    assert s["kind"] == "diffusion" and s["parameters"] > 0 and s["gmacs"] > 0 and s["resolution"] == 16
    assert s["schedule"] == "cosine" and s["steps"] == 4 and s["final_loss"] is not None
    monkeypatch.setattr(cosine, "checkpoint_config", {**cosine.checkpoint_config, "init": {
        "checkpoint": "older", "steps": 10, "images_seen": 80, "wall_time_s": 60.0, "total_wall_time_s": 60.0}})
    continued = model_summary(cosine)
    assert continued["steps"] == 14 and continued["seconds"] == pytest.approx(s["seconds"] + 60)
    assert continued["started_from"] == "older" and continued["images_seen"] == s["images_seen"] + 80
    up = model_summary(UpscaleModel.from_checkpoint(tiny_checkpoints["upscaler"]))
    assert up["kind"] == "upscaler" and up["scale"] == 4 and up["gmacs"] > 0


def test_metric_rows_and_counts(tmp_path):
    assert metric_rows({}) == [] and metric_rows({}, tmp_path) == []
    rows = metric_rows({"metrics": {"fid": 12.3456, "accuracy": {"group": 0.5}, "n": 3}})
    assert rows == [("fid", "12.35"), ("accuracy.group", "0.5"), ("n", "3")]
    assert metric_rows({"accuracy": {"val": {"group_top1": 0.75}}}) == [("val.group_top1", "0.75")]
    (tmp_path / "eval.json").write_text(json.dumps({"fid": 40.0, "checkpoint": "x", "seconds": 3}))
    assert metric_rows({}, tmp_path) == [("fid", "40"), ("seconds", "3")]
    (tmp_path / "eval-group.json").write_text(json.dumps({"condition": "group", "group_top1": 0.5, "per_group": {
        "flags": {"sample_top1": 0.9, "real_top1": 0.95}, "food": {"sample_top1": 0.2, "real_top1": 0.6},
        "rare": {"sample_top1": None, "real_top1": 0.5}}}))
    assert ("group alone: group_top1", "0.5") in metric_rows({}, tmp_path)
    assert not any("per_group" in name for name, _ in metric_rows({}, tmp_path))
    assert weak_values(tmp_path, "group") == {"food": (0.2, 0.6)} and weak_values(tmp_path, "subgroup") == {}
    assert eval_warnings(tmp_path) == []
    (tmp_path / "eval-shape.json").write_text(json.dumps({"fid": 3.0, "warnings": ["too weak to judge 'shape'"]}))
    (tmp_path / "eval.json").write_text(json.dumps({"fid": 4.0, "warnings": ["too weak to judge 'shape'"]}))
    assert eval_warnings(tmp_path) == ["too weak to judge 'shape'"]  # once, and not a metric row
    assert not any("warnings" in name for name, _ in metric_rows({}, tmp_path))
    assert human_count(1_234_567) == "1.23 M" and human_count(950) == "950" and human_count(None) == "?"
    assert [human_duration(s) for s in (42, 750, 5400, None)] == ["42 s", "12.5 min", "1.5 h", "?"]
    labels = torch.tensor([[0], [0], [1], [2], [2], [3]])
    assert one_per_class(labels, 8) == [0, 2, 3, 5] and one_per_class(labels, 2) == [0, 5]


# --- explore items --------------------------------------------------------------------------------------
def test_items_from_gallery_and_real_images(cosine, shapes_dir):
    g = build_gallery(cosine, per_class=1, steps=1, classes=torch.tensor([[0, 0, 0], [1, 1, 1]]))
    gen = gallery_items(g)
    assert gen.frame["source"].tolist() == ["generated"] * 2 and len(gen) == 2
    real = real_items(shapes_dir, ["shape", "color", "size"], 32, limit=10)
    assert len(real) == 10 and real.images.shape[-1] == 32 and set(real.frame["source"]) == {"real"}
    both = combine([gen, real])
    assert len(both) == 12 and both.images.shape[-1] == 16  # the smaller resolution wins
    assert item_features(both).shape == (12, 3 * 16 * 16)
    with pytest.raises(ValueError):
        item_features(both, "classifier")
    assert first_image_per_class(g, torch.tensor([[1, 1, 1], [3, 3, 1]])) == [1, None]
    assert gen.frame["tag"].tolist() == ["seed 0", "seed 1"]
    assert real.frame["tag"].iloc[0] == Path(real.frame["file"].iloc[0]).stem  # the shapes CSV has no name column


def test_spread_subset_covers_the_map():
    xy = np.concatenate([np.random.default_rng(0).normal(0, 0.1, (50, 2)), [[10.0, 10.0], [-10.0, 10.0]]])
    picks = spread_subset(xy, 3)
    assert len(picks) == 3 and {50, 51} <= set(picks)  # the far-away points are never left out
    assert spread_subset(xy, 100) == list(range(52)) and spread_subset(xy, 0) == []


# --- prompts ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worded(tiny_text_checkpoint) -> DiffusionModel:
    return DiffusionModel.from_checkpoint(tiny_text_checkpoint)


def test_prompt_for_and_takes_text(cosine, worded):
    assert takes_text(worded) and not takes_text(cosine) and not takes_text(object())
    assert prompt_for(worded, " a red circle ") == "a red circle" and prompt_for(worded, None) == ""
    assert prompt_for(cosine, "a red circle") == ""  # a generator without text ignores it


def test_condition_of_adds_the_prompt(cosine, worded):
    from lwgen.text import encode

    values = {"shape": "circle", "color": ANY}
    plain = condition_of(worded, values)
    assert torch.equal(condition_of(worded, values, ""), plain)
    assert torch.equal(condition_of(worded, values, "  "), plain)
    red = condition_of(worded, values, "a red circle")
    labels = worded.encode(values)[None]
    assert red.shape == plain.shape and not red.requires_grad
    assert torch.equal(red, worded.condition(labels, encode(["a red circle"])).detach())
    assert not torch.equal(red, plain) and not torch.equal(red, condition_of(worded, values, "a blue square"))
    anything = condition_of(worded, {}, "a red circle")  # every attribute "any" plus words
    assert torch.equal(anything, worded.condition(worded.encode({})[None], encode(["a red circle"])).detach())
    with pytest.raises(ConditionError, match="without text"):
        condition_of(cosine, values, "a red circle")


def test_prompt_grid_matches_the_cli(worded, tiny_text_checkpoint, tmp_path):
    values, prompt = {"shape": "circle"}, "a small red circle"
    images = generate_images(worded, condition_of(worded, values, prompt), [3, 4], 2, "dpmpp", 2.0)
    cmd = sample_command(tiny_text_checkpoint, values, 2, 2, "dpmpp", 2.0, 3, out=str(tmp_path / "cli.png"),
                         prompt=prompt)
    assert cli_main(shlex.split(cmd)[1:]) == 0
    ours = np.array(Image.open(io.BytesIO(grid_png(images))))
    assert np.array_equal(ours, np.array(Image.open(tmp_path / "cli.png")))


def test_prompt_walk_runs_from_prompt_a_to_prompt_b(worded):
    vectors = prompt_walk(worded, "a red circle", "a blue square", 4, "lerp")
    assert vectors.shape == (4, worded.embedder.config.dim)
    assert torch.allclose(vectors[0], condition_of(worded, {}, "a red circle")[0], atol=1e-6)
    assert torch.allclose(vectors[-1], condition_of(worded, {}, "a blue square")[0], atol=1e-6)
    to_nothing = prompt_walk(worded, "a red circle", "", 3, "slerp")
    assert torch.allclose(to_nothing[-1], condition_of(worded, {})[0], atol=1e-5)  # "" = no text
    with pytest.raises(ValueError, match="prompt A and prompt B"):
        prompt_walk(worded, " ", "", 3)


def test_items_carry_their_text_and_search_finds_them(cosine, shapes_dir, tmp_path):
    g = build_gallery(cosine, per_class=1, steps=1, classes=torch.tensor([[0, 0, 0], [1, NULL, 1]]))
    gen = gallery_items(g)
    v = cosine.vocab
    assert gen.frame[TEXT].tolist() == [f"{v['shape'][0]}, {v['color'][0]}, {v['size'][0]}",
                                         f"{v['shape'][1]}, {v['size'][1]}"]  # "any" is left out
    real = real_items(shapes_dir, ["shape", "color", "size"], 32, limit=5)  # no text column: the values as text
    row = real.frame.iloc[0]
    assert row[TEXT] == f"{row['shape']}, {row['color']}, {row['size']}"
    data = tmp_path / "worded"
    shutil.copytree(shapes_dir, data)
    table = pd.read_csv(data / "annotations.csv")
    table["text"] = ["a sleepy cat" if i == 3 else ("" if i == 4 else "a shape") for i in range(len(table))]
    table.to_csv(data / "annotations.csv", index=False)
    real = real_items(data, ["shape", "color", "size"], 32, limit=len(table))
    assert real.frame[TEXT].tolist()[3:5] == ["a sleepy cat", ""]  # the text column wins; an empty cell stays empty
    from lwgen.projection.text import text_embeddings

    hits, scores = text_search("a cat that is sleeping", text_embeddings(real.frame[TEXT].tolist()), k=3)
    assert hits[0] == 3 and scores[0] > scores[1] and 4 not in hits.tolist()
    with pytest.raises(ValueError, match="empty"):
        text_search("  ", text_embeddings(["a"]), 1)
    assert match_labels(4, np.array([2, 0])) == ["match", "other", "match", "other"]
