"""scikit-learn's estimator protocol for specifications, without importing scikit-learn.

A spec is configured by its constructor's arguments, stored as given, and learns in ``fit``
(the attributes that end in ``_``). :class:`ParamsMixin` gives it ``get_params`` and
``set_params`` as scikit-learn's ``BaseEstimator`` does, so ``sklearn.base.clone`` and
parameter searches work on it, while importing ``specification`` (the API does, to read
specs) still never imports scikit-learn.
"""

from __future__ import annotations

import inspect
from typing import Any, Self


class ParamsMixin:
    """``get_params``/``set_params`` from the constructor's signature (scikit-learn's rules:
    every parameter is stored under its own name, and nothing else is set in ``__init__``)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"{cls.__name__}.__init__ must name its parameters: no *args or **kwargs"
                )
            names.append(p.name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their values (``deep``: with those of parameters
        that are estimators themselves, as ``name__param``)."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", v) for key, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (``name__param`` for a parameter's own); returns self.

        Raises ``ValueError`` naming the parameters there are for an unknown one.
        """
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, nested_key, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are "
                    + ", ".join(valid)
                )
            if nested_key:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __sklearn_tags__(self) -> Any:
        """An unsupervised estimator (``fit(X)``), for scikit-learn's tools that ask."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))
