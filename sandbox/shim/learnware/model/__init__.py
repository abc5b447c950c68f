"""``learnware.model`` of the compatibility shim: the model interface only."""

from .base import BaseModel

__all__ = ["BaseModel"]
