"""Tests for lwgen.projection: combinations, galleries, features, projections, interpolation, condition points."""
from __future__ import annotations

import json
import os
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from lwgen.checkpoint import CheckpointError
from lwgen.cli import main as cli_main
from lwgen.models import NULL
from lwgen.pipeline import DiffusionModel
from lwgen.projection import (
    build_gallery,
    combinations_from_config,
    combinations_from_data,
    condition_points,
    default_classes,
    fit_plane,
    labels_from_rows,
    lerp,
    load_gallery,
    pixel_features,
    project,
    save_gallery,
    slerp,
    walk,
    weights_hash,
)
from lwgen.projection.gallery import GALLERY, GALLERY_META, to_uint8
from lwgen.projection.text import search, text_embeddings

torch.set_num_threads(1)
VOCAB = {"group": ["animals", "flags"], "subgroup": ["cat", "dog", "europe"], "style": ["a", "b"]}


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP pools spin when the two cores are busy; one thread keeps t-SNE and UMAP fast and deterministic."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def cosine(tiny_checkpoints) -> DiffusionModel:
    return DiffusionModel.from_checkpoint(tiny_checkpoints["cosine"])


# --- combinations ---------------------------------------------------------------------------------------
def test_labels_from_rows_accepts_names_indices_and_dicts():
    rows = [["animals", "cat", "a"], [0, 1, 1], {"group": "flags", "subgroup": "europe"}, ["animals", "cat", "a"]]
    labels = labels_from_rows(rows, VOCAB)
    assert labels.tolist() == [[0, 0, 0], [0, 1, 1], [1, 2, NULL]]


def test_labels_from_rows_drops_unknown_rows_and_returns_none_when_empty():
    assert labels_from_rows([["animals", "cow", "a"], [5, 0, 0], ["animals"]], VOCAB) is None
    assert labels_from_rows([["animals", "cow", "a"], ["flags", "europe", "b"]], VOCAB).tolist() == [[1, 2, 1]]


def test_combinations_from_config_and_data(tmp_path):
    assert combinations_from_config({"vocab": VOCAB}) is None
    listed = {"vocab": VOCAB, "combinations": [["flags", "europe", "a"]]}
    assert combinations_from_config(listed).tolist() == [[1, 2, 0]]
    (tmp_path / "annotations.csv").write_text("file,group,subgroup,style,split\n"
                                              "x.png,animals,cat,a,train\ny.png,animals,dog,b,train\n"
                                              "z.png,flags,europe,a,val\nw.png,animals,cat,a,train\n")
    config = {"vocab": VOCAB, "data": {"folder": str(tmp_path), "csv": "annotations.csv", "split": "train"}}
    assert combinations_from_data(config).tolist() == [[0, 0, 0], [0, 1, 1]]
    assert combinations_from_data({**config, "data": {"folder": str(tmp_path / "missing")}}) is None


def test_default_classes_falls_back_to_product_then_first_attribute():
    assert default_classes(VOCAB, {}).shape == (12, 3)  # 2 x 3 x 2 <= 64: every combination
    big = {"a": [str(i) for i in range(10)], "b": [str(i) for i in range(10)]}
    labels = default_classes(big, {})
    assert labels.tolist() == [[i, NULL] for i in range(10)]


# --- gallery --------------------------------------------------------------------------------------------
def test_build_gallery_matches_generate(cosine, tiny_checkpoints):
    classes = torch.tensor([[0, 1, 0], [2, NULL, 1]])
    seen = []
    g = build_gallery(cosine, per_class=2, steps=2, seed=5, progress=lambda f, m: seen.append(f), classes=classes,
                      batch=3, source=tiny_checkpoints["cosine"])
    assert g.images.shape == (4, 3, 16, 16) and g.images.dtype == torch.uint8
    assert g.labels.tolist() == [[0, 1, 0], [0, 1, 0], [2, NULL, 1], [2, NULL, 1]]
    assert g.seeds.tolist() == [5, 6, 7, 8]
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert g.meta["weights"] == weights_hash(tiny_checkpoints["cosine"])
    # image i is generate() with seed + i: reproducible with `lwgen sample --seed`
    direct = cosine.generate(cosine.condition(g.labels[2:3]), [7], steps=2)
    assert torch.equal(g.images[2], to_uint8(direct[0]))
    frame = g.frame()
    assert frame.columns.tolist() == ["shape", "color", "size", "seed"]
    assert frame.iloc[2]["color"] == "any" and frame.iloc[2]["shape"] == cosine.vocab["shape"][2]


def test_gallery_save_load_round_trip(cosine, tmp_path):
    g = build_gallery(cosine, per_class=1, steps=1, classes=torch.tensor([[0, 0, 0], [1, 1, 1]]))
    assert load_gallery(tmp_path) is None
    save_gallery(tmp_path, g)
    back = load_gallery(tmp_path)
    assert torch.equal(back.images, g.images) and torch.equal(back.labels, g.labels)
    assert torch.equal(back.seeds, g.seeds) and back.vocab == g.vocab and back.meta["steps"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_gallery_rejects_mismatched_files(cosine, tmp_path):
    save_gallery(tmp_path, build_gallery(cosine, per_class=1, steps=1, classes=torch.tensor([[0, 0, 0]])))
    meta = json.loads((tmp_path / GALLERY_META).read_text())
    meta["vocab"] = {"only": ["one"]}
    (tmp_path / GALLERY_META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        load_gallery(tmp_path)
    (tmp_path / GALLERY).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="gallery.safetensors"):
        load_gallery(tmp_path)


def test_weights_hash_changes_with_the_weights(tiny_checkpoints, tmp_path):
    a = tiny_checkpoints["cosine"]
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    assert weights_hash(a) == weights_hash(b) and len(weights_hash(a)) == 16
    assert weights_hash(a) != weights_hash(tiny_checkpoints["linear"])


def test_gallery_cli_writes_into_out(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "g"
    code = cli_main(["gallery", "--checkpoint", str(tiny_checkpoints["linear"]), "--per-class", "1", "--steps", "1",
                     "--out", str(out)])
    assert code == 0 and "wrote" in capsys.readouterr().out
    g = load_gallery(out)
    assert len(g) == len(torch.unique(g.labels, dim=0)) and g.meta["per_class"] == 1


# --- features and projections ---------------------------------------------------------------------------
def test_pixel_features_shape_and_range():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    f = pixel_features(images, 8)
    assert f.shape == (5, 3 * 8 * 8) and f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1


def test_fit_plane_inverse_round_trip():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 10))
    x = rng.normal(size=(40, 2)) @ basis + 3.0  # rank-2 data: the plane holds it exactly
    plane = fit_plane(x)
    xy = plane.transform(x)
    assert xy.shape == (40, 2)
    np.testing.assert_allclose(plane.inverse(xy), x, atol=1e-8)
    np.testing.assert_allclose(plane.components @ plane.components.T, np.eye(2), atol=1e-10)
    assert plane.explained.sum() == pytest.approx(1.0) and plane.explained[0] >= plane.explained[1]
    q = np.array([[0.3, -1.2]])
    np.testing.assert_allclose(plane.transform(plane.inverse(q)), q, atol=1e-10)


def test_fit_plane_handles_rank_one_and_single_points():
    plane = fit_plane(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(plane.inverse(np.zeros((1, 2))), [[1.0, 2.0, 3.0]])
    line = fit_plane(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    assert line.explained[0] == pytest.approx(1.0) and line.explained[1] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("method", ["PCA", "t-SNE", pytest.param("UMAP", marks=pytest.mark.skipif(
    not os.environ.get("LWGEN_SLOW_TESTS"), reason="UMAP compiles with numba for 10-50 s per process; "
                                                  "LWGEN_SLOW_TESTS=1 runs it (test_project_umap_parameters "
                                                  "covers lwgen's side)"))])
def test_project_shapes(method):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (15, 60)), rng.normal(6, 1, (15, 60))]).astype(np.float32)
    xy = project(x, method, seed=0, perplexity=50, n_neighbors=100)  # clipped to what 30 points allow
    assert xy.shape == (30, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    # the two clusters stay apart
    a, b = xy[:15].mean(0), xy[15:].mean(0)
    spread = max(xy[:15].std(0).max(), xy[15:].std(0).max())
    assert np.linalg.norm(a - b) > spread


def test_project_umap_parameters(monkeypatch):
    """lwgen's side of UMAP: parameters clipped to the data, 2 components, seeded (the fit itself is stubbed)."""
    made = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def fit_transform(self, x):
            made["dims"] = x.shape
            return x[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))  # importing umap costs seconds
    xy = project(np.random.default_rng(0).normal(size=(8, 80)), "UMAP", seed=3, n_neighbors=50, min_dist=0.4)
    assert xy.shape == (8, 2) and xy.dtype == np.float32
    assert made["n_neighbors"] == 7 and made["min_dist"] == 0.4 and made["random_state"] == 3
    assert made["n_components"] == 2 and made["dims"] == (8, 8)  # PCA pre-reduction to at most N dimensions


def test_project_small_inputs_and_errors():
    assert project(np.zeros((0, 4))).shape == (0, 2)
    assert project(np.eye(3), "t-SNE").shape == (3, 2)  # too few points: PCA
    with pytest.raises(ValueError, match="unknown projection"):
        project(np.eye(3), "MDS")


# --- interpolation --------------------------------------------------------------------------------------
def test_lerp_and_slerp_endpoints():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])
    for fn in (lerp, slerp):
        assert torch.allclose(fn(a, b, 0.0), a, atol=1e-6) and torch.allclose(fn(a, b, 1.0), b, atol=1e-6)


def test_slerp_interpolates_norm_linearly_and_angle_evenly():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    mid = slerp(a, b, 0.5)
    assert mid.norm().item() == pytest.approx(3.0)
    assert torch.allclose(mid / mid.norm(), torch.tensor([1.0, 1.0]) / 2 ** 0.5, atol=1e-6)
    assert lerp(a, b, 0.5).norm().item() == pytest.approx(5 ** 0.5)  # lerp cuts the corner
    path = walk(a, b, 5, "slerp")
    norms = path.norm(dim=1)
    assert torch.allclose(norms, torch.linspace(2, 4, 5), atol=1e-5)


def test_slerp_parallel_vectors_fall_back_on_lerp():
    a = torch.tensor([1.0, 1.0])
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)
    assert torch.allclose(slerp(torch.zeros(2), a, 0.25), 0.25 * a)


def test_walk_shapes_and_errors():
    a, b = torch.randn(8), torch.randn(8)
    for mode in ("lerp", "slerp"):
        path = walk(a, b, 6, mode)
        assert path.shape == (6, 8)
        assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    with pytest.raises(ValueError):
        walk(a, b, 1)
    with pytest.raises(ValueError, match="unknown interpolation"):
        walk(a, b, 3, "cubic")


# --- condition points -----------------------------------------------------------------------------------
def test_condition_points_values_then_combinations(cosine):
    combos = torch.tensor([[0, 1, 0], [3, 2, 1]])
    vectors, frame = condition_points(cosine, combos)
    n_values = sum(len(v) for v in cosine.vocab.values())
    assert vectors.shape == (n_values + 2, cosine.embedder.config.dim) and not vectors.requires_grad
    assert (frame["kind"] == "value").sum() == n_values and frame["combination"].tolist()[-2:] == [0, 1]
    # a value's point: its learned vector plus the null vectors of the other attributes
    emb = cosine.embedder
    expected = emb.value_vectors(1)[2] + emb.null[0] + emb.null[2]
    row = frame.index[(frame["attribute"] == "color") & (frame["color"] == cosine.vocab["color"][2])][0]
    assert torch.allclose(vectors[row], expected, atol=1e-5)
    assert frame["label"].iloc[-1] == ", ".join(f"{a}={cosine.vocab[a][i]}" for a, i in zip(cosine.vocab, [3, 2, 1]))
    only_values, _ = condition_points(cosine, None)
    assert only_values.shape[0] == n_values


# --- sentence embeddings and text search ----------------------------------------------------------------
def test_search_ranks_by_cosine_and_skips_rows_without_text():
    vecs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, -1.0]])
    idx, scores = search(torch.tensor([0.0, 2.0, 0.0]), vecs, k=3)  # only the direction counts
    assert idx.tolist() == [3, 2, 0] and np.allclose(scores, [1.0, 0.8, 0.0])
    idx, _ = search(np.array([[0.0, 0.0, -1.0]]), vecs, k=10)  # (1, D) query; k above the rows with text
    assert idx.tolist()[0] == 4 and len(idx) == 4 and 1 not in idx.tolist()  # the zero row is never returned
    with pytest.raises(ValueError, match="empty"):
        search(torch.zeros(3), vecs, 2)
    with pytest.raises(ValueError, match="dimensions"):
        search(torch.ones(4), vecs, 2)


def test_text_search_finds_the_sleeping_cat():
    texts = ["red apple", "blue car", "sleepy cat"]
    vecs = text_embeddings(texts)
    idx, scores = search(text_embeddings(["a cat sleeping"])[0], vecs, k=3)
    assert idx.tolist()[0] == 2 and scores[0] > scores[1] and sorted(idx.tolist()) == [0, 1, 2]


def test_text_embeddings_encode_each_text_once_and_cache(tmp_path, monkeypatch):
    import lwgen.text

    seen = []
    real = lwgen.text.encode
    monkeypatch.setattr(lwgen.text, "encode", lambda texts, **kw: seen.append(list(texts)) or real(texts, **kw))
    vecs = text_embeddings(["blue car", "", "red apple", "blue car"], tmp_path)
    assert vecs.shape == (4, 384) and torch.equal(vecs[0], vecs[3]) and not vecs[1].any()
    assert seen == [["", "blue car", "red apple"]] and list(tmp_path.glob("text-*.safetensors"))
    again = text_embeddings(["blue car", "", "red apple", "blue car"], tmp_path)
    assert torch.equal(again, vecs) and len(seen) == 1  # read from the cache, not encoded again


def test_sentence_encoder_loads_offline(tmp_path):
    """In a fresh process with the hub switched off, an empty HF cache and no reachable network."""
    import subprocess

    script = (
        "import json, torch\n"
        "from lwgen import text\n"
        "assert not text.is_loaded()\n"
        "v = text.encode(['a cat sleeping on a sofa', 'a sleepy kitten', 'a red sports car', ''])\n"
        "import sys\n"
        "print(json.dumps({'shape': list(v.shape), 'norms': v.norm(dim=1).tolist(), 'loaded': text.is_loaded(),\n"
        "                  'heavy': [m for m in ('sentence_transformers', 'transformers') if m in sys.modules],\n"
        "                  'related': float(v[0] @ v[1]), 'unrelated': float(v[0] @ v[2])}))\n")
    dead = "http://127.0.0.1:9"  # nothing listens: any download attempt fails
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4, 384] and out["loaded"]
    assert out["heavy"] == []  # the encoder runs without importing sentence-transformers or transformers
    assert np.allclose(out["norms"][:3], 1.0, atol=1e-4) and out["norms"][3] == 0.0  # empty text: the zero row
    assert out["related"] > out["unrelated"] + 0.2
