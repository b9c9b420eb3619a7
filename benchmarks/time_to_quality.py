"""Time to quality: what each recipe's EMA generator is worth after 10, 30, 60 minutes of training.

Trains every recipe once under the largest budget and pauses at each smaller one to score it (evaluation time
is not counted): group top-1 and subgroup top-5 accuracy of generated samples under the shipped classifier,
domain FID and KID against the held-out split, and a grid with one row per group. lwgen's row includes its
autoencoder's training and the latent encoding. The reference recipe (the standard small diffusers recipe this
project measured first) runs in the same invocation, so the ratios compare one machine state.

    python benchmarks/time_to_quality.py --minutes 10 30 60
    python benchmarks/time_to_quality.py --minutes 10 --recipes lwgen cvae

By default the recipes run side by side, one core each (--jobs 2 --threads 1). Writes
benchmarks/results/time_to_quality.{json,md} and the grids under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Setting, machine, markdown_table, run_all  # noqa: E402
from recipes import RECIPES  # noqa: E402

from lwgen.io import atomic_write_bytes, atomic_write_text  # noqa: E402

COLUMNS = [("recipe", "recipe"), ("minutes", "minutes"), ("steps", "steps"), ("images_seen", "images seen"),
           ("group_top1", "group top-1"), ("subgroup_top5", "subgroup top-5"), ("fid", "FID"), ("kid", "KID"),
           ("precision", "precision"), ("recall", "recall"), ("grid", "grid")]


def time_to_match(rows: list[dict], recipe: str, reference: str) -> dict | None:
    """The first budget at which `recipe`'s FID is at or below `reference`'s FID at its largest budget."""
    ref = [r for r in rows if r["recipe"] == reference and r.get("fid") is not None]
    ours = [r for r in rows if r["recipe"] == recipe and r.get("fid") is not None]
    if not ref or not ours:
        return None
    target = max(ref, key=lambda r: r["minutes"])
    hit = next((r for r in sorted(ours, key=lambda r: r["minutes"]) if r["fid"] <= target["fid"]), None)
    return {"recipe": recipe, "reference": reference, "reference_minutes": target["minutes"],
            "reference_fid": target["fid"], "first_minutes_at_or_below": hit["minutes"] if hit else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0, 60.0], help="budgets to score at")
    p.add_argument("--recipes", nargs="+", default=["lwgen", "reference"], choices=sorted(RECIPES))
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--classifier", type=Path, default=Path("checkpoints/classifier"))
    p.add_argument("--out", type=Path, default=Path("runs/time_to_quality"), help="checkpoints and grids")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/time_to_quality"),
                   help="JSON and markdown are written to this path + .json / .md")
    p.add_argument("--n", type=int, default=500, help="generated images per evaluation")
    p.add_argument("--jobs", type=int, default=2, help="recipes trained at the same time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per recipe")
    p.add_argument("--progress", action="store_true", help="progress bars (interleaved when --jobs > 1)")
    args = p.parse_args()
    if not (args.data / "annotations.csv").is_file():
        raise SystemExit(f"error: {args.data}/annotations.csv not found; build the data with "
                         f"`lwgen data emoji --out {args.data}`")
    setting = Setting(data=args.data, classifier=args.classifier, out=args.out, budgets=sorted(args.minutes),
                      n=args.n, threads=args.threads, progress=args.progress)
    t0 = time.time()
    rows = run_all({name: RECIPES[name] for name in args.recipes}, setting, args.jobs)
    matches = [m for r in args.recipes if r != "reference"
               for m in [time_to_match(rows, r, "reference")] if m]
    report = {"command": " ".join(sys.argv), "machine": machine(), "wall_s": round(time.time() - t0), "jobs": args.jobs,
              "threads": args.threads, "n": args.n, "steps": setting.steps, "guidance": setting.guidance,
              "rows": rows, "time_to_match_reference_fid": matches}
    table = markdown_table(rows, COLUMNS)
    lines = [table, ""]
    for m in matches:
        first = m["first_minutes_at_or_below"]
        lines.append(f"{m['recipe']} reaches the reference's {m['reference_minutes']:g}-minute FID "
                     f"({m['reference_fid']:.3g}) " + (f"by {first:g} minutes" if first is not None
                                                       else "at none of the budgets"))
    text = "\n".join(lines)
    print(text)
    atomic_write_bytes(args.results.with_suffix(".json"), json.dumps(report, indent=2).encode())
    atomic_write_text(args.results.with_suffix(".md"), f"`{report['command']}` ({report['machine']['date']})\n\n"
                      + text + "\n")
    print(f"wrote {args.results}.json and .md")


if __name__ == "__main__":
    main()
