"""Conversions between what the network predicts (eps or v) and x0, and the min-SNR loss weight."""
from __future__ import annotations

import torch


def _bcast(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return a.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps; abar has one value per sample."""
    return _bcast(abar.sqrt(), x0) * x0 + _bcast((1 - abar).sqrt(), x0) * noise


def target(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor, prediction: str) -> torch.Tensor:
    """The regression target: eps, or v = alpha eps - sigma x0 (Salimans & Ho 2022)."""
    if prediction == "eps":
        return noise
    return _bcast(abar.sqrt(), x0) * noise - _bcast((1 - abar).sqrt(), x0) * x0


def to_x0(x_t: torch.Tensor, out: torch.Tensor, abar: torch.Tensor, prediction: str) -> torch.Tensor:
    """Recover the x0 estimate from the network output."""
    alpha, sigma = _bcast(abar.sqrt(), x_t), _bcast((1 - abar).sqrt(), x_t)
    if prediction == "eps":
        return (x_t - sigma * out) / alpha
    return alpha * x_t - sigma * out


def loss_weight(abar: torch.Tensor, prediction: str, min_snr_gamma: float | None,
                snr_floor: float = 0.0) -> torch.Tensor:
    """Min-SNR-gamma weight (Hang et al. 2023) expressed for the eps or v loss; ones when gamma is None or 0.

    As a weight on the x0 error it is min(SNR, gamma); `snr_floor` raises it to max(that, floor) at the noisiest
    steps (the "truncated SNR" max(SNR, 1) of Salimans & Ho 2022), where min-SNR alone all but ignores them.
    """
    if not min_snr_gamma:
        return torch.ones_like(abar)
    snr = abar / (1 - abar)
    clipped = snr.clamp(min=min(snr_floor, min_snr_gamma), max=min_snr_gamma)
    return clipped / (snr + 1) if prediction == "v" else clipped / snr
