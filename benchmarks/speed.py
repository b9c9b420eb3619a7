"""Speed of the shipped models on this machine: training and sampling throughput (fp32, bf16, channels_last,
torch.compile), up-scaling, projections of 2,000 points, and achieved GFLOP/s against the measured bf16
matmul peak.

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


def matmul_peak_gflops(n: int = 2048) -> float:
    """Best bf16 GFLOP/s of an n x n matmul: the ceiling the networks' convolutions are compared against."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    return 2 * n ** 3 / timed(lambda: a @ b, 5) / 1e9


def projection_rows(checkpoints: list[Path], n: int = 2000) -> list[tuple[str, float, str]]:
    """Seconds for PCA, t-SNE and UMAP (cold: numba compiles; warm) of n gallery images' pixel features."""
    import numpy as np
    from sklearn.manifold import trustworthiness

    import lwgen.app.explore  # noqa: F401  (loads sklearn.manifold as the Explore page does)
    from lwgen.projection import load_gallery, pixel_features, project

    x = np.concatenate([pixel_features(load_gallery(c).images) for c in checkpoints])[:n]
    note = f"{len(x)} points x {x.shape[1]} features"
    rows = []
    for method in ("PCA", "t-SNE", "UMAP"):
        t0 = time.perf_counter()
        xy = project(x, method)
        cold = time.perf_counter() - t0
        warm = timed(lambda: project(x, method), 3 if method != "PCA" else 5)  # noqa: B023 - called at once
        # how well the map keeps each point's 10 nearest neighbours (1 = all kept): speed must not cost this
        trust = trustworthiness(x, xy, n_neighbors=10)
        rows += [(f"{method} cold s", cold, note), (f"{method} warm s", warm, f"{note}; trustworthiness {trust:.3f}")]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/emoji-cosine"))
    p.add_argument("--upscaler", type=Path, default=Path("checkpoints/upscaler-x4"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--galleries", type=Path, nargs="+",
                   default=[Path("checkpoints/emoji-cosine"), Path("checkpoints/emoji-linear")],
                   help="checkpoints whose galleries give the points to project")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = p.parse_args()
    peak = matmul_peak_gflops()
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
    dec_gmac = forward_gmacs(model.autoencoder.decoder, torch.zeros(1, c, r, r)) if model.autoencoder is not None else 0
    rows.append(("bf16 matmul peak GFLOP/s", peak, "2048 x 2048, measured"))
    for bf16 in (False, True):
        rate = train_step_rate(model, args.batch, bf16)
        rows.append((f"train img/s ({'bf16' if bf16 else 'fp32'})", rate, f"batch {args.batch}"))
    model.unet.to(memory_format=torch.channels_last)
    rate = train_step_rate(model, args.batch, True)
    rows.append(("train img/s (bf16, channels_last)", rate, f"batch {args.batch}"))
    model.unet.to(memory_format=torch.contiguous_format)
    # forward + backward is about 3 forwards
    rows.append(("train achieved GFLOP/s (bf16)", 3 * 2 * gmac * rows[-2][1],
                 f"{100 * 3 * 2 * gmac * rows[-2][1] / peak:.0f} % of the matmul peak"))
    model.eval()
    labels = model.encode({}).expand(16, -1)
    cond = model.condition(labels)

    def sample(steps: int, bf16: bool) -> float:
        return timed(lambda: model.generate(cond, list(range(16)), steps=steps, guidance=2.0, bf16=bf16), 3)

    for steps in (10, 20, 50):
        for bf16 in (False, True):
            sec = sample(steps, bf16)
            rows.append((f"sample img/s, {steps} steps ({'bf16' if bf16 else 'fp32'})", 16 / sec,
                         f"16 images, guidance 2: {sec:.2f} s"))
    sec = sample(20, True)
    flops = 16 * (20 * 2 * 2 * gmac + 2 * dec_gmac)  # guidance doubles the batch; the decoder runs once
    rows.append(("sampling achieved GFLOP/s (bf16, 20 steps)", flops / sec,
                 f"{100 * flops / sec / peak:.0f} % of peak"))
    model.to(memory_format=torch.channels_last)
    rows.append(("sample img/s, 20 steps (bf16, channels_last)", 16 / sample(20, True), "16 images"))
    model.to(memory_format=torch.contiguous_format)
    if not args.no_compile:
        eager = model.unet.forward
        try:
            t0 = time.perf_counter()
            model.unet.forward = torch.compile(eager, dynamic=False)
            sample(20, True)
            compile_s = time.perf_counter() - t0
            rows.append(("sample img/s, 20 steps (bf16, torch.compile)", 16 / sample(20, True),
                         f"after {compile_s:.0f} s of compilation"))
        except Exception as e:  # no C++ compiler, or an unsupported op: report and go on
            rows.append(("sample img/s, 20 steps (bf16, torch.compile)", float("nan"), f"failed: {type(e).__name__}"))
        finally:
            model.unet.forward = eager
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    for bf16 in (False, True):
        rows.append((f"up-scaler x4 img/s ({'bf16' if bf16 else 'fp32'})",
                     32 / timed(lambda: up.upscale(x, bf16=bf16), 2), "64 -> 256 px"))  # noqa: B023
    rows += projection_rows(args.galleries)
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:10.3f}  {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
                                    "results": {n: v for n, v, _ in rows},
                                    "notes": {n: note for n, _, note in rows if note}}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
