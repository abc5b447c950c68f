"""The image RKME fit (see :mod:`specification.image` for the method); kept apart so that
reading and writing specs never imports torch.

The data enter the loss only through their mean random feature φ̄ = (1/n) Σ_l φ(x_l), since
k̂(z, x) = φ(z)·φ(x) + 0.01 is linear in φ(x): each round streams the images through the fresh
nets in batches and keeps one vector, never the n × 65,536 feature matrix. The final β
(``exact_beta``) compares z with every kept image under the exact NNGP kernel: K·n pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._arrays import resolve_device, to_numpy
from ._threads import single_threaded_blas
from .errors import SpecificationError
from .image import IMAGE_SIZE
from .qp import solve_simplex_qp

#: k̂ = φ·φ + this (the reference's constant).
KERNEL_OFFSET = 0.01
#: ZCA regulariser: this times the mean eigenvalue is added to the covariance.
ZCA_REG = 0.1
#: Lloyd iterations of the k-means start.
KMEANS_ITERS = 8
#: Per-pixel bias std of the random nets.
BIAS_STD = 0.1


def fit_images(est, X: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit ``est`` (an :class:`~specification.image.RKMEImage`) to X; returns (z, β, n)."""
    dev = resolve_device(est.device)
    gen = torch.Generator().manual_seed(int(est.seed))
    x = prepare_images(X, whitening=bool(est.whitening), device=dev)
    n = x.shape[0]
    if n > est.sample_size:
        rows = torch.randperm(n, generator=gen)[: int(est.sample_size)]
        x = x[rows.to(dev)]
    k = int(est.n_points)
    if k >= x.shape[0]:
        k = max(1, (2 * x.shape[0]) // 3)
    cfg = est.model_config_
    z = _initial_points(x, k, est.init, gen).requires_grad_(True)
    with single_threaded_blas():
        nets = _random_nets(est.n_models, x.shape[1], cfg, gen, dev)
        mean_x = _mean_features(x, nets, est.batch_size)
        beta = _beta_step(z, mean_x, nets, None)
        optimizer = _optimizer([z], float(est.step_size))
        for _ in range(int(est.steps)):
            nets = _random_nets(est.n_models, x.shape[1], cfg, gen, dev)
            mean_x = _mean_features(x, nets, est.batch_size)
            b = torch.as_tensor(beta, dtype=torch.float32, device=dev)
            for _ in range(int(est.inner_steps)):
                phi = _features(z, nets)
                gram = phi @ phi.T + KERNEL_OFFSET
                loss = b @ gram @ b - 2.0 * (b @ (phi @ mean_x + KERNEL_OFFSET))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            beta = _beta_step(z, mean_x, nets, beta)
        if est.exact_beta:
            beta = _exact_beta(z.detach(), x, beta)
    return z.detach().cpu().numpy().astype(np.float32), beta, n


def _initial_points(x: torch.Tensor, k: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """``"normal"``: N(0, 1) images (the reference); ``"kmeans"``: centroids of Lloyd
    iterations from k-means++ seeds, averages of the data rather than data points."""
    if init == "normal":
        return torch.randn((k, *x.shape[1:]), generator=gen).to(x.device)
    from ._fit import _kmeans_init

    _, centroids = _kmeans_init(x.flatten(1).to(torch.float64), k, gen, KMEANS_ITERS)
    return centroids.to(torch.float32).reshape(k, *x.shape[1:]).contiguous()


def prepare_images(X: Any, *, whitening: bool = True, device: Any = "cpu") -> torch.Tensor:
    """Images as the fit sees them: float32 (n, C, 32, 32), NaN/Inf pixels replaced by their
    image's mean, resized, standardised per channel, ZCA-whitened when C > 1."""
    dev = resolve_device(device) if isinstance(device, str) else device
    arr = to_numpy(X)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise SpecificationError(f"images must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]  # (N, H, W): one channel
    if arr.ndim != 4 or 0 in arr.shape:
        raise SpecificationError(
            f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(arr.shape)}"
        )
    x = torch.as_tensor(np.asarray(arr, dtype=np.float32)).to(dev)
    bad = ~torch.isfinite(x)
    if bad.any():
        per_image = bad.flatten(1)
        if per_image.all(1).any():
            i = int(per_image.all(1).nonzero()[0])
            raise SpecificationError(f"image {i} has no finite pixel (all NaN or infinite)")
        good = torch.where(bad, 0.0, x).flatten(1)
        means = good.sum(1) / (~per_image).sum(1)
        x = torch.where(bad, means[:, None, None, None], x)
    if tuple(x.shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(
            x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
    mean = x.mean((0, 2, 3), keepdim=True)
    std = x.std((0, 2, 3), keepdim=True) if x.shape[0] * IMAGE_SIZE**2 > 1 else None
    if std is not None:
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel stays 0
        x = (x - mean) / std
    else:
        x = x - mean
    if whitening and x.shape[1] > 1:
        x = _zca(x)
    return x


def _zca(x: torch.Tensor) -> torch.Tensor:
    """ZCA whitening with the reference's regulariser, in float64.

    With X the n × d flattened images, cov = XᵀX/n and λ = 0.1·trace(cov)/d, the reference
    maps X to X (cov + λI)^−½. That equals (G + λI)^−½ X with G = XXᵀ/n, the n × n Gram
    matrix (the two share their non-zero spectrum, and X is orthogonal to the rest), so the
    smaller of the two is decomposed: a few thousand images cost an n × n problem, not d × d.
    """
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    n, d = flat.shape
    small = flat @ flat.T / n if n < d else flat.T @ flat / n
    reg = ZCA_REG * torch.trace(small) / d
    eye = torch.eye(small.shape[0], dtype=small.dtype, device=small.device)
    eigvals, vecs = torch.linalg.eigh(small + reg * eye)
    root = (vecs * eigvals.clamp_min(torch.finfo(small.dtype).tiny).rsqrt()) @ vecs.T
    white = root @ flat if n < d else flat @ root
    return white.to(torch.float32).reshape(x.shape)


def _random_nets(
    n_models: int, channels: int, cfg: dict, gen: torch.Generator, dev: torch.device
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Fresh random ConvNets: per net, (weight, bias) of each 3×3 conv layer. Drawn on the CPU
    from ``gen`` so a seed gives the same nets on every device."""
    width = int(cfg["k"] * cfg["net_width"])
    nets = []
    for _ in range(int(n_models)):
        layers, c_in = [], channels
        for _ in range(int(cfg["net_depth"])):
            std = cfg["sigma"] if cfg["sigma"] is not None else math.sqrt(2.0 / (c_in * 9))
            w = torch.randn((width, c_in, 3, 3), generator=gen) * float(std) + float(cfg["mu"])
            b = torch.randn(width, generator=gen) * BIAS_STD
            layers.append((w.to(dev), b.to(dev)))
            c_in = width
        nets.append(layers)
    return nets


def _net_features(x: torch.Tensor, layers) -> torch.Tensor:
    for w, b in layers:
        x = F.avg_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2)
    return x.flatten(1)


def _features(x: torch.Tensor, nets) -> torch.Tensor:
    """φ(x): every net's features side by side, scaled so φ·φ averages over them."""
    phi = torch.cat([_net_features(x, layers) for layers in nets], 1)
    return phi / math.sqrt(phi.shape[1])


@torch.no_grad()
def _mean_features(x: torch.Tensor, nets, batch_size: int) -> torch.Tensor:
    total = None
    for start in range(0, x.shape[0], int(batch_size)):
        part = _features(x[start : start + int(batch_size)], nets).sum(0, dtype=torch.float64)
        total = part if total is None else total + part
    return (total / x.shape[0]).to(torch.float32)


@torch.no_grad()
def _beta_step(z: torch.Tensor, mean_x: torch.Tensor, nets, beta0) -> np.ndarray:
    """β minimising the random-feature MMD² for fixed z: the simplex QP."""
    phi = _features(z, nets).to(torch.float64)
    gram = (phi @ phi.T + KERNEL_OFFSET).cpu().numpy()
    c = (phi @ mean_x.to(torch.float64) + KERNEL_OFFSET).cpu().numpy()
    return solve_simplex_qp(gram, c, w0=beta0).w


@torch.no_grad()
def _exact_beta(z: torch.Tensor, x: torch.Tensor, beta0: np.ndarray) -> np.ndarray:
    """β minimising the MMD² under the exact NNGP kernel the search uses (K·n kernel pairs)."""
    from .nngp import nngp_kernel

    gram = nngp_kernel(z).cpu().numpy()
    c = nngp_kernel(z, x).mean(1).cpu().numpy()
    return solve_simplex_qp(gram, c, w0=beta0).w


def _optimizer(params, lr: float) -> torch.optim.Optimizer:
    """AdaBelief with the reference's settings (lr = step size, ε = 1e-16), from the maintained
    ``pytorch-optimizer`` package (the reference's ``torch-optimizer`` is unmaintained)."""
    from pytorch_optimizer import AdaBelief

    return AdaBelief(params, lr=lr, eps=1e-16)
