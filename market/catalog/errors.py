"""Errors the catalog raises for requests it refuses; the API maps each to one status code."""

from __future__ import annotations


class CatalogError(Exception):
    """Base class of the catalog's own errors."""


class DuplicateContent(CatalogError):
    """A package whose sha256 is already in the catalog (HTTP 409).

    ``existing_id`` is the integer id of the learnware that holds that content.
    """

    def __init__(self, existing_id: int):
        super().__init__(f"identical content is already stored as learnware {existing_id:08d}")
        self.existing_id = existing_id


class NameTaken(CatalogError):
    """A user name that another user already has (HTTP 409)."""

    def __init__(self, name: str):
        super().__init__(f"the user name {name!r} is taken")
        self.name = name


class EmailTaken(CatalogError):
    """An email that another user already has (HTTP 409)."""

    def __init__(self, email: str):
        super().__init__(f"the email {email!r} is taken")
        self.email = email


class LearnwareNotFound(CatalogError, LookupError):
    """An operation named a learnware id that does not exist (HTTP 404)."""

    def __init__(self, learnware_id: int):
        super().__init__(f"no learnware {learnware_id:08d}")
        self.learnware_id = learnware_id


class CatalogUnavailable(CatalogError):
    """The database cannot be reached or does not answer (for readiness probes)."""
