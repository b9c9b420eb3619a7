"""Evaluation metrics as pure functions on tensors: FID, KID, k-NN precision/recall, top-k accuracy, PSNR, SSIM."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_features(*sets: torch.Tensor, minimum: int = 2) -> None:
    dims = {s.shape[1] if s.dim() == 2 else None for s in sets}
    if None in dims or len(dims) != 1:
        raise ValueError(f"expected 2-D feature sets of equal width, got shapes {[tuple(s.shape) for s in sets]}")
    if any(len(s) < minimum for s in sets):
        raise ValueError(f"each feature set needs at least {minimum} samples, got {[len(s) for s in sets]}")


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64."""
    _check_features(features)
    x = features.double()
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix via its eigen-decomposition."""
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet distance of Gaussians, |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) (Heusel et al. 2017)."""
    mu1, mu2, sigma1, sigma2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    root1 = _sqrt_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross
    return max(float(value), 0.0)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet Inception-style distance between two feature sets (N, F) and (M, F) (Heusel et al. 2017)."""
    _check_features(real, fake)
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with the cubic kernel k(a, b) = (a.b / d + 1)^3 (Bińkowski et al. 2018)."""
    m, n, d = len(x), len(y), x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of the unbiased cubic-kernel MMD^2 over random subsets (Bińkowski et al. 2018)."""
    _check_features(real, fake)
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, got {subsets}")
    m = min(subset_size, len(real), len(fake))
    g = torch.Generator().manual_seed(seed)
    x, y = real.double(), fake.double()
    values = torch.tensor([polynomial_mmd2(x[torch.randperm(len(x), generator=g)[:m]],
                                           y[torch.randperm(len(y), generator=g)[:m]]) for _ in range(subsets)])
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    return torch.cat([torch.cdist(part, b) for part in a.split(chunk)]) if len(a) else a.new_zeros(0, len(b))


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance from each sample to its k-th nearest neighbour in the same set (itself excluded)."""
    if len(features) <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {len(features)}")
    d = _pairwise(features, features)
    return d.kthvalue(k + 1, dim=1).values  # the smallest distance is the sample to itself


def coverage_fraction(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of queries inside at least one k-NN ball (centre support[j], radius radii[j])."""
    d = _pairwise(queries, support)
    return float((d <= radii[None]).any(dim=1).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019); pass sets of equal size."""
    _check_features(real, fake, minimum=k + 1)
    real, fake = real.double(), fake.double()
    precision = coverage_fraction(fake, real, knn_radii(real, k))
    recall = coverage_fraction(real, fake, knn_radii(fake, k))
    return precision, recall


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose label is among the k largest logits; labels < 0 are skipped (nan if none are left)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, V) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    keep = labels >= 0
    if not keep.any():
        return math.nan
    top = logits[keep].topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels[keep, None]).any(dim=1).double().mean())


# --- image fidelity (up-scaler) ---------------------------------------------------------------------------
def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """Luma Y in [16, 235] (ITU-R BT.601, as in super-resolution papers) of RGB in [-1, 1]: (B,3,H,W) -> (B, H, W)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
    rgb = (images.double().clamp(-1, 1) + 1) / 2
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)
    return 16.0 + torch.einsum("bchw,c->bhw", rgb, w)


def _y_pair(a: torch.Tensor, b: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if crop > 0:
        if min(ya.shape[-2:]) <= 2 * crop:
            raise ValueError(f"cannot crop {crop} pixels from images of {tuple(ya.shape[-2:])}")
        ya, yb = ya[:, crop:-crop, crop:-crop], yb[:, crop:-crop, crop:-crop]
    return ya, yb


def psnr(a: torch.Tensor, b: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Per-image PSNR (dB, peak 255) on the BT.601 Y channel with `crop` border pixels removed; inf when equal."""
    ya, yb = _y_pair(a, b, crop)
    mse = (ya - yb).pow(2).mean(dim=(1, 2))
    return 10 * torch.log10(255.0 ** 2 / mse)


def _gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Valid-mode Gaussian filter of (B, 1, H, W), as two 1-D passes (a 2-D 11x11 kernel is slow on CPU)."""
    r = torch.arange(size, dtype=x.dtype) - (size - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def ssim(a: torch.Tensor, b: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Per-image SSIM (11x11 Gaussian window, sigma 1.5, K = 0.01/0.03, L = 255) on the Y channel (Wang et al. 2004)."""
    ya, yb = _y_pair(a, b, crop)
    if min(ya.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels after cropping, got {tuple(ya.shape[-2:])}")
    x, y = ya[:, None].float(), yb[:, None].float()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gaussian_blur(x), _gaussian_blur(y)
    sxx = _gaussian_blur(x * x) - mx * mx
    syy = _gaussian_blur(y * y) - my * my
    sxy = _gaussian_blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round images in [-1, 1] to the 256 levels of an 8-bit file, keeping the [-1, 1] range."""
    return torch.round((images.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


MAJORITY_MARGIN = 0.4


def beats_majority(top1: float, majority: float, margin: float = MAJORITY_MARGIN) -> bool:
    """Whether a top-1 accuracy beats always guessing the most common value (right `majority` of the time) by
    `margin` of what that guess misses; below it, a classifier or a prompt reader says little about the attribute."""
    return top1 >= majority + margin * (1 - majority)
