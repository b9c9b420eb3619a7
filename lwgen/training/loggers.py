"""Where training curves and sample grids go: TensorBoard (always, when installed) and, on request, Weights & Biases."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import torch

WANDB_HINT = ("--wandb needs the wandb package, which lwgen does not install: pip install wandb "
              "(then `wandb login`, or set WANDB_MODE=offline to log to local files with no account or server)")
WANDB_ID_FILE = "wandb_run_id.txt"


def require_wandb() -> Any:
    """The wandb module, or SystemExit with how to install it."""
    try:
        import wandb
    except ImportError:
        raise SystemExit(f"error: {WANDB_HINT}") from None
    return wandb


class Loggers:
    """Scalars and images to every enabled backend. Only the main process builds one."""

    def __init__(self, folder: Path, wandb_project: str | None = None, config: dict[str, Any] | None = None):
        self.tensorboard = _tensorboard(folder / "tb")
        self.wandb = _wandb_run(folder, wandb_project, config or {}) if wandb_project else None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def image(self, name: str, grid: torch.Tensor, step: int) -> None:
        """grid: (3, H, W) float in [0, 1]."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(name, grid, step)
        if self.wandb is not None:
            import wandb

            pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            self.wandb.log({name: wandb.Image(pixels)}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.tensorboard = self.wandb = None


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional for the library
        return None
    return SummaryWriter(str(folder))


def _wandb_run(folder: Path, project: str, config: dict[str, Any]):
    """A W&B run that a resumed training (same output folder) continues: its id is kept in the folder."""
    wandb = require_wandb()
    folder.mkdir(parents=True, exist_ok=True)
    id_file = folder / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else ""
    if not run_id:
        run_id = secrets.token_hex(4)
        id_file.write_text(run_id + "\n")
    return wandb.init(project=project, name=folder.name, id=run_id, resume="allow", dir=str(folder), config=config)
