"""Speed of the shipped models on this machine: training and sampling throughput, fp32 vs bf16.

Prints a table and writes JSON. Compare rows of one run only (ratios), never across machines or runs.
    python benchmarks/speed.py --checkpoint checkpoints/emoji-cosine --upscaler checkpoints/upscaler-x4
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from lwgen.diffusion import add_noise, target
from lwgen.models import count_parameters, forward_gmacs
from lwgen.pipeline import DiffusionModel, UpscaleModel


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def train_step_rate(model: DiffusionModel, batch: int, bf16: bool) -> float:
    """Images per second of one optimisation step of the U-Net (forward, backward, AdamW)."""
    net = model.unet.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    c, r = net.config.in_channels, net.config.resolution
    x0, noise = torch.randn(batch, c, r, r), torch.randn(batch, c, r, r)
    t = torch.randint(0, 1000, (batch,))
    cond = torch.randn(batch, model.embedder.config.dim)

    def step() -> None:
        abar = model.alphas_cumprod[t]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(add_noise(x0, noise, abar), t, cond)
        loss = (out.float() - target(x0, noise, abar, "v")).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / timed(step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/emoji-cosine"))
    p.add_argument("--upscaler", type=Path, default=Path("checkpoints/upscaler-x4"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    up = UpscaleModel.from_checkpoint(args.upscaler)
    c, r = model.unet.config.in_channels, model.unet.config.resolution
    rows: list[tuple[str, float, str]] = []
    gmac = forward_gmacs(model.unet, torch.zeros(1, c, r, r), torch.zeros(1), torch.zeros(1, model.embedder.config.dim))
    rows.append(("U-Net parameters (M)", count_parameters(model.unet) / 1e6, ""))
    rows.append(("U-Net GMAC per forward", gmac, f"{c}x{r}x{r} latent"))
    if model.autoencoder is not None:
        dec = forward_gmacs(model.autoencoder.decoder, torch.zeros(1, c, r, r))
        rows.append(("decoder GMAC per image", dec, f"{model.resolution} px"))
    for bf16 in (False, True):
        rows.append((f"train img/s ({'bf16' if bf16 else 'fp32'})", train_step_rate(model, args.batch, bf16),
                     f"batch {args.batch}"))
    model.eval()
    labels = model.encode({}).expand(16, -1)
    cond = model.condition(labels)
    for steps in (10, 20, 50):
        for bf16 in (False, True):
            sec = timed(lambda: model.generate(cond, list(range(16)), steps=steps, guidance=2.0, bf16=bf16), 1)
            rows.append((f"sample 16 images, {steps} steps ({'bf16' if bf16 else 'fp32'}) s", sec, "guidance 2"))
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    for bf16 in (False, True):
        rows.append((f"up-scaler x4 img/s ({'bf16' if bf16 else 'fp32'})",
                     32 / timed(lambda: up.upscale(x, bf16=bf16), 2), "64 -> 256 px"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:10.3f}  {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
                                    "results": {n: v for n, v, _ in rows}}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
