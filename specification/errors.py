"""Errors raised for input that cannot be a valid specification or package.

Every message says what is wrong and, where it helps, what was expected, so a person can
fix the input without reading the source.
"""


class SpecificationError(ValueError):
    """A statistical specification, spec file or input array that cannot be used."""


class SemanticSpecError(SpecificationError):
    """A semantic specification that breaks a rule; ``field`` names the offending key."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class PackageError(SpecificationError):
    """A learnware package (zip) that is unsafe or malformed; ``member`` names the file."""

    def __init__(self, message: str, member: str | None = None):
        super().__init__(f"{member}: {message}" if member else message)
        self.member = member
        self.reason = message
