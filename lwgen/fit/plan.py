"""The stages of `lwgen fit` and how the time budget is split between them.

The shares follow the shipped emoji recipe (README, "Shipped checkpoints"): the autoencoder trained 20 minutes and
each diffusion model about 60, so after 10 % for the evaluation classifier the rest goes autoencoder 1 : diffusion
3 per schedule, or 0.25 : 3 when the autoencoder fine-tunes the shipped one. The x4 up-scaler is not
data-specific and stays the shipped one.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

CLASSIFIER_SHARE = 0.10
AUTOENCODER_WEIGHT = 1.0
AUTOENCODER_FINE_TUNE_WEIGHT = 0.25  # a fine-tuned autoencoder is good within a minute (docs/experiments.md 9)
# at the from-scratch rate (2e-3) a fine-tune of data the autoencoder knows first undoes some of it (section 9)
AUTOENCODER_FINE_TUNE_LR = "5e-4"
DIFFUSION_WEIGHT = 3.0
SCHEDULES = {"cosine": ("cosine",), "linear": ("linear",), "both": ("cosine", "linear")}
EXTRA_FLAGS = ("autoencoder", "diffusion", "classifier", "eval")
# Short runs: the settings that won at 10 minutes in docs/experiments.md section 6 (higher learning rate, no
# min-SNR weighting), measured there with each attribute dropped with p = 0.1: in a few minutes p = 0.5 leaves
# too few steps that see an attribute (section 9). Batch 64, not section 6's 128: in the 5-minute fit of
# section 9 it beat 128 and 32. Width 32, not section 6's 48: as good per step and twice the steps (section 13).
# The defaults win from 30 minutes on. "Short" is a number of steps, not of minutes: where lwgen trains in float32
# (no bfloat16 instructions) a minute buys about a quarter of the steps, and there a 25-minute stage with these
# settings beat the defaults (section 14), so the limit is four times as long.
SHORT_RUN_MINUTES = 10.0
FLOAT32_SHORT_RUN_MINUTES = 40.0
SHORT_RUN_FLAGS = ("--lr", "4.2e-3", "--batch", "64", "--unet-base-channels", "32", "--min-snr-gamma", "0",
                   "--cond-drop", "0.2", "--attr-drop", "0.1")


@dataclass
class Stage:
    """One step of the fit: a `lwgen` sub-command line, its share of the budget and its output."""

    name: str
    argv: list[str]
    minutes: float | None
    out: Path
    trains: bool = True  # a Trainer run: `--resume` continues it, `--force` restarts it
    schedule: str | None = None


@dataclass
class FitOptions:
    """What `lwgen fit` was asked to do (the command line, parsed)."""

    data: Path
    attributes: list[str]
    minutes: float
    out: Path
    schedule: str = "both"
    csv: str = "annotations.csv"
    file_column: str = "file"
    text_column: str = ""
    skip_bad: bool = False
    threads: int = 0
    eval_n: int = 300
    grid_n: int = 8
    autoencoder_init: Path | None = None  # fine-tune this autoencoder instead of training one from scratch
    extra: dict[str, list[str]] = field(default_factory=dict)


def budget(minutes: float, schedules: tuple[str, ...], fine_tune: bool = False) -> dict[str, float]:
    """Minutes per training stage: 10 % for the classifier, the rest autoencoder 1 : diffusion 3 per schedule
    (autoencoder 0.25 when it fine-tunes one that exists)."""
    rest = minutes * (1 - CLASSIFIER_SHARE)
    ae = AUTOENCODER_FINE_TUNE_WEIGHT if fine_tune else AUTOENCODER_WEIGHT
    unit = rest / (ae + DIFFUSION_WEIGHT * len(schedules))
    shares = {"autoencoder": ae * unit}
    shares.update({f"diffusion-{s}": DIFFUSION_WEIGHT * unit for s in schedules})
    shares["classifier"] = minutes * CLASSIFIER_SHARE
    return {k: round(v, 3) for k, v in shares.items()}


def short_run_minutes() -> float:
    """Below this many minutes a diffusion stage is a short run: SHORT_RUN_MINUTES where the CPU computes bfloat16,
    FLOAT32_SHORT_RUN_MINUTES where lwgen trains in float32."""
    from ..precision import cpu_bf16_native  # lazy: it imports torch

    return SHORT_RUN_MINUTES if cpu_bf16_native() else FLOAT32_SHORT_RUN_MINUTES


def short_run_flags(minutes: float) -> tuple[str, ...]:
    """The diffusion flags of a short stage (see short_run_minutes; --diffusion-args, given later, override)."""
    return SHORT_RUN_FLAGS if minutes < short_run_minutes() else ()


def parse_extra(text: str, flag: str) -> list[str]:
    """A quoted string of extra flags ("--unet-base-channels 16 --batch 8") -> argv items."""
    try:
        return shlex.split(text or "")
    except ValueError as e:
        raise ValueError(f"--{flag}-args {text!r}: {e}") from None


def stages(opts: FitOptions, csv: str) -> list[Stage]:
    """The sub-command lines of a fit, in order. `csv`: the annotation CSV the stages read (see `fit.data`): its
    file column is `file` and its `split` column holds train and val rows (the evaluation's reference)."""
    out, schedules = opts.out, SCHEDULES[opts.schedule]
    minutes = budget(opts.minutes, schedules, fine_tune=opts.autoencoder_init is not None)
    data = ["--data", str(opts.data), "--csv", csv]
    threads = ["--threads", str(opts.threads)] if opts.threads else []
    train = [*data, "--split", "train", "--no-progress", "--log-every", "10",
             *threads]
    sample_minutes = ["--sample-minutes", f"{min(10.0, max(0.5, max(minutes.values()) / 6)):g}"]
    ae = out / "autoencoder"
    init = ["--init", str(opts.autoencoder_init), "--lr", AUTOENCODER_FINE_TUNE_LR] if opts.autoencoder_init else []
    result = [Stage("autoencoder", ["train", "autoencoder", *train, *init, "--out", str(ae),
                                    "--minutes", f"{minutes['autoencoder']:g}", *opts.extra.get("autoencoder", [])],
                    minutes["autoencoder"], ae)]
    clf = out / "classifier"
    result.append(Stage("classifier", ["eval", "train-classifier", *data, "--attributes", *opts.attributes,
                                       "--out", str(clf), "--minutes", f"{minutes['classifier']:g}", "--no-progress",
                                       *threads, *opts.extra.get("classifier", [])],
                        minutes["classifier"], clf, trains=False))
    for s in schedules:
        d = out / f"diffusion-{s}"
        result.append(Stage(f"diffusion-{s}", ["train", "diffusion", *train, "--attributes", *opts.attributes,
                                               "--autoencoder", str(ae), "--schedule", s,
                                               "--text-column", opts.text_column, *sample_minutes,
                                               "--out", str(d), "--minutes", f"{minutes[f'diffusion-{s}']:g}",
                                               *short_run_flags(minutes[f"diffusion-{s}"]),
                                               *opts.extra.get("diffusion", [])],
                            minutes[f"diffusion-{s}"], d, schedule=s))
    for s in schedules:
        d = out / f"diffusion-{s}"
        result.append(Stage(f"evaluate-{s}", ["eval", "--checkpoint", str(d), "--classifier", str(clf), *data,
                                              "--split", "val", "--n", str(opts.eval_n), "--no-progress",
                                              "--out", str(d / "eval.json"), *threads, *opts.extra.get("eval", [])],
                            None, d, trains=False, schedule=s))
    return result
