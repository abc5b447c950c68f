"""One-step helpers: fit a reuse method by name, and load the learnwares a search found."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .averaging import Averaging
from .ensemble_pruning import EnsemblePruning
from .feature_align import HeteroMapAlign
from .feature_augment import FeatureAugment
from .job_selector import JobSelector
from .runner import Learnware

METHODS = {
    "job_selector": JobSelector,
    "averaging": Averaging,
    "ensemble_pruning": EnsemblePruning,
    "feature_augment": FeatureAugment,
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def reuse(method: str | type, learnwares: Any, X: Any = None, y: Any = None, **kwargs: Any):
    """Build the reuse estimator ``method`` on ``learnwares`` and fit it.

    Parameters
    ----------
    method : str or class
        ``"job_selector"``, ``"averaging"``, ``"ensemble_pruning"`` or ``"feature_augment"``
        (also written ``"JobSelector"``, ``"ensemble-pruning"`` …), or one of the classes.
    learnwares : list
        Objects with ``predict(X)`` (and ``spec`` for the job selector).
    X, y : array-like, optional
        Passed to ``fit``: unlabelled user data for the data-free methods, labelled data
        for ``"ensemble_pruning"`` and ``"feature_augment"``.
    **kwargs
        The estimator's other parameters (``task``, ``mode``, ``random_state`` …).

    Returns
    -------
    The fitted estimator.

    Examples
    --------
    >>> import numpy as np
    >>> class Linear:
    ...     def __init__(self, w):
    ...         self.w = np.asarray(w, dtype=float)
    ...     def predict(self, X):
    ...         return X @ self.w[:, None]
    >>> avg = reuse("averaging", [Linear([1, 0]), Linear([0, 1])], mode="mean")
    >>> avg.predict(np.array([[2.0, 4.0]])).tolist()
    [3.0]
    """
    if isinstance(method, type):
        cls = method
    else:
        key = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", str(method)).lower().replace("-", "_")
        if key not in METHODS:
            raise ValueError(f"unknown reuse method {method!r}; choose one of {', '.join(METHODS)}")
        cls = METHODS[key]
    estimator = cls(learnwares, **kwargs)
    return estimator.fit(X) if y is None else estimator.fit(X, y)


def from_search(
    client: Any,
    result: dict[str, Any],
    dest_dir: str | os.PathLike[str],
    *,
    mixture: bool = True,
    top: int | None = None,
    user_descriptions: Sequence[str] | None = None,
    hetero_map: Any = None,
    **load_kwargs: Any,
) -> list[Any]:
    """Download and load the learnwares of a search result.

    A heterogeneous result (one with ``result["hetero"]["map_version"]``: its learnwares take
    other columns than the user's) gives a :class:`HeteroMapAlign` per learnware instead,
    not fitted: ``fit(X)`` aligns the user's columns to the learnware's, ``fit(X, y)`` adds a
    :class:`FeatureAugment` on a few labels. It needs ``user_descriptions`` (what each of
    the user's columns is) and the market's map of that version: ``hetero_map`` (a
    ``HeteroMap``, or the path of its file), else ``client.download_hetero_map(version,
    path)``.

    Parameters
    ----------
    client : client.WharfClient
        Used for ``download(id, path)`` and, for each semantic specification,
        ``learnware(id)``.
    result : dict
        What ``WharfClient.search`` returned (``singles`` and ``mixture``).
    dest_dir : path
        Where the package zips are written (``<id>.zip``); created if missing.
    mixture : bool, default=True
        Load the mixture's members when the search found a mixture; otherwise (or with
        ``mixture=False``) load the single matches, best first.
    top : int, optional
        Load at most this many single matches.
    **load_kwargs
        Passed to :meth:`Learnware.load` (``sandbox``, ``limits``, ``time_limit_s`` …).

    Returns
    -------
    list of Learnware (or of HeteroMapAlign around them)
        In the mixture's or the ranking's order; close them when done.
    """
    ids = _chosen_ids(result, mixture=mixture, top=top)
    hetero = _hetero_of(result, user_descriptions)
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    loaded: list[Learnware] = []
    try:
        for learnware_id in ids:
            if not _SAFE_ID.match(learnware_id):
                raise ValueError(f"the search result holds an unusable id {learnware_id!r}")
            path = client.download(learnware_id, folder / f"{learnware_id}.zip")
            semantic = client.learnware(learnware_id).get("semantic_spec")
            loaded.append(
                Learnware.load(path, learnware_id=learnware_id, semantic=semantic, **load_kwargs)
            )
        if hetero is not None:
            hmap = _hetero_map(client, hetero, hetero_map, folder)
            return [
                HeteroMapAlign(lw, hmap, list(user_descriptions or ()), task=_task_of(lw))
                for lw in loaded
            ]
    except BaseException:
        for lw in loaded:
            lw.close()
        raise
    return loaded


def _hetero_of(result: Any, user_descriptions: Sequence[str] | None) -> int | None:
    """The map version of a heterogeneous result, ``None`` for a homogeneous one."""
    hetero = result.get("hetero") if isinstance(result, dict) else None
    if not hetero:
        return None
    version = hetero.get("map_version") if isinstance(hetero, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"the search result's hetero entry has no map version: {hetero!r:.80}")
    if not user_descriptions:
        raise ValueError(
            "this is a heterogeneous result: give user_descriptions, what each of your "
            "columns is, to align them with the learnwares' columns"
        )
    return version


def _hetero_map(client: Any, version: int, given: Any, folder: Path) -> Any:
    from wharf.specification.hetero.model import HeteroMap

    if isinstance(given, HeteroMap):
        return given
    if given is None:
        download = getattr(client, "download_hetero_map", None)
        if download is None:
            raise ValueError(
                f"give hetero_map (the market's map version {version}): this client cannot "
                "download it"
            )
        given = download(version, folder / f"hetero-map-v{version}.pt")
    return HeteroMap.from_bytes(Path(given).read_bytes())


def _task_of(lw: Any) -> str:
    task = ((getattr(lw, "semantic", None) or {}).get("Task") or {}).get("Values") or []
    return "regression" if list(task) == ["Regression"] else "classification"


def _chosen_ids(result: dict[str, Any], *, mixture: bool, top: int | None) -> list[str]:
    if not isinstance(result, dict):
        raise TypeError(f"result must be the dict WharfClient.search returns; got {result!r:.80}")
    found = result.get("mixture") if mixture else None
    if found and found.get("ids"):
        ids = [str(i) for i in found["ids"]]
    else:
        singles = result.get("singles") or []
        ids = [str(s["id"]) for s in singles[: top if top is not None else len(singles)]]
    if not ids:
        raise ValueError("the search result holds no learnwares to load")
    return list(dict.fromkeys(ids))
