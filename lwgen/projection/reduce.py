"""2-D projections (PCA, t-SNE, UMAP) of feature or condition vectors, and an invertible PCA plane."""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

METHODS = ("PCA", "t-SNE", "UMAP")


@dataclass
class PlaneMap:
    """PCA onto two axes: x ~ mean + xy @ components, with the share of variance each axis explains."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (2, D), orthonormal rows (zero rows when the data has rank < 2)
    explained: np.ndarray  # (2,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, 2)."""
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) -> (N, D): the point of the plane at each 2-D position."""
        return np.asarray(xy, np.float64) @ self.components + self.mean


def top_components(centred: np.ndarray, k: int, power_iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The k largest singular values and right singular vectors (k, D) of centred data.

    Small inputs get an exact SVD; larger ones a randomized range finder with power iterations (Halko,
    Martinsson & Tropp 2011, alg. 4.4), which needs only a few (N x D) x (D x k+10) products: 1,359 gallery
    images of 768 features take milliseconds instead of the 0.4 s of a full SVD (benchmarks/speed.py).
    """
    n, d = centred.shape
    width = k + 10
    if min(n, d) <= 2 * width:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        return s[:k], vt[:k]
    q = np.random.default_rng(0).standard_normal((d, width)).astype(centred.dtype)
    q, _ = np.linalg.qr(centred @ q)
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(centred.T @ q)
        q, _ = np.linalg.qr(centred @ q)
    _, s, vt = np.linalg.svd(q.T @ centred, full_matrices=False)
    return s[:k], vt[:k]


def fit_plane(x: np.ndarray) -> PlaneMap:
    """PCA of the centred data onto two axes; each axis' sign makes its largest loading positive."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, D) array, got shape {x.shape}")
    mean = x.mean(0)
    centred = x - mean
    s, vt = top_components(centred, 2)
    total = float(np.square(centred).sum())
    comps = np.zeros((2, x.shape[1]))
    k = min(2, vt.shape[0])
    comps[:k] = vt[:k]
    for row in comps:
        j = np.argmax(np.abs(row))
        if row[j] < 0:
            row *= -1
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = s[:k] ** 2 / total
    return PlaneMap(mean, comps, explained)


def project(x: np.ndarray, method: str = "PCA", seed: int = 0, perplexity: float = 30.0, n_neighbors: int = 15,
            min_dist: float = 0.1) -> np.ndarray:
    """(N, D) -> (N, 2) float32 with PCA, t-SNE (van der Maaten & Hinton 2008) or UMAP (McInnes et al. 2018).

    Parameters are clipped to what N points allow; fewer than 5 points always use PCA.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2), np.float32)
    if method == "PCA" or n < 5:
        return fit_plane(x).transform(x).astype(np.float32)
    if x.shape[1] > 50:  # the usual PCA pre-reduction: faster, and less noise for the neighbour graphs
        plane_dims = min(50, n)
        x = _pca(x, plane_dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "t-SNE":
            from sklearn.manifold import (
                TSNE,  # lazy: the CLI imports this package too (see lwgen/app/explore.py)
            )

            p = float(min(max(perplexity, 2.0), (n - 1) / 3))
            # 300 iterations (250 of them early exaggeration) and a Barnes-Hut angle of 0.8 instead of 1000 and
            # 0.5. 2,000 points at 400 iterations took 2.1 s against 6.6 s at 1000, trustworthiness (k = 10) 0.954
            # against 0.956; 906 points, one thread, 300 iterations: 1.9 s against 3.1 s at 400, trustworthiness
            # 0.945 against 0.949 (250, early exaggeration alone, leaves the map unconverged: 0.78)
            tsne = TSNE(2, perplexity=p, init="pca", random_state=seed, max_iter=300, angle=0.8, n_jobs=-1)
            return tsne.fit_transform(x).astype(np.float32)
        umap = _umap()
        k = int(min(max(n_neighbors, 2), n - 1))
        # Exact neighbours by BLAS: below 4,096 points UMAP would compute all pairwise distances through a Python
        # callable (~11 s for 2,000 points here). 200 epochs, UMAP's own choice above 10,000 points, instead of
        # its 500 for small sets. 2,000 points: 1.4 s against 13.3 s, trustworthiness (k = 10) 0.926 against 0.932.
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=float(min_dist), random_state=seed,
                            init="spectral" if n > k + 2 else "random", n_epochs=200,
                            precomputed_knn=(*exact_neighbours(x, k), None))
        return reducer.fit_transform(x).astype(np.float32)


def _umap():
    """umap-learn, imported lazily (its import alone takes seconds)."""
    import umap

    return umap


def warm_umap() -> threading.Thread:
    """Import umap-learn and compile the numba code a map needs in a daemon thread, ahead of a first UMAP map.

    In Chromium, a first UMAP map a few seconds after the Explore page appeared took 1.6-2.8 s with this thread
    against 8.7-13 s without (benchmarks/app_latency.py --browser). numba already keeps what it may cache on disk
    (beside umap-learn's and pynndescent's sources); pointing NUMBA_CACHE_DIR elsewhere only made it start over.
    The thread holds the interpreter while it compiles, so it is best started once a page is drawn.
    """
    thread = threading.Thread(target=_warm, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


def _warm() -> None:
    """One small UMAP map: imports umap-learn and compiles what a map needs."""
    project(np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32), "UMAP")


def exact_neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of each row's k nearest rows, itself first (UMAP's convention)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return idx, dist.astype(np.float32)


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    """The first k principal-component scores of x."""
    centred = x - x.mean(0)
    _, vt = top_components(centred, k)
    return (centred @ vt.T).astype(np.float32)
