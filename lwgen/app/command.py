"""The `lwgen sample` command line that reproduces what the Generate page shows."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..shipped import shipped_root
from .conditions import ANY
from .paths import display_path


def _number(x: float) -> str:
    """2.0 -> "2", 1.5 -> "1.5"."""
    return f"{x:g}"


def sample_command(checkpoint: str | Path, values: dict[str, str], n: int, steps: int, sampler: str,
                   guidance: float, seed: int, upscaler: str | Path | None = None, out: str = "grid.png",
                   prompt: str = "", read_prompt: bool = True) -> str:
    """The exact `lwgen sample ...` call (image i uses seed + i); upscaler given means --upscale; read_prompt
    False adds --no-read-prompt."""
    parts = ["lwgen", "sample", "--checkpoint", display_path(checkpoint)]
    for attr, value in values.items():
        if value != ANY:
            parts += ["--set", f"{attr}={value}"]
    if prompt and prompt.strip():
        parts += ["--prompt", prompt.strip()]
        if not read_prompt:
            parts.append("--no-read-prompt")
    parts += ["-n", str(n), "--steps", str(steps), "--sampler", sampler, "--guidance", _number(guidance),
              "--seed", str(seed)]
    if upscaler is not None:
        parts.append("--upscale")
        where = display_path(upscaler)
        if Path(upscaler).resolve() != (shipped_root() / "upscaler-x4").resolve():  # the CLI's default
            parts += ["--upscaler", where]
    parts += ["--out", out]
    return " ".join(shlex.quote(p) for p in parts)
