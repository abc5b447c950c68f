"""The image RKME, the reference's ``RKMEImageSpecification``.

Images (N, C, H, W) are cleaned (a NaN or infinite pixel takes its image's mean), resized to
32×32 (bilinear, antialiased), standardised per channel and, with several channels, ZCA
whitened with the regulariser 0.1·trace(cov)/dim; at most 5,000 of them are kept. K points z
(32×32 images in that space) and weights β on the simplex are then fitted
to the data under a random-feature ConvNet kernel k̂(x, y) = φ(x)·φ(y) + 0.01: each of
``steps`` rounds draws ``n_models`` fresh random nets, takes ``inner_steps`` AdaBelief steps
on z and solves the simplex QP for β. The fit needs a GPU to run at the reference's defaults
in reasonable time (see ``bench/image_rkme.py``).

One deviation: the reference starts z from N(0, 1) noise, which takes most of its 100 rounds
to get anywhere (on 200 digits, 30 rounds at its defaults left an MMD² 3–10× that of 10
images drawn at random). Wharf starts from k-means centroids of the prepared images, as its
table fit does; after β's QP alone that is already below a random subsample, and 20 narrow
rounds divide it by 4 again. ``init="normal"`` gives the reference's start.

A second one: the reference's random nets (weights of variance 2/fan-in, biases of 0.01) are
not the nets whose infinite-width kernel it searches with (σ_w² = √2, σ_b² = 0.1), so its β is
optimal for a kernel the search does not use. Wharf solves β once more at the end under the
exact search kernel (K·n kernel evaluations; ``exact_beta=False`` skips it).

At search time two image specs are compared by the exact infinite-width kernel of those nets
(:mod:`specification.nngp`), which has no bandwidth: ``gamma`` is 0 for every image spec, so
partition keys and the catalog's γ column still hold a number.

Reading and writing specs never imports torch; fitting and comparing do.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ._estimator import ParamsMixin
from .errors import SpecificationError

IMAGE_SPEC_TYPE = "RKMEImageSpecification"
IMAGE_SPEC_VERSION = 1
IMAGE_SIZE = 32
#: The partition-key γ of every image spec (the NNGP kernel has no bandwidth).
IMAGE_GAMMA = 0.0
#: The reference's random nets: ``k · net_width`` channels, ``net_depth`` conv blocks, weight
#: mean ``mu`` and std ``sigma`` (``None``: √(2 / fan-in)).
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "k": 2,
    "mu": 0,
    "sigma": None,
    "net_width": 128,
    "net_depth": 3,
}


class RKMEImage(ParamsMixin):
    """Reduced kernel mean embedding of a set of images.

    Parameters
    ----------
    n_points : int, default=50
        Size K of the reduced set (lowered to ⌊2n/3⌋ when the data has no more than K images).
    steps : int, default=100
        Rounds of fresh random nets, each with ``inner_steps`` z steps and one β step.
    step_size : float, default=0.01
        AdaBelief learning rate for z.
    n_models : int, default=16
        Random nets per round.
    model_config : dict, optional
        Shape of the random nets (:data:`DEFAULT_MODEL_CONFIG`); a narrower net is cheaper
        and noisier, and gives specs that compare the same way at search time.
    sample_size : int, default=5000
        At most this many images are kept (drawn uniformly without replacement).
    whitening : bool, default=True
        ZCA-whiten images with several channels.
    inner_steps : int, default=3
        z steps per round, as the reference does.
    init : {"kmeans", "normal"}, default="kmeans"
        Start of z: k-means centroids, or N(0, 1) noise as the reference.
    exact_beta : bool, default=True
        Solve β a last time under the exact NNGP kernel used by the search.
    batch_size : int, default=256
        Images pushed through a random net at once (bounds memory).
    seed : int, default=0
        Seed of every random draw; the same seed and device give the same spec.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"

    Attributes
    ----------
    z_ : ndarray of shape (K, C, 32, 32), float32
    beta_ : ndarray of shape (K,)
    num_points_ : int
        Images the spec was fitted on (before subsampling).
    msg : str or None
        Free text carried by the reference's format.

    Like :class:`~specification.rkme.RKME` it is a scikit-learn estimator: ``get_params``,
    ``set_params``, ``sklearn.base.clone`` and ``fit(X, y=None)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((60, 1, 8, 8))
    >>> spec = RKMEImage(n_points=5, steps=2, n_models=2,
    ...                  model_config={"net_width": 8}, device="cpu").fit(X)
    >>> spec.z_.shape, round(float(spec.beta_.sum()), 6)
    ((5, 1, 32, 32), 1.0)
    """

    spec_type = IMAGE_SPEC_TYPE
    gamma = IMAGE_GAMMA
    #: Free text of the reference's format; a loaded spec carries its file's.
    msg: str | None = None

    def __init__(
        self,
        n_points: int = 50,
        *,
        steps: int = 100,
        step_size: float = 0.01,
        n_models: int = 16,
        model_config: dict | None = None,
        sample_size: int = 5000,
        whitening: bool = True,
        inner_steps: int = 3,
        init: str = "kmeans",
        exact_beta: bool = True,
        batch_size: int = 256,
        seed: int = 0,
        device: str = "auto",
    ):
        self.n_points = n_points
        self.steps = steps
        self.step_size = step_size
        self.n_models = n_models
        self.model_config = model_config
        self.sample_size = sample_size
        self.whitening = whitening
        self.inner_steps = inner_steps
        self.init = init
        self.exact_beta = exact_beta
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def fit(self, X: Any, y: Any = None) -> RKMEImage:
        for name in ("n_points", "n_models", "sample_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise SpecificationError(f"{name} must be ≥ 1, got {getattr(self, name)!r}")
        if int(self.steps) < 0 or int(self.inner_steps) < 0:
            raise SpecificationError("steps and inner_steps must be ≥ 0")
        if self.init not in ("kmeans", "normal"):
            raise SpecificationError(f"init must be 'kmeans' or 'normal', got {self.init!r}")
        if not float(self.step_size) > 0:
            raise SpecificationError(f"step_size must be > 0, got {self.step_size!r}")
        from ._image_fit import fit_images  # torch is imported only when a spec is fitted

        self.model_config_ = full_model_config(self.model_config)
        self.z_, self.beta_, self.num_points_ = fit_images(self, X)
        return self

    # -- state ---------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        z: Any,
        beta: Any,
        num_points: int = 0,
        *,
        n_models: int = 16,
        model_config: dict | None = None,
        msg: str | None = None,
    ) -> RKMEImage:
        """A spec from stored arrays (e.g. a spec file) without fitting."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if not np.isfinite(z).all():
            raise SpecificationError("z has values that are not finite float32 numbers")
        if z.ndim != 4 or z.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise SpecificationError(
                f"z must hold K images of shape (C, {IMAGE_SIZE}, {IMAGE_SIZE}), got {z.shape}"
            )
        spec = cls(n_points=len(z), n_models=int(n_models), model_config=model_config)
        spec.z_ = z
        spec.beta_ = np.ascontiguousarray(beta, dtype=np.float64).reshape(-1)
        spec.num_points_ = int(num_points)
        spec.model_config_ = full_model_config(model_config)
        spec.msg = msg
        return spec

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.z_.shape[1:])

    def herd(self, n_samples: int, *, seed: int = 0) -> np.ndarray:
        """The reference's image herding: ``n_samples`` points drawn ∝ β, plus N(0, 0.01²)
        noise (in the spec's standardised space, not the model's input space)."""
        rng = np.random.default_rng(seed)
        beta = np.clip(self.beta_, 0.0, None)
        if not beta.sum() > 0:
            raise SpecificationError("spec has no positive weight to sample from")
        picks = rng.choice(len(beta), size=int(n_samples), p=beta / beta.sum())
        noise = rng.normal(scale=0.01, size=(int(n_samples), *self.feature_shape))
        return (self.z_[picks] + noise).astype(np.float32)

    def __repr__(self) -> str:
        if hasattr(self, "z_"):
            return (
                f"RKMEImage(K={self.z_.shape[0]}, shape={self.feature_shape}, "
                f"num_points={self.num_points_})"
            )
        return f"RKMEImage(n_points={self.n_points}, unfitted)"


def full_model_config(config: dict | None) -> dict[str, Any]:
    """The defaults overridden by ``config``, checked."""
    out = copy.deepcopy(DEFAULT_MODEL_CONFIG)
    if config is None:
        return out
    if not isinstance(config, dict):
        raise SpecificationError(f"model_config must be a mapping, got {type(config).__name__}")
    out.update(config)
    for key in ("k", "net_width", "net_depth"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            raise SpecificationError(f"model_config[{key!r}] must be a number ≥ 1, got {value!r}")
    if int(out["net_depth"]) != 3:
        raise SpecificationError(
            "model_config['net_depth'] must be 3: the search kernel is the 3-layer NNGP"
        )
    return out
