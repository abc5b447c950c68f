"""The semantic specification: the tags and text that describe a learnware.

Wharf reads and writes the reference format (a dict of keys to ``{"Type", "Values"}``)::

    {"Data": {"Type": "Class", "Values": ["Table"]},
     "Scenario": {"Type": "Tag", "Values": ["Education", "Business"]},
     "Name": {"Type": "String", "Values": "digits classifier"},
     "Input": {"Dimension": 64, "Description": {"0": "pixel (0, 0)", ...}},
     ...}

A spec comes from three places, each with its own entry point:

- a developer's submission: :func:`check_semantic_spec` applies every rule of the reference
  checker (a missing ``License`` is an error here, never silently defaulted);
- a stored learnware's spec: ``SemanticSpec.from_dict(d)`` checks the structure only and fills
  in the legacy default licence, as the reference does when it reloads its database;
- a user's search requirement: ``SemanticSpec.from_dict(d, requirement=True)`` lets fields be
  empty and ``Class`` keys list several acceptable values, but every value given must come
  from the vocabulary.

:func:`check_text_lengths` bounds the ``Name`` and ``Description`` the market takes in (both
kinds of spec); what it already stores is never refused for their length.

:func:`tags_match` is the tag filter of semantic search.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from .errors import SemanticSpecError

DATA_TYPES: tuple[str, ...] = ("Table", "Image", "Text")
TASK_TYPES: tuple[str, ...] = (
    "Classification",
    "Regression",
    "Feature Extraction",
    "Segmentation",
    "Object Detection",
    "Text Generation",
    "Others",
)
#: What kind of model a learnware holds (the reference's 0.4 key, ``Type: Optional``): only a
#: text learnware may be a base, fine-tuned or PEFT model; every other is ``Others``.
MODEL_TYPES: tuple[str, ...] = ("Base Model", "Fine-tuned Model", "PEFT Model", "Others")
#: The ``Model`` a spec without one has (the reference's default for it).
DEFAULT_MODEL = "Others"
LIBRARIES: tuple[str, ...] = ("Scikit-learn", "PyTorch", "TensorFlow", "Others")
SCENARIOS: tuple[str, ...] = (
    "Business",
    "Financial",
    "Health",
    "Politics",
    "Computer",
    "Internet",
    "Traffic",
    "Nature",
    "Fashion",
    "Industry",
    "Agriculture",
    "Education",
    "Entertainment",
    "Architecture",
    "Others",
)
LICENSES: tuple[str, ...] = (
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "GPL-2.0",
    "GPL-3.0",
    "LGPL-2.1",
    "LGPL-3.0",
    "AGPL-3.0",
    "ECL-2.0",
    "AFL-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "Others",
)
#: Given to a stored spec written before ``License`` existed (the reference's DB reload does so).
DEFAULT_LICENSE = "Apache-2.0"

#: The longest ``Name`` and ``Description`` a submission or an edit may carry: the deployed
#: market's bounds (its minimums of 5 and 10 characters are not applied: the reference takes
#: any non-blank text, and a short name costs nothing).
MAX_NAME_CHARS = 50
MAX_DESCRIPTION_CHARS = 10_000
#: The longest ``Name`` and ``Description`` of a search requirement. The name is matched
#: against every tagged learnware's name and description, at a cost that grows faster than
#: the product of the two lengths, so it is kept short; a little longer than a learnware's
#: name, to let a user look for a phrase of a description.
MAX_REQUIREMENT_NAME_CHARS = 100
MAX_REQUIREMENT_DESCRIPTION_CHARS = 10_000

#: The allowed values of each ``Class``/``Tag`` key.
VOCABULARIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Data": DATA_TYPES,
        "Task": TASK_TYPES,
        "Model": MODEL_TYPES,
        "Library": LIBRARIES,
        "Scenario": SCENARIOS,
        "License": LICENSES,
    }
)
#: The ``Type`` each key must carry: ``Class`` holds one value, ``Tag`` one or more;
#: ``Optional`` (``Model``) holds one value, and a spec without it has :data:`DEFAULT_MODEL`.
FIELD_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "Data": "Class",
        "Task": "Class",
        "Model": "Optional",
        "Library": "Class",
        "Scenario": "Tag",
        "License": "Class",
        "Name": "String",
        "Description": "String",
    }
)
_IO_KEYS = ("Input", "Output")
_IO_FORM = '{"Dimension": n, "Description": {"0": "...", ...}}'
# Pydantic's words for a Python type, in the JSON terms a spec author uses.
_PYDANTIC_MESSAGES = {
    "tuple_type": "must be a list of strings",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
}


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ClassValues(_Part):
    """A ``Class`` key: one value for a learnware, any number of acceptable ones in a query."""

    Type: Literal["Class"]
    Values: tuple[StrictStr, ...]


class OptionalValues(_Part):
    """An ``Optional`` key (``Model``): one value, :data:`DEFAULT_MODEL` when not given."""

    Type: Literal["Optional"]
    Values: tuple[StrictStr, ...]


class TagValues(_Part):
    """A ``Tag`` key (``Scenario``): one or more values."""

    Type: Literal["Tag"]
    Values: tuple[StrictStr, ...]


class StringValue(_Part):
    """A ``String`` key (``Name``, ``Description``): free text."""

    Type: Literal["String"]
    Values: StrictStr


class FeatureDescription(_Part):
    """``Input`` or ``Output``: a dimension and descriptions of some of its indices.

    ``Description`` maps index strings (``"0"`` … ``str(Dimension - 1)``) to text and may be
    partial. For a classifier's ``Output`` the index is the class label.
    """

    Dimension: StrictInt
    Description: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class SemanticSpec(_Part):
    """A typed, immutable semantic specification; attribute names are the reference's keys.

    Build one with :meth:`from_dict` (or :func:`check_semantic_spec` for a submission) and
    write it back with :meth:`to_dict`. The lower-case properties are the plain-Python view.

    Examples
    --------
    >>> spec = SemanticSpec.from_dict(generate_semantic_spec(data_type="Table", scenarios="Nature"))
    >>> spec.data_type, spec.scenarios, spec.task_type
    ('Table', ('Nature',), None)
    """

    Data: ClassValues | None = None
    Task: ClassValues | None = None
    Model: OptionalValues | None = None
    Library: ClassValues | None = None
    Scenario: TagValues | None = None
    License: ClassValues | None = None
    Name: StringValue | None = None
    Description: StringValue | None = None
    Input: FeatureDescription | None = None
    Output: FeatureDescription | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, requirement: bool = False) -> SemanticSpec:
        """Parse the reference's dict format.

        Tolerated: absent keys (``Input``/``Output`` in particular, and ``{}`` for them, which
        the deployed market stores when they do not apply), a ``Class``/``Tag`` value given as
        a bare string, integer ``Description`` keys, and unknown keys (dropped). Wrong JSON
        types raise :class:`SemanticSpecError` naming the field.

        With ``requirement=False`` (a stored learnware spec) a missing ``License`` becomes
        ``["Apache-2.0"]``; nothing else is checked. With ``requirement=True`` (a search
        query) no default is added, since an absent key means "any", and the result has
        passed :meth:`validate_requirement`.
        """
        spec = cls._parse(d, legacy_license=not requirement, default_model=not requirement)
        return spec.validate_requirement() if requirement else spec

    @classmethod
    def _parse(
        cls, d: Mapping[str, Any], *, legacy_license: bool, default_model: bool = False
    ) -> SemanticSpec:
        try:
            normal = _normalise(d, legacy_license=legacy_license, default_model=default_model)
            return cls.model_validate(normal)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "semantic_spec"
            if error["type"] == "missing":
                raise SemanticSpecError(field, "is required") from None
            message = _PYDANTIC_MESSAGES.get(error["type"]) or error["msg"].replace(
                "Input should be", "must be", 1
            )
            raise SemanticSpecError(
                field, f"{message}, got {reprlib.repr(error['input'])}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The reference's dict format: lists for ``Class``/``Tag``, strings for ``String``."""
        return self.model_dump(mode="json", exclude_none=True)

    def validate_submission(self) -> SemanticSpec:
        """Apply the reference checker's rules for a submitted learnware; return ``self``.

        Every key of :data:`FIELD_TYPES` is required: a ``Class`` holds exactly one allowed
        value, a ``Tag`` at least one, all allowed, and ``Name``/``Description`` are not blank.
        ``Data`` = Table requires ``Input``; ``Task`` = Classification or Regression requires
        ``Output``, with ``Dimension`` > 1 for Classification and ≥ 1 for Regression. An
        ``Input``/``Output`` is checked whenever present (a stricter rule than the reference,
        which skips one it does not require): ``Dimension`` ≥ 1 and every ``Description`` key
        an index string in [0, Dimension).
        """
        for key, kind in FIELD_TYPES.items():
            entry = getattr(self, key)
            if entry is None:
                if kind == "Optional":
                    continue
                raise SemanticSpecError(key, f"is required: {_expected(key)}")
            if kind == "String":
                if not entry.Values.strip():
                    raise SemanticSpecError(f"{key}.Values", "must be a non-empty string")
                continue
            values = entry.Values
            if kind in ("Class", "Optional") and len(values) != 1:
                raise SemanticSpecError(
                    f"{key}.Values",
                    f"must hold exactly one value, got {list(values)}; {_allowed(key)}",
                )
            if kind == "Tag" and not values:
                raise SemanticSpecError(
                    f"{key}.Values", f"must hold at least one value; {_allowed(key)}"
                )
            _check_vocabulary(key, values)
        task = self.task_type
        if self.data_type != "Text":
            if task == "Text Generation":
                raise SemanticSpecError(
                    "Task.Values", f"Text Generation needs Data Text, not {self.data_type}"
                )
            if self.model_type not in (None, DEFAULT_MODEL):
                raise SemanticSpecError(
                    "Model.Values",
                    f"{self.model_type} is for Text learnwares; a {self.data_type} learnware's "
                    f"Model is {DEFAULT_MODEL}",
                )
        self._check_features(
            "Input", required_by="Data is Table" if self.data_type == "Table" else None
        )
        self._check_features(
            "Output",
            required_by=f"Task is {task}" if task in ("Classification", "Regression") else None,
            min_dimension=2 if task == "Classification" else 1,
        )
        return self

    def validate_requirement(self) -> SemanticSpec:
        """Check a search requirement; return ``self``.

        Fields may be absent or empty and a ``Class`` may list several acceptable values, but
        every value must be in its vocabulary; a given ``Input``/``Output`` must be well formed.
        """
        for key in VOCABULARIES:
            _check_vocabulary(key, self.values(key))
        for key in _IO_KEYS:
            self._check_features(key, required_by=None)
        return self

    def _check_features(self, key: str, *, required_by: str | None, min_dimension: int = 1) -> None:
        features: FeatureDescription | None = getattr(self, key)
        if features is None:
            if required_by is not None:
                raise SemanticSpecError(key, f"is required when {required_by}: {_IO_FORM}")
            return
        dimension = features.Dimension
        if dimension < min_dimension:
            why = " for Classification (the number of classes)" if min_dimension > 1 else ""
            raise SemanticSpecError(
                f"{key}.Dimension", f"must be at least {min_dimension}{why}, got {dimension}"
            )
        for index in features.Description:
            # Canonical decimal only, so "7" and "07" cannot both describe index 7.
            if not (index.isascii() and index.isdigit() and str(int(index)) == index) or (
                int(index) >= dimension
            ):
                raise SemanticSpecError(
                    f"{key}.Description.{index}",
                    f"keys must be index strings '0' … '{dimension - 1}' "
                    f"(Dimension is {dimension}), got {index!r}",
                )

    def values(self, key: str) -> tuple[str, ...]:
        """The values of a ``Class``/``Tag`` key; ``()`` when absent."""
        if key not in VOCABULARIES:
            raise KeyError(f"{key!r} is not a Class or Tag key; use one of {list(VOCABULARIES)}")
        entry = getattr(self, key)
        return entry.Values if entry is not None else ()

    def _single(self, key: str) -> str | None:
        values = self.values(key)
        return values[0] if len(values) == 1 else None

    @property
    def data_type(self) -> str | None:
        """The one ``Data`` value; ``None`` when absent, empty or (in a query) several."""
        return self._single("Data")

    @property
    def task_type(self) -> str | None:
        """The one ``Task`` value; ``None`` when absent, empty or (in a query) several."""
        return self._single("Task")

    @property
    def model_type(self) -> str | None:
        """The one ``Model`` value; ``None`` when absent, empty or (in a query) several."""
        return self._single("Model")

    @property
    def library(self) -> str | None:
        """The one ``Library`` value; ``None`` when absent, empty or (in a query) several."""
        return self._single("Library")

    @property
    def license(self) -> str | None:
        """The one ``License`` value; ``None`` when absent, empty or (in a query) several."""
        return self._single("License")

    @property
    def scenarios(self) -> tuple[str, ...]:
        """The ``Scenario`` tags; ``()`` when absent."""
        return self.values("Scenario")

    @property
    def name(self) -> str | None:
        """``Name`` text; ``None`` when absent or empty."""
        return (self.Name.Values or None) if self.Name is not None else None

    @property
    def description(self) -> str | None:
        """``Description`` text; ``None`` when absent or empty."""
        return (self.Description.Values or None) if self.Description is not None else None

    @property
    def input_dim(self) -> int | None:
        return self.Input.Dimension if self.Input is not None else None

    @property
    def output_dim(self) -> int | None:
        return self.Output.Dimension if self.Output is not None else None


def check_semantic_spec(spec: Mapping[str, Any] | SemanticSpec) -> SemanticSpec:
    """Parse (if needed) and check a submitted spec; raise :class:`SemanticSpecError` if bad.

    Unlike :meth:`SemanticSpec.from_dict`, no legacy default is filled in: a submission
    without ``License`` is refused.
    """
    if not isinstance(spec, SemanticSpec):
        spec = SemanticSpec._parse(spec, legacy_license=False, default_model=True)
    elif spec.Model is None:
        spec = spec.model_copy(update={"Model": _default_model()})
    return spec.validate_submission()


def check_text_lengths(spec: SemanticSpec, *, requirement: bool = False) -> SemanticSpec:
    """Refuse a ``Name`` or ``Description`` over the market's bounds; return ``spec``.

    Applied to the text the market receives (a submission, an edit, a search requirement),
    never to what it already stores: learnwares accepted before the bounds existed keep being
    listed, checked and found, and the search compares only the first characters of their
    text (:func:`market.search.fuzzy_name_matches`).
    """
    bounds = (
        (MAX_REQUIREMENT_NAME_CHARS, MAX_REQUIREMENT_DESCRIPTION_CHARS)
        if requirement
        else (MAX_NAME_CHARS, MAX_DESCRIPTION_CHARS)
    )
    for key, bound in zip(("Name", "Description"), bounds, strict=True):
        entry = getattr(spec, key)
        if entry is not None and len(entry.Values) > bound:
            what = "a search requirement's" if requirement else "a learnware's"
            raise SemanticSpecError(
                f"{key}.Values",
                f"is {len(entry.Values):,} characters long; {what} {key} may have at most "
                f"{bound:,}",
            )
    return spec


def tags_match(requirement: SemanticSpec, learnware: SemanticSpec) -> bool:
    """Whether a learnware passes a requirement's tag filter (reference §3.3).

    Only ``Class``/``Tag`` keys the requirement gives non-empty take part. For each, the
    learnware must have a value (absent counts as empty); a ``Class`` value must be one of
    the requirement's (which are alternatives), and ``Tag`` sets must share a value. A
    learnware without ``Model`` has :data:`DEFAULT_MODEL`. Name,
    Description, Input and Output are not looked at here.
    """
    for key, kind in FIELD_TYPES.items():
        if kind == "String":
            continue
        wanted = set(requirement.values(key))
        if not wanted:
            continue
        offered = set(learnware.values(key))
        if kind == "Optional" and not offered:
            offered = {DEFAULT_MODEL}
        if not offered:
            return False
        if kind in ("Class", "Optional") and not offered <= wanted:
            return False
        if kind == "Tag" and offered.isdisjoint(wanted):
            return False
    return True


def generate_semantic_spec(
    name: str | None = None,
    description: str | None = None,
    data_type: str | Iterable[str] | None = None,
    task_type: str | Iterable[str] | None = None,
    library_type: str | Iterable[str] | None = None,
    scenarios: str | Iterable[str] | None = None,
    license: str | Iterable[str] | None = None,
    input_description: Mapping[str, Any] | None = None,
    output_description: Mapping[str, Any] | None = None,
    model_type: str | Iterable[str] | None = None,
) -> dict[str, Any]:
    """Build a spec dict in the reference format, as the reference's function of this name.

    ``None`` gives an empty list (or ``""`` for name/description) and a string becomes a
    one-element list; ``input_description``/``output_description`` are whole
    ``{"Dimension": n, "Description": {...}}`` entries, added only when given, and so is
    ``model_type`` (a submission without it is a ``Model: Others``). The structure
    is checked (:class:`SemanticSpecError` on wrong types) but not the vocabulary: pass the
    result to :func:`check_semantic_spec` or ``SemanticSpec.from_dict(..., requirement=True)``.
    """
    d: dict[str, Any] = {
        "Data": {"Type": "Class", "Values": _as_list(data_type)},
        "Task": {"Type": "Class", "Values": _as_list(task_type)},
        "Library": {"Type": "Class", "Values": _as_list(library_type)},
        "Scenario": {"Type": "Tag", "Values": _as_list(scenarios)},
        "License": {"Type": "Class", "Values": _as_list(license)},
        "Name": {"Type": "String", "Values": "" if name is None else name},
        "Description": {"Type": "String", "Values": "" if description is None else description},
    }
    if model_type is not None:
        d["Model"] = {"Type": "Optional", "Values": _as_list(model_type)}
    if input_description is not None:
        d["Input"] = input_description
    if output_description is not None:
        d["Output"] = output_description
    return SemanticSpec._parse(d, legacy_license=False).to_dict()


def _as_list(value: str | Iterable[str] | None) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _default_model() -> OptionalValues:
    return OptionalValues(Type="Optional", Values=(DEFAULT_MODEL,))


def _normalise(
    d: Mapping[str, Any], *, legacy_license: bool, default_model: bool = False
) -> dict[str, Any]:
    """Bring the tolerated variants to the canonical shape and check each key's ``Type``."""
    if not isinstance(d, Mapping):
        raise SemanticSpecError(
            "semantic_spec", f"must be a mapping of keys to entries, got {type(d).__name__}"
        )
    out: dict[str, Any] = {}
    for key, kind in FIELD_TYPES.items():
        entry = d.get(key)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise SemanticSpecError(key, f"must be a mapping {_expected(key)}, got {entry!r}")
        if "Type" in entry and entry["Type"] != kind:
            raise SemanticSpecError(
                f"{key}.Type", f"must be {kind!r} ({_expected(key)}), got {entry['Type']!r}"
            )
        entry = dict(entry)
        if kind != "String" and isinstance(entry.get("Values"), str):
            entry["Values"] = [entry["Values"]] if entry["Values"] else []
        out[key] = entry
    for key in _IO_KEYS:
        entry = d.get(key)
        if entry is None or (isinstance(entry, Mapping) and not entry):
            continue
        if isinstance(entry, Mapping) and isinstance(entry.get("Description"), Mapping):
            entry = dict(entry)
            entry["Description"] = {
                str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v
                for k, v in entry["Description"].items()
            }
        out[key] = entry
    if legacy_license and "License" not in out:
        out["License"] = {"Type": "Class", "Values": [DEFAULT_LICENSE]}
    if default_model and not (out.get("Model") or {}).get("Values"):
        out["Model"] = {"Type": "Optional", "Values": [DEFAULT_MODEL]}
    return out


def _check_vocabulary(key: str, values: Iterable[str]) -> None:
    for value in values:
        if value not in VOCABULARIES[key]:
            raise SemanticSpecError(f"{key}.Values", f"{value!r} is not allowed; {_allowed(key)}")


def _allowed(key: str) -> str:
    return "allowed values: " + ", ".join(VOCABULARIES[key])


def _expected(key: str) -> str:
    kind = FIELD_TYPES[key]
    if kind == "String":
        return '{"Type": "String", "Values": "text"}'
    return f'{{"Type": "{kind}", "Values": [...]}} with {_allowed(key)}'
