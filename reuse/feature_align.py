"""Feature alignment: reuse a learnware whose input columns are not the user's.

A small network g maps the user's rows into the learnware's input space; the learnware then
predicts on g(X). With no label, g is learned from the two distributions alone: the user's
points pushed through g must match the learnware's RKME reduced set in MMD, under the
learnware's own kernel (the reference's ``FeatureAlignLearnware``). :class:`HeteroMapAlign`
adds what the heterogeneous market knows: its map reads a row through its column
descriptions, so a user's row and its image g(row), read as a learnware row, must land on the
same point of the shared space. That ties columns by meaning ("age" to "age of the patient"),
which the MMD alone cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import Reuser, check_task
from ._checks import check_learnwares, check_X, check_y
from .feature_augment import FeatureAugment

#: User rows used as the source distribution (a random subset beyond this).
MAX_SOURCE_POINTS = 2_000


class FeatureAlign(Reuser):
    """Map the user's features into one learnware's input space by matching distributions.

    Parameters
    ----------
    learnware : object
        Has ``predict(X)`` on its own inputs and ``spec``, its RKME (``z_``, ``beta_``,
        ``gamma``).
    task : {"classification", "regression"}, default="classification"
    user_spec : RKME, optional
        The user's RKME as the source distribution; by default the rows of ``X`` in ``fit``
        (at most 2,000 of them, drawn at random).
    gamma : float, optional
        Kernel of the MMD in the learnware's space; the learnware's RKME γ by default.
    hidden_dims : tuple of int, default=(128,)
        Hidden layers of g (ReLU).
    epochs : int, default=100
        Full-batch Adam steps.
    lr : float, default=1e-3
    random_state : int, default=0
        Seeds g's initial weights and any subsampling; the same seed gives the same g.

    Attributes
    ----------
    mapper_ : torch.nn.Module
        g, from the user's (standardised) features to the learnware's inputs.
    n_features_in_ : int
        Width of the user's ``X``.
    loss_ : float
        The final objective.
    fill_values_ : ndarray
        Column means of ``X`` in ``fit``, which replace its NaN and ±inf.

    Examples
    --------
    >>> import numpy as np
    >>> from wharf.specification.rkme import RKME
    >>> class Sum:
    ...     spec = RKME.from_arrays(np.random.default_rng(0).normal(size=(20, 2)),
    ...                             np.full(20, 0.05), 0.5, 100)
    ...     def predict(self, X):
    ...         return (X.sum(axis=1) > 0).astype(int)
    >>> X = np.random.default_rng(1).normal(size=(50, 3))
    >>> FeatureAlign(Sum(), epochs=5).fit(X).predict(X).shape
    (50,)
    """

    def __init__(
        self,
        learnware: Any,
        task: str = "classification",
        user_spec: Any = None,
        gamma: float | None = None,
        hidden_dims: Sequence[int] = (128,),
        epochs: int = 100,
        lr: float = 1e-3,
        random_state: int = 0,
    ):
        self.learnware = learnware
        self.task = task
        self.user_spec = user_spec
        self.gamma = gamma
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.lr = lr
        self.random_state = random_state

    def _task(self) -> str | None:
        return self.task if self.task in ("classification", "regression") else None

    def fit(self, X: Any, y: Any = None) -> FeatureAlign:
        """Learn g from the distributions (``y`` is not used here)."""
        check_task(self.task)
        self._align(check_X(X, allow_nan=True))
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The user's rows in the learnware's input space."""
        check_is_fitted(self, "mapper_")
        X = check_X(X, n_features=self.n_features_in_, allow_nan=True, what="aligned model")
        import torch

        with torch.no_grad():
            return self.mapper_(torch.from_numpy(self._fill(X)).float()).double().numpy()

    def predict(self, X: Any) -> np.ndarray:
        return self._predict_task(X)[1]

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        return self.task, np.asarray(self.learnware_.predict(self.transform(X)))

    # -- the alignment -------------------------------------------------------------------
    def _align(self, X: np.ndarray) -> None:
        import torch

        from ._align_net import kernel, mlp

        (learnware,) = check_learnwares([self.learnware], need_spec=True)
        if not 1 <= int(self.epochs) <= 100_000:
            raise ValueError(f"epochs must be in [1, 100000], got {self.epochs!r}")
        self.learnware_ = learnware
        spec = learnware.spec
        target = torch.from_numpy(np.asarray(spec.z_, dtype=np.float64).reshape(len(spec.z_), -1))
        target_w = torch.from_numpy(np.asarray(spec.beta_, dtype=np.float64))
        gamma = float(self.gamma if self.gamma is not None else spec.gamma)
        finite = np.isfinite(X)
        counts = finite.sum(axis=0)
        sums = np.where(finite, X, 0.0).sum(axis=0)
        self.fill_values_ = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        self.n_features_in_ = X.shape[1]
        rng = np.random.default_rng(self.random_state)
        if self.user_spec is not None:
            source = np.asarray(self.user_spec.z_, dtype=np.float64).reshape(
                len(self.user_spec.z_), -1
            )
            source_w = np.asarray(self.user_spec.beta_, dtype=np.float64)
            if source.shape[1] != X.shape[1]:
                raise ValueError(f"user_spec has {source.shape[1]} features but X has {X.shape[1]}")
        else:
            rows = (
                X
                if len(X) <= MAX_SOURCE_POINTS
                else X[rng.choice(len(X), MAX_SOURCE_POINTS, replace=False)]
            )
            source = self._fill(rows)
            source_w = np.full(len(source), 1.0 / len(source))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            self.mapper_ = mlp(source, target.shape[1], tuple(self.hidden_dims))
            extra = self._extra_loss(source, rng)
        src, src_w = torch.from_numpy(source).float(), torch.from_numpy(source_w).float()
        tgt, tgt_w = target.float(), target_w.float()
        target_term = float(tgt_w @ kernel(tgt, tgt, gamma) @ tgt_w)
        optimiser = torch.optim.Adam(self.mapper_.parameters(), lr=self.lr)
        for _ in range(int(self.epochs)):
            mapped = self.mapper_(src)
            loss = (
                src_w @ kernel(mapped, mapped, gamma) @ src_w
                - 2 * src_w @ kernel(mapped, tgt, gamma) @ tgt_w
                + target_term
            )
            if extra is not None:
                loss = loss + extra(mapped)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        self.mapper_.eval()
        self.loss_ = float(loss.detach())

    def _extra_loss(self, source: np.ndarray, rng: np.random.Generator) -> Any:
        """A term added to the MMD, given g's images of the source points (none here)."""
        return None

    def _fill(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(X), X, self.fill_values_)


class HeteroMapAlign(FeatureAlign):
    """Reuse a learnware found by a heterogeneous search: align the user's columns to its
    inputs through the market's map, then predict with it, or, given a few labels, train a
    :class:`FeatureAugment` on the user's features and the aligned learnware's outputs.

    Parameters
    ----------
    learnware : object
        Has ``predict``, ``spec`` (its RKME) and, unless ``learnware_descriptions`` is given,
        ``semantic`` with ``Input.Description`` of every column.
    hetero_map : specification.hetero.model.HeteroMap
        The market's map of the search's version.
    user_descriptions : list of str
        What each of the user's columns is, in order.
    learnware_descriptions : list of str, optional
        The learnware's column descriptions (read from its semantic spec by default).
    semantic_weight : float, default=3.0
        Weight of the shared-space term, a squared error relative to the size of the user's
        rows in the shared space (0: plain :class:`FeatureAlign`).
    semantic_batch : int, default=32
        Source points read through the map at each step.
    estimator : scikit-learn estimator, optional
        The final model of the labelled step (:class:`FeatureAugment`'s default otherwise).
    epochs : int, default=300
        Full-batch Adam steps (more than :class:`FeatureAlign`'s 100: the shared-space term
        keeps improving the column correspondence after the MMD has settled).
    task, user_spec, gamma, hidden_dims, lr, random_state
        As :class:`FeatureAlign`.

    The defaults of ``semantic_weight`` and ``epochs`` were chosen on users of
    ``bench/hetero_experiment`` that its report does not show (indices 3–5), each aligned
    to every learnware of its data set with no label. Against the earlier defaults (an
    absolute squared error of weight 1, about 0.1 here, and 100 steps), the mean error went
    from 16.8 to 9.9 % on breast cancer, 43.4 to 39.0 % on wine, 14.6 to 11.1 % on iris, and
    an RMSE of 79.8 to 63.4 on diabetes; the true column correspondence, with the columns the
    user lacks at their mean, gives 13.2, 6.8, 13.4 % and 62.3.

    Attributes
    ----------
    aligned_ : FeatureAlign
        The aligned learnware (this estimator, fitted), or
    reuser_ : FeatureAugment
        the labelled model over it, when ``fit`` was given ``y``.
    """

    def __init__(
        self,
        learnware: Any,
        hetero_map: Any,
        user_descriptions: Sequence[str],
        task: str = "classification",
        learnware_descriptions: Sequence[str] | None = None,
        semantic_weight: float = 3.0,
        semantic_batch: int = 32,
        estimator: Any = None,
        user_spec: Any = None,
        gamma: float | None = None,
        hidden_dims: Sequence[int] = (128,),
        epochs: int = 300,
        lr: float = 1e-3,
        random_state: int = 0,
    ):
        super().__init__(learnware, task, user_spec, gamma, hidden_dims, epochs, lr, random_state)
        self.hetero_map = hetero_map
        self.user_descriptions = user_descriptions
        self.learnware_descriptions = learnware_descriptions
        self.semantic_weight = semantic_weight
        self.semantic_batch = semantic_batch
        self.estimator = estimator

    def fit(self, X: Any, y: Any = None) -> HeteroMapAlign:
        """Align (``X``'s columns are ``user_descriptions``); with ``y``, fit the labelled
        model on ``X`` and the aligned learnware's outputs."""
        task = check_task(self.task)
        X = check_X(X, allow_nan=True)
        if len(self.user_descriptions) != X.shape[1]:
            raise ValueError(
                f"user_descriptions has {len(self.user_descriptions)} entries but X has "
                f"{X.shape[1]} columns: describe each column"
            )
        self._align(X)
        self.reuser_ = None
        if y is not None:
            check_y(y, len(X), numeric=task == "regression")
            self.reuser_ = FeatureAugment([_Aligned(self)], task, self.estimator).fit(X, y)
            if hasattr(self.reuser_, "classes_"):
                self.classes_ = self.reuser_.classes_
        return self

    def _align(self, X: np.ndarray) -> None:
        flags = [p.requires_grad for p in self.hetero_map.network.parameters()]
        try:
            super()._align(X)
        finally:
            for p, flag in zip(self.hetero_map.network.parameters(), flags, strict=True):
                p.requires_grad_(flag)

    @property
    def aligned_(self) -> HeteroMapAlign:
        check_is_fitted(self, "mapper_")
        return self

    def _predict_task(self, X: Any) -> tuple[str, np.ndarray]:
        check_is_fitted(self, "mapper_")
        if self.reuser_ is not None:
            return self.task, self.reuser_.predict(X)
        return super()._predict_task(X)

    def _extra_loss(self, source: np.ndarray, rng: np.random.Generator) -> Any:
        if not self.semantic_weight:
            return None
        import torch
        from wharf.specification.hetero.columns import tokenize

        hmap = self.hetero_map
        network = hmap.network
        lw_descriptions = self.learnware_descriptions or _input_descriptions(self.learnware_)
        width = np.asarray(self.learnware_.spec.z_).reshape(len(self.learnware_.spec.z_), -1)
        if len(lw_descriptions) != width.shape[1]:
            raise ValueError(
                f"the learnware has {width.shape[1]} input columns but "
                f"{len(lw_descriptions)} descriptions"
            )
        # Where the user's rows land, read through the user's descriptions: fixed targets.
        anchors = torch.from_numpy(hmap.map_rows(source, list(self.user_descriptions))).float()
        ids, mask = tokenize(list(lw_descriptions))
        with torch.no_grad():
            columns = network.column_embeddings(
                torch.from_numpy(ids).to(hmap.device), torch.from_numpy(mask).to(hmap.device)
            )
        for p in network.parameters():  # the map stays as it is (restored by _align)
            p.requires_grad_(False)
        weight, batch = float(self.semantic_weight), max(1, int(self.semantic_batch))
        generator = np.random.default_rng(rng.integers(1 << 32))

        # Relative squared error, so the weight means the same whatever the map's scale.
        anchor_power = float((anchors**2).sum(dim=1).mean().clamp_min(1e-12))

        def semantic_term(mapped: Any) -> Any:
            pick = torch.from_numpy(generator.choice(len(mapped), min(batch, len(mapped))))
            read = hmap.encode(mapped[pick].to(hmap.device), columns).cpu()
            return weight * ((read - anchors[pick]) ** 2).sum(dim=1).mean() / anchor_power

        return semantic_term


class _Aligned:
    """The aligned learnware as FeatureAugment sees it: predict on the user's columns."""

    def __init__(self, align: HeteroMapAlign):
        self.align = align

    def predict(self, X: Any) -> np.ndarray:
        return FeatureAlign._predict_task(self.align, X)[1]


def _input_descriptions(learnware: Any) -> list[str]:
    semantic = getattr(learnware, "semantic", None) or {}
    given = (semantic.get("Input") or {}).get("Description") or {}
    width = np.asarray(learnware.spec.z_).reshape(len(learnware.spec.z_), -1).shape[1]
    missing = [i for i in range(width) if not str(given.get(str(i), "")).strip()]
    if missing:
        raise ValueError(
            f"the learnware's semantic spec does not describe its input columns {missing[:5]}; "
            "give learnware_descriptions"
        )
    return [str(given[str(i)]) for i in range(width)]
