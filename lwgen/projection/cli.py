"""`lwgen gallery`: generate the per-class gallery that the app's Explore page projects, into the checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..config_args import HelpFormatter
from ..diffusion.samplers import SAMPLERS
from ..pipeline import DEFAULT_GUIDANCE


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `gallery` (func=run_gallery)."""
    p = subparsers.add_parser("gallery", help="generate a gallery of images per class for the app's Explore page",
                              formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="diffusion checkpoint folder")
    p.add_argument("--per-class", type=int, default=2, help="images per class (attribute combination)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--sampler", default="dpmpp", choices=tuple(SAMPLERS),
                   help="sampler: DPM-Solver++(2M), DDIM or DDPM")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--data", type=Path, default=None,
                   help="data folder whose CSV lists the classes (default: the checkpoint's own data.folder)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder to write gallery.safetensors/json into (default: the checkpoint folder)")
    p.set_defaults(func=run_gallery)
    return p


def run_gallery(args: argparse.Namespace) -> int:
    """Build the gallery and save it atomically."""
    from ..pipeline import DiffusionModel
    from .combinations import default_classes
    from .gallery import build_gallery, save_gallery

    model = DiffusionModel.from_checkpoint(args.checkpoint)
    classes = default_classes(model.vocab, model.checkpoint_config, args.data)
    total = len(classes) * args.per_class
    print(f"{len(classes)} classes x {args.per_class} images = {total} images, {args.steps} {args.sampler} steps")
    with tqdm(total=total, unit="img", desc="gallery") as bar:
        def progress(fraction: float, _: str) -> None:
            bar.update(int(fraction * total) - bar.n)

        gallery = build_gallery(model, args.per_class, args.steps, args.seed, progress, classes=classes,
                                sampler=args.sampler, guidance=args.guidance, source=args.checkpoint)
    out = args.out or args.checkpoint
    save_gallery(out, gallery)
    print(f"wrote {out / 'gallery.safetensors'} ({len(gallery)} images) in {gallery.meta['seconds']:.0f} s")
    return 0
