"""``learnware.specification`` of the compatibility shim: names only.

Packages written for the reference import these names, mostly to build their specification
when the package is made. A model has no reason to build or load one while it predicts, so
inside the sandbox every name here refuses to be used, saying why.
"""

from __future__ import annotations

from typing import Any, NoReturn

_WHY = (
    "is not available inside the Wharf sandbox: the market reads the package's "
    "specification files itself, and a model must not build or load specifications "
    "while it predicts"
)


def _refuse(name: str) -> NoReturn:
    raise RuntimeError(f"learnware.specification.{name} {_WHY}")


class _Unavailable:
    def __init__(self, *args: Any, **kwargs: Any):
        _refuse(type(self).__name__)


class Specification(_Unavailable):
    pass


class BaseStatSpecification(_Unavailable):
    pass


class RegularStatsSpecification(BaseStatSpecification):
    pass


class RKMETableSpecification(RegularStatsSpecification):
    pass


class RKMEStatSpecification(RKMETableSpecification):
    pass


class RKMEImageSpecification(RegularStatsSpecification):
    pass


class RKMETextSpecification(RegularStatsSpecification):
    pass


def generate_stat_spec(*args: Any, **kwargs: Any) -> NoReturn:
    _refuse("generate_stat_spec")


def generate_rkme_spec(*args: Any, **kwargs: Any) -> NoReturn:
    _refuse("generate_rkme_spec")


def generate_rkme_table_spec(*args: Any, **kwargs: Any) -> NoReturn:
    _refuse("generate_rkme_table_spec")


def generate_rkme_image_spec(*args: Any, **kwargs: Any) -> NoReturn:
    _refuse("generate_rkme_image_spec")


def generate_rkme_text_spec(*args: Any, **kwargs: Any) -> NoReturn:
    _refuse("generate_rkme_text_spec")
