"""`lwgen eval --checkpoint DIR` scores a checkpoint; `lwgen eval train-classifier` trains the domain classifier."""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG, CheckpointError, read_config, write_json
from ..config_args import HelpFormatter, add_guidance_interval_arg, add_guidance_parallel_arg, guidance_interval
from ..data import DataError, ImageTable
from ..diffusion.samplers import SAMPLERS
from ..pipeline import DEFAULT_GUIDANCE
from ..shipped import PACKAGE_ROOT, inside_shipped, shipped_enabled, shipped_root

CLASSIFIER = "classifier"  # the folder name `lwgen eval` looks for inside and beside a checkpoint

EPILOG = """commands:
  lwgen eval --checkpoint DIR [options]      score any lwgen checkpoint (kind read from config.json)
  lwgen eval train-classifier --data DIR     train the domain classifier that FID/KID/accuracy use

A diffusion checkpoint gets fid, kid, kid_std, <attribute>_top1/_top5, precision, recall, images_per_s;
an up-scaler gets psnr, ssim, psnr_bicubic, ssim_bicubic, gain_db, images_per_s;
an autoencoder gets l1, psnr, ssim of its reconstructions and, through the classifier, their fid / kid against
the originals (the floor for a generator decoding through it) and <attribute>_top1 on both;
the classifier gets its own <attribute>_top1/_top5 on the split."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `eval` (with the optional sub-command `train-classifier`)."""
    p = subparsers.add_parser("eval", help="score a checkpoint (FID, KID, accuracy, precision/recall; PSNR/SSIM)",
                              description=__doc__, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path,
                   help="checkpoint folder to score: diffusion, up-scaler, autoencoder or classifier")
    p.add_argument("--classifier", type=Path, default=None,
                   help="domain classifier checkpoint (default: the first whose attributes and values fit the "
                        "checkpoint of CHECKPOINT/classifier, a classifier folder beside CHECKPOINT, and the shipped "
                        "checkpoints/classifier of the lwgen package)")
    p.add_argument("--data", type=Path, default=None,
                   help="image folder with the annotation CSV (default: the folder the checkpoint, else the "
                        "classifier, was trained on)")
    p.add_argument("--csv", default="annotations.csv", help="annotation CSV, relative to --data or absolute")
    p.add_argument("--split", default="val", help="rows of this split are the real reference (default: val)")
    p.add_argument("--load-size", type=int, default=256, help="real images are loaded at this size (default: 256)")
    p.add_argument("--n", type=int, default=2000, help="images to generate / up-scale (default: 2000)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20)")
    p.add_argument("--sampler", default="dpmpp", choices=tuple(SAMPLERS),
                   help="sampler: DPM-Solver++(2M), DDIM or DDPM")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help=f"classifier-free guidance scale (default: {DEFAULT_GUIDANCE:g})")
    add_guidance_interval_arg(p)
    add_guidance_parallel_arg(p)
    p.add_argument("--condition", default="rows",
                   help="what a generator is given: 'rows' (the attributes of held-out rows), the name of one "
                        "attribute (each of its values alone, e.g. group or subgroup: the app's usual path; adds "
                        "the steering figure), or 'text' (held-out rows' text alone) (default: rows)")
    p.add_argument("--prompt-column", default=None,
                   help="with --condition text: the CSV column whose cells are the prompts (default: the column "
                        "the generator was trained on, e.g. text; 'name' gives the bare names)")
    p.add_argument("--read-prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="with --condition text: also give the attribute values the checkpoint's prompt reader is "
                        "sure each prompt names, as `lwgen sample` and the app do; --no-read-prompt: the words "
                        "alone")
    p.add_argument("--batch", type=int, default=64, help="images per generation batch (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i; also picks the conditions")
    p.add_argument("--out", type=Path, default=Path("eval.json"), help="JSON file to write (default: eval.json)")
    p.add_argument("--fp32", action="store_true", help="run the model in float32 instead of bfloat16 autocast")
    p.add_argument("--no-cache", action="store_true", help="do not cache real-image features in the data folder")
    _common(p)
    p.set_defaults(func=run_eval)
    sub = p.add_subparsers(dest="eval_command", metavar="{train-classifier}")
    _train_parser(sub)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .classifier import ClassifierConfig
    from .train import DEFAULT_ATTRIBUTES

    arch = ClassifierConfig()
    t = sub.add_parser("train-classifier", help="train the domain classifier on the train split, score it on val",
                       formatter_class=HelpFormatter)
    t.add_argument("--data", required=True, type=Path,
                   help="image folder with the annotation CSV (needs a split column)")
    t.add_argument("--out", required=True, type=Path,
                   help="checkpoint folder to write, e.g. runs/NAME/classifier beside the generator it scores")
    t.add_argument("--force", action="store_true",
                   help="replace a checkpoint in a non-empty --out, also inside the shipped checkpoints folder")
    t.add_argument("--csv", default="annotations.csv", help="annotation CSV, relative to --data or absolute")
    t.add_argument("--attributes", nargs="+", default=None,
                   help=f"CSV columns, one head each (default: {' '.join(DEFAULT_ATTRIBUTES)} when the CSV has them "
                        "all, as the emoji data does; else required)")
    t.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget")
    t.add_argument("--steps", type=int, default=0, help="step budget instead of (or as well as) --minutes")
    t.add_argument("--batch", type=int, default=64, help="images per training step")
    t.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (warm-up, then cosine decay)")
    t.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    t.add_argument("--image-size", type=int, default=arch.image_size, help="classifier input side")
    t.add_argument("--widths", type=int, nargs="+", default=list(arch.widths), help="channels per stage")
    t.add_argument("--blocks", type=int, nargs="+", default=list(arch.blocks), help="residual blocks per stage")
    t.add_argument("--load-size", type=int, default=256, help="images are loaded at this size, then area-downsampled")
    t.add_argument("--seed", type=int, default=0, help="seed of the initial weights, batches and augmentation")
    t.add_argument("--flip", type=float, default=0.0, help="probability of a horizontal mirror in augmentation")
    t.add_argument("--balance-power", type=float, default=0.0,
                   help="draw images with weight (count of their first attribute's value) ** -power; 0 = uniform")
    t.add_argument("--mixup", type=float, default=0.0,
                   help="blend each batch with a shuffled copy, weight ~ Beta(a, a), and the loss with it; 0 = none")
    t.add_argument("--dropout", type=float, default=arch.dropout, help="dropout before the heads")
    t.add_argument("--text-column", default="",
                   help="CSV column of text (e.g. text): a head also learns to predict its sentence embedding, so the "
                        "features place images near their words; empty = none")
    t.add_argument("--text-weight", type=float, default=1.0, help="weight of that head's cosine loss")
    t.add_argument("--fp32", action="store_true", help="train in float32 instead of bfloat16 autocast")
    _common(t)
    t.set_defaults(func=run_train_classifier)


def run_train_classifier(args: argparse.Namespace) -> int:
    """Train, score on val and save the classifier checkpoint."""
    from .augment import AugmentConfig
    from .classifier import ClassifierConfig
    from .train import check_out, default_attributes, train_classifier

    if args.steps <= 0 and args.minutes <= 0:
        raise ValueError("give a budget: --minutes M or --steps N")
    check_out(args.out, args.force)
    attributes = args.attributes or default_attributes(args.data, args.csv)
    arch = ClassifierConfig(image_size=args.image_size, widths=tuple(args.widths), blocks=tuple(args.blocks),
                            dropout=args.dropout)
    config = train_classifier(args.data, args.out, attributes=attributes, minutes=args.minutes, force=args.force,
                              steps=args.steps, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                              architecture=arch, load_size=args.load_size, csv=args.csv, bf16=not args.fp32,
                              seed=args.seed, threads=args.threads, progress=not args.no_progress,
                              augment_config=AugmentConfig(p_flip=args.flip), balance_power=args.balance_power,
                              mixup=args.mixup, text_column=args.text_column or None,
                              text_weight=args.text_weight)
    p = config["progress"]
    print(f"saved {args.out}: {config['parameters'] / 1e6:.2f} M parameters, {p['step']} steps, "
          f"{p['wall_time_s'] / 60:.1f} min")
    for split, acc in config["accuracy"].items():
        print(f"  {split}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    return 0


def _data_folder(args: argparse.Namespace, *configs: dict[str, Any] | None) -> Path:
    """--data, else the first existing data folder that one of the configs names (the checkpoint's, the
    classifier's)."""
    if args.data is not None:
        return args.data
    for config in configs:
        folder = ((config or {}).get("data") or {}).get("folder")
        for place in (Path(folder), PACKAGE_ROOT / folder) if folder else ():  # as written, else beside the package
            if place.is_dir():
                return place
    raise DataError("give --data (the image folder with the annotation CSV); neither the checkpoint nor the "
                    "classifier names one that exists here")


def classifier_candidates(checkpoint: Path) -> list[Path]:
    """Where `lwgen eval` looks for a classifier when --classifier is not given, in order: inside the checkpoint,
    beside it (runs/NAME/classifier, as `lwgen fit` writes it) and the shipped one (unless LWGEN_SHIPPED=0)."""
    places = [checkpoint / CLASSIFIER, checkpoint.parent / CLASSIFIER]
    if shipped_enabled():
        places.append(shipped_root() / CLASSIFIER)
    out: list[Path] = []
    for p in places:
        if p.resolve() != checkpoint.resolve() and all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def train_hint(checkpoint: Path, config: dict[str, Any], data: Path | None = None, csv: str | None = None) -> str:
    """The exact commands that train a classifier for this checkpoint's data (--data, else the data it was trained
    on) and score the checkpoint with it."""
    trained_on = config.get("data") or {}
    attributes = list(config.get("vocab") or {}) or list(config.get("attributes") or []) or ["COLUMN", "..."]
    out = checkpoint.parent / CLASSIFIER  # shared by the generators beside it (one data set, one classifier)
    if out.exists():  # taken (by a classifier of other data): inside the checkpoint, where it is looked for first
        out = checkpoint / CLASSIFIER
    if inside_shipped(out):
        out = Path("runs") / f"{checkpoint.name}-{CLASSIFIER}"
    csv = csv or trained_on.get("csv")
    command = (f"lwgen eval train-classifier --data {data or trained_on.get('folder') or 'DATA'} "
               + (f"--csv {csv} " if csv and csv != "annotations.csv" else "")
               + f"--attributes {' '.join(attributes)} --out {out}")
    return f"Train one with:\n  {command}\nthen score with:\n  lwgen eval --checkpoint {checkpoint} --classifier {out}"


def _unfit(classifier: Path, vocab: dict[str, list[str]]) -> str | None:
    """Why the classifier folder cannot score a checkpoint of this vocabulary (None when it can)."""
    if not (classifier / CONFIG).is_file():
        return "no classifier there"
    try:
        config = read_config(classifier)
    except CheckpointError as e:
        return str(e)
    if config.get("kind") != CLASSIFIER:
        return f"a {config.get('kind')!r} checkpoint, not a classifier"
    from .evaluate import vocabulary_mismatch

    return vocabulary_mismatch(vocab, config.get("vocab") or {}) if vocab else None


def pick_classifier(checkpoint: Path, config: dict[str, Any], given: Path | None, required: bool = True,
                    data: Path | None = None, csv: str | None = None) -> Path | None:
    """--classifier when given and fit for the checkpoint, else the first fit candidate; an error naming what did
    not fit (and the command that trains one) when none does, or None when not required."""
    vocab = config.get("vocab") or {}
    if given is not None:
        why = _unfit(given, vocab)
        if why is not None:
            raise DataError(f"--classifier {given} cannot score {checkpoint}: {why}.\n"
                            f"{train_hint(checkpoint, config, data, csv)}")
        return given
    tried = []
    for place in classifier_candidates(checkpoint):
        why = _unfit(place, vocab)
        if why is None:
            return place
        tried.append(f"  {place}: {why}")
    if not required:
        return None
    raise DataError(f"no classifier fits {checkpoint}; looked at:\n" + "\n".join(tried) + "\n"
                    + train_hint(checkpoint, config, data, csv))


def _check_columns(classifier: Any, table: ImageTable, checkpoint: Path, config: dict[str, Any], csv: str) -> None:
    from .evaluate import columns_mismatch

    why = columns_mismatch(classifier.vocab, table)
    if why is not None:
        raise DataError(f"{why}.\n{train_hint(checkpoint, config, table.root, csv)}")


def format_table(result: dict[str, Any]) -> str:
    """Two aligned columns, metric and value, for the printed summary."""
    rows = []
    for k, v in result.items():
        if k == "warnings":  # printed after the table, one per line
            continue
        if isinstance(v, float):
            text = "inf" if math.isinf(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
        elif isinstance(v, dict) and all(isinstance(c, dict) for c in v.values()):
            rows.append((k, ""))
            rows += [(f"  {a}", ", ".join(f"{m} {'-' if x is None else x}" for m, x in c.items()))
                     for a, c in v.items()]
            continue
        elif isinstance(v, dict):
            text = ", ".join(f"{a}: {c}" for a, c in v.items())
        else:
            text = "-" if v is None else str(v)
        rows.append((k, text))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def run_eval(args: argparse.Namespace) -> int:
    """Score one checkpoint; print a table and write the metrics as JSON."""
    from ..pipeline import load_model
    from .classifier import Classifier
    from .evaluate import (
        columns_mismatch,
        evaluate_autoencoder,
        evaluate_classifier,
        evaluate_generator,
        evaluate_upscaler,
    )

    if args.checkpoint is None:
        raise ValueError("lwgen eval needs --checkpoint DIR (or the sub-command train-classifier; see lwgen eval -h)")
    if args.n < 1 or args.batch < 1:
        raise ValueError("--n and --batch must be positive")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    config = read_config(args.checkpoint)
    kind = config.get("kind")
    progress = not args.no_progress
    t0 = time.perf_counter()
    if kind == "classifier":
        classifier = Classifier.from_checkpoint(args.checkpoint)
        table = ImageTable.load(_data_folder(args, classifier.checkpoint_config), [], size=args.load_size,
                                csv=args.csv, split=args.split, progress=progress)
        return _report(args, kind, evaluate_classifier(classifier, table), t0)
    model = load_model(args.checkpoint)
    if kind == "autoencoder":
        path = pick_classifier(args.checkpoint, config, args.classifier, False, args.data, args.csv)
        classifier = Classifier.from_checkpoint(path) if path is not None else None
        table = ImageTable.load(_data_folder(args, config, classifier.checkpoint_config if classifier else None), [],
                                size=args.load_size, csv=args.csv, split=args.split, progress=progress)
        if classifier is not None and args.classifier is None and columns_mismatch(classifier.vocab, table):
            print(f"note: the classifier {path} was trained on other data ({columns_mismatch(classifier.vocab, table)}"
                  f"): reconstruction scores only, no fid / kid / accuracy")
            classifier = None
        elif classifier is not None:  # given by --classifier: it must fit
            _check_columns(classifier, table, args.checkpoint, config, args.csv)
        # the side it was trained at (`lwgen train autoencoder --size`), else the classifier's input side
        side = int(config.get("size") or (classifier.config.image_size if classifier else 64))
        result = evaluate_autoencoder(model, table, side, classifier, batch=args.batch, bf16=not args.fp32,
                                      progress=progress, cache=not args.no_cache, seed=args.seed)
        if classifier is not None:
            result["classifier"] = str(path)
    elif kind == "diffusion":
        path = pick_classifier(args.checkpoint, config, args.classifier, True, args.data, args.csv)
        classifier = Classifier.from_checkpoint(path)
        table = ImageTable.load(_data_folder(args, classifier.checkpoint_config, config), [], size=args.load_size,
                                csv=args.csv, split=args.split, progress=progress)
        _check_columns(classifier, table, args.checkpoint, config, args.csv)
        result = evaluate_generator(model, classifier, table, n=args.n, steps=args.steps, sampler=args.sampler,
                                    guidance=args.guidance, batch=args.batch, seed=args.seed, progress=progress,
                                    bf16=not args.fp32, cache=not args.no_cache, condition=args.condition,
                                    prompt_column=args.prompt_column, read_prompt=args.read_prompt,
                                    interval=guidance_interval(args.guidance_interval),
                                    parallel=args.guidance_parallel)
        result["classifier"] = str(path)
    elif kind == "upscaler":
        path = None if args.data is not None else pick_classifier(args.checkpoint, {}, args.classifier, required=False)
        classifier_config = read_config(path) if path is not None else None  # only to find the data folder
        table = ImageTable.load(_data_folder(args, config, classifier_config), [], size=args.load_size, csv=args.csv,
                                split=args.split, progress=progress)
        result = evaluate_upscaler(model, table, n=args.n, batch=min(args.batch, 16), seed=args.seed,
                                   bf16=not args.fp32, progress=progress)
    else:
        raise CheckpointError(f"{args.checkpoint}: cannot evaluate a checkpoint of kind {kind!r}")
    return _report(args, kind, result, t0)


def _report(args: argparse.Namespace, kind: str, result: dict[str, Any], t0: float) -> int:
    """Print the metrics table and write them, with what was scored and how long it took, as JSON."""
    result = {**result, "checkpoint": str(args.checkpoint), "kind": kind, "split": args.split,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(f"{args.checkpoint} ({kind}), {args.split} split:")
    print(format_table(result))
    for warning in result.get("warnings") or []:
        print(f"warning: {warning}")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0

