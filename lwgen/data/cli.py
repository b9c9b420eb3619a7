"""`lwgen data ...` sub-commands: build the emoji or shapes data sets and check a data folder."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

from .dataset import ImageTable
from .emoji import build_emoji
from .images import DataError
from .synthetic import make_shapes

SHOWN_PER_REASON = 20


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `data` command and its sub-commands (each sets func=run_*)."""
    p = subparsers.add_parser("data", help="build demo data sets and check a data folder")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{emoji,shapes,check}")

    e = sub.add_parser("emoji", help="render Twemoji + OpenMoji into an image folder with annotations.csv")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    e.add_argument("--cache", type=Path, default=None, help="npm tarball cache folder (default ~/.cache/lwgen/npm)")
    e.add_argument("--twemoji-tgz", type=Path, default=None, help="pre-downloaded @twemoji/svg tarball")
    e.add_argument("--openmoji-tgz", type=Path, default=None, help="pre-downloaded openmoji tarball")
    e.set_defaults(func=run_emoji)

    s = sub.add_parser("shapes", help="write a small synthetic coloured-shapes data set")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--n", type=int, default=512, help="number of images (default 512)")
    s.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(func=run_shapes)

    c = sub.add_parser("check", help="load a data folder and print label counts and bad rows")
    c.add_argument("--data", required=True, type=Path, help="data folder (images + CSV)")
    c.add_argument("--attributes", required=True, nargs="+", help="CSV columns used as labels")
    c.add_argument("--file-column", default="file", help="CSV column with image paths (default file)")
    c.add_argument("--csv", default="annotations.csv", help="CSV path, relative to --data or absolute")
    c.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    c.add_argument("--fit", choices=("pad", "crop"), default="pad", help="make square by padding or cropping")
    c.add_argument("--split", default=None, help="keep only rows with this value in the 'split' column")
    c.add_argument("--skip-bad", action="store_true",
                   help="report bad rows but exit 0 (without it, any bad row makes the check fail)")
    c.add_argument("--max-rows", type=int, default=SHOWN_PER_REASON,
                   help="bad rows listed per reason (the rest are counted)")
    c.add_argument("--no-cache", action="store_true", help="do not read or write the decoded-image cache")
    c.set_defaults(func=run_check)
    return p


def run_emoji(args: argparse.Namespace) -> int:
    """Build the emoji data set."""
    build_emoji(args.out, size=args.size, cache_dir=args.cache, twemoji_tgz=args.twemoji_tgz,
                openmoji_tgz=args.openmoji_tgz)
    return 0


def run_shapes(args: argparse.Namespace) -> int:
    """Build the synthetic shapes data set."""
    out = make_shapes(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} images and {out / 'annotations.csv'}")
    return 0


def reason_group(error: str) -> str:
    """The kind of a bad row's reason, without its details ("corrupt or truncated image (OSError: ...)" ->
    "corrupt or truncated image")."""
    return error.split(" (", 1)[0]


def bad_rows_report(skipped: list[dict], per_reason: int = SHOWN_PER_REASON) -> list[str]:
    """Lines listing every bad row grouped by reason, at most `per_reason` each (the rest counted)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in skipped:
        groups[reason_group(s["error"])].append(s)
    lines = [f"{len(skipped)} bad rows:"]
    for reason, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {reason}: {len(rows)} rows")
        for s in rows[:max(per_reason, 0)]:
            detail = s["error"][len(reason):].strip()
            lines.append(f"    row {s['row']}: file '{s['file']}'" + (f" {detail}" if detail else ""))
        if len(rows) > per_reason:
            lines.append(f"    ... and {len(rows) - per_reason} more")
    return lines


def split_report(table: ImageTable, train: str = "train") -> list[str]:
    """Lines saying which of the usable rows `lwgen train` trains on (its default --split train) and which it holds
    out, with the attribute values that no training row has."""
    n = len(table)
    if "split" not in table.extra.columns:
        return [f"no 'split' column: lwgen train needs --split '' and then trains on all {n:,} rows"]
    split = table.extra["split"].astype(str)
    counts = split.value_counts()
    if train not in counts:
        present = ", ".join(f"{v!r} {c:,}" for v, c in counts.items())
        return [f"no rows with split == {train!r} (split values: {present}): lwgen train needs --split VALUE, "
                f"or --split '' for all {n:,} rows"]
    others = "; ".join(f"{v}: {c:,}" for v, c in counts.items() if v != train)
    lines = [f"{train} split: {counts[train]:,} of {n:,} rows (what lwgen train uses by default)"
             + (f"; {others}" if others else "")]
    mask = torch.from_numpy((split == train).to_numpy().copy())
    for j, a in enumerate(table.attributes):
        seen = set(table.labels[mask, j].tolist())
        missing = [v for i, v in enumerate(table.vocab[a]) if i not in seen]
        if missing:
            lines.append(f"  {a}: {len(missing)} value{'s have' if len(missing) > 1 else ' has'} no {train} row "
                         "(a generator never learns it): "
                         + ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return lines


def run_check(args: argparse.Namespace) -> int:
    """Load a data folder; print counts per attribute value and every bad row grouped by reason (non-zero exit
    when there are bad rows and no --skip-bad)."""
    try:
        table = ImageTable.load(args.data, args.attributes, size=args.size, csv=args.csv,
                                file_column=args.file_column, fit=args.fit, skip_bad=True,
                                cache=not args.no_cache, split=args.split, report=args.skip_bad)
    except DataError as e:
        skipped = getattr(e, "skipped", None)
        if skipped:
            print("\n".join(bad_rows_report(skipped, args.max_rows)), file=sys.stderr)
        raise
    print(f"{len(table)} images of {args.size}x{args.size} px from {table.root}")
    if args.split is None:
        print("\n".join(split_report(table)))
    else:
        print(f"only the rows with split == {args.split!r} (--split)")
    for j, a in enumerate(table.attributes):
        counts = table.labels[:, j].bincount(minlength=len(table.vocab[a])).tolist()
        print(f"{a} ({len(table.vocab[a])} values):")
        for value, n in sorted(zip(table.vocab[a], counts), key=lambda t: (-t[1], t[0])):
            print(f"  {n:7d}  {value}")
    if table.skipped:
        lines = bad_rows_report(table.skipped, args.max_rows)
        if args.skip_bad:
            print("\n".join(lines))
            return 0
        print("\n".join(lines), file=sys.stderr)
        print(f"error: {len(table.skipped)} bad rows (listed above); fix them, or pass --skip-bad to leave them out",
              file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the handler of the chosen `data` sub-command."""
    return args.func(args)
