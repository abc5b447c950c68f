"""The specifications are scikit-learn estimators: their constructors store the arguments as
given, ``get_params``/``set_params`` and ``sklearn.base.clone`` work, and what ``fit`` learns ends
in ``_``.

scikit-learn's whole ``check_estimator`` is not run: it expects its own error messages and
supervised estimators' ways. Its single checks that apply to an unsupervised spec are run here.
Left out: ``check_estimators_nan_inf`` (NaN and infinite entries are replaced by their
column's mean on purpose, as the reference does), and the checks that match scikit-learn's
wording of errors (``check_estimators_empty_data_messages``, ``check_complex_data``; both
inputs are refused, in Wharf's words).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils.validation import check_is_fitted
from wharf.specification import RKME, SpecificationError
from wharf.specification.image import RKMEImage
from wharf.specification.text import RKMEText

SPECS = {
    "RKME": lambda: RKME(n_points=5, gamma=0.5, seed=3, device="cpu"),
    "RKMEImage": lambda: RKMEImage(
        n_points=3, steps=1, n_models=1, model_config={"net_width": 4}, device="cpu"
    ),
    "RKMEText": lambda: RKMEText(n_points=3, batch_size=8, device="cpu"),
}
#: Checks of the constructor and the parameters: every spec.
PARAMETER_CHECKS = [
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
]
#: Checks that fit numeric tables: the table RKME.
FIT_CHECKS = [
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_estimators_overwrite_params",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_estimators_unfitted",
    "check_n_features_in",
    "check_fit2d_1sample",
    "check_fit1d",
    "check_estimators_dtypes",
    "check_f_contiguous_array_estimator",
    "check_dict_unchanged",
    "check_estimators_pickle",
]


def run_check(name: str, estimator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's notes on its own checks
        getattr(estimator_checks, name)(type(estimator).__name__, estimator)


@pytest.mark.parametrize("check", PARAMETER_CHECKS)
@pytest.mark.parametrize("kind", SPECS)
def test_the_constructor_stores_its_arguments(kind: str, check: str) -> None:
    run_check(check, SPECS[kind]())


@pytest.mark.parametrize("check", FIT_CHECKS)
def test_the_table_spec_fits_as_an_estimator(check: str) -> None:
    run_check(check, SPECS["RKME"]())


@pytest.mark.parametrize("kind", SPECS)
def test_clone_gives_the_parameters_and_not_the_state(kind: str) -> None:
    spec = SPECS[kind]()
    spec.z_, spec.beta_ = np.zeros((1, 2)), np.ones(1)  # as if fitted
    copy = clone(spec)
    assert type(copy) is type(spec) and copy is not spec
    assert copy.get_params() == spec.get_params()
    assert not hasattr(copy, "z_") and not hasattr(copy, "beta_")


def test_a_cloned_spec_fits_the_same_spec_again() -> None:
    X = np.random.default_rng(0).normal(size=(200, 3))
    spec = SPECS["RKME"]().fit(X)
    copy = clone(spec)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    check_is_fitted(spec)
    copy.fit(X)
    assert np.array_equal(copy.z_, spec.z_) and np.array_equal(copy.beta_, spec.beta_)
    assert spec.n_features_in_ == 3 and spec.num_points_ == 200


def test_set_params_changes_what_the_next_fit_does() -> None:
    spec = RKME(device="cpu")
    assert spec.set_params(n_points=7, gamma=0.2) is spec
    assert spec.get_params()["n_points"] == 7 and spec.gamma == 0.2
    spec.fit(np.random.default_rng(1).normal(size=(100, 2)))
    assert spec.z_.shape == (7, 2)
    with pytest.raises(ValueError, match=r"RKME has no parameter 'k'; its parameters are .*n_po"):
        spec.set_params(k=3)


def test_each_spec_lists_its_constructor_parameters() -> None:
    table = set(RKME().get_params())
    assert table == {"n_points", "gamma", "steps", "init_iters", "seed", "device"}
    assert set(RKMEText().get_params()) == table | {"batch_size"}
    config = {"net_width": 8}
    image = RKMEImage(model_config=config)
    assert image.get_params()["model_config"] is config  # stored as given
    assert image.msg is None and "msg" not in vars(image)


def test_invalid_parameters_are_refused_by_fit_not_by_the_constructor() -> None:
    spec = RKME(n_points=0, gamma=-1.0)  # scikit-learn's rule: __init__ validates nothing
    with pytest.raises(SpecificationError, match="gamma must be a finite number > 0"):
        spec.fit(np.zeros((10, 2)))
