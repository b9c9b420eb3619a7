"""Build the demo emoji data set (Twemoji + OpenMoji) as PNGs plus annotations.csv."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..io import atomic_write_bytes, atomic_write_text
from .images import DataError

TWEMOJI = ("@twemoji/svg", "15.0.0", "twemoji-svg-15.0.0.tgz")
OPENMOJI = ("openmoji", "17.0.0", "openmoji-17.0.0.tgz")
COLUMNS = ["file", "name", "group", "subgroup", "style", "skin_tone", "hexcode", "split", "text"]
VAL_PERCENT = 10
DEFAULT_CACHE = Path("~/.cache/lwgen/npm")


def normalise_hexcode(hexcode: str) -> str:
    """Normalise an emoji hexcode for matching: lowercase, no 'fe0f' parts, no leading zeros."""
    parts = [p.lower().lstrip("0") or "0" for p in hexcode.strip().split("-") if p]
    return "-".join(p for p in parts if p != "fe0f")


def split_for(base_hexcode: str) -> str:
    """Return 'val' for about VAL_PERCENT % of base emoji (stable hash), else 'train'."""
    digest = hashlib.sha1(normalise_hexcode(base_hexcode).encode("ascii")).hexdigest()
    return "val" if int(digest[:8], 16) % 100 < VAL_PERCENT else "train"


def fetch_tarball(package: str, version: str, filename: str, cache_dir: Path) -> Path:
    """Download an npm package tarball with `npm pack` into cache_dir (skipped if present)."""
    target = cache_dir / filename
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "npm is not installed: install Node.js (e.g. apt-get install nodejs npm) or pass tarballs "
            f"downloaded elsewhere (twemoji_tgz= / openmoji_tgz=, CLI --twemoji-tgz / --openmoji-tgz); "
            f"needed: {package}@{version}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"downloading {package}@{version} with npm pack into {cache_dir}")
    proc = subprocess.run(
        [npm, "pack", f"{package}@{version}", "--pack-destination", str(cache_dir)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not target.is_file():
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataError(f"npm pack {package}@{version} failed (exit {proc.returncode}): " + " | ".join(detail))
    return target


def _open_tar(path: Path, what: str) -> tarfile.TarFile:
    """Open a .tgz tarball or raise DataError naming it."""
    if not path.is_file():
        raise DataError(f"{what} tarball not found: {path}")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{what} tarball {path} cannot be read: {e}") from None


def _read_svgs(tar: tarfile.TarFile, prefix: str) -> dict[str, bytes]:
    """Read, in one sequential pass, every <prefix><stem>.svg (keyed by stem) and openmoji.json (keyed by path)."""
    files: dict[str, bytes] = {}
    for info in tar:
        name = info.name
        if name == "package/data/openmoji.json" and info.isfile():
            files[name] = tar.extractfile(info).read()
        elif info.isfile() and name.startswith(prefix) and name.endswith(".svg") and "/" not in name[len(prefix):]:
            files[name[len(prefix):-len(".svg")]] = tar.extractfile(info).read()
    return files


def _load_metadata(raw: bytes | None, path: Path) -> list[dict]:
    """Parse openmoji's package/data/openmoji.json."""
    if raw is None:
        raise DataError(f"{path}: package/data/openmoji.json is missing (is this the openmoji tarball?)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: package/data/openmoji.json is not valid JSON: {e}") from None
    if not isinstance(meta, list) or not all(isinstance(m, dict) and "hexcode" in m for m in meta):
        raise DataError(f"{path}: package/data/openmoji.json is not a list of emoji records with 'hexcode'")
    return meta


def _record(meta: dict, style: str) -> dict:
    """Build one annotation row from an openmoji metadata record."""
    hexcode = str(meta["hexcode"]).strip()
    tone = str(meta.get("skintone", "") or "").strip().replace(" ", "")
    base = str(meta.get("skintone_base_hexcode", "") or "").strip() or hexcode
    return {
        "file": f"images/{style}/{hexcode}.png",
        "name": str(meta.get("annotation", "") or ""),
        "group": str(meta.get("group", "") or ""),
        "subgroup": str(meta.get("subgroups", "") or ""),
        "style": style,
        "skin_tone": tone or "none",
        "hexcode": hexcode,
        "split": split_for(base),
        "text": emoji_text(meta),
    }


def emoji_text(meta: dict) -> str:
    """The words of one emoji: its name, then its Unicode and OpenMoji tags without repeats
    ("grinning face with big eyes, face, mouth, open, smile, happy")."""
    words: list[str] = []
    for field in ("annotation", "tags", "openmoji_tags"):
        for word in str(meta.get(field, "") or "").split(","):
            word = " ".join(word.split())
            if word and word.lower() not in (w.lower() for w in words):
                words.append(word)
    return ", ".join(words)


def render_svg(svg: bytes, size: int) -> bytes:
    """Render SVG bytes to a size x size RGB PNG composited on white."""
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=size, height=size)
    with Image.open(io.BytesIO(bytes(png))) as im:
        rgba = im.convert("RGBA")
    if rgba.size != (size, size):
        rgba = rgba.resize((size, size), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    buf = io.BytesIO()
    Image.alpha_composite(white, rgba).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _collect(twemoji: dict[str, bytes], openmoji: dict[str, bytes], meta: list[dict]) -> tuple[list, Counter]:
    """Pair every SVG with its annotation row; returns ([(row, svg_bytes)], counters)."""
    counts: Counter = Counter()
    jobs: list[tuple[dict, bytes]] = []
    for m in meta:
        svg = openmoji.get(str(m["hexcode"]))
        if svg is None:
            counts["openmoji without svg"] += 1
            continue
        jobs.append((_record(m, "openmoji"), svg))
    by_key = {normalise_hexcode(str(m["hexcode"])): (i, m) for i, m in enumerate(meta)}
    found: dict[str, tuple[int, dict, bytes]] = {}
    for stem, svg in sorted(twemoji.items()):
        key = normalise_hexcode(stem)
        if key not in by_key:
            counts["twemoji without metadata"] += 1
        elif key in found:
            counts["twemoji duplicates"] += 1
        else:
            found[key] = (*by_key[key], svg)
    for _, m, svg in sorted(found.values(), key=lambda t: t[0]):
        jobs.append((_record(m, "twemoji"), svg))
    return jobs, counts


def build_emoji(
    out: str | os.PathLike,
    size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    twemoji_tgz: str | os.PathLike | None = None,
    openmoji_tgz: str | os.PathLike | None = None,
    workers: int = 2,
) -> pd.DataFrame:
    """Render Twemoji and OpenMoji SVGs to out/images/<style>/<hexcode>.png and write out/annotations.csv."""
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    start = time.time()
    out = Path(out)
    cache = Path(cache_dir or DEFAULT_CACHE).expanduser()
    tw_path = Path(twemoji_tgz) if twemoji_tgz else fetch_tarball(*TWEMOJI, cache)
    om_path = Path(openmoji_tgz) if openmoji_tgz else fetch_tarball(*OPENMOJI, cache)
    with _open_tar(tw_path, "twemoji") as tar:
        tw = _read_svgs(tar, "package/")
    with _open_tar(om_path, "openmoji") as tar:
        om = _read_svgs(tar, "package/color/svg/")
    meta = _load_metadata(om.pop("package/data/openmoji.json", None), om_path)
    jobs, counts = _collect(tw, om, meta)
    if not jobs:
        raise DataError(f"no emoji SVGs found in {tw_path} and {om_path}")

    def work(job: tuple[dict, bytes]) -> str | None:
        row, svg = job
        try:
            atomic_write_bytes(out / row["file"], render_svg(svg, size))
            return None
        except Exception as e:  # a bad SVG must not stop the whole build
            return f"{row['file']}: {type(e).__name__}: {e}"

    rows, failures = [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(work, jobs)
        for (row, _), err in tqdm(zip(jobs, results), total=len(jobs), desc="render emoji", disable=not progress):
            if err is None:
                rows.append(row)
            else:
                failures.append(err)
    if not rows:
        raise DataError(f"every emoji failed to render; first error: {failures[0]}")
    table = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_text(out / "annotations.csv", table.to_csv(index=False))
    _summary(table, counts, failures, out, time.time() - start)
    return table


def _summary(table: pd.DataFrame, counts: Counter, failures: list[str], out: Path, seconds: float) -> None:
    """Print image counts per style, group and split, plus skipped files."""
    print(f"wrote {len(table)} images and {out / 'annotations.csv'} in {seconds:.1f} s")
    for column in ("style", "group", "split"):
        values = ", ".join(f"{k}: {v}" for k, v in table[column].value_counts().items())
        print(f"  per {column}: {values}")
    for what, n in sorted(counts.items()):
        print(f"  skipped {n} {what}")
    if failures:
        print(f"warning: {len(failures)} SVGs failed to render and were skipped, e.g. {failures[0]}", file=sys.stderr)
