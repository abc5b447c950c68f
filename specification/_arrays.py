"""Input validation shared by every public entry point of ``specification``.

Arrays arrive as numpy arrays, pandas frames or torch tensors; everything leaves as a C-contiguous
float64 numpy array or a torch tensor on an explicit device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import SpecificationError

#: Upper bound on any single array dimension read from untrusted input.
MAX_ROWS = 1 << 31


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; anything else is taken literally."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecificationError(f"device {str(device)!r} was asked for but CUDA is not available")
    return dev


def to_numpy(X: Any, name: str = "X") -> np.ndarray:
    """numpy / pandas / torch / nested lists → numpy array (no copy when already numpy)."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    if hasattr(X, "to_numpy") and callable(X.to_numpy):  # pandas DataFrame / Series
        return X.to_numpy()
    try:
        return np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(f"{name} cannot be read as an array: {exc}") from exc


def column_names(X: Any) -> list[str] | None:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None


def as_table(X: Any, name: str = "X") -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate tabular input and return ``(float64 (n, d) copy, feature shape)``.

    Rows are samples; trailing axes are flattened into features (their shape is returned so a
    spec keeps the caller's feature shape). NaN and ±Inf entries are replaced by the mean of the
    finite values of their column; a column with no finite value is an error naming it.
    """
    names = column_names(X)
    arr = to_numpy(X, name)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise SpecificationError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise SpecificationError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise SpecificationError(
            f"{name} must have shape (n_samples, n_features, ...), got shape {arr.shape}; "
            "reshape a single feature with X.reshape(-1, 1)"
        )
    if arr.shape[0] == 0 or arr[0].size == 0:
        raise SpecificationError(f"{name} is empty (shape {arr.shape})")
    feature_shape = tuple(int(s) for s in arr.shape[1:])
    out = np.array(arr.reshape(arr.shape[0], -1), dtype=np.float64, order="C", copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        counts = finite.sum(axis=0)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            col = int(empty[0])
            label = f"column {col}" + (f" ({names[col]!r})" if names and col < len(names) else "")
            raise SpecificationError(
                f"{name} {label} has no finite value (all NaN or infinite); drop it or fill it"
            )
        sums = np.where(finite, out, 0.0).sum(axis=0)
        means = sums / counts
        rows, cols = np.nonzero(~finite)
        out[rows, cols] = means[cols]
    return out, feature_shape
