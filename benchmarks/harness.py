"""Shared machinery of the budgeted benchmarks (time_to_quality.py, peer.py).

A *recipe* turns the emoji training split into a generator under a wall-clock budget. Each recipe trains with
lwgen's own `Trainer` (same optimiser loop, EMA, clock and checkpointing for every contender), pauses at each
budget, and is scored there by `lwgen.evaluation.evaluate_generator` against the held-out split with the
shipped classifier, so every row of a table is measured the same way. Anything a recipe needs before its
diffusion model can train (the lwgen recipe's autoencoder and latent encoding) is inside its budget.

Recipes run in worker processes, `jobs` at a time, each with `threads` torch threads, so two contenders can
share the machine's cores side by side and meet the same machine state.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lwgen.data import (  # noqa: E402
    ImageTable,
    class_balanced_weights,
    downsample,
    image_grid,
    to_uint8,
)
from lwgen.evaluation.classifier import Classifier  # noqa: E402
from lwgen.evaluation.conditions import row_values  # noqa: E402
from lwgen.evaluation.evaluate import evaluate_generator, generator_labels  # noqa: E402
from lwgen.io import atomic_write_bytes  # noqa: E402
from lwgen.training import TrainConfig, Trainer  # noqa: E402

GRID_COLUMNS = 8


@dataclasses.dataclass
class Setting:
    """What every recipe of one benchmark run shares."""

    data: Path
    classifier: Path
    out: Path
    budgets: list[float]  # minutes, ascending
    n: int = 500  # generated images per evaluation
    steps: int = 20
    guidance: float = 2.0
    threads: int = 1
    seed: int = 0
    progress: bool = False
    attributes: list[str] | None = None  # what lwgen and the VAE condition on (None: every emoji attribute)
    final_threads: int = 0  # threads for the scoring after the last budget, when no contender trains any more


@dataclasses.dataclass
class Prepared:
    """A recipe ready to train: the Trainer, the generator to score, and the seconds already spent."""

    trainer: Trainer
    generator: Any  # implements resolution/attributes/vocab/encode/condition/generate like DiffusionModel
    sampler: str
    spent_s: float = 0.0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


# --- data -----------------------------------------------------------------------------------------------------
_TABLES: dict[tuple, ImageTable] = {}


def load_table(data: Path, attributes: list[str], split: str) -> ImageTable:
    """The split's rows at 256 px (cached by lwgen in the data folder), memoised per process."""
    key = (str(data), tuple(attributes), split)
    if key not in _TABLES:
        _TABLES[key] = ImageTable.load(data, attributes, size=256, split=split, progress=False)
    return _TABLES[key]


def images_64(table: ImageTable) -> torch.Tensor:
    """uint8 (N, 3, 64, 64), area-downsampled as lwgen's trainers do."""
    return downsample(table.images, table.images.shape[-1] // 64)


def balanced(table: ImageTable, power: float = 0.5, column: int = 0) -> torch.Tensor:
    """Row weights that flatten one attribute's class frequencies (the first one: lwgen's default sampling)."""
    return class_balanced_weights(table.labels, column, power)


def budget_config(setting: Setting, minutes: float, **overrides: Any) -> TrainConfig:
    """A TrainConfig whose learning-rate schedule spans `minutes` of training."""
    return TrainConfig(minutes=minutes, threads=setting.threads, seed=setting.seed, **overrides)


# --- grids ----------------------------------------------------------------------------------------------------
def group_rows(table: ImageTable, column: str = "group", per_row: int = GRID_COLUMNS) -> tuple[list[str], torch.Tensor]:
    """Groups in alphabetical order and `per_row` row indices of each (evenly spread through the group)."""
    groups = sorted(table.extra[column].astype(str).unique())
    rows = []
    for name in groups:
        idx = torch.tensor(table.extra.index[table.extra[column].astype(str) == name].tolist())
        pick = torch.linspace(0, len(idx) - 1, per_row).round().long()
        rows.append(idx[pick])
    return groups, torch.cat(rows)


@torch.no_grad()
def group_grid(generator: Any, table: ImageTable, sampler: str, steps: int, guidance: float) -> torch.Tensor:
    """uint8 grid, one row per group, conditions taken from rows of that group (image i uses seed i)."""
    _, rows = group_rows(table)
    every = list(dict.fromkeys([*generator.attributes, "group"]))
    labels, _ = generator_labels(generator, row_values(table, rows, every))
    images = []
    for start in range(0, len(rows), 64):
        lab = labels[start:start + 64]
        images.append(to_uint8(generator.generate(generator.condition(lab), seeds=range(start, start + len(lab)),
                                                  steps=steps, sampler=sampler, guidance=guidance)))
    return image_grid(torch.cat(images), GRID_COLUMNS)


def save_png(grid: torch.Tensor, path: Path) -> None:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


# --- running a recipe -----------------------------------------------------------------------------------------
KEEP = ("fid", "kid", "group_top1", "subgroup_top1", "subgroup_top5", "style_top1", "skin_tone_top1", "precision",
        "recall", "images_per_s")


def run_recipe(name: str, prepare: Callable[[Setting, Path], Prepared], setting: Setting) -> list[dict[str, Any]]:
    """Train `name` once, pausing at every budget to score the EMA generator and save a grid."""
    torch.set_num_threads(setting.threads)
    torch.manual_seed(setting.seed)
    folder = setting.out / name
    folder.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.from_checkpoint(setting.classifier)
    val = load_table(setting.data, [], "val")
    t0 = time.monotonic()
    prep = prepare(setting, folder)
    setup_s = time.monotonic() - t0
    results = []
    for minutes in setting.budgets:
        train_s = max(0.0, 60 * minutes - prep.spent_s)
        prep.trainer.run(pause_at_s=train_s)
        trainer = prep.trainer
        if minutes == setting.budgets[-1] and setting.final_threads:
            torch.set_num_threads(setting.final_threads)
        ema = trainer.ema.eval()
        scores = evaluate_generator(ema, classifier, val, n=setting.n, steps=setting.steps, sampler=prep.sampler,
                                    guidance=setting.guidance, seed=setting.seed, progress=setting.progress)
        grid = folder / f"grid-{minutes:g}min.png"
        save_png(group_grid(ema, val, prep.sampler, setting.steps, setting.guidance), grid)
        trainer.model.train()
        row = {"recipe": name, "minutes": minutes, "steps": trainer.step,
               "images_seen": trainer.step * trainer.config.batch,
               "train_s": round(trainer.elapsed, 1), "before_train_s": round(prep.spent_s, 1),
               "setup_wall_s": round(setup_s, 1),
               "train_images_per_s": round(trainer.step * trainer.config.batch / max(trainer.elapsed, 1e-9), 1),
               **{k: scores.get(k) for k in KEEP}, "grid": str(grid), **prep.info}
        results.append(row)
        print(f"[{name}] {minutes:g} min: step {trainer.step}, fid {row['fid']}, group_top1 {row['group_top1']}",
              flush=True)
        atomic_write_bytes(folder / "results.json", json.dumps(results, indent=2).encode())
    return results


def _worker(args: tuple) -> list[dict[str, Any]]:
    name, prepare, setting = args
    try:
        return run_recipe(name, prepare, setting)
    except Exception:  # a failing contender is reported, the others still finish
        traceback.print_exc()
        return [{"recipe": name, "error": traceback.format_exc(limit=3)}]


def run_all(recipes: dict[str, Callable[[Setting, Path], Prepared]], setting: Setting, jobs: int) -> list[dict]:
    """Run every recipe, `jobs` at a time in separate processes; rows in recipe order."""
    work = [(name, prep, setting) for name, prep in recipes.items()]
    if jobs <= 1:
        out = [_worker(w) for w in work]
    else:
        with mp.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
            out = pool.map(_worker, work, chunksize=1)
    return [row for rows in out for row in rows]


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Rows as a markdown table with the given (key, header) columns."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)
