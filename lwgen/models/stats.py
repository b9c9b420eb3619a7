"""Model size and cost: parameter count and multiply-accumulates per forward."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def forward_gmacs(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Giga multiply-accumulates of one forward on the given inputs (matmuls and convolutions), per sample."""
    counter = FlopCounterMode(display=False)
    with counter:
        module(*inputs)
    return counter.get_total_flops() / 2 / 1e9 / inputs[0].shape[0]
