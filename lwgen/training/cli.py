"""`lwgen train autoencoder|diffusion|upscaler`: flags generated from the config dataclasses; several processes
under torchrun train one model data-parallel."""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import torch

from .. import limits
from ..checkpoint import (
    CONFIG,
    TRAIN_STATE,
    read_config,
    validate_config,
)
from ..config_args import HelpFormatter, add_dataclass_args, dataclass_from_args
from ..data import DataError, ImageTable, downsample, to_float
from ..diffusion import ScheduleConfig
from ..io import check_writable_folder
from ..models import AutoencoderConfig, UNetConfig, UpscalerConfig, count_parameters
from ..pipeline import DEFAULT_GUIDANCE, AutoencoderModel, UpscaleModel
from ..recipe import DataConfig, DiffusionRecipe, init_record, prepare
from . import distributed
from .config import TrainConfig
from .loggers import require_wandb
from .tasks import AutoencoderTask, DiffusionTask, UpscalerTask
from .trainer import Trainer

TRAIN_HELPS = {
    "batch": "images per step in each process; under torchrun the effective batch is batch x the number of "
             "processes (--nproc_per_node x --nnodes)",
}


DATA_HELP = DataConfig.HELP


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train autoencoder`, `train diffusion` and `train upscaler` (`train --config CHECKPOINT/config.json`
    picks the sub-command from the checkpoint's kind)."""
    p = subparsers.add_parser("train", help="train an autoencoder, a diffusion model or an up-scaler",
                              description="Train one model. `lwgen train --config checkpoints/NAME/config.json "
                                          "--out runs/NEW` trains the run that made a checkpoint again.")
    sub = p.add_subparsers(dest="train_command", required=True,
                           metavar="{autoencoder,diffusion,upscaler,prompt-reader}")
    fmt = HelpFormatter
    a = sub.add_parser("autoencoder", help="train the image autoencoder whose latent the diffusion model uses",
                       formatter_class=fmt)
    _data_args(a, attributes=False)
    a.add_argument("--size", type=int, default=64, help="image side the autoencoder is trained at")
    _init_arg(a, "autoencoder")
    add_dataclass_args(a, AutoencoderConfig, prefix="ae_", help_prefix="autoencoder architecture")
    add_dataclass_args(a, TrainConfig, help_prefix="training", helps=TRAIN_HELPS, skip=TrainConfig.DIFFUSION_ONLY)
    a.set_defaults(func=run_autoencoder, batch=32)
    d = sub.add_parser("diffusion", help="train the class-conditional diffusion generator", formatter_class=fmt)
    _data_args(d, attributes=True)
    d.add_argument("--schedule", choices=ScheduleConfig.CHOICES["name"], default=ScheduleConfig.name,
                   help=ScheduleConfig.HELP["name"])
    d.add_argument("--prediction", choices=ScheduleConfig.CHOICES["prediction"], default=ScheduleConfig.prediction,
                   help=ScheduleConfig.HELP["prediction"])
    d.add_argument("--autoencoder", type=Path, default=None,
                   help="autoencoder checkpoint (or a latent generator, whose autoencoder is taken): diffuse in its "
                        "latent (its weights are copied into --out); none: pixel space")
    d.add_argument("--text-column", default="text", help=DATA_HELP["text_column"])
    d.add_argument("--init", type=Path, default=None,
                   help="start from the weights of this diffusion checkpoint (same data vocabulary and "
                        "architecture; text conditioning is added if it has none) instead of from scratch")
    add_dataclass_args(d, ScheduleConfig, prefix="schedule_", skip=("name", "prediction"),
                       help_prefix="noise schedule")
    add_dataclass_args(d, UNetConfig, prefix="unet_", skip=("cond_dim", "in_channels"),
                       help_prefix="U-Net architecture (resolution: of the latent, or of the pixels)")
    add_dataclass_args(d, TrainConfig, help_prefix="training", helps=TRAIN_HELPS)
    d.set_defaults(func=run_diffusion)
    u = sub.add_parser("upscaler", help="train the x4 up-scaler on area-downsampled images", formatter_class=fmt)
    _data_args(u, attributes=False)
    u.add_argument("--crop", type=int, default=128, help="high-resolution crop side used for training")
    _init_arg(u, "up-scaler")
    add_dataclass_args(u, UpscalerConfig, prefix="up_", help_prefix="up-scaler architecture")
    add_dataclass_args(u, TrainConfig, help_prefix="training", helps=TRAIN_HELPS, skip=TrainConfig.DIFFUSION_ONLY)
    u.set_defaults(func=run_upscaler, lr=1e-3, batch=16)
    r = sub.add_parser("prompt-reader", formatter_class=fmt,
                       help="fit the prompt reader of a generator trained with text: the attribute values a prompt "
                            "names (`train diffusion` fits one itself)")
    r.add_argument("--checkpoint", required=True, type=Path,
                   help="diffusion checkpoint trained with text; the reader is written into it")
    r.add_argument("--data", type=Path, default=None,
                   help="data folder (default: the one in the checkpoint's config.json)")
    r.add_argument("--csv", default=None, help="annotation CSV (default: the checkpoint's)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=run_prompt_reader)
    return p


def _init_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--init", type=Path, default=None,
                   help=f"start from the weights of this {what} checkpoint (its architecture and image size) instead "
                        "of from scratch: a fine-tune")


def _data_args(p: argparse.ArgumentParser, attributes: bool) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="a checkpoint's config.json (train that run again) or a JSON object of flag values "
                        "({\"lr\": 0.001, \"unet-base-channels\": 48, ...}; keys are flag names without the leading "
                        "dashes, with - or _); flags on the command line override it")
    p.add_argument("--data", required=True, type=Path, help=DATA_HELP["folder"])
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    p.add_argument("--resume", action="store_true", help="continue from the training state in --out")
    p.add_argument("--force", action="store_true",
                   help="replace what a non-empty --out holds (without it, training refuses to write there)")
    p.add_argument("--csv", default="annotations.csv", help=DATA_HELP["csv"])
    p.add_argument("--file-column", default="file", help=DATA_HELP["file_column"])
    if attributes:
        p.add_argument("--attributes", nargs="+", required=True, help=DATA_HELP["attributes"])
    p.add_argument("--split", default="train", help=DATA_HELP["split"])
    p.add_argument("--fit", choices=("pad", "crop"), default="pad", help=DATA_HELP["fit"])
    p.add_argument("--load-size", type=int, default=256, help=DATA_HELP["load_size"])
    p.add_argument("--skip-bad", action="store_true", help=DATA_HELP["skip_bad"])
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--wandb", action="store_true",
                   help="also log loss, learning rate, speed and sample grids to Weights & Biases (pip install "
                        "wandb; WANDB_MODE=offline needs no account)")
    p.add_argument("--wandb-project", default="lwgen", help="Weights & Biases project of --wandb")


def _load(args: argparse.Namespace, env: distributed.Dist) -> ImageTable:
    with distributed.local_main_first(env):  # the first process of each machine fills the image cache
        return _data(args, []).load(progress=not args.no_progress and env.is_main)


def _start(args: argparse.Namespace) -> distributed.Dist:
    """Check the logging options, then join the process group when torchrun started this process."""
    if args.wandb:
        require_wandb()
    env = distributed.setup()
    if env.enabled and env.is_main:
        print(f"{env.world_size} processes (torchrun): {args.batch} images per process and step, effective batch "
              f"{args.batch * env.world_size}")
    return env


def _say(env: distributed.Dist):
    return print if env.is_main else (lambda *a, **k: None)


def _data(args: argparse.Namespace, attributes: list[str]) -> DataConfig:
    return DataConfig(args.data, attributes, csv=args.csv, file_column=args.file_column, split=args.split,
                      fit=args.fit, load_size=args.load_size, skip_bad=args.skip_bad)


def _resumed_config(out: Path, resume: bool) -> dict | None:
    if resume and (out / CONFIG).is_file():
        return read_config(out)
    return None


def check_out(args: argparse.Namespace, env: distributed.Dist) -> None:
    """Before any work: --out is writable, not a checkpoint that a fresh run would destroy (unless --force), and
    holds a training state when --resume asks for one."""
    if not env.is_main:  # rank 0 alone reads and writes the folder (the others need not see it)
        return
    out = Path(args.out)
    if args.resume and args.force:
        raise ValueError("--resume continues the run in --out and --force replaces it: give one of them")
    if args.resume:
        if not (out / TRAIN_STATE).is_file():
            what = "does not exist" if not out.exists() else f"has no training state ({TRAIN_STATE})"
            raise ValueError(f"--resume: {out} {what}, so there is nothing to continue; train into a new --out "
                             f"(--init {out} starts from a checkpoint's weights)")
    elif out.is_dir() and any(out.iterdir()) and not args.force:
        held = sorted(p.name for p in out.iterdir())
        shown = ", ".join(held[:4]) + (f", ... ({len(held)} entries)" if len(held) > 4 else "")
        raise ValueError(f"--out {out} is not empty (it holds {shown}); pass --resume to continue its training, "
                         f"--force to replace it, or choose a new folder")
    check_writable_folder(out)


def _given(args: argparse.Namespace, dest: str, default) -> bool:
    """Whether the user set a flag (on the command line or in --config): its value is not the default, or its
    flag is among the arguments."""
    if getattr(args, dest, default) != default:
        return True
    flag = "--" + dest.replace("_", "-")
    return any(t == flag or t.startswith(flag + "=") for t in getattr(args, "_argv", None) or [])


def resume_conflicts(args: argparse.Namespace, prev: dict, section: str, prefix: str, cls: type,
                     skip: tuple[str, ...] = (), extra: dict[str, tuple[object, object]] | None = None,
                     init: Path | None = None) -> None:
    """On --resume (or --init `init`), architecture (and schedule) flags must agree with the checkpoint; raise
    ValueError naming the ones that do not. `extra`: dest -> (checkpoint value, flag default) for flags outside the
    dataclass."""
    saved = prev.get(section) or {}
    wrong = []
    for f in dataclasses.fields(cls):
        dest = prefix + f.name
        if f.name in skip or f.name not in saved or not hasattr(args, dest):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        value = getattr(args, dest)
        norm = list(value) if isinstance(value, (list, tuple)) else value
        if _given(args, dest, default) and norm != saved[f.name]:
            wrong.append(f"--{dest.replace('_', '-')} {_show(value)} (checkpoint: {_show(saved[f.name])})")
    for dest, (was, default) in (extra or {}).items():
        if was is not None and _given(args, dest, default) and getattr(args, dest) != was:
            wrong.append(f"--{dest.replace('_', '-')} {_show(getattr(args, dest))} (checkpoint: {_show(was)})")
    if wrong and init is not None:
        raise ValueError(f"--init {init} has another architecture: {'; '.join(wrong)}; drop these flags to start "
                         f"from its weights, or drop --init")
    if wrong:
        raise ValueError(f"--resume: {args.out} was trained with other settings: {'; '.join(wrong)}; drop these "
                         f"flags to continue it, or train into a new --out")


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def check_numbers(args: argparse.Namespace, config: TrainConfig) -> None:
    """Training flags within bounds: every float finite, sizes and the batch within the limits table."""
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if isinstance(value, float):
            limits.check_finite(value, "--" + f.name.replace("_", "-"), low=0.0)
        elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"--{f.name.replace('_', '-')} must not be negative, got {value}")
    limits.check("batch", config.batch, "--batch")
    if config.log_every < 1:
        raise ValueError(f"--log-every must be at least 1, got {config.log_every}")
    for dest in ("load_size", "size", "crop"):
        if hasattr(args, dest):
            limits.check("image_size", getattr(args, dest), "--" + dest.replace("_", "-"))


def check_architecture(section: str, config: Any, prefix: str) -> None:
    """Architecture flags within the limits table (the checks config.json gets), naming the flag."""
    try:
        validate_config({section: {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in dataclasses.asdict(config).items()}})
    except ValueError as e:
        raise ValueError(re.sub(rf"\b{section}\.(\w+)", lambda m: "--" + (prefix + m.group(1)).replace("_", "-"),
                                str(e))) from None


def run_diffusion(args: argparse.Namespace) -> int:
    """Train the diffusion generator (resumable with --resume; data-parallel under torchrun)."""
    env = _start(args)
    try:
        return _run_diffusion(args, env)
    finally:
        distributed.teardown()


def recipe_from_args(args: argparse.Namespace) -> DiffusionRecipe:
    """The typed recipe of `lwgen train diffusion`'s flags."""
    data = DataConfig(args.data, list(args.attributes), csv=args.csv, file_column=args.file_column,
                      split=args.split, fit=args.fit, load_size=args.load_size, skip_bad=args.skip_bad,
                      text_column=args.text_column)
    schedule = dataclass_from_args(ScheduleConfig, args, prefix="schedule_", name=args.schedule,
                                   prediction=args.prediction)
    unet = dataclass_from_args(UNetConfig, args, prefix="unet_", in_channels=3)
    return DiffusionRecipe(data, dataclass_from_args(TrainConfig, args), unet, schedule,
                           autoencoder=args.autoencoder, init=args.init)


def _run_diffusion(args: argparse.Namespace, env: distributed.Dist) -> int:
    say = _say(env)
    recipe = recipe_from_args(args)
    config = recipe.train
    check_numbers(args, config)
    check_out(args, env)
    prev = _resumed_config(args.out, args.resume)
    if prev:
        saved = prev.get("schedule") or {}
        resume_conflicts(args, prev, "unet", "unet_", UNetConfig, skip=("cond_dim", "in_channels"),
                         extra={"schedule": (saved.get("name"), "cosine"),
                                "prediction": (saved.get("prediction"), "v")})
        resume_conflicts(args, prev, "schedule", "schedule_", ScheduleConfig, skip=("name", "prediction"))
    else:
        check_architecture("unet", recipe.unet, "unet_")
    with distributed.local_main_first(env):  # the first process of each machine fills the image and text caches
        run = prepare(recipe, resume=args.out if prev else None, progress=not args.no_progress and env.is_main,
                      say=say)
    model, table = run.model, run.table
    say(f"{len(table)} images, attributes: " + ", ".join(f"{a} ({len(v)} values)" for a, v in table.vocab.items()))
    space = f"{model.noise_shape} latent" if model.autoencoder is not None else "pixel space"
    say(f"U-Net: {count_parameters(model.unet) / 1e6:.2f} M parameters in {space}, schedule "
        f"{model.schedule.name}, {model.schedule.prediction}-prediction, {model.resolution} px images")
    task = DiffusionTask(model, table.images, table.labels, config, text=run.text, latent_stats=run.latent_stats,
                         text_lead=run.text_lead)
    preview_labels = table.labels[torch.randperm(len(table), generator=torch.Generator().manual_seed(0))[:16]]

    def preview(ema: Any) -> torch.Tensor:  # the EMA copy of the DiffusionModel
        from torchvision.utils import (
            make_grid,  # lazy: importing torchvision costs every `lwgen` command 2 s
        )

        imgs = ema.generate(ema.condition(preview_labels), seeds=range(16), steps=20, guidance=DEFAULT_GUIDANCE)
        return make_grid((imgs + 1) / 2, nrow=8)

    trainer = Trainer(task, config, args.out, run.weights, meta=run.meta,
                      preview=preview, progress=not args.no_progress, dist=env,
                      wandb_project=args.wandb_project if args.wandb else None)
    summary = trainer.run(resume=args.resume)
    if env.is_main:
        _report(summary, args.out)
        if run.text is not None:
            column = recipe.data.text_column if recipe.data.text_column in table.extra.columns else ""
            save_reader(recipe.data.folder, {"csv": recipe.data.csv, "file_column": recipe.data.file_column,
                                             "split": recipe.data.split}, model.vocab, column, args.out,
                        progress=not args.no_progress, say=say)
    return 0


def save_reader(folder: Path, data: dict, vocab: dict[str, list[str]], text_column: str, out: Path,
                progress: bool = False, say=print) -> None:
    """Fit the prompt reader of a generator on its training rows and write it into `out`."""
    from ..prompt_reader import build_reader

    reader = build_reader(folder, data.get("csv") or "annotations.csv", data.get("file_column") or "file",
                          data.get("split"), vocab, text_column, progress)
    path = reader.save(out)
    held = reader.held_out_text()
    say(f"prompt reader: {path}" + (f" (on {held})" if held else ""))


def run_prompt_reader(args: argparse.Namespace) -> int:
    """Fit the prompt reader of an existing generator trained with text, from the rows it was trained on."""
    cfg = read_config(args.checkpoint)
    if cfg.get("kind") != "diffusion" or not cfg.get("text_dim"):
        raise ValueError(f"--checkpoint {args.checkpoint}: not a diffusion checkpoint trained with text")
    data = dict(cfg.get("data") or {})
    if args.csv:
        data["csv"] = args.csv
    folder = args.data or Path(data.get("folder") or "")
    if not data.get("folder") and args.data is None:
        raise ValueError(f"--checkpoint {args.checkpoint}: its config.json names no data folder; pass --data")
    column = (cfg.get("text") or {}).get("column") or ""
    save_reader(folder, data, cfg["vocab"], column, args.checkpoint, progress=not args.no_progress)
    return 0


def _train_unit(args: argparse.Namespace, unit: type[UpscaleModel] | type[AutoencoderModel], prefix: str,
                make_task, describe, meta: dict, validate=None) -> int:
    """Shared body of `train upscaler` and `train autoencoder`: one network, uniform sampling, no labels."""
    env = _start(args)
    try:
        say = _say(env)
        config = dataclass_from_args(TrainConfig, args)
        check_numbers(args, config)
        check_out(args, env)
        prev = _resumed_config(args.out, args.resume)
        init = unit.from_checkpoint(args.init).train() if args.init and not prev else None  # checks its kind
        start = init.checkpoint_config if init is not None else None
        saved = prev or start
        if saved:
            resume_conflicts(args, saved, unit.kind, prefix, unit.config_cls,
                             extra={"size": (saved.get("size"), 64)} if "size" in meta else None,
                             init=None if prev else args.init)
        else:
            check_architecture(unit.kind, dataclass_from_args(unit.config_cls, args, prefix), prefix)
        table = _load(args, env)
        torch.manual_seed(config.seed)
        if prev:
            model = unit.from_config(prev, str(args.out))
            if prev.get("init"):
                meta = {**meta, "init": prev["init"]}  # a resumed fine-tune keeps what it started from
        elif init is not None:
            model = init  # its EMA weights, which the EMA copy starts from too
            meta = {**meta, "init": init_record(args.init, init.checkpoint_config)}
            say(f"started from {args.init}")
        else:
            model = unit(dataclass_from_args(unit.config_cls, args, prefix))
        say(f"{len(table)} images; {describe(model)}: {count_parameters(model) / 1e6:.2f} M parameters")
        trainer = Trainer(make_task(model, table.images, config), config, args.out, torch.ones(len(table)),
                          meta={"data": _data(args, []).provenance(table), **meta}, progress=not args.no_progress,
                          dist=env,
                          wandb_project=args.wandb_project if args.wandb else None)
        summary = trainer.run(resume=args.resume)
        if env.is_main:
            _report(summary, args.out)
            if validate is not None:
                validate(unit.from_checkpoint(args.out))
        return 0
    finally:
        distributed.teardown()


def run_upscaler(args: argparse.Namespace) -> int:
    """Train the up-scaler on (area-downsampled, original) pairs."""
    return _train_unit(args, UpscaleModel, "up_",
                       lambda m, images, c: UpscalerTask(m, images, c, crop=args.crop),
                       lambda m: f"up-scaler x{m.net.config.scale}", {"crop": args.crop})


def run_autoencoder(args: argparse.Namespace) -> int:
    """Train the image autoencoder on reconstruction."""
    def describe(m: AutoencoderModel) -> str:
        f, lat = m.net.config.factor, m.net.config.latent_channels
        return f"autoencoder {args.size} px -> {lat} x {args.size // f} x {args.size // f}"

    return _train_unit(args, AutoencoderModel, "ae_",
                       lambda m, images, c: AutoencoderTask(m, images, c, size=args.size), describe,
                       {"size": args.size}, validate=lambda m: _validate_autoencoder(args, m))


def _validate_autoencoder(args: argparse.Namespace, model: AutoencoderModel, limit: int = 256) -> dict | None:
    """Reconstruction error of the saved (EMA) autoencoder on held-out rows: the 'val' split when training used
    the 'train' split of a CSV that has one; printed and returned (None when there are no held-out rows)."""
    if args.split != "train":
        print("validation: no held-out rows (training used --split " + repr(args.split) + ")")
        return None
    try:
        table = DataConfig(args.data, [], csv=args.csv, file_column=args.file_column, split="val", fit=args.fit,
                           load_size=args.load_size, skip_bad=True).load(progress=False)
    except (DataError, ValueError) as e:
        print(f"validation: no held-out rows ({e})")
        return None
    images = table.images[:limit]
    factor = images.shape[-1] // args.size
    x = to_float(downsample(images, factor) if factor > 1 else images)
    with torch.no_grad():
        y = torch.cat([model(chunk).float().clamp(-1, 1) for chunk in x.split(64)])
    l1 = float((y - x).abs().mean() / 2)  # on the [0, 1] scale
    mse = ((y - x) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    psnr = float((10 * torch.log10(1 / mse)).mean())
    print(f"validation ({len(x)} held-out images at {args.size} px): L1 {l1:.4f}, PSNR {psnr:.2f} dB")
    return {"images": len(x), "l1": round(l1, 5), "psnr": round(psnr, 3)}


def _report(summary: dict, out: Path) -> None:
    p = summary["progress"]
    last = summary.get("last_loss")
    if last is None and p["loss_history"]:
        last = p["loss_history"][-1][1]
    loss = f", last loss {last:.4f}" if last is not None and math.isfinite(last) else ""
    procs = f" on {p['processes']} processes" if p.get("processes", 1) > 1 else ""
    print(f"saved {out}: {p['step']} steps, {p['images_seen']} images{procs}, {p['wall_time_s'] / 60:.1f} min"
          f"{loss}")
