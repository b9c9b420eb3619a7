"""The `lwgen` command: data, train, tune, sample, export, info."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import __version__, limits
from .checkpoint import CheckpointError
from .conditioning import PROMPT_READER_FILE
from .config_args import HelpFormatter, add_guidance_interval_arg, add_guidance_parallel_arg, guidance_interval
from .data import DataError
from .diffusion.samplers import SAMPLERS
from .pipeline import DEFAULT_GUIDANCE, ConditionError
from .shipped import shipped_root

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_format(out: str | Path) -> str:
    """The PIL format of an output image from its extension; ValueError for another extension or a folder."""
    text = str(out)
    if text.endswith(("/", "\\")) or Path(text).is_dir():
        raise ValueError(f"--out {text}: is a folder; give an image file name such as {Path(text) / 'samples.png'}")
    ext = Path(text).suffix.lower()
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"--out {text}: unknown image extension {ext or '(none)'!r}; use one of "
                         + ", ".join(IMAGE_FORMATS))
    return IMAGE_FORMATS[ext]


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate a grid of images from a checkpoint",
                       formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="diffusion checkpoint folder")
    p.add_argument("--set", dest="values", action="append", default=[], metavar="ATTR=VALUE",
                   help="condition on an attribute value (repeatable; 'any' leaves it free)")
    p.add_argument("--prompt", default="", help="describe the image in words (generators trained with text)")
    p.add_argument("--read-prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="also set the attributes left at 'any' to the values the checkpoint's prompt reader is sure "
                        "the prompt names (e.g. subgroup heart for 'red heart'); --no-read-prompt: the "
                        "prompt's words alone")
    p.add_argument("-n", type=int, default=16, help="number of images")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--sampler", default="dpmpp", choices=tuple(SAMPLERS),
                   help="sampler: DPM-Solver++(2M), DDIM or DDPM")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help="classifier-free guidance scale (1 = none; 0 = the condition is ignored)")
    add_guidance_interval_arg(p)
    add_guidance_parallel_arg(p)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--upscale", action="store_true", help="also apply the x4 up-scaler")
    p.add_argument("--upscaler", type=Path, default=shipped_root() / "upscaler-x4",
                   help="up-scaler checkpoint (default: the shipped one)")
    p.add_argument("--nrow", type=int, default=0, help="images per grid row (default: square-ish)")
    p.add_argument("--out", default="samples.png",
                   help="grid image to write; its extension sets the format (" + ", ".join(IMAGE_FORMATS) + ")")
    p.add_argument("--fp32", action="store_true", help="sample in float32 instead of bfloat16 autocast")
    p.set_defaults(func=run_sample)


def parse_values(items: list[str]) -> dict[str, str]:
    """['a=b', ...] -> {'a': 'b'}, with an error naming a malformed item."""
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConditionError(f"--set expects ATTRIBUTE=VALUE, got {item!r}")
        values[name.strip()] = value.strip()
    return values


def run_sample(args: argparse.Namespace) -> int:
    """Generate n images for one condition and save them as a grid."""
    from PIL import Image

    from .data.images import image_grid, to_uint8
    from .io import atomic_write, check_writable_file
    from .pipeline import DiffusionModel, UpscaleModel

    limits.check_sampling(args.steps, args.guidance, args.n, args.seed,
                          names={"steps": "--steps", "guidance": "--guidance", "count": "-n", "seed": "--seed"})
    limits.check("nrow", args.nrow, "--nrow")
    interval = guidance_interval(args.guidance_interval)
    fmt = image_format(args.out)
    out = Path(args.out)
    check_writable_file(out)  # before sampling, not after
    t0 = time.perf_counter()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    values = parse_values(args.values)
    text = model.encode_prompt(args.prompt, args.n)
    if text is not None and args.read_prompt and model.prompt_reader is not None:
        values, read = model.prompt_reader.fill_values(values, text[0])
        if read:
            print("read from the prompt: " + ", ".join(f"{r.attribute}={r.value} ({r.probability:.2f})"
                                                       for r in read))
    labels = model.encode(values).expand(args.n, -1)
    images = model.generate(model.condition(labels, text), seeds=[args.seed + i for i in range(args.n)],
                            steps=args.steps, sampler=args.sampler, guidance=args.guidance, bf16=not args.fp32,
                            batch=64, interval=interval, parallel=args.guidance_parallel)
    if args.upscale:
        images = UpscaleModel.from_checkpoint(args.upscaler).upscale(images, bf16=not args.fp32)
    nrow = args.nrow or max(1, int(round(args.n ** 0.5)))
    grid = image_grid(to_uint8(images), nrow).permute(1, 2, 0).numpy()  # (H, W, 3)
    atomic_write(out, lambda tmp: Image.fromarray(grid).save(tmp, format=fmt))
    print(f"wrote {out} ({args.n} images, {images.shape[-1]} px) in {time.perf_counter() - t0:.1f} s")
    return 0


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a release copy of a checkpoint (EMA weights only, half precision), or "
                                      "`export tensorboard`: a TensorBoard projector of its gallery",
                       formatter_class=HelpFormatter,
                       description="`lwgen export --checkpoint X --out Y` writes a release copy of X. `lwgen export "
                                   "tensorboard --checkpoint X --out Y` writes a TensorBoard projector folder of the "
                                   "gallery shipped beside X (sprite, metadata.tsv, tensors.tsv, "
                                   "projector_config.pbtxt); open it with `tensorboard --logdir Y`, Projector tab.")
    p.add_argument("what", nargs="?", choices=("release", "tensorboard"), default="release",
                   help="what to export")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder to export")
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    p.add_argument("--force", action="store_true",
                   help="release: replace the checkpoint in a non-empty --out (never the --checkpoint itself)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="release: weight precision")
    p.add_argument("--features", choices=("pixels", "classifier"), default="pixels",
                   help="tensorboard: the vectors to project, the 16 px pixels (768 values) or the classifier's "
                        "pooled features, as on the app's Explore page")
    p.add_argument("--classifier", type=Path, default=shipped_root() / "classifier",
                   help="tensorboard: classifier checkpoint of --features classifier (default: the shipped one)")
    p.add_argument("--thumb", type=int, default=0,
                   help="tensorboard: thumbnail side in the sprite (0: the gallery's image size, smaller when "
                        "needed to keep the sprite within 8192 px)")
    p.set_defaults(func=run_export)


def run_export_tensorboard(args: argparse.Namespace) -> int:
    """The gallery beside a diffusion checkpoint as a TensorBoard projector folder."""
    from .projection.features import (
        classifier_features,
        load_classifier,
        pixel_features,
    )
    from .projection.gallery import load_gallery
    from .projection.tensorboard import write_projector

    gallery = load_gallery(args.checkpoint)
    if gallery is None:
        raise CheckpointError(f"{args.checkpoint}: no gallery (gallery.safetensors and gallery.json); "
                              f"`lwgen gallery --checkpoint {args.checkpoint}` writes one")
    if args.features == "classifier":
        classifier = load_classifier(args.classifier)
        if classifier is None:
            raise CheckpointError(f"{args.classifier}: no usable classifier checkpoint for --features classifier")
        features, what = classifier_features(classifier, gallery.images), "classifier features"
    else:
        features, what = pixel_features(gallery.images, 16), "pixels, 16 px"
    name = f"{args.checkpoint.resolve().name} gallery ({what})"
    done = write_projector(gallery, features, args.out, name, args.thumb)
    print(f"wrote {args.out}: {done.count} images, {what} ({done.dims} values each), sprite of {done.per_row} x "
          f"{done.per_row} thumbnails of {done.thumb} px ({done.sprite_side} px)")
    print(f"view it with: tensorboard --logdir {args.out}   (Projector tab)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Keep the EMA weights (or the raw ones if there is no EMA), cast, and copy the config."""
    if args.what == "tensorboard":
        return run_export_tensorboard(args)
    from .checkpoint import (
        STAMP,
        TRAIN_STATE,
        load_checkpoint,
        module_state,
        save_checkpoint,
    )
    from .io import atomic_write_bytes, check_writable_folder
    from .pipeline import load_model

    src, dst = Path(args.checkpoint), Path(args.out)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"--out {dst} is the --checkpoint itself; write the release copy to another folder")
    if dst.is_dir() and any(dst.iterdir()) and not args.force:
        raise ValueError(f"--out {dst} is not empty; pass --force to replace the checkpoint there, or choose a new "
                         f"folder")
    config, tensors = load_checkpoint(src)
    if config.get("kind") in ("diffusion", "upscaler", "autoencoder"):
        load_model(src)  # the weights must fit the config: never release a checkpoint that cannot load
    state = module_state(tensors, "ema") or module_state(tensors, "model")
    if not state:
        raise CheckpointError(f"{src}: no 'ema.*' or 'model.*' tensors in model.safetensors")
    check_writable_folder(dst)
    dtype = getattr(torch, args.dtype)
    out = {f"ema.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    config.pop(STAMP, None)
    config["release"] = {"source": str(args.checkpoint), "dtype": args.dtype}
    save_checkpoint(dst, out, config)
    if (dst / TRAIN_STATE).exists():  # a replaced run's training state would resume the old weights
        (dst / TRAIN_STATE).unlink()
    if (src / PROMPT_READER_FILE).is_file():  # the prompt reader travels with the generator
        atomic_write_bytes(dst / PROMPT_READER_FILE, (src / PROMPT_READER_FILE).read_bytes())
    elif (dst / PROMPT_READER_FILE).exists():  # a replaced run's reader does not belong to this one
        (dst / PROMPT_READER_FILE).unlink()
    size = (args.out / "model.safetensors").stat().st_size / 1e6
    print(f"wrote {args.out} ({len(out)} tensors, {size:.1f} MB)")
    return 0


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's architecture, size, cost and training record")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (any kind)")
    p.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Parameters, GMAC per forward, schedule and training progress of a checkpoint."""
    from .models import count_parameters, forward_gmacs
    from .pipeline import load_model
    from .record import CheckpointRecord

    model = load_model(args.checkpoint)
    cfg = model.checkpoint_config
    if cfg["kind"] == "classifier":
        print(f"{args.checkpoint}: classifier, {count_parameters(model) / 1e6:.2f} M parameters; heads: "
              + ", ".join(f"{a} ({len(v)})" for a, v in model.vocab.items()))
        return 0
    print(f"{args.checkpoint}: {cfg['kind']}")
    if cfg["kind"] == "diffusion":
        x, t, c = torch.zeros(1, *model.noise_shape), torch.zeros(1), torch.zeros(1, model.embedder.config.dim)
        space = "x".join(map(str, model.noise_shape))
        print(f"  U-Net {count_parameters(model.unet) / 1e6:.2f} M parameters, "
              f"{forward_gmacs(model.unet, x, t, c):.3f} GMAC per forward on {space}; "
              f"embedder {count_parameters(model.embedder) / 1e3:.1f} k parameters; {model.resolution} px images")
        if model.autoencoder is not None:
            z = torch.zeros(1, *model.noise_shape)
            print(f"  autoencoder {count_parameters(model.autoencoder) / 1e6:.2f} M parameters, decoder "
                  f"{forward_gmacs(model.autoencoder.decoder, z):.3f} GMAC per image")
        print(f"  schedule {model.schedule.name}, {model.schedule.prediction}-prediction, "
              f"{model.schedule.timesteps} steps; attributes: "
              + ", ".join(f"{a} ({len(v)})" for a, v in model.vocab.items()))
    elif cfg["kind"] == "autoencoder":
        f, lat = model.net.config.factor, model.net.config.latent_channels
        print(f"  {count_parameters(model) / 1e6:.2f} M parameters; 64 px -> {lat} x {64 // f} x {64 // f} latent")
    else:
        print(f"  x{model.net.config.scale}: {count_parameters(model) / 1e6:.3f} M parameters, "
              f"{forward_gmacs(model.net, torch.zeros(1, 3, 64, 64)):.3f} GMAC per 64 px input")
    record = CheckpointRecord.parse(cfg)
    p = record.progress
    if p.step is not None:
        print(f"  trained {p.step} steps, {p.images_seen} images, {(p.wall_time_s or 0) / 60:.1f} min")
    if record.continued is not None:
        c = record.continued
        print(f"  continued from {c.checkpoint}: {c.steps} steps, {c.images_seen} images, {c.wall_time_s / 60:.1f} min "
              "before")
    if record.text_encoder:
        print(f"  takes prompts: {record.text_encoder} ({cfg['text_dim']}-d), text column {record.text_column!r}")
        reader = getattr(model, "prompt_reader", None)
        if reader is not None:
            held = reader.held_out_text()
            read = [a for a in reader.vocab if a not in reader.unreadable]
            print("  prompt reader: reads " + ", ".join(read) + (f" (on {held})" if held else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data.cli import add_parser as add_data
    from .fit.cli import add_parser as add_fit
    from .training.cli import add_parser as add_train
    from .tuning.cli import add_parser as add_tune

    parser = argparse.ArgumentParser(prog="lwgen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lwgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data(sub)
    add_train(sub)
    add_fit(sub)
    add_tune(sub)
    _sample_parser(sub)
    _export_parser(sub)
    _info_parser(sub)
    for optional in ("lwgen.evaluation.cli", "lwgen.projection.cli"):
        try:
            module = __import__(optional, fromlist=["add_parser"])
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("lwgen"):
                continue
            raise
        module.add_parser(sub)
    return parser


def _config_path(argv: list[str], pos: int) -> str | None:
    path = None
    for i in range(pos, len(argv)):
        if argv[i] == "--":
            break
        if argv[i] == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif argv[i].startswith("--config="):
            path = argv[i].split("=", 1)[1]
    return path


def _read_config_file(path: str) -> dict:
    import json

    try:
        values = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"--config {path}: cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--config {path}: not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a JSON object of flag values or a checkpoint's config.json")
    return values


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Insert the flags of a subcommand's `--config FILE` right after the subcommand, so that the flags given on
    the command line, which come later, override the file.

    FILE is a JSON object of flag values, or a checkpoint's config.json: then its recipe gives the flags, and
    `lwgen train --config FILE` takes the sub-command from the checkpoint's kind.
    """
    from .config_args import config_argv
    from .recipe import recipe_flags

    leaf, pos = parser, 0
    while True:
        sub = next((a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)), None)
        at = next((i for i in range(pos, len(argv)) if sub is not None and argv[i] in sub.choices), None)
        if at is None:
            break
        leaf, pos = sub.choices[argv[at]], at + 1
    has_config = any("--config" in a.option_strings for a in leaf._actions)
    path = _config_path(argv, pos)
    if path is None or (not has_config and sub is None):
        return argv
    values = _read_config_file(path)
    if "kind" in values:  # a checkpoint: its recipe
        command, values = recipe_flags(values, Path(path).parent)
        if not has_config:  # `lwgen train --config FILE`: the sub-command follows from the checkpoint
            if sub is None or command not in sub.choices:
                return argv
            leaf, argv = sub.choices[command], argv[:pos] + [command] + argv[pos:]
            pos += 1
        elif leaf.prog.split()[-1] != command:
            raise ValueError(f"--config {path}: a {command} checkpoint; use `{leaf.prog.rsplit(' ', 1)[0]} "
                             f"{command}` or leave the sub-command out")
    elif not has_config:
        return argv
    return argv[:pos] + config_argv(leaf, values, f"--config {path}") + argv[pos:]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = expand_config(parser, argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    args._argv = argv  # which flags the user gave (training compares them with a resumed checkpoint)
    from .io import describe_os_error
    from .training.trainer import TrainingError

    try:
        return int(args.func(args) or 0)
    except (DataError, CheckpointError, ConditionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only folder, a full disk, a folder where a file should be: one line, no traceback
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return 128 + int(getattr(e, "signum", 2))


if __name__ == "__main__":
    sys.exit(main())
