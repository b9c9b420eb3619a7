"""`lwgen tune`: search the diffusion model's training settings with Optuna; write the best as a --config file."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import time
from pathlib import Path
from typing import Any

from ..config_args import HelpFormatter, add_dataclass_args, dataclass_from_args
from ..diffusion.schedules import PREDICTIONS, SCHEDULES
from ..models import UNetConfig
from ..training.config import TrainConfig

TUNED_TRAIN = ("lr", "batch", "min_snr_gamma", "cond_drop")
PARAMS = ("lr", "unet_base_channels", "schedule", "prediction", "min_snr_gamma", "cond_drop", "batch")
DEFAULT_STORAGE = "sqlite:///runs/tune.db"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `tune` (func=run_tune)."""
    p = subparsers.add_parser(
        "tune", help="search learning rate, U-Net width, schedule, prediction, min-SNR, condition drop and batch "
                     "with Optuna", formatter_class=HelpFormatter,
        description="Each trial trains a diffusion model for --minutes-per-trial into its own folder and reports "
                    "a held-out score (v-space denoising MSE on the validation rows at fixed noise) --reports "
                    "times; trials behind the median of earlier ones at the same point are pruned. Running the "
                    "command again with the same --storage and --study adds trials to the search.")
    p.add_argument("--data", required=True, type=Path, help="folder with the images and the annotation CSV")
    p.add_argument("--attributes", nargs="+", required=True, help="CSV columns to condition on")
    p.add_argument("--autoencoder", type=Path, default=None,
                   help="autoencoder checkpoint: diffuse in its latent (none: pixel space)")
    p.add_argument("--trials", type=int, default=20, help="trials to run now (added to those already in the study)")
    p.add_argument("--minutes-per-trial", type=float, default=2.0, help="training wall-clock budget of each trial")
    p.add_argument("--reports", type=int, default=5,
                   help="held-out scores per trial (every 1/reports of its budget); the pruner acts on them")
    p.add_argument("--startup-trials", type=int, default=2,
                   help="trials that run to the end before the pruner and the TPE sampler take over")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL (an SQLite file keeps the study)")
    p.add_argument("--study", default=None, help="study name (none: the name of the --data folder)")
    p.add_argument("--out", type=Path, default=Path("runs/tune"), help="trials train into OUT/STUDY/trial-NNNN")
    p.add_argument("--csv", default="annotations.csv", help="annotation CSV, relative to --data or absolute")
    p.add_argument("--file-column", default="file", help="CSV column with the image paths")
    p.add_argument("--split", default="train", help="'split' value of the training rows ('' = every row not held out)")
    p.add_argument("--val-split", default="val", help="'split' value of the held-out rows (no split column: a "
                                                       "seeded 10 %% of the rows)")
    p.add_argument("--val-images", type=int, default=512, help="held-out images scored per report (0 = all)")
    p.add_argument("--fit", choices=("pad", "crop"), default="pad", help="make images square by padding or cropping")
    p.add_argument("--load-size", type=int, default=256, help="images are loaded at this size, then area-downsampled")
    p.add_argument("--skip-bad", action="store_true", help="skip rows with missing or broken images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while loading images")
    s = p.add_argument_group("search space")
    s.add_argument("--lr-range", type=float, nargs=2, default=(3e-4, 5e-3), metavar=("LOW", "HIGH"),
                   help="learning rate, searched on a log scale")
    s.add_argument("--widths", type=int, nargs="+", default=[32, 48, 64, 96], help="U-Net base channels")
    s.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=["linear", "cosine"],
                   help="schedules the search may pick")
    s.add_argument("--predictions", nargs="+", choices=PREDICTIONS, default=list(PREDICTIONS),
                   help="predictions (v, eps) the search may pick")
    s.add_argument("--gammas", type=float, nargs="+", default=[0.0, 1.0, 5.0, 10.0],
                   help="min-SNR gamma values (0 = no weighting)")
    s.add_argument("--cond-drop-range", type=float, nargs=2, default=(0.0, 0.3), metavar=("LOW", "HIGH"),
                   help="probability of dropping the whole condition")
    s.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128], help="batch sizes")
    add_dataclass_args(p, UNetConfig, prefix="unet_", skip=("cond_dim", "in_channels", "base_channels"),
                       help_prefix="fixed U-Net architecture (resolution: of the latent, or of the pixels)")
    add_dataclass_args(p, TrainConfig, skip=(*TUNED_TRAIN, "steps", "minutes", "sample_minutes"),
                       help_prefix="fixed training settings")
    p.set_defaults(func=run_tune)
    return p


def _describe(params: dict[str, Any]) -> str:
    return (f"lr {params['lr']:.2e}, width {params['unet_base_channels']}, {params['schedule']}, "
            f"{params['prediction']}-pred, min-SNR {params['min_snr_gamma']:g}, cond-drop "
            f"{params['cond_drop']:.2f}, batch {params['batch']}")


def run_tune(args: argparse.Namespace) -> int:
    """Open (or continue) the study, run --trials trials, write and print the best configuration."""
    try:
        import optuna
    except ImportError:
        raise SystemExit("error: lwgen tune needs optuna: pip install optuna") from None
    from ..recipe import DataConfig, load_autoencoder
    from ..training.trainer import TrainingError
    from .search import (
        SearchSpace,
        TuneSettings,
        best_config,
        open_study,
        prepare_data,
        run_trial,
    )

    if args.trials < 0:
        raise ValueError("--trials must be 0 or more")
    space = SearchSpace(tuple(args.lr_range), tuple(args.widths), tuple(args.schedules), tuple(args.predictions),
                        tuple(args.gammas), tuple(args.cond_drop_range), tuple(args.batches))
    train = dataclass_from_args(TrainConfig, args, minutes=args.minutes_per_trial, steps=0)
    unet = dataclass_from_args(UNetConfig, args, prefix="unet_")
    name = args.study or args.data.resolve().name
    data_args = {"data": str(args.data), "attributes": list(args.attributes), "csv": args.csv,
                 "file_column": args.file_column, "split": args.split, "fit": args.fit, "load_size": args.load_size,
                 "skip_bad": args.skip_bad, "autoencoder": str(args.autoencoder) if args.autoencoder else None}
    identity = {**{k: v for k, v in data_args.items() if k != "skip_bad"}, "data": str(args.data.resolve()),
                "autoencoder": str(args.autoencoder.resolve()) if args.autoencoder else None,
                "val_split": args.val_split, "val_images": args.val_images, "unet_resolution": unet.resolution,
                "seed": train.seed}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(args.storage, name, args.startup_trials, train.seed, identity)
    before = len(study.trials)
    print(f"study {name!r} in {args.storage}: {before} trials so far; adding {args.trials} of "
          f"{args.minutes_per_trial:g} min each")

    t0 = time.perf_counter()
    source = DataConfig(args.data, list(args.attributes), csv=args.csv, file_column=args.file_column,
                        split=args.split, fit=args.fit, load_size=args.load_size, skip_bad=args.skip_bad)
    table = dataclasses.replace(source, split="").load(progress=not args.no_progress)  # training and held-out rows
    ae = load_autoencoder(args.autoencoder) if args.autoencoder else None
    data = prepare_data(table, list(args.attributes), unet, train, ae, args.split, args.val_split, args.val_images)
    provenance = {**source.provenance(table), "images": data.provenance["train_images"]}
    del table  # the full-size images are no longer needed
    space_name = f"{tuple(data.x0.shape[1:])} latent" if ae is not None else "pixel space"
    print(f"{data.provenance['train_images']} training and {data.provenance['val_images']} held-out images in "
          f"{space_name}, ready in {time.perf_counter() - t0:.0f} s")
    settings = TuneSettings(unet, train, args.minutes_per_trial, args.reports, args.out / name, data_args, provenance)

    def report(study: Any, trial: Any) -> None:
        parts = [f"trial {trial.number}: {trial.state.name.lower()}"]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            parts.append(f"held-out loss {trial.value:.5f}")
        elif trial.intermediate_values:
            k = max(trial.intermediate_values)
            parts.append(f"held-out loss {trial.intermediate_values[k]:.5f} at report {k}/{args.reports}")
        if "steps" in trial.user_attrs:
            parts.append(f"{trial.user_attrs['steps']} steps")
        described = _describe(trial.params) if set(trial.params) >= set(PARAMS) else str(trial.params)
        print(", ".join(parts) + " | " + described, flush=True)

    study.optimize(lambda trial: run_trial(trial, settings, data, space), n_trials=args.trials,
                   callbacks=[report], catch=(TrainingError,), gc_after_trial=True)

    states = [t.state for t in study.trials]
    state = optuna.trial.TrialState
    counts = {"complete": states.count(state.COMPLETE), "pruned": states.count(state.PRUNED),
              "failed": states.count(state.FAIL)}
    print(f"study {name!r}: {len(study.trials)} trials ({', '.join(f'{n} {k}' for k, n in counts.items())})")
    if not counts["complete"]:
        print("no completed trial yet: nothing to recommend")
        return 0
    best = study.best_trial
    path = settings.folder / "best.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = best_config(settings, best.params)
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"best: trial {best.number}, held-out loss {best.value:.5f} (v-space MSE at fixed noise), "
          f"checkpoint {best.user_attrs.get('folder', '?')}")
    for k, v in best.params.items():
        print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")
    print(f"wrote {path}; train it with:")
    print("  " + " ".join(shlex.quote(t) for t in ["lwgen", "train", "diffusion", "--config", str(path),
                                                     "--minutes", "60", "--out", f"runs/{name}-tuned"]))
    return 0
