"""Every page of the Streamlit app through streamlit.testing's AppTest, on tiny checkpoints."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lwgen.pipeline import DEFAULT_GUIDANCE, DiffusionModel
from lwgen.projection import build_gallery, save_gallery
from lwgen.prompt_reader import build_reader

torch.set_num_threads(1)
APP = Path(__file__).resolve().parents[1] / "app.py"


def make_tiny_study(path: Path, name: str = "tiny", completed: int = 3) -> str:
    """An SQLite Optuna study of fake trials (no training): `completed` complete ones and one pruned; its URL."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name=name, direction="minimize", load_if_exists=True)
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "schedule": CategoricalDistribution(["linear", "cosine"]),
             "unet_base_channels": CategoricalDistribution([32, 64])}
    points = [(1e-3, "cosine", 64, 0.3), (3e-3, "linear", 32, 0.5), (5e-4, "cosine", 32, 0.4)][:completed]
    for i, (lr, schedule, width, value) in enumerate(points):
        study.add_trial(create_trial(params={"lr": lr, "schedule": schedule, "unet_base_channels": width},
                                     distributions=dists, value=value, intermediate_values={1: value + 0.1, 2: value},
                                     user_attrs={"steps": 10 * (i + 1)}))
    study.add_trial(create_trial(params={"lr": 2e-3, "schedule": "linear", "unet_base_channels": 64},
                                 distributions=dists, state=TrialState.PRUNED, intermediate_values={1: 0.9}))
    return url


def make_app_checkpoints(tiny_checkpoints: dict[str, Path], root: Path, broken: bool = True) -> Path:
    """Copies named like the shipped checkpoints (emoji-cosine with a gallery), plus a broken one, in root."""
    for name, key in (("emoji-cosine", "cosine"), ("emoji-linear", "linear"), ("upscaler-x4", "upscaler")):
        (root / name).mkdir()
        for f in ("config.json", "model.safetensors"):
            shutil.copy(tiny_checkpoints[key] / f, root / name / f)
    model = DiffusionModel.from_checkpoint(root / "emoji-cosine")
    save_gallery(root / "emoji-cosine", build_gallery(model, 1, 2, source=root / "emoji-cosine"))
    if not broken:
        return root
    (root / "zz-broken").mkdir()
    (root / "zz-broken" / "config.json").write_text(json.dumps({"kind": "diffusion", "vocab": {"a": ["b"]}}))
    (root / "zz-broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    return root


@pytest.fixture(scope="module")
def app_env(tiny_checkpoints, shapes_dir, tmp_path_factory) -> dict[str, Path]:
    """Environment for the app: tiny checkpoints only (the shipped ones hidden, an empty runs folder), a private
    cache, the shapes data as real images."""
    root = make_app_checkpoints(tiny_checkpoints, tmp_path_factory.mktemp("app-checkpoints"))
    return {"LWGEN_CHECKPOINTS": root, "LWGEN_CACHE": tmp_path_factory.mktemp("app-cache"), "LWGEN_DATA": shapes_dir,
            "LWGEN_SHIPPED": "0", "LWGEN_RUNS": tmp_path_factory.mktemp("app-runs")}


def open_page(env: dict, monkeypatch, page: str | None = None) -> AppTest:
    """Run the app (optionally switched to pages/<page>.py) and check it raised nothing."""
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, label: str) -> AppTest:
    """Press the button with this label and check the run raised nothing and showed no error."""
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_generate_page(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch)
    labels = [s.label for s in at.selectbox]
    assert labels[0] == "Checkpoint" and {"shape", "color", "size", "Sampler"} <= set(labels)
    assert at.selectbox(key="gen:checkpoint").value == "emoji-cosine" and not at.image
    assert not at.text_input and any("trained without text" in c.value for c in at.caption)  # no prompt box
    at.selectbox(key="gen:emoji-cosine:shape").select("circle").run()
    at.number_input(key="gen:count").set_value(3)
    at.number_input(key="gen:steps").set_value(2)
    click(at, "Generate")
    assert len(at.image) == 3
    assert at.code[0].value == ("lwgen sample --checkpoint " + str(app_env["LWGEN_CHECKPOINTS"] / "emoji-cosine")
                                + f" --set shape=circle -n 3 --steps 2 --sampler dpmpp --guidance {DEFAULT_GUIDANCE:g}"
                                  " --seed 0 --out grid.png")
    assert len(at.get("download_button")) == 2
    assert "0 = unconditional" in at.number_input(key="gen:guidance").help
    at.number_input(key="gen:count").set_value(64)
    at.number_input(key="gen:steps").set_value(1000).run()
    assert any(c.value.startswith("64 images x 1000 steps: about ") for c in at.caption)


def test_generate_narrows_choices_and_upscales(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch)
    vocab = DiffusionModel.from_checkpoint(app_env["LWGEN_CHECKPOINTS"] / "emoji-cosine").vocab
    full = at.selectbox(key="gen:emoji-cosine:size").options
    assert full == ["any", *vocab["size"]]
    at.selectbox(key="gen:emoji-cosine:shape").select("cross").run()
    at.selectbox(key="gen:emoji-cosine:color").select(at.selectbox(key="gen:emoji-cosine:color").options[1]).run()
    narrowed = at.selectbox(key="gen:emoji-cosine:size").options
    assert narrowed[0] == "any" and set(narrowed) <= set(full)
    at.toggle(key="gen:upscale").set_value(True).run()
    at.number_input(key="gen:count").set_value(1)
    at.number_input(key="gen:steps").set_value(1)
    click(at, "Generate")
    assert len(at.image) == 1 and "64 px" in " ".join(m.value for m in at.markdown)
    assert "--upscale" in at.code[0].value


def test_broken_checkpoint_is_an_error_message(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch)
    at.selectbox(key="gen:checkpoint").select("zz-broken").run()
    assert not at.exception
    assert at.error and "zz-broken" in at.error[0].value and "model.safetensors" in at.error[0].value


@pytest.mark.parametrize("page", [None, "compare", "explore", "lab", "models"])
def test_no_checkpoints_says_how_to_train(page, app_env, monkeypatch, tmp_path):
    at = open_page({**app_env, "LWGEN_CHECKPOINTS": tmp_path}, monkeypatch, page)
    assert any("lwgen train diffusion" in c.value for c in at.code) and at.info
    assert str(tmp_path) in at.info[0].value and f"{app_env['LWGEN_RUNS']}/` (two levels down)" in at.info[0].value


def copy_checkpoint(source: Path, folder: Path) -> Path:
    """A copy of a checkpoint's config and weights in folder (made with its parents)."""
    folder.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(source / f, folder / f)
    return folder


def test_runs_and_added_folders_are_listed_and_a_new_run_appears_on_rerun(app_env, tiny_checkpoints, monkeypatch,
                                                                          tmp_path):
    runs = tmp_path / "runs"
    copy_checkpoint(tiny_checkpoints["linear"], runs / "mine")  # `lwgen train diffusion --out runs/mine`
    extra = copy_checkpoint(tiny_checkpoints["cosine"], tmp_path / "elsewhere" / "emoji-cosine")  # a name taken
    env = {**app_env, "LWGEN_RUNS": runs, "LWGEN_CHECKPOINTS": os.pathsep.join(
        [str(app_env["LWGEN_CHECKPOINTS"]), str(extra)])}
    at = open_page(env, monkeypatch)
    names = at.selectbox(key="gen:checkpoint").options
    assert names[:2] == ["emoji-cosine", "emoji-linear"] and "elsewhere/emoji-cosine" in names
    assert "runs/mine" in names and "runs/fit/diffusion-cosine" not in names
    copy_checkpoint(tiny_checkpoints["cosine"], runs / "fit" / "diffusion-cosine")  # written while the app runs
    at.run()
    assert not at.exception and "runs/fit/diffusion-cosine" in at.selectbox(key="gen:checkpoint").options
    at.selectbox(key="gen:checkpoint").select("runs/fit/diffusion-cosine").run()
    assert not at.exception and not at.error and at.selectbox(key="gen:runs/fit/diffusion-cosine:shape")
    at.switch_page("pages/models.py").run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert f"diffusion · from runs/ · `{runs / 'fit' / 'diffusion-cosine'}`" in captions
    assert f"from LWGEN_CHECKPOINTS · `{extra}`" in captions
    assert [s.value for s in at.subheader].count("runs/fit/diffusion-cosine") == 1


def test_compare_page(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch, "compare")
    assert at.selectbox(key="cmp:A:checkpoint").value == "emoji-linear"
    assert at.selectbox(key="cmp:B:checkpoint").value == "emoji-cosine"
    at.number_input(key="cmp:A:steps").set_value(2)
    at.number_input(key="cmp:B:steps").set_value(3)
    at.selectbox(key="cmp:B:sampler").select("ddim")
    at.run()
    assert at.slider(key="cmp:snapshots").value == 3 and "after steps 1, 2, 3" in [c.value for c in at.caption]
    at.slider(key="cmp:snapshots").set_value(2).run()
    assert "after steps 2, 3" in [c.value for c in at.caption]
    click(at, "Run both")
    assert [m.label for m in at.metric] == ["Sampling time"] * 2
    assert "under load" in at.metric[0].help and any("under load" in c.value for c in at.caption)
    assert len(at.image) == 2 + 1 + 2  # two final images; x0 after step 2 for A (2 steps), steps 2 and 3 for B
    assert any("step 3 · t=" in c for im in at.image for c in im.captions)
    assert not [b for b in at.button if b.label == "Cancel"]  # shown only while sampling


def test_explore_page(app_env, monkeypatch):
    monkeypatch.setattr("lwgen.text.is_loaded", lambda: False)  # as in a fresh process: no encoder yet
    at = open_page(app_env, monkeypatch, "explore")
    assert at.selectbox(key="exp:emoji-cosine:gallery").value == "shipped with the checkpoint"
    assert at.multiselect(key="exp:sources").value == ["generated", "real"]
    assert len(at.get("plotly_chart")) == 2  # image embeddings and learned condition vectors; text waits
    assert any("sentence encoder" in i.value for i in at.info)
    at.selectbox(key="exp:img:method").select("t-SNE").run()
    at.slider(key="exp:img:perplexity").set_value(5)
    at.selectbox(key="exp:color").select("source").run()
    at.selectbox(key="exp:cond:color").select("kind").run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 2
    assert any("images, t-SNE of pixels (16 px)" in c.value for c in at.caption)


def test_explore_builds_a_gallery(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch, "explore")
    at.selectbox(key="exp:checkpoint").select("emoji-linear").run()
    at.multiselect(key="exp:sources").set_value([]).run()
    at.number_input(key="exp:build:per_class").set_value(1)
    at.number_input(key="exp:build:steps").set_value(1)
    click(at, "Build gallery")
    assert at.selectbox(key="exp:emoji-linear:gallery").value == "built here: 1x1-seed0"
    built = list((app_env["LWGEN_CACHE"] / "galleries").glob("emoji-linear-*/1x1-seed0/gallery.safetensors"))
    assert len(built) == 1


def test_lab_page(app_env, monkeypatch):
    at = open_page(app_env, monkeypatch, "lab")
    assert at.selectbox(key="lab:A:emoji-cosine:shape").value != at.selectbox(key="lab:B:emoji-cosine:shape").value
    at.slider(key="lab:frames").set_value(3)
    at.number_input(key="lab:steps").set_value(2)
    at.radio(key="lab:mode").set_value("lerp")
    click(at, "Walk")
    assert len(at.image) == 3 and "lerp" in " ".join(m.value for m in at.markdown)
    at.number_input(key="lab:x").set_value(0.5)
    at.number_input(key="lab:count").set_value(2)
    click(at, "Generate here")
    assert len(at.image) == 3 + 2 and len(at.get("plotly_chart")) == 1
    assert any("PC1 = 0.500" in m.value for m in at.markdown)
    assert any(c.value.startswith("Nearest known conditions") for c in at.caption) and not at.warning
    at.number_input(key="lab:x").set_value(1e4).run()  # far off the map: a warning, no neighbours
    assert "outside the known conditions" in at.warning[0].value
    assert not any(c.value.startswith("Nearest known conditions") for c in at.caption)


def test_models_page(app_env, monkeypatch):
    scores = Path(app_env["LWGEN_CHECKPOINTS"]) / "emoji-linear" / "eval.json"
    scores.write_text(json.dumps({"fid": 9.5, "warnings": ["the classifier is too weak to judge 'shape'"]}))
    try:
        at = open_page(app_env, monkeypatch, "models")
    finally:
        scores.unlink()
    assert [w.value for w in at.warning] == ["The classifier is too weak to judge 'shape'."]
    assert not any("warnings" in str(d.value) for d in at.dataframe)  # below the metrics, not a row of them
    assert [m.label for m in at.metric].count("Parameters") == 3  # cosine, linear, upscaler
    assert at.expander[0].label == "What the metrics mean"
    glossary = at.expander[0].markdown[0].value
    assert "**fid** (lower is better)" in glossary and "**recall** (higher is better)" in glossary
    assert any("4 checkpoints: 4 from LWGEN_CHECKPOINTS" in c.value for c in at.caption)
    assert len(at.error) == 1 and "zz-broken" in at.error[0].value
    assert len(at.get("plotly_chart")) == 3 and len(at.image) > 0  # loss curves; gallery samples of cosine
    before = len(at.image)
    next(b for b in at.button if b.label == "Generate samples").click().run()
    assert not at.exception and len(at.image) > before
    next(b for b in at.button if b.label == "Up-scale 4 gallery images").click().run()
    assert not at.exception and any("x4 output (64 px)" in c for im in at.image for c in im.captions)


def test_tuning_page_shows_a_study(app_env, monkeypatch, tmp_path):
    url = make_tiny_study(tmp_path / "tune.db")
    at = open_page({**app_env, "LWGEN_TUNE_STORAGE": url}, monkeypatch, "tuning")
    assert at.text_input(key="tune:storage").value == url and at.selectbox(key="tune:study").value == "tiny"
    assert not at.error and [m.value for m in at.metric] == ["4", "3", "1", "0 / 0", "0.3000"]
    table = at.dataframe[0].value
    assert list(table["trial"]) == [0, 1, 2, 3] and list(table["state"])[-1] == "pruned"
    assert len(at.get("plotly_chart")) == 3  # history, importances, parallel coordinates
    assert any("trial 0" in m.value for m in at.markdown)


def test_tuning_page_opens_the_shipped_demo_study_until_there_is_one_of_ones_own(app_env, monkeypatch, tmp_path):
    from lwgen.app.tuning import SHIPPED_STUDY
    from lwgen.shipped import shipped_root

    monkeypatch.chdir(tmp_path)  # no runs/tune.db here
    monkeypatch.delenv("LWGEN_TUNE_STORAGE", raising=False)
    demo = shipped_root() / SHIPPED_STUDY
    before = demo.read_bytes()
    at = open_page({**app_env, "LWGEN_SHIPPED": "1"}, monkeypatch, "tuning")
    assert at.text_input(key="tune:storage").value == f"sqlite:///{demo}"
    assert "demo study shipped with lwgen" in at.info[0].value and not at.error
    assert at.selectbox(key="tune:study").value == "emoji-demo" and int(at.metric[0].value) == 8
    assert len(at.get("plotly_chart")) == 3
    assert demo.read_bytes() == before  # reading the study leaves the shipped file as it was
    import optuna

    (tmp_path / "runs").mkdir()
    optuna.storages.RDBStorage("sqlite:///runs/tune.db")  # a search of one's own has begun
    at = open_page({**app_env, "LWGEN_SHIPPED": "1"}, monkeypatch, "tuning")
    assert at.text_input(key="tune:storage").value == "sqlite:///runs/tune.db"  # one's own storage, once it exists


def test_tuning_page_explains_what_is_missing(app_env, monkeypatch, tmp_path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    at = open_page({**app_env, "LWGEN_TUNE_STORAGE": missing}, monkeypatch, "tuning")
    assert "does not exist yet" in at.info[0].value and "lwgen tune" in at.code[0].value
    assert "What this page is for" in at.markdown[0].value and "runs/tune.db" in at.markdown[0].value
    assert not (tmp_path / "none.db").exists()  # looking does not create it
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'empty.db'}")  # tables, no study
    at.text_input(key="tune:storage").set_value(f"sqlite:///{tmp_path / 'empty.db'}").run()
    assert not at.exception and "holds no study yet" in at.info[0].value
    one = make_tiny_study(tmp_path / "one.db", completed=1)
    at.text_input(key="tune:storage").set_value(one).run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 2
    assert any("need at least 2 completed trials (1 so far)" in i.value for i in at.info)


# --- prompts ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_env(app_env, tiny_text_checkpoint, tmp_path_factory, shapes_dir) -> dict[str, Path]:
    """The app environment with a generator that takes text (`text-cosine`, with a prompt reader) beside one that
    does not."""
    root = tmp_path_factory.mktemp("text-checkpoints")
    for name, source in (("text-cosine", tiny_text_checkpoint),
                         ("emoji-linear", app_env["LWGEN_CHECKPOINTS"] / "emoji-linear")):
        (root / name).mkdir()
        for f in ("config.json", "model.safetensors"):
            shutil.copy(source / f, root / name / f)
    model = DiffusionModel.from_checkpoint(root / "text-cosine")
    save_gallery(root / "text-cosine", build_gallery(model, 1, 1, source=root / "text-cosine"))
    build_reader(shapes_dir, "annotations.csv", "file", "train", model.vocab, "").save(root / "text-cosine")
    return {**app_env, "LWGEN_CHECKPOINTS": root}


def test_generate_with_a_prompt_loads_the_encoder_on_the_first_prompt_only(text_env, monkeypatch):
    import lwgen.text

    monkeypatch.setattr(lwgen.text, "_encoder", None)  # a fresh process: the encoder is not loaded yet
    at = open_page(text_env, monkeypatch)
    assert at.selectbox(key="gen:checkpoint").value == "text-cosine"
    assert not lwgen.text.is_loaded()  # the first page opens without the sentence encoder
    at.selectbox(key="gen:text-cosine:shape").select("any")
    at.selectbox(key="gen:text-cosine:color").select("any")
    at.text_input(key="gen:prompt").input("a small red circle")
    at.number_input(key="gen:count").set_value(2)
    at.number_input(key="gen:steps").set_value(1)
    click(at, "Generate")
    assert len(at.image) == 2 and lwgen.text.is_loaded()
    assert '"a small red circle"' in " ".join(m.value for m in at.markdown)
    assert "--prompt 'a small red circle'" in at.code[0].value and "--set" not in at.code[0].value
    read = [c.value for c in at.caption if c.value.startswith("Read from the prompt")]
    assert read and "shape circle" in read[0] and "color red" in read[0]  # the reader filled both "any"s
    assert "--no-read-prompt" not in at.code[0].value  # lwgen sample reads the prompt the same way by default
    at.toggle(key="gen:read").set_value(False)
    click(at, "Generate")
    assert not any(c.value.startswith("Read from the prompt") for c in at.caption)
    assert "--no-read-prompt" in at.code[0].value


def test_compare_with_a_prompt_and_a_model_without_text(text_env, monkeypatch):
    at = open_page(text_env, monkeypatch, "compare")
    assert at.selectbox(key="cmp:A:checkpoint").value == "emoji-linear"
    assert at.selectbox(key="cmp:B:checkpoint").value == "text-cosine"
    at.number_input(key="cmp:A:steps").set_value(1)
    at.number_input(key="cmp:B:steps").set_value(1)
    at.text_input(key="cmp:prompt").input("a blue square").run()
    assert any("Run A was trained without text" in c.value for c in at.caption)
    click(at, "Run both")
    shown = " ".join(m.value for m in at.markdown)
    assert '"a blue square"' in shown and shown.count("prompt ignored") == 1 and len(at.image) >= 2


def test_lab_walks_between_two_prompts(text_env, app_env, monkeypatch):
    at = open_page(app_env, monkeypatch, "lab")
    assert any("trained without text" in c.value for c in at.caption) and not at.text_input
    at = open_page(text_env, monkeypatch, "lab")
    at.slider(key="lab:frames").set_value(3)
    at.number_input(key="lab:steps").set_value(1)
    next(b for b in at.button if b.label == "Walk between the prompts").click().run()
    assert at.info and "Type prompt A and prompt B" in " ".join(i.value for i in at.info) and not at.image
    at.text_input(key="lab:prompt:A").input("a red circle")
    at.text_input(key="lab:prompt:B").input("a blue square")
    click(at, "Walk between the prompts")
    assert len(at.image) == 3 and [im.captions[0] for im in at.image][-1] == "t = 1.00"
    assert '"a red circle" → "a blue square"' in " ".join(m.value for m in at.markdown)


def test_explore_text_search_shows_the_nearest_images(text_env, monkeypatch):
    at = open_page(text_env, monkeypatch, "explore")
    at.text_input(key="exp:txt:query").input("a red circle")
    at.number_input(key="exp:txt:k").set_value(3).run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 3  # image embeddings, text embeddings, learned condition vectors
    assert any("Closest in meaning to “a red circle”" in m.value for m in at.markdown)
    hits = [im.captions[0] for im in at.image]
    assert len(hits) == 3 and all(" · " in c for c in hits)
    scores = [float(c.rsplit(" · ", 1)[1]) for c in hits]
    assert scores == sorted(scores, reverse=True) and "red" in hits[0] and "circle" in hits[0]
    assert at.selectbox(key="exp:txt:color:search").value == "query"
