"""The model interface learnwares implement (reference §5.2)."""

from __future__ import annotations

from typing import Any


class BaseModel:
    """Base class of a learnware's model.

    Parameters
    ----------
    input_shape : tuple or None
        Shape of one input sample, e.g. ``(d,)`` for a table with d features.
    output_shape : tuple or None
        Shape of one prediction: ``(1,)`` for class labels, ``(n_classes,)`` for class
        scores, ``(k,)`` for k regression targets.

    Subclasses implement :meth:`predict`; :meth:`fit` and :meth:`finetune` do nothing unless
    overridden.
    """

    def __init__(self, input_shape: Any, output_shape: Any):
        self.input_shape = input_shape
        self.output_shape = output_shape

    def predict(self, X: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(X)")

    def fit(self, X: Any, y: Any) -> None:
        pass

    def finetune(self, X: Any, y: Any) -> None:
        pass
