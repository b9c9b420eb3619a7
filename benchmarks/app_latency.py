"""Latency of what the app's pages compute, on the shipped checkpoints, in this process (after the first load).

    python benchmarks/app_latency.py
Prints a table and writes benchmarks/results/app_latency.json. The page code calls these same functions.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lwgen.app.explore  # noqa: F401  (what the Explore page loads, sklearn.manifold included)
from lwgen.app.runner import condition_of, generate_images
from lwgen.pipeline import DiffusionModel
from lwgen.projection import load_gallery, pixel_features, project


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/emoji-cosine"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/app_latency.json"))
    args = p.parse_args()
    t0 = time.perf_counter()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    rows = {"load checkpoint (s)": time.perf_counter() - t0}
    cond = condition_of(model, {"group": "smileys-emotion", "subgroup": "face-smiling"})
    generate = lambda: generate_images(model, cond, list(range(4)), 20, "dpmpp", 2.0)  # the page's defaults, 4 images
    rows["first Generate, 4 images, 20 steps (s)"] = seconds(generate)
    rows["Generate, 4 images, 20 steps (s)"] = min(seconds(generate) for _ in range(3))
    gallery = load_gallery(args.checkpoint)
    x = pixel_features(gallery.images)
    rows["gallery points"] = len(gallery)
    for method in ("PCA", "t-SNE", "UMAP"):  # cold: the first call in the process (UMAP compiles with numba)
        rows[f"{method} of the gallery, cold (s)"] = seconds(lambda: project(x, method))
        rows[f"{method} of the gallery, warm (s)"] = seconds(lambda: project(x, method))
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
