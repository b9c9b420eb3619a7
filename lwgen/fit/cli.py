"""`lwgen fit`: from a folder of images and an annotation CSV to evaluated generators, with one command."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..config_args import HelpFormatter
from ..shipped import shipped_enabled, shipped_root
from .plan import CLASSIFIER_SHARE, EXTRA_FLAGS, FitOptions, parse_extra

SHIPPED_AUTOENCODER = "emoji-autoencoder"

DESCRIPTION = f"""Check the data, then train an autoencoder, the evaluation classifier and a latent diffusion
generator per schedule, score each generator and write one sample grid per value of the first attribute, all
under --out, with a card fit.json. --minutes is split: {CLASSIFIER_SHARE:.0%} for the classifier, the rest
autoencoder 1 : diffusion 3 per schedule (the shipped recipe: 20 and 60 minutes). The autoencoder stage
fine-tunes the shipped emoji autoencoder unless --autoencoder-init says otherwise, and then takes 0.25 parts
instead of 1. The progress of finished stages is kept in OUT/fit-state.json: the same command again resumes an
interrupted fit."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fit`."""
    p = subparsers.add_parser("fit", help="train and evaluate generators on your own data with one command",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder with the images and the annotation CSV")
    p.add_argument("--attributes", nargs="+", required=True, help="CSV columns to condition on")
    p.add_argument("--minutes", type=float, required=True, help="wall-clock training budget of the whole fit")
    p.add_argument("--out", required=True, type=Path, help="fit folder to write, e.g. runs/NAME")
    p.add_argument("--schedule", choices=("cosine", "linear", "both"), default="both",
                   help="noise schedule(s): one generator each")
    p.add_argument("--csv", default="annotations.csv", help="annotation CSV, relative to --data or absolute")
    p.add_argument("--file-column", default="file", help="CSV column with the image paths")
    p.add_argument("--text-column", default="",
                   help="CSV column of words describing each image, so the generators take prompts ('' = none)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out rows with missing or broken images (without it, any bad row stops the fit)")
    p.add_argument("--force", action="store_true",
                   help="fit into a non-empty --out that is not an earlier fit of the same data and attributes "
                        "(what an earlier fit wrote there is removed)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads of every stage (0 = torch's default)")
    p.add_argument("--eval-n", type=int, default=300, help="images generated to score each generator")
    p.add_argument("--grid-n", type=int, default=8, help="images in each sample grid")
    p.add_argument("--autoencoder-init", default="shipped", metavar="CHECKPOINT",
                   help="the autoencoder stage fine-tunes this autoencoder checkpoint: 'shipped' is the shipped "
                        "emoji autoencoder (where the shipped checkpoints are installed), 'none' trains one from "
                        "scratch")
    for stage in EXTRA_FLAGS:
        p.add_argument(f"--{stage}-args", default=argparse.SUPPRESS, metavar="FLAGS",
                       help=f"more flags for the {stage} stage, after '=' as they start with '--' (e.g. "
                            f"--{stage}-args=\"--batch 16\"); they come last, so they override the fit's own")
    p.set_defaults(func=run)
    return p


def options(args: argparse.Namespace) -> FitOptions:
    """The parsed command line as FitOptions, with the numbers checked."""
    if not args.minutes > 0 or args.minutes != args.minutes or args.minutes == float("inf"):
        raise ValueError(f"--minutes must be a positive number, got {args.minutes}")
    if args.eval_n < 1 or args.grid_n < 1:
        raise ValueError("--eval-n and --grid-n must be at least 1")
    extra = {stage: parse_extra(getattr(args, f"{stage}_args", ""), stage) for stage in EXTRA_FLAGS}
    return FitOptions(data=args.data, attributes=list(args.attributes), minutes=args.minutes, out=args.out,
                      schedule=args.schedule, csv=args.csv, file_column=args.file_column,
                      text_column=args.text_column, skip_bad=args.skip_bad, threads=args.threads,
                      eval_n=args.eval_n, grid_n=args.grid_n,
                      autoencoder_init=autoencoder_init(args.autoencoder_init, extra["autoencoder"]), extra=extra)


def autoencoder_init(value: str, stage_flags: Sequence[str] = ()) -> Path | None:
    """--autoencoder-init -> the checkpoint folder to fine-tune, or None (from scratch). 'shipped' steps aside
    when the shipped checkpoints are absent or off, or when --autoencoder-args choose an architecture or size."""
    if value.strip().lower() == "none":
        return None
    if value == "shipped":
        folder = shipped_root() / SHIPPED_AUTOENCODER
        own = any(f.startswith(("--ae-", "--size")) for f in stage_flags)
        return folder if shipped_enabled() and not own and (folder / "config.json").is_file() else None
    folder = Path(value)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--autoencoder-init {value}: no checkpoint there (no config.json); give an autoencoder "
                         f"checkpoint folder, 'shipped' or 'none'")
    return folder


def run(args: argparse.Namespace) -> int:
    """Run or resume the fit."""
    from .run import run_fit

    return run_fit(options(args), force=args.force, argv=list(getattr(args, "_argv", None) or []))
