"""lwgen against a same-size diffusers U-Net and a conditional VAE, at equal wall clock.

In one run, side by side (one core each by default), and conditioned on the same attributes (group, subgroup):
- lwgen: its recipe with the defaults of `lwgen train` (autoencoder training included in the budget);
- peer: diffusers `UNet2DModel` at 64 px with lwgen's U-Net parameter count (within 10 %), class-conditional
  through `num_class_embeds`, given lwgen's schedule, v-prediction, min-SNR weighting, optimiser, batch, EMA
  and DPM-Solver++ step count (see recipes.py);
- cvae: a conditional VAE with lwgen's attribute embedder and optimiser.
Each is scored with `lwgen.evaluation` on the held-out split. Then, on the quiet machine, sampling speed at equal
steps and the forward cost of every network, including a 93 M-parameter U-Net of the original project's size.

    python benchmarks/peer.py --minutes 20

Needs `pip install -r requirements-dev.txt` (diffusers). Writes benchmarks/results/peer.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Setting, load_table, machine, markdown_table, run_all  # noqa: E402
from recipes import RECIPES, DiffusersGenerator, JointClass  # noqa: E402

from lwgen.diffusion import ScheduleConfig  # noqa: E402
from lwgen.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from lwgen.models import AutoencoderConfig, UNetConfig, count_parameters, forward_gmacs  # noqa: E402
from lwgen.pipeline import DiffusionModel  # noqa: E402
from lwgen.precision import autocast

ATTRIBUTES = ["group", "subgroup"]
RATIOS = [("fid", "domain FID", "lower"), ("kid", "KID", "lower"), ("group_top1", "group top-1", "higher"),
          ("subgroup_top5", "subgroup top-5", "higher"), ("train_images_per_s", "training img/s", "higher"),
          ("sampling_images_per_s", "sampling img/s (16 images, quiet machine)", "higher")]
# The original project's U-Net had 93 M parameters; its layout is not recorded. This stand-in is the layout of
# diffusers' DDPM training example (six levels, two blocks each, attention at 4 px) with the two widest levels
# at 448 channels, which gives 93.5 M parameters.
ORIGINAL = dict(block_out_channels=(128, 128, 256, 256, 448, 448), layers_per_block=2,
                down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4)


class _Wrap(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=c).sample


def best_time(fn, repeat: int = 2) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def networks(data: Path) -> tuple[DiffusionModel, DiffusersGenerator]:
    """Freshly built lwgen and peer generators as the recipes build them (weights do not matter for speed)."""
    table = load_table(data, ATTRIBUTES, "train")
    ours = DiffusionModel(UNetConfig(), ScheduleConfig("cosine"), table.vocab, autoencoder=AutoencoderConfig()).eval()
    peer = DiffusersGenerator(JointClass(table.vocab, table.labels), (32, 64, 128, 128), (2, 3), "v",
                              "trailing").eval()
    return ours, peer


def speed_and_cost(data: Path, steps: int) -> dict:
    """Sampling img/s at equal steps on all cores (bf16), and GMAC per forward of every network."""
    from diffusers import UNet2DModel

    ours, peer = networks(data)
    n = 16
    labels = torch.zeros(n, len(ATTRIBUTES), dtype=torch.long)
    ours_s = best_time(lambda: ours.generate(ours.condition(labels), seeds=range(n), steps=steps))
    peer_s = best_time(lambda: peer.generate(peer.condition(labels), seeds=range(n), steps=steps))
    original = UNet2DModel(sample_size=64, num_class_embeds=13, **ORIGINAL).eval()
    one = torch.zeros(1, dtype=torch.long)
    x64 = torch.zeros(1, 3, 64, 64)
    u = ours.unet.config
    rows = [
        {"network": "lwgen U-Net (16 x 16 x 4 latent)", "parameters": count_parameters(ours.unet),
         "gmac": forward_gmacs(ours.unet, torch.zeros(1, u.in_channels, u.resolution, u.resolution), torch.zeros(1),
                               torch.zeros(1, u.cond_dim))},
        {"network": "lwgen decoder (once per image)", "parameters": count_parameters(ours.autoencoder.decoder),
         "gmac": forward_gmacs(ours.autoencoder.decoder, torch.zeros(1, u.in_channels, u.resolution, u.resolution))},
        {"network": "peer: diffusers UNet2DModel, 64 px", "parameters": count_parameters(peer.unet),
         "gmac": forward_gmacs(_Wrap(peer.unet), x64, torch.zeros(1), one)},
        {"network": "original design size: UNet2DModel, 64 px", "parameters": count_parameters(original),
         "gmac": forward_gmacs(_Wrap(original), x64, torch.zeros(1), one)},
    ]
    t_orig = best_time(lambda: _forward(original, 2 * n), repeat=1)
    t_ours = best_time(lambda: _forward_ours(ours, 2 * n), repeat=1)
    for r in rows:
        r["gmac"] = round(r["gmac"], 3)
    return {"steps": steps, "images": n, "lwgen_s": round(ours_s, 3), "peer_s": round(peer_s, 3),
            "lwgen_images_per_s": round(n / ours_s, 2), "peer_images_per_s": round(n / peer_s, 2),
            "forward_ms_batch32": {"lwgen": round(1000 * t_ours, 1), "original_design": round(1000 * t_orig, 1)},
            "networks": rows}


@torch.no_grad()
def _forward(unet, b: int) -> None:
    with autocast(True):
        unet(torch.zeros(b, 3, 64, 64), torch.full((b,), 500), class_labels=torch.zeros(b, dtype=torch.long))


@torch.no_grad()
def _forward_ours(model: DiffusionModel, b: int) -> None:
    u = model.unet.config
    with autocast(True):
        model.unet(torch.zeros(b, u.in_channels, u.resolution, u.resolution), torch.full((b,), 500.0),
                   torch.zeros(b, u.cond_dim))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget of each contender")
    p.add_argument("--recipes", nargs="+", default=["lwgen", "peer", "cvae"], choices=sorted(RECIPES))
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--classifier", type=Path, default=Path("checkpoints/classifier"))
    p.add_argument("--out", type=Path, default=Path("runs/peer"))
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/peer"))
    p.add_argument("--n", type=int, default=300, help="generated images per evaluation")
    p.add_argument("--jobs", type=int, default=3, help="contenders trained at the same time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per contender")
    p.add_argument("--steps", type=int, default=20, help="sampler steps for every diffusion model")
    args = p.parse_args()
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise SystemExit("error: the peer is a diffusers model: pip install -r requirements-dev.txt") from None
    if not (args.data / "annotations.csv").is_file():
        raise SystemExit(f"error: {args.data}/annotations.csv not found; build it with "
                         f"`lwgen data emoji --out {args.data}`")
    setting = Setting(data=args.data, classifier=args.classifier, out=args.out, budgets=[args.minutes], n=args.n,
                      steps=args.steps, threads=args.threads, attributes=ATTRIBUTES,
                      final_threads=os.cpu_count() or 1)  # all budgets end together: score on every core
    t0 = time.time()
    rows = run_all({name: RECIPES[name] for name in args.recipes}, setting, args.jobs)
    speed = speed_and_cost(args.data, args.steps)
    by = {r["recipe"]: r for r in rows}
    by.get("lwgen", {})["sampling_images_per_s"] = speed["lwgen_images_per_s"]
    by.get("peer", {})["sampling_images_per_s"] = speed["peer_images_per_s"]
    ratios = {}
    if "lwgen" in by and "peer" in by:
        for key, _, _ in RATIOS:
            a, b = by["lwgen"].get(key), by["peer"].get(key)
            ratios[key] = round(a / b, 3) if a is not None and b else None
    report = {"command": " ".join(sys.argv), "machine": machine(), "wall_s": round(time.time() - t0),
              "jobs": args.jobs, "threads": args.threads, "n": args.n, "rows": rows, "ratios_lwgen_over_peer": ratios,
              "speed": speed}
    table = markdown_table(rows, [("recipe", "recipe"), ("parameters", "parameters"), ("steps", "steps"),
                                  ("images_seen", "images seen"), ("train_images_per_s", "train img/s"),
                                  ("group_top1", "group top-1"), ("subgroup_top5", "subgroup top-5"), ("fid", "FID"),
                                  ("kid", "KID"), ("precision", "precision"), ("recall", "recall"),
                                  ("grid", "grid")])
    ratio_rows = [{"metric": label, "better": better, "ratio": ratios.get(key)} for key, label, better in RATIOS]
    cost = markdown_table(speed["networks"], [("network", "network"), ("parameters", "parameters"),
                                              ("gmac", "GMAC per forward")])
    text = "\n\n".join([table, "lwgen / peer:", markdown_table(ratio_rows, [("metric", "metric"), ("ratio", "ratio"),
                                                                              ("better", "better when")]), cost,
                        f"sampling 16 images at {args.steps} steps: lwgen {speed['lwgen_s']} s, "
                        f"peer {speed['peer_s']} s;"
                        f" forward of 32 samples: lwgen {speed['forward_ms_batch32']['lwgen']} ms, original-size "
                        f"{speed['forward_ms_batch32']['original_design']} ms"])
    print(text)
    atomic_write_bytes(args.results.with_suffix(".json"), json.dumps(report, indent=2).encode())
    atomic_write_text(args.results.with_suffix(".md"), f"`{report['command']}` ({report['machine']['date']})\n\n"
                      + text + "\n")
    print(f"wrote {args.results}.json and .md")


if __name__ == "__main__":
    main()
