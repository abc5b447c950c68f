"""Fixed-length index embeddings of image RKMEs: ‖e(a) − e(b)‖² ≈ MMD²(a, b) under the NNGP kernel.

The CNN-GP kernel of :mod:`specification.nngp` is the covariance of the output of a random
ConvNet as its width grows, so finite random ConvNets give random features whose inner
products approximate it. Each net mirrors the kernel's layers:

    3 × [conv 3×3 "same" (weights ~ N(0, σ_w²/9C), bias ~ N(0, σ_b²)) → ReLU → ±2 · pool 2×2]

and a spec's embedding is Σ_j β_j φ(z_j), where φ(x) stacks the last maps of every net
(``width`` channels of 4×4 pixels), scaled so that φ(x)·φ(y) estimates k(x, y).

The kernel pools the *same-pixel* covariance only (its 2×2 step averages the cross map), which
a plain average pool does not reproduce (it would add the covariances between neighbouring
pixels). Multiplying each pre-pool pixel by a fixed random sign, drawn with the net, cancels
those cross terms in expectation: E[(Σ_p ε_p h_p(x) / 2)(Σ_q ε_q h_q(y) / 2)] =
Σ_p E[h_p(x) h_p(y)] / 4. The last layer's 4×4 average is the stacking itself.

Many narrow nets estimate the kernel with less variance than one wide net of the same size;
``bench/image_index.py`` measures the recall this gives a FAISS stage. Weights come from numpy's
PCG64 seeded by (version, seed, channels, width, nets), so every worker computes the same vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from ._arrays import resolve_device
from .errors import SpecificationError
from .image import IMAGE_SIZE
from .mmd import KernelMeanEmbedding
from .nngp import DEPTH, VAR_BIAS, VAR_WEIGHT

IMAGE_EMBEDDING_VERSION = 1
#: Side of the maps after the last pooling: 32 / 2³.
LAST_SIDE = IMAGE_SIZE >> DEPTH


@dataclass(frozen=True)
class ImageIndexEmbedding:
    """The embedding of one image partition (points of ``channels`` × 32 × 32).

    Parameters
    ----------
    channels : int
        Channels of the partition's images.
    width : int, default=16
        Channels of each random net's hidden layers.
    nets : int, default=8
        Number of random nets; the embedding has ``nets × width × 16`` entries.
    seed : int, default=0
        Seed of the weights.
    """

    channels: int
    width: int = 16
    nets: int = 8
    seed: int = 0
    version: int = IMAGE_EMBEDDING_VERSION

    def __post_init__(self):
        for name in ("channels", "width", "nets"):
            if getattr(self, name) < 1:
                raise SpecificationError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.version != IMAGE_EMBEDDING_VERSION:
            raise SpecificationError(
                f"image embedding version {self.version} is not known "
                f"(this build has {IMAGE_EMBEDDING_VERSION})"
            )

    @property
    def size(self) -> int:
        return self.nets * self.width * LAST_SIDE * LAST_SIDE

    @property
    def key(self) -> str:
        """A string naming this embedding exactly; equal keys give equal vectors."""
        return (
            f"cnngp-rf-v{self.version}:c={self.channels}:width={self.width}"
            f":nets={self.nets}:seed={self.seed}"
        )

    @cached_property
    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(weights, bias, pooling signs) of every layer of every net, stacked over the nets:
        the nets run as one grouped convolution."""
        rng = np.random.Generator(
            np.random.PCG64([self.version, self.seed, self.channels, self.width, self.nets])
        )
        layers = []
        fan_in, side = self.channels, IMAGE_SIZE
        for _ in range(DEPTH):
            w = rng.standard_normal((self.nets * self.width, fan_in, 3, 3))
            w *= math.sqrt(VAR_WEIGHT / (9 * fan_in))
            b = rng.standard_normal(self.nets * self.width) * math.sqrt(VAR_BIAS)
            signs = 2.0 * rng.integers(0, 2, (self.nets * self.width, side, side)) - 1.0
            layers.append((w, b, 2.0 * signs))
            fan_in, side = self.width, side // 2
        return [tuple(torch.from_numpy(a.astype(np.float32)) for a in layer) for layer in layers]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) for images ``x`` (n, channels, 32, 32) → (n, size), float32, on x's device."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, IMAGE_SIZE, IMAGE_SIZE):
            raise SpecificationError(
                f"images must have shape (n, {self.channels}, {IMAGE_SIZE}, {IMAGE_SIZE}), "
                f"got {tuple(x.shape)}"
            )
        h = x.to(torch.float32)
        # Full float32 on a GPU too (no TF32): workers on either device embed alike.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for i, (w, b, signs) in enumerate(self._layers):
                w, b, signs = (a.to(x.device) for a in (w, b, signs))
                groups = 1 if i == 0 else self.nets  # the first layer sees the input, each net
                h = F.conv2d(h, w, b, padding=1, groups=groups)
                h = F.avg_pool2d(F.relu_(h).mul_(signs), 2)
        return h.reshape(len(x), -1).mul_(1.0 / math.sqrt(self.width * self.nets * LAST_SIDE**2))

    def embed(self, spec: KernelMeanEmbedding, *, device: str = "cpu") -> np.ndarray:
        """e(spec) = Σ_j β_j φ(z_j), a float32 vector of length ``size``."""
        return self.embed_many([spec], device=device)[0]

    def embed_many(
        self,
        specs: Sequence[KernelMeanEmbedding],
        *,
        device: str = "cpu",
        block_rows: int = 256,
    ) -> np.ndarray:
        """Embeddings of many specs, (len(specs), size); ``block_rows`` images at a time."""
        dev = resolve_device(device)
        out = torch.zeros(len(specs), self.size, dtype=torch.float32)
        if not specs:
            return out.numpy()
        z = np.concatenate([np.asarray(s.z_, dtype=np.float32) for s in specs])
        beta = np.concatenate([np.asarray(s.beta_, dtype=np.float32).reshape(-1) for s in specs])
        owner = np.repeat(np.arange(len(specs)), [len(np.asarray(s.beta_)) for s in specs])
        beta_t, owner_t = torch.from_numpy(beta), torch.from_numpy(owner)
        with torch.inference_mode():
            for start in range(0, len(z), block_rows):
                block = torch.from_numpy(z[start : start + block_rows]).to(dev)
                stop = start + len(block)
                feats = self.features(block).cpu().mul_(beta_t[start:stop, None])
                out.index_add_(0, owner_t[start:stop], feats)
        return out.numpy()
