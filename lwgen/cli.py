"""The `lwgen` command: data, train, sample, export, info."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .checkpoint import CheckpointError
from .data import DataError
from .pipeline import ConditionError


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate a grid of images from a checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="diffusion checkpoint folder")
    p.add_argument("--set", dest="values", action="append", default=[], metavar="ATTR=VALUE",
                   help="condition on an attribute value (repeatable; 'any' leaves it free)")
    p.add_argument("-n", type=int, default=16, help="number of images")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--sampler", default="dpmpp", choices=("dpmpp", "ddim", "ddpm"))
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--upscale", action="store_true", help="also apply the x4 up-scaler")
    p.add_argument("--upscaler", type=Path, default=Path("checkpoints/upscaler-x4"), help="up-scaler checkpoint")
    p.add_argument("--nrow", type=int, default=0, help="images per grid row (default: square-ish)")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="grid PNG to write")
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
    from .io import atomic_write
    from .pipeline import DiffusionModel, UpscaleModel

    if not 1 <= args.n <= 1024:
        raise ConditionError("-n must be between 1 and 1024")
    t0 = time.perf_counter()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    labels = model.encode(parse_values(args.values)).expand(args.n, -1)
    images = model.generate(model.condition(labels), seeds=[args.seed + i for i in range(args.n)], steps=args.steps,
                            sampler=args.sampler, guidance=args.guidance, bf16=not args.fp32)
    if args.upscale:
        images = UpscaleModel.from_checkpoint(args.upscaler).upscale(images, bf16=not args.fp32)
    nrow = args.nrow or max(1, int(round(args.n ** 0.5)))
    grid = image_grid(to_uint8(images), nrow).permute(1, 2, 0).numpy()  # (H, W, 3)
    atomic_write(args.out, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    print(f"wrote {args.out} ({args.n} images, {images.shape[-1]} px) in {time.perf_counter() - t0:.1f} s")
    return 0


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a release copy of a checkpoint (EMA weights only, half precision)")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Keep the EMA weights (or the raw ones if there is no EMA), cast, and copy the config."""
    from .checkpoint import load_checkpoint, module_state, save_checkpoint

    config, tensors = load_checkpoint(args.checkpoint)
    state = module_state(tensors, "ema") or module_state(tensors, "model")
    dtype = getattr(torch, args.dtype)
    out = {f"ema.{k}": v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    config["release"] = {"source": str(args.checkpoint), "dtype": args.dtype}
    save_checkpoint(args.out, out, config)
    size = (args.out / "model.safetensors").stat().st_size / 1e6
    print(f"wrote {args.out} ({len(out)} tensors, {size:.1f} MB)")
    return 0


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's architecture, size, cost and training record")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Parameters, GMAC per forward, schedule and training progress of a checkpoint."""
    from .checkpoint import read_config
    from .models import count_parameters, forward_gmacs
    from .pipeline import load_model

    if read_config(args.checkpoint).get("kind") == "classifier":
        from .evaluation import Classifier

        model = Classifier.from_checkpoint(args.checkpoint)
        print(f"{args.checkpoint}: classifier, {count_parameters(model) / 1e6:.2f} M parameters; heads: "
              + ", ".join(f"{a} ({len(v)})" for a, v in model.vocab.items()))
        return 0
    model = load_model(args.checkpoint)
    cfg = model.checkpoint_config
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
    p = cfg.get("progress", {})
    if p:
        print(f"  trained {p.get('step')} steps, {p.get('images_seen')} images, {p.get('wall_time_s', 0) / 60:.1f} min")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data.cli import add_parser as add_data
    from .training.cli import add_parser as add_train

    parser = argparse.ArgumentParser(prog="lwgen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lwgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_data(sub)
    add_train(sub)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, CheckpointError, ConditionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
