"""The image specs of one partition, by learnware id, for exact MMD² under the NNGP kernel.

Image specs are compared exactly by the CNN-GP kernel (:mod:`specification.nngp`); the FAISS
stage over their random-ConvNet embeddings lives in the partition, as for tables. This store
has the interface of
:class:`~market.index.packed.PackedSpecs` that :class:`~market.index.partition.PartitionIndex`
uses (add, remove, rows, ids, mmd2, self_terms, spec, state), so the partition's ranking,
locking and snapshots work unchanged. Each spec's self-term is computed once, when it is added;
points are kept as float32 (as stored in the spec) on the partition's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from wharf.specification.errors import SpecificationError
from wharf.specification.image import IMAGE_GAMMA, RKMEImage
from wharf.specification.nngp import cross_terms, nngp_kernel


class ImageSpecs:
    """Image specs of one point shape ``(C, 32, 32)``, by integer learnware id.

    Parameters
    ----------
    shape : tuple of int
        The shape of one point.
    device : str, default="cpu"
        Where the points live and the kernel runs (``"cuda"`` on a GPU search worker).
    """

    gamma = IMAGE_GAMMA

    def __init__(self, shape: Sequence[int], *, device: str = "cpu"):
        self.shape = tuple(int(s) for s in shape)
        self.dim = int(np.prod(self.shape))
        self.device = torch.device(device)
        self._z: dict[int, torch.Tensor] = {}  # insertion order is slot order
        self._beta: dict[int, torch.Tensor] = {}
        self._self: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._z)

    def __contains__(self, learnware_id: object) -> bool:
        return learnware_id in self._z

    @property
    def ids(self) -> np.ndarray:
        return np.fromiter(self._z, dtype=np.int64, count=len(self._z))

    def rows(self, ids: Sequence[int] | np.ndarray | None = None) -> int:
        keys = self._z if ids is None else self._check(ids)
        return sum(len(self._beta[int(i)]) for i in keys)

    def _check(self, ids) -> list[int]:
        ids = [int(i) for i in ids]
        for i in ids:
            if i not in self._z:
                raise LookupError(f"learnware {i} is not in this partition")
        return ids

    def add(self, ids: Sequence[int], specs: Sequence) -> None:
        if len(ids) != len(specs):
            raise ValueError("add: as many ids as specs")
        if len(set(map(int, ids))) != len(ids):
            raise ValueError("add: duplicate learnware ids in one batch")
        for i, spec in zip(ids, specs, strict=True):
            z = np.asarray(spec.z_, dtype=np.float32)
            if tuple(z.shape[1:]) != self.shape:
                raise SpecificationError(
                    f"spec has points of shape {tuple(z.shape[1:])}, the partition {self.shape}"
                )
            beta = np.asarray(spec.beta_, dtype=np.float64).reshape(-1)
            self._put(int(i), z, beta, None)

    def _put(self, i: int, z: np.ndarray, beta: np.ndarray, self_term: float | None) -> None:
        zt = torch.as_tensor(z).to(self.device)
        bt = torch.as_tensor(beta).to(self.device)
        if self_term is None:
            self_term = float(bt @ nngp_kernel(zt) @ bt)
        self.remove([i])
        self._z[i], self._beta[i], self._self[i] = zt, bt, float(self_term)

    def remove(self, ids: Sequence[int]) -> int:
        removed = 0
        for i in ids:
            if self._z.pop(int(i), None) is not None:
                del self._beta[int(i)], self._self[int(i)]
                removed += 1
        return removed

    def spec(self, learnware_id: int) -> RKMEImage:
        i = self._check([learnware_id])[0]
        return RKMEImage.from_arrays(self._z[i].cpu().numpy(), self._beta[i].cpu().numpy())

    def self_terms(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray([self._self[i] for i in self._check(ids)], dtype=np.float64)

    def mmd2(self, query, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Squared MMD from ``query`` to the specs of ``ids``, in that order."""
        ids = self._check(ids)
        if not ids:
            return np.empty(0)
        zq = torch.as_tensor(np.asarray(query.z_), dtype=torch.float64).to(self.device)
        if tuple(zq.shape[1:]) != self.shape:
            raise SpecificationError(
                f"query has points of shape {tuple(zq.shape[1:])}, the partition {self.shape}"
            )
        bq = torch.as_tensor(np.asarray(query.beta_, dtype=np.float64)).to(self.device)
        self_q = float(bq @ nngp_kernel(zq) @ bq)
        cross = cross_terms(zq, bq, [self._z[i] for i in ids], [self._beta[i] for i in ids])
        return self_q + self.self_terms(ids) - 2.0 * cross

    # -- snapshots -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        ids = list(self._z)
        empty = np.empty((0, *self.shape), dtype=np.float32)
        return {
            "ids": np.asarray(ids, dtype=np.int64),
            "count": np.asarray([len(self._beta[i]) for i in ids], dtype=np.int64),
            "self": np.asarray([self._self[i] for i in ids], dtype=np.float64),
            "z": np.concatenate([self._z[i].cpu().numpy() for i in ids]) if ids else empty,
            "beta": np.concatenate([self._beta[i].cpu().numpy() for i in ids]) if ids else [],
        }

    @classmethod
    def from_state(cls, shape: Sequence[int], state, *, device: str = "cpu") -> ImageSpecs:
        out = cls(shape, device=device)
        z, beta = np.asarray(state["z"]), np.asarray(state["beta"], dtype=np.float64)
        offsets = np.concatenate([[0], np.cumsum(state["count"])])
        for n, (i, s) in enumerate(zip(state["ids"].tolist(), state["self"].tolist(), strict=True)):
            a, b = offsets[n], offsets[n + 1]
            out._put(int(i), z[a:b], beta[a:b], s)
        return out
