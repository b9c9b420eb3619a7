"""Tests for lwgen.data: image loading, tables, cache, builders and CLI."""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lwgen.data import (
    DataError,
    ImageTable,
    build_emoji,
    class_balanced_weights,
    downsample,
    load_image,
    make_shapes,
    to_tensor,
)
from lwgen.data import cli as data_cli

RED = (220, 30, 30)


def px(img: Image.Image) -> np.ndarray:
    """Image as an (H, W, 3) int array."""
    return np.asarray(img).astype(int)


def save(img: Image.Image, path: Path, **kw) -> Path:
    """Save an image, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def write_png(path: Path, color=RED, size=(8, 8)) -> Path:
    """Write a solid-colour RGB PNG."""
    return save(Image.new("RGB", size, color), path)


def write_table(root: Path, rows: list[dict], make_images: bool = True) -> Path:
    """Write annotations.csv (and a PNG for every file cell unless disabled)."""
    root.mkdir(parents=True, exist_ok=True)
    if make_images:
        for i, r in enumerate(rows):
            if r.get("file"):
                write_png(root / r["file"], color=(10 * i, 100, 200))
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    return root


def basic_rows() -> list[dict]:
    return [
        {"file": "img/a.png", "shape": "circle", "color": "red", "split": "train"},
        {"file": "img/b.png", "shape": "square", "color": "blue", "split": "train"},
        {"file": "img/c.png", "shape": "circle", "color": "", "split": "val"},
        {"file": "img/d.png", "shape": "circle", "color": "blue", "split": "train"},
    ]


# ---------------------------------------------------------------- images


def test_rgb_and_grey(tmp_path):
    img = load_image(write_png(tmp_path / "a.png", RED, (10, 10)), 8)
    assert img.mode == "RGB" and img.size == (8, 8)
    assert np.abs(px(img) - np.array(RED)).max() <= 1
    grey = load_image(save(Image.new("L", (8, 8), 100), tmp_path / "g.png"), 8)
    assert (px(grey) == 100).all()


def test_rgba_transparent_becomes_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 4, 8))
    out = px(load_image(save(im, tmp_path / "a.png"), 8))
    assert (out[:, :4] == [255, 0, 0]).all()
    assert (out[:, 4:] == 255).all()
    la = Image.new("LA", (8, 8), (0, 0))
    assert (px(load_image(save(la, tmp_path / "la.png"), 8)) == 255).all()


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 0, 8, 4))
    path = save(im, tmp_path / "p.png", transparency=0)
    out = px(load_image(path, 8))
    assert (out[:4] == [0, 255, 0]).all()
    assert (out[4:] == 255).all()


def test_16bit_and_cmyk(tmp_path):
    a = np.full((8, 8), 257 * 100, dtype=np.uint16)
    a[:, 4:] = 65535
    path = save(Image.fromarray(a), tmp_path / "i16.png")
    assert Image.open(path).mode.startswith("I")
    out = px(load_image(path, 8))
    assert (out[:, :4] == 100).all() and (out[:, 4:] == 255).all()
    cmyk = save(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), tmp_path / "c.tif")
    assert (px(load_image(cmyk, 8)) == 255).all()


def test_pad_and_crop(tmp_path):
    path = write_png(tmp_path / "wide.png", RED, (8, 4))
    padded = px(load_image(path, 8, fit="pad"))
    assert (padded[:2] == 255).all() and (padded[6:] == 255).all()
    assert (padded[2:6] == RED).all()
    im = Image.new("RGB", (12, 8), (0, 0, 255))
    im.paste(RED, (2, 0, 10, 8))
    cropped = px(load_image(save(im, tmp_path / "c.png"), 8, fit="crop"))
    assert (cropped == RED).all()
    with pytest.raises(ValueError):
        load_image(path, 8, fit="stretch")


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="missing.png.*not found"):
        load_image(tmp_path / "missing.png", 8)
    text = tmp_path / "text.png"
    text.write_text("hello, not an image")
    with pytest.raises(DataError, match="text.png.*not an image"):
        load_image(text, 8)
    full = write_png(tmp_path / "full.png", size=(64, 64))
    data = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    save(Image.fromarray(data), full)
    raw = full.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.png.*(corrupt|truncated)"):
        load_image(cut, 8)


def test_to_tensor_and_downsample():
    img = Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8))
    t = to_tensor(img)
    assert t.dtype == torch.uint8 and t.shape == (3, 4, 6)
    x = torch.tensor([[0, 1, 10, 20], [2, 3, 30, 40], [255, 255, 7, 7], [255, 254, 7, 8]], dtype=torch.uint8)
    x = x.expand(3, 4, 4).contiguous()
    y = downsample(x, 2)
    assert y.dtype == torch.uint8 and y.shape == (3, 2, 2)
    assert y[0].tolist() == [[2, 25], [255, 7]]  # 1.5 -> 2, 25, 254.75 -> 255, 7.25 -> 7
    yf = downsample(x.float().unsqueeze(0), 2)
    assert yf.shape == (1, 3, 2, 2) and torch.allclose(yf[0, 0], torch.tensor([[1.5, 25.0], [254.75, 7.25]]))
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(downsample(batch, 4)[1], downsample(batch[1], 4))
    with pytest.raises(ValueError):
        downsample(batch, 3)


# ---------------------------------------------------------------- tables


def test_load_table_basic(tmp_path):
    root = write_table(tmp_path / "d", basic_rows())
    t = ImageTable.load(root, ["shape", "color"], size=8, progress=False)
    assert len(t) == 4 and t.images.shape == (4, 3, 8, 8) and t.images.dtype == torch.uint8
    assert t.rows == [2, 3, 4, 5]
    assert t.vocab == {"shape": ["circle", "square"], "color": ["blue", "red", "unknown"]}
    assert t.labels.dtype == torch.int64 and t.labels.tolist() == [[0, 1], [1, 0], [0, 2], [0, 0]]
    assert list(t.extra.columns) == ["file", "shape", "color", "split"]
    assert t.encode({"shape": "square", "color": "red"}) == [1, 1]
    assert t.decode([1, 1]) == {"shape": "square", "color": "red"}
    sub = t.subset(t.labels[:, 0] == 0)
    assert sub.files == ["img/a.png", "img/c.png", "img/d.png"] and sub.vocab == t.vocab
    assert torch.equal(sub.images[1], t.images[2]) and sub.extra["file"].tolist() == sub.files
    assert t.subset([3, 0]).rows == [5, 2]


def test_encode_errors(tmp_path):
    t = ImageTable.load(write_table(tmp_path / "d", basic_rows()), ["shape", "color"], size=8, progress=False)
    with pytest.raises(DataError, match="'green'.*'blue', 'red', 'unknown'"):
        t.encode({"shape": "circle", "color": "green"})
    with pytest.raises(DataError, match="'texture'.*'shape', 'color'"):
        t.encode({"shape": "circle", "color": "red", "texture": "x"})


def test_csv_and_column_errors(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        ImageTable.load(tmp_path / "nope", ["shape"], progress=False)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="annotation CSV not found"):
        ImageTable.load(tmp_path / "d", ["shape"], progress=False)
    (tmp_path / "d" / "annotations.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        ImageTable.load(tmp_path / "d", ["shape"], progress=False)
    root = write_table(tmp_path / "e", basic_rows())
    with pytest.raises(DataError, match="'texture' not found; columns are: 'file', 'shape', 'color', 'split'"):
        ImageTable.load(root, ["shape", "texture"], progress=False)
    with pytest.raises(DataError, match="'path' not found"):
        ImageTable.load(root, ["shape"], file_column="path", progress=False)


def test_bad_rows(tmp_path):
    rows = basic_rows()
    root = write_table(tmp_path / "d", rows)
    (root / "img/b.png").write_text("not an image")
    raw = (root / "img/c.png").read_bytes()
    noisy = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    save(Image.fromarray(noisy), root / "img/c.png")
    raw = (root / "img/c.png").read_bytes()
    (root / "img/c.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"row 3: file 'img/b.png': not an image"):
        ImageTable.load(root, ["shape"], size=8, progress=False)
    (root / "img/d.png").unlink()  # a missing file is reported before any decoding
    with pytest.raises(DataError, match=r"row 5: file 'img/d.png': file not found"):
        ImageTable.load(root, ["shape"], size=8, progress=False)
    t = ImageTable.load(root, ["shape"], size=8, skip_bad=True, progress=False)
    assert t.files == ["img/a.png"] and t.rows == [2]
    assert [s["row"] for s in t.skipped] == [3, 4, 5]
    assert "truncated" in t.skipped[1]["error"] or "corrupt" in t.skipped[1]["error"]
    report = pd.read_csv(root / ".lwgen-cache" / "skipped.csv")
    assert list(report.columns) == ["row", "file", "error"] and report["row"].tolist() == [3, 4, 5]
    # the cached result (with its failures) still raises without skip_bad
    write_png(root / "img/d.png")
    with pytest.raises(DataError, match=r"row 3: file 'img/b.png'"):
        ImageTable.load(root, ["shape"], size=8, progress=False)


def test_empty_file_cell(tmp_path):
    rows = basic_rows()
    rows[1]["file"] = ""
    root = write_table(tmp_path / "d", rows)
    with pytest.raises(DataError, match="row 3: column 'file' is empty"):
        ImageTable.load(root, ["shape"], size=8, progress=False)
    assert len(ImageTable.load(root, ["shape"], size=8, skip_bad=True, progress=False)) == 3


def test_given_vocab(tmp_path):
    root = write_table(tmp_path / "d", basic_rows())
    vocab = {"shape": ["circle", "unknown"], "color": ["blue", "red", "unknown"]}
    t = ImageTable.load(root, ["shape", "color"], size=8, vocab=vocab, progress=False)
    assert t.vocab == vocab and t.labels[:, 0].tolist() == [0, 1, 0, 0]
    with pytest.raises(DataError, match="row 3: column 'shape': value 'square'"):
        ImageTable.load(root, ["shape"], size=8, vocab={"shape": ["circle"]}, progress=False)


def test_split_filter(tmp_path):
    root = write_table(tmp_path / "d", basic_rows())
    assert ImageTable.load(root, ["shape"], size=8, split="val", progress=False).rows == [4]
    assert len(ImageTable.load(root, ["shape"], size=8, split="train", progress=False)) == 3
    with pytest.raises(DataError, match="split values are: 'train', 'val'"):
        ImageTable.load(root, ["shape"], size=8, split="test", progress=False)


def test_cache_round_trip(tmp_path, monkeypatch):
    root = write_table(tmp_path / "d", basic_rows())
    first = ImageTable.load(root, ["shape"], size=8, progress=False)
    caches = list((root / ".lwgen-cache").glob("*.safetensors"))
    assert len(caches) == 1 and caches[0].with_suffix(".json").is_file()

    def boom(*a, **k):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr("lwgen.data.dataset.decode_image", boom)
        second = ImageTable.load(root, ["shape"], size=8, progress=False)
    assert torch.equal(first.images, second.images)
    caches[0].write_bytes(b"garbage")
    third = ImageTable.load(root, ["shape"], size=8, progress=False)
    assert torch.equal(first.images, third.images)
    write_png(root / "img/a.png", (0, 0, 0))  # a changed image invalidates the cache
    fourth = ImageTable.load(root, ["shape"], size=8, progress=False)
    assert fourth.images[0].max() == 0
    assert not (tmp_path / "e" / ".lwgen-cache").exists()
    no_cache = ImageTable.load(write_table(tmp_path / "e", basic_rows()), ["shape"], size=8, cache=False,
                               progress=False)
    assert len(no_cache) == 4 and not (tmp_path / "e" / ".lwgen-cache").exists()


def test_class_balanced_weights():
    labels = torch.tensor([[0, 5], [0, 5], [0, 5], [1, 5]])
    w = class_balanced_weights(labels, 0, power=1.0)
    assert torch.allclose(w, torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2]))
    w = class_balanced_weights(labels, 0)
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and torch.isclose(w[3] / w[0], torch.tensor(3 ** 0.5))
    assert torch.allclose(class_balanced_weights(labels, 1), torch.full((4,), 0.25))


# ---------------------------------------------------------------- builders


def test_shapes_deterministic(tmp_path):
    a = make_shapes(tmp_path / "a", n=12, size=32, seed=3)
    b = make_shapes(tmp_path / "b", n=12, size=32, seed=3)
    c = make_shapes(tmp_path / "c", n=12, size=32, seed=4)
    ta, tb = (a / "annotations.csv").read_text(), (b / "annotations.csv").read_text()
    assert ta == tb and ta != (c / "annotations.csv").read_text()
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in pd.read_csv(a / "annotations.csv")["file"])
    df = pd.read_csv(a / "annotations.csv")
    assert list(df.columns) == ["file", "shape", "color", "size", "split"] and (df["split"] == "val").sum() == 1
    t = ImageTable.load(a, ["shape", "color", "size"], size=32, progress=False)
    assert t.images.shape == (12, 3, 32, 32)


SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36"><circle cx="18" cy="18" r="12" fill="#f00"/></svg>'


def make_tgz(path: Path, files: dict[str, str]) -> Path:
    """Write a gzipped tarball holding the given text files."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_build_emoji_from_tarballs(tmp_path, capsys):
    def meta(hexcode, name, tone="", base=""):
        return {"hexcode": hexcode, "group": "people-body" if base or tone else "smileys-emotion",
                "subgroups": "hand" if base or tone else "face-smiling", "annotation": name,
                "skintone": tone, "skintone_base_hexcode": base}

    records = [{**meta("1F600", "grinning face"), "tags": "face, grin", "openmoji_tags": "happy, Face"},
               meta("1F44B", "waving hand"),
               meta("1F44B-1F3FB", "waving hand: light skin tone", 1, "1F44B"),
               meta("2764-FE0F", "red heart")]
    om = make_tgz(tmp_path / "om.tgz", {
        "package/data/openmoji.json": json.dumps(records),
        "package/color/svg/1F600.svg": SVG,
        "package/color/svg/1F44B.svg": SVG,
        "package/color/svg/1F44B-1F3FB.svg": SVG,
        "package/color/svg/2764-FE0F.svg": "<svg this is broken",
    })
    tw = make_tgz(tmp_path / "tw.tgz", {
        "package/1f600.svg": SVG, "package/1f44b-1f3fb.svg": SVG, "package/2764.svg": SVG,
        "package/1f999.svg": SVG, "package/package.json": "{}",
    })
    out = tmp_path / "emoji"
    df = build_emoji(out, size=24, twemoji_tgz=tw, openmoji_tgz=om, progress=False)
    csv = pd.read_csv(out / "annotations.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["file", "name", "group", "subgroup", "style", "skin_tone", "hexcode", "split",
                                 "text"]
    assert set(csv.loc[csv["hexcode"] == "1F600", "text"]) == {"grinning face, face, grin, happy"}  # no repeats
    assert set(csv.loc[csv["hexcode"] == "1F44B", "text"]) == {"waving hand"}
    assert len(csv) == len(df) == 6  # 3 openmoji (one broken SVG) + 3 twemoji
    assert sorted(csv["file"]) == sorted([
        "images/openmoji/1F600.png", "images/openmoji/1F44B.png", "images/openmoji/1F44B-1F3FB.png",
        "images/twemoji/1F600.png", "images/twemoji/1F44B-1F3FB.png", "images/twemoji/2764-FE0F.png"])
    assert set(csv["skin_tone"]) == {"none", "1"} and set(csv["split"]) <= {"train", "val"}
    wave = csv[csv["hexcode"].str.startswith("1F44B")]
    assert wave["split"].nunique() == 1
    for f in csv["file"]:
        with Image.open(out / f) as im:
            assert im.size == (24, 24) and im.mode == "RGB"
            assert im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((12, 12))[0] > 200
    outerr = capsys.readouterr()
    assert "skipped 1 twemoji without metadata" in outerr.out and "1 SVGs failed" in outerr.err


def test_build_emoji_needs_npm(tmp_path, monkeypatch):
    monkeypatch.setattr("lwgen.data.emoji.shutil.which", lambda name: None)
    with pytest.raises(DataError, match="npm is not installed"):
        build_emoji(tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------- CLI


def test_cli_shapes_and_check(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "shapes", "--out", str(tmp_path / "s"), "--n", "10", "--size", "16"])
    assert data_cli.run(args) == 0
    args = parser.parse_args(["data", "check", "--data", str(tmp_path / "s"), "--attributes", "shape", "color",
                              "--size", "16"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "10 images of 16x16 px" in out and "shape (" in out and "color (" in out


def test_check_reports_the_split_training_uses(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    folder = make_shapes(tmp_path / "s", n=12, size=16, seed=0)
    csv = folder / "annotations.csv"
    df = pd.read_csv(csv, dtype=str)
    df["split"] = ["train"] * 7 + ["val"] * 4 + ["test"]
    lone = df.loc[0, "color"]
    df.loc[df["color"] == lone, "split"] = "val"  # a colour that no training row has
    df.to_csv(csv, index=False)
    check = ["data", "check", "--data", str(folder), "--attributes", "shape", "color", "--size", "16", "--no-cache"]
    args = parser.parse_args(check)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    counts = df["split"].value_counts()
    assert f"train split: {counts['train']} of 12 rows (what lwgen train uses by default); " in out
    assert f"val: {counts['val']}" in out and (f"test: {counts['test']}" in out) == ("test" in counts)
    assert f"color: 1 value has no train row (a generator never learns it): {lone}\n" in out
    assert "12 images of 16x16 px" in out  # and the counts below are over all rows
    args = parser.parse_args([*check, "--split", "val"])
    assert args.func(args) == 0
    assert f"{counts['val']} images" in (out := capsys.readouterr().out) and "only the rows with split == 'val'" in out
    df.drop(columns="split").to_csv(csv, index=False)
    args = parser.parse_args(check)
    assert args.func(args) == 0
    assert "no 'split' column: lwgen train needs --split '' and then trains on all 12 rows" in capsys.readouterr().out
