"""The exact CNN-GP (NNGP) kernel that compares image specifications at search time.

An image spec's points are 32×32 images (after the fit's standardisation). Two of them are
compared by the kernel of an infinitely wide random ConvNet (Garriga-Alonso et al., ICLR'19),
the network the reference fits with random features:

    3 × [conv 3×3 "same" (σ_w² = √2, σ_b² = 0.1) → ReLU → 2×2 average pooling]
    → a 4×4 layer averaging the last maps to a scalar.

For a pair (x, y) the kernel tracks three maps per pixel: the cross covariance xy and the two
variances xx, yy. It starts from the channel mean of x·y (and x², y²); a convolution of
variance σ_w² with a k×k window replaces a map m by σ_w² · box_k(m) + σ_b² (zero padding),
pooling by its 2×2 mean; the ReLU is the arc-cosine recursion

    xy ← (√(xx·yy − xy²) + (π − θ)·xy) / 2π,   θ = arccos(xy / √(xx·yy)),   xx ← xx/2.

The variances of one image do not depend on its partner, so they are propagated once per
image and only the cross maps are computed per pair, in blocks of bounded memory; the first
convolution of a block is a sum of products of 3×3 patches. Everything is float64
(the reference computes in float32). Where both sides are the same set, the diagonal of each
ReLU output is its variance, exactly, as in the reference. The reference adds float32's tiny
to xx·yy before the square root; the variances are at least σ_b² here, so it is left out.

Torch is imported by this module: read spec files with :mod:`specification.files`, which loads
it only when a kernel is computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._arrays import resolve_device
from .errors import SpecificationError
from .image import IMAGE_SIZE

DEPTH = 3
VAR_WEIGHT = math.sqrt(2.0)  # the reference's code passes √2 as the weight variance
VAR_BIAS = 0.1
#: Pair pixels computed at once (8 bytes each, a few temporaries): bounds memory. On the CPU
#: about a megapixel keeps each temporary in the last-level cache and was the fastest on 2
#: cores; a GPU gets 16 times more per launch.
BLOCK_PIXELS = 1 << 20
CUDA_BLOCK_PIXELS = 1 << 24


def _conv(m: torch.Tensor) -> torch.Tensor:
    """A 3×3 "same" convolution layer on a batch of maps ``(n, 1, H, W)``."""
    box = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=True)
    return box.mul_(VAR_WEIGHT).add_(VAR_BIAS)


def check_images(z: torch.Tensor, name: str = "z") -> None:
    if z.ndim != 4 or tuple(z.shape[2:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise SpecificationError(
            f"{name} must hold images of shape (C, {IMAGE_SIZE}, {IMAGE_SIZE}), "
            f"got {tuple(z.shape)}"
        )


def variances(z: torch.Tensor) -> list[torch.Tensor]:
    """Each image's variance maps before every ReLU, ``(n, H, W)`` per layer, and the final
    variance (the kernel's diagonal) last. They are at least σ_b², so never zero."""
    check_images(z)
    m = (z * z).mean(1, keepdim=True)
    out = []
    for _ in range(DEPTH):
        m = _conv(m)
        out.append(m[:, 0])
        m = F.avg_pool2d(m / 2.0, 2)
    out.append(m.mean((1, 2, 3)))
    return out


def _first_layer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross maps after the first convolution, ``(a, b, 32, 32)``.

    The box filter of the channel-mean product is, at each pixel, the inner product of the
    two images' 3×3 patches (zero padded) over 9C. With one channel the nine products are
    summed in place (fastest on the CPU); with more, one batched matrix product per pixel.
    """
    px = F.unfold(x, 3, padding=1)  # (a, 9C, pixels)
    py = F.unfold(y, 3, padding=1)  # (b, 9C, pixels)
    if x.shape[1] == 1:
        m = px[:, None, 0] * py[None, :, 0]
        for k in range(1, px.shape[1]):
            m.addcmul_(px[:, None, k], py[None, :, k])
    else:
        pairs = torch.bmm(px.permute(2, 0, 1).contiguous(), py.permute(2, 1, 0).contiguous())
        m = pairs.permute(1, 2, 0).contiguous()
    m = m.view(x.shape[0], y.shape[0], IMAGE_SIZE, IMAGE_SIZE)
    return m.mul_(VAR_WEIGHT / (9 * x.shape[1])).add_(VAR_BIAS)


def _relu_(m: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """The arc-cosine step on cross maps ``m`` (a, b, h, w), in place, given the standard
    deviations sx (a, h, w) and sy (b, h, w): with ρ = xy / (sx·sy),
    xy ← sx·sy · (√(1 − ρ²) + (π − arccos ρ)·ρ) / 2π."""
    scale = sx[:, None] * sy[None, :]
    rho = m.div_(scale).clamp_(-1.0, 1.0)
    angle = torch.arccos(rho).neg_().add_(math.pi).mul_(rho)
    rho.mul_(rho).neg_().add_(1.0).clamp_(min=0.0).sqrt_().add_(angle)
    return rho.mul_(scale.mul_(1.0 / (2.0 * math.pi)))


def _cross(
    x: torch.Tensor,
    y: torch.Tensor,
    sx: list[torch.Tensor],
    sy: list[torch.Tensor],
    diagonal: torch.Tensor | None,
) -> torch.Tensor:
    """Kernel block between images ``x`` (a) and ``y`` (b) → ``(a, b)``, given their standard
    deviation maps; ``diagonal`` marks the pairs of an image with itself."""
    a, b = x.shape[0], y.shape[0]
    m = _first_layer(x, y)
    for layer in range(DEPTH):
        h, w = m.shape[2:]
        if layer:
            m = _conv(m.view(a * b, 1, h, w)).view(a, b, h, w)
        m = _relu_(m, sx[layer], sy[layer])
        if diagonal is not None:  # k(x, x) after a ReLU is exactly its variance / 2
            half = (sx[layer] * sx[layer] / 2.0)[:, None].expand_as(m)
            m = torch.where(diagonal[:, :, None, None], half, m)
        m = F.avg_pool2d(m.view(a * b, 1, h, w), 2).view(a, b, h // 2, w // 2)
    return m.mean((2, 3))


def nngp_kernel(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    block_pixels: int | None = None,
) -> torch.Tensor:
    """The kernel matrix ``K[i, j] = k(x_i, y_j)`` (``y`` omitted: ``x`` against itself, with
    the exact diagonal), float64 on ``x``'s device."""
    x = x.to(torch.float64)
    same = y is None
    y = x if same else y.to(device=x.device, dtype=torch.float64)
    check_images(x, "x")
    check_images(y, "y")
    if x.shape[1] != y.shape[1]:
        raise SpecificationError(f"images have {x.shape[1]} and {y.shape[1]} channels")
    sx = [v.sqrt() for v in variances(x)[:DEPTH]]
    sy = sx if same else [v.sqrt() for v in variances(y)[:DEPTH]]
    out = torch.empty(x.shape[0], y.shape[0], dtype=torch.float64, device=x.device)
    if block_pixels is None:
        block_pixels = CUDA_BLOCK_PIXELS if x.device.type == "cuda" else BLOCK_PIXELS
    rows, cols = _block_shape(x.shape[0], y.shape[0], block_pixels)
    for r in range(0, x.shape[0], rows):
        r1 = min(r + rows, x.shape[0])
        for c in range(0, y.shape[0], cols):
            c1 = min(c + cols, y.shape[0])
            if same and c1 <= r:  # below the diagonal: the mirror of a block already done
                out[r:r1, c:c1] = out[c:c1, r:r1].T
                continue
            diagonal = None
            if same and r < c1 and c < r1:
                rr = torch.arange(r, r1, device=x.device)
                diagonal = rr[:, None] == torch.arange(c, c1, device=x.device)[None, :]
            out[r:r1, c:c1] = _cross(
                x[r:r1], y[c:c1], [s[r:r1] for s in sx], [s[c:c1] for s in sy], diagonal
            )
    return out


def _block_shape(n1: int, n2: int, block_pixels: int) -> tuple[int, int]:
    """Rows and columns of a block of about ``block_pixels`` pair pixels, near square."""
    pairs = max(1, block_pixels // (IMAGE_SIZE * IMAGE_SIZE))
    cols = max(1, min(n2, math.isqrt(pairs)))
    rows = max(1, min(n1, pairs // cols))
    return rows, cols


# -- specs ---------------------------------------------------------------------------------
def _points(spec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(np.asarray(spec.z_), dtype=torch.float64, device=device)
    beta = torch.as_tensor(np.asarray(spec.beta_, dtype=np.float64), device=device).reshape(-1)
    check_images(z)
    return z, beta


def inner_product(a, b, *, device: str = "cpu") -> float:
    """⟨Φ_a, Φ_b⟩ = Σ_ij β^a_i β^b_j k(z^a_i, z^b_j) of two image specs (one spec twice uses
    the exact diagonal)."""
    dev = resolve_device(device)
    za, ba = _points(a, dev)
    if a is b:
        return float(ba @ nngp_kernel(za) @ ba)
    zb, bb = _points(b, dev)
    return float(ba @ nngp_kernel(za, zb) @ bb)


def inner_products(spec, others: Sequence, *, device: str = "cpu") -> np.ndarray:
    """⟨Φ_spec, Φ_o⟩ for every spec o of ``others``, in one kernel pass."""
    dev = resolve_device(device)
    zq, bq = _points(spec, dev)
    parts = [_points(o, dev) for o in others]
    return cross_terms(zq, bq, [p[0] for p in parts], [p[1] for p in parts])


def mmd2(a, b, *, device: str = "cpu") -> float:
    """Squared MMD between two image specs under the NNGP kernel."""
    if tuple(np.shape(a.z_)[1:]) != tuple(np.shape(b.z_)[1:]):
        raise SpecificationError(
            f"image specs have different shapes ({tuple(np.shape(a.z_)[1:])} and "
            f"{tuple(np.shape(b.z_)[1:])}); compare specs with as many channels"
        )
    return (
        inner_product(a, a, device=device)
        - 2.0 * inner_product(a, b, device=device)
        + inner_product(b, b, device=device)
    )


def gram_matrix(specs: Sequence, *, device: str = "cpu") -> np.ndarray:
    """G_ij = ⟨Φ_i, Φ_j⟩ for every pair of image specs, from one kernel matrix of their
    stacked points (each spec's own block with the exact diagonal)."""
    dev = resolve_device(device)
    parts = [_points(s, dev) for s in specs]
    z = torch.cat([p[0] for p in parts])
    beta = torch.cat([p[1] for p in parts])
    sizes = [len(p[1]) for p in parts]
    owner = torch.repeat_interleave(
        torch.arange(len(specs), device=dev), torch.tensor(sizes, device=dev)
    )
    k = nngp_kernel(z)  # symmetric; diagonal exact
    weighted = beta[:, None] * k * beta[None, :]
    m = len(specs)
    rows = torch.zeros(m, k.shape[1], dtype=torch.float64, device=dev).index_add_(
        0, owner, weighted
    )
    gram = torch.zeros(m, m, dtype=torch.float64, device=dev).index_add_(1, owner, rows)
    return gram.cpu().numpy()


class ImageBank:
    """Many image specs of one shape for batched exact MMD² under the NNGP kernel: the image
    counterpart of :class:`specification.mmd.SpecBank` (same interface).

    Each spec's self-term ⟨Φ_s, Φ_s⟩ is computed once when it is added; a query costs one
    kernel block against the stacked points of the specs asked for, plus a segmented sum.
    """

    def __init__(self, shape: Sequence[int], *, device: str = "cpu"):
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or self.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise SpecificationError(f"image banks hold (C, 32, 32) points, not {self.shape}")
        self.device = resolve_device(device)
        self._z: list[torch.Tensor] = []
        self._beta: list[torch.Tensor] = []
        self._self: list[float] = []

    def __len__(self) -> int:
        return len(self._self)

    @property
    def self_terms(self) -> np.ndarray:
        return np.asarray(self._self, dtype=np.float64)

    def add(self, specs: Iterable) -> range:
        start = len(self)
        for spec in specs:
            z, beta = _points(spec, self.device)
            if tuple(z.shape[1:]) != self.shape:
                raise SpecificationError(
                    f"spec has points {tuple(z.shape[1:])}, the bank {self.shape}"
                )
            self._z.append(z)
            self._beta.append(beta)
            self._self.append(float(beta @ nngp_kernel(z) @ beta))
        return range(start, len(self))

    def mmd2(self, query, subset: Sequence[int] | None = None) -> np.ndarray:
        positions = list(range(len(self))) if subset is None else [int(p) for p in subset]
        if any(p < 0 or p >= len(self) for p in positions):
            raise SpecificationError(f"subset positions must lie in [0, {len(self)})")
        if not positions:
            return np.empty(0)
        zq, bq = _points(query, self.device)
        if tuple(zq.shape[1:]) != self.shape:
            raise SpecificationError(
                f"query has points {tuple(zq.shape[1:])}, the bank {self.shape}"
            )
        self_q = float(bq @ nngp_kernel(zq) @ bq)
        cross = cross_terms(
            zq, bq, [self._z[p] for p in positions], [self._beta[p] for p in positions]
        )
        return self_q + self.self_terms[positions] - 2.0 * cross


def cross_terms(
    zq: torch.Tensor,
    bq: torch.Tensor,
    zs: Sequence[torch.Tensor],
    betas: Sequence[torch.Tensor],
    *,
    group_points: int = 4096,
) -> np.ndarray:
    """⟨Φ_q, Φ_s⟩ for every spec s given by its points and weights: kernel blocks against
    groups of whole specs of about ``group_points`` points (bounding the stacked copy)."""
    out = np.empty(len(zs))
    start = 0
    while start < len(zs):
        stop, rows = start, 0
        while stop < len(zs) and (stop == start or rows + len(zs[stop]) <= group_points):
            rows += len(zs[stop])
            stop += 1
        z = torch.cat([t.to(zq.device) for t in zs[start:stop]])
        beta = torch.cat([t.to(device=zq.device, dtype=torch.float64) for t in betas[start:stop]])
        sizes = torch.tensor([len(b) for b in betas[start:stop]])
        owner = torch.repeat_interleave(torch.arange(stop - start), sizes).to(zq.device)
        v = (bq @ nngp_kernel(zq, z)) * beta
        sums = torch.zeros(stop - start, dtype=torch.float64, device=zq.device)
        out[start:stop] = sums.index_add_(0, owner, v).cpu().numpy()
        start = stop
    return out
