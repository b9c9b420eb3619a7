"""A grid to check by eye: one row per condition given alone, the same seeds in every column.

    python benchmarks/condition_grid.py --checkpoint checkpoints/emoji-cosine --attribute group \
        --out docs/steering-group-cosine.png
    python benchmarks/condition_grid.py --checkpoint checkpoints/emoji-cosine --attribute subgroup \
        --values animal-mammal animal-bird food-fruit ... --out docs/steering-subgroup-cosine.png
    python benchmarks/condition_grid.py --checkpoint checkpoints/emoji-cosine --prompts "a red apple" "sleepy cat"
    python benchmarks/condition_grid.py --checkpoint checkpoints/emoji-cosine --held-out-names 16 --data data/emoji

With --held-out-names K, the prompts are K names of the held-out split (emoji the generator never saw) and the
first column is the real emoji of that name. A prompt row also gets the values the checkpoint's prompt reader is
sure of (its label shows them, the group and "none" values left out) unless --no-read-prompt.

Every row is one value of --attribute alone (the other attributes "any"), or one prompt; column j uses seed j in
every row, so a column that keeps its silhouette from row to row shows the seed deciding, not the condition.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from lwgen.data.images import to_uint8
from lwgen.pipeline import DEFAULT_GUIDANCE, DiffusionModel


def condition_rows(model: DiffusionModel, attribute: str | None, values: list[str], prompts: list[str],
                   n: int, read: bool = True) -> tuple[list[str], torch.Tensor]:
    """(row labels, condition vectors (rows * n, D)) for the values of one attribute, then the prompts (with the
    values the model's prompt reader is sure of, as `lwgen sample` gives them, unless `read` is False)."""
    labels, conds = [], []
    for value in values:
        lab = model.encode({attribute: value}).expand(n, -1)
        labels.append(value)
        conds.append(model.condition(lab))
    for prompt in prompts:
        text = model.encode_prompt(prompt, n)
        given, readings = {}, []
        if read and model.prompt_reader is not None and text is not None:
            given, readings = model.prompt_reader.fill_values({}, text[0])
        shown = [r.value for r in readings if r.attribute != "group" and r.value != "none"]
        labels.append(f'"{prompt}"' + "".join(f"\n{v}" for v in shown))
        conds.append(model.condition(model.encode(given).expand(n, -1), text))
    return labels, torch.cat(conds)


def labelled_grid(images: torch.Tensor, labels: list[str], n: int, label_width: int = 170,
                  real: list[Image.Image] | None = None) -> Image.Image:
    """uint8 images (rows * n, 3, S, S) as rows with their label on the left (and a real image before them)."""
    side = images.shape[-1]
    left = label_width + (side + 8 if real else 0)
    canvas = Image.new("RGB", (left + n * side, len(labels) * side), "white")
    draw = ImageDraw.Draw(canvas)
    for r, label in enumerate(labels):
        lines = [line[:28] for line in label.split("\n")]
        draw.text((4, r * side + side // 2 - 6 * len(lines)), "\n".join(lines), fill=(0, 0, 0))
        if real:
            canvas.paste(real[r].resize((side, side), Image.Resampling.BOX), (label_width, r * side))
        for c in range(n):
            tile = images[r * n + c].permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(tile), (left + c * side, r * side))
    return canvas


def held_out_names(data: Path, k: int, seed: int = 0) -> tuple[list[str], list[Image.Image]]:
    """k names of the held-out split, spread by a seeded shuffle, with one real image of each."""
    import pandas as pd

    frame = pd.read_csv(data / "annotations.csv", dtype=str, keep_default_na=False)
    val = frame[(frame["split"] == "val") & (frame["skin_tone"] == "none")].drop_duplicates("name")
    pick = val.sample(n=min(k, len(val)), random_state=seed)
    return pick["name"].tolist(), [Image.open(data / f).convert("RGB") for f in pick["file"]]


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--attribute", default=None, help="one row per value of this attribute, given alone")
    p.add_argument("--values", nargs="*", default=None, help="the values (default: all of the attribute's)")
    p.add_argument("--prompts", nargs="*", default=[], help="one row per prompt, given alone")
    p.add_argument("--held-out-names", type=int, default=0, help="K held-out names as prompts, real emoji first")
    p.add_argument("--no-read-prompt", action="store_true",
                   help="give the prompts' words alone (by default the values the prompt reader is sure of too)")
    p.add_argument("--data", type=Path, default=Path("data/emoji"), help="data folder of --held-out-names")
    p.add_argument("-n", type=int, default=8, help="columns (seeds 0 .. n-1)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--out", type=Path, default=Path("grid.png"))
    args = p.parse_args()
    model = DiffusionModel.from_checkpoint(args.checkpoint)
    values = [] if args.attribute is None else (args.values or model.vocab[args.attribute])
    prompts, real = list(args.prompts), None
    if args.held_out_names:
        prompts, real = held_out_names(args.data, args.held_out_names)
    labels, cond = condition_rows(model, args.attribute, values, prompts, args.n, read=not args.no_read_prompt)
    if not labels:
        raise SystemExit("give --attribute or --prompts")
    seeds = [s for _ in labels for s in range(args.n)]
    images = torch.cat([model.generate(c, seeds=sd, steps=args.steps, guidance=args.guidance)
                        for c, sd in zip(cond.split(64), [seeds[i:i + 64] for i in range(0, len(seeds), 64)])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(to_uint8(images), labels, args.n, real=real).save(args.out)
    print(f"wrote {args.out}: {len(labels)} rows x {args.n} seeds, guidance {args.guidance}")


if __name__ == "__main__":
    main()
