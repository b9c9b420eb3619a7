"""DDPM vs DDIM vs DPM-Solver++(2M) at 10 / 20 / 50 steps on a shipped checkpoint: quality and time.

Every cell is `lwgen eval` (the same conditions and seeds for every sampler) with a smaller --n.

    python benchmarks/samplers.py --checkpoint checkpoints/emoji-cosine --n 300
Writes benchmarks/results/samplers.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, markdown_table  # noqa: E402

from lwgen.data import ImageTable  # noqa: E402
from lwgen.evaluation.classifier import Classifier  # noqa: E402
from lwgen.evaluation.evaluate import evaluate_generator  # noqa: E402
from lwgen.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from lwgen.pipeline import DiffusionModel  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/emoji-cosine"))
    p.add_argument("--classifier", type=Path, default=Path("checkpoints/classifier"))
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "dpmpp"])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/samplers"))
    args = p.parse_args()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    classifier = Classifier.from_checkpoint(args.classifier)
    val = ImageTable.load(args.data, [], size=256, split="val", progress=False)
    rows = []
    for sampler in args.samplers:
        for steps in args.steps:
            t0 = time.perf_counter()
            r = evaluate_generator(model, classifier, val, n=args.n, steps=steps, sampler=sampler, progress=False)
            rows.append({"sampler": sampler, "steps": steps, "fid": r["fid"], "kid": r["kid"],
                         "group_top1": r["group_top1"], "subgroup_top5": r["subgroup_top5"],
                         "precision": r["precision"], "recall": r["recall"], "images_per_s": r["images_per_s"],
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    table = markdown_table(rows, [("sampler", "sampler"), ("steps", "steps"), ("fid", "FID"), ("kid", "KID"),
                                  ("group_top1", "group top-1"), ("subgroup_top5", "subgroup top-5"),
                                  ("precision", "precision"), ("recall", "recall"), ("images_per_s", "img/s")])
    print(table)
    command = " ".join(sys.argv)
    report = {"command": command, "machine": machine(), "checkpoint": str(args.checkpoint), "n": args.n, "rows": rows}
    atomic_write_bytes(args.results.with_suffix(".json"), json.dumps(report, indent=2).encode())
    atomic_write_text(args.results.with_suffix(".md"), f"`{command}` ({report['machine']['date']})\n\n{table}\n")
    print(f"wrote {args.results}.json and .md")


if __name__ == "__main__":
    main()
