"""The sentence encoder: load time, warm encoding latency, and how well held-out emoji names find their images.

    python benchmarks/text_search.py --data data/emoji
Prints a table and writes benchmarks/results/text_search.json. Run it in a fresh process (the load time is the
first load in the process). Retrieval: every distinct name of the held-out split is a query; the texts of all
rows (train and held-out) are ranked by cosine similarity of their sentence embeddings, the way Explore's
search ranks images; a hit is a row of that emoji (the same name) among the first k.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from lwgen import text
from lwgen.projection.text import search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/text_search.json"))
    args = p.parse_args()
    t0 = time.perf_counter()
    text.encoder()
    rows = {"encoder load, first in the process (s)": time.perf_counter() - t0}
    prompts = ["a red apple", "sleepy cat", "a blue car", "smiling face with hearts", "flag of Japan"]
    text.encode(prompts[:1])  # warm-up
    times = []
    for prompt in prompts * 4:
        t0 = time.perf_counter()
        text.encode([prompt])
        times.append(time.perf_counter() - t0)
    rows["encode one prompt, warm, median (ms)"] = 1000 * statistics.median(times)
    frame = pd.read_csv(args.data / "annotations.csv", dtype=str, keep_default_na=False)
    vectors = text.cached_encode(frame["text"].tolist(), args.data / ".lwgen-cache")
    names = sorted(set(frame.loc[frame["split"] == "val", "name"]))
    queries = text.encode(names)
    hits = 0
    for name, q in zip(names, queries):
        top, _ = search(q, vectors, args.k)
        hits += bool((frame["name"].iloc[list(top)] == name).any())
    rows["held-out names"] = len(names)
    rows[f"held-out name finds its emoji in the top {args.k} (%)"] = 100 * hits / len(names)
    rows["rows searched"] = len(frame)
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:.3g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows.items()},
                                   indent=1) + "\n")
    print(f"wrote {args.out} (torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
