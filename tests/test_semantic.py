"""Tests for specification.semantic: parsing, the submission and requirement rules, tag matching."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wharf.specification.errors import SemanticSpecError
from wharf.specification.semantic import (
    DATA_TYPES,
    FIELD_TYPES,
    LIBRARIES,
    LICENSES,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    MAX_REQUIREMENT_DESCRIPTION_CHARS,
    MAX_REQUIREMENT_NAME_CHARS,
    MODEL_TYPES,
    SCENARIOS,
    TASK_TYPES,
    VOCABULARIES,
    SemanticSpec,
    check_semantic_spec,
    check_text_lengths,
    generate_semantic_spec,
    tags_match,
)


def digits_spec() -> dict[str, Any]:
    """A full submission like the reference workflow test's: 8x8 digit images as 64 features."""
    return {
        "Data": {"Type": "Class", "Values": ["Table"]},
        "Task": {"Type": "Class", "Values": ["Classification"]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": ["Education"]},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": "digits-svc"},
        "Description": {"Type": "String", "Values": "Linear SVC trained on 8x8 digit images."},
        "Input": {
            "Dimension": 64,
            "Description": {
                str(i): f"ink level at row {i // 8}, column {i % 8}" for i in range(64)
            },
        },
        "Output": {
            "Dimension": 10,
            "Description": {str(i): f"score of digit {i}" for i in range(10)},
        },
    }


def spec_of(**changes: Any) -> SemanticSpec:
    """A requirement-mode spec from keyword shortcuts, e.g. ``spec_of(Task=["Regression"])``."""
    d: dict[str, Any] = {}
    for key, values in changes.items():
        if FIELD_TYPES.get(key) == "String":
            d[key] = {"Type": "String", "Values": values}
        elif key in FIELD_TYPES:
            d[key] = {"Type": FIELD_TYPES[key], "Values": values}
        else:
            d[key] = values
    return SemanticSpec.from_dict(d, requirement=True)


# --- vocabularies and parsing ---------------------------------------------------------------


def test_vocabularies_are_the_reference_lists():
    assert DATA_TYPES == ("Table", "Image", "Text")
    assert TASK_TYPES == (
        "Classification",
        "Regression",
        "Feature Extraction",
        "Segmentation",
        "Object Detection",
        "Text Generation",
        "Others",
    )
    assert MODEL_TYPES == ("Base Model", "Fine-tuned Model", "PEFT Model", "Others")
    assert LIBRARIES == ("Scikit-learn", "PyTorch", "TensorFlow", "Others")
    assert len(SCENARIOS) == 15 and {"Business", "Architecture", "Others"} <= set(SCENARIOS)
    assert len(LICENSES) == 14 and {"MIT", "Apache-2.0", "CC-BY-SA-4.0"} <= set(LICENSES)
    assert dict(VOCABULARIES) == {
        "Data": DATA_TYPES,
        "Task": TASK_TYPES,
        "Model": MODEL_TYPES,
        "Library": LIBRARIES,
        "Scenario": SCENARIOS,
        "License": LICENSES,
    }


def test_full_spec_passes_and_round_trips_exactly():
    d = digits_spec()
    spec = check_semantic_spec(d)
    d["Model"] = {"Type": "Optional", "Values": ["Others"]}  # the 0.4 default, filled in
    assert spec.to_dict() == d
    assert json.loads(json.dumps(spec.to_dict())) == d
    assert SemanticSpec.from_dict(spec.to_dict()) == spec


def test_accessors():
    spec = SemanticSpec.from_dict(digits_spec())
    assert spec.data_type == "Table"
    assert spec.task_type == "Classification"
    assert spec.library == "Scikit-learn"
    assert spec.license == "MIT"
    assert spec.scenarios == ("Education",)
    assert spec.name == "digits-svc"
    assert spec.description.startswith("Linear SVC")
    assert (spec.input_dim, spec.output_dim) == (64, 10)
    assert spec.Input.Description["63"] == "ink level at row 7, column 7"

    empty = SemanticSpec.from_dict({}, requirement=True)
    assert (empty.data_type, empty.task_type, empty.library, empty.license) == (None,) * 4
    assert (empty.name, empty.description, empty.input_dim, empty.output_dim) == (None,) * 4
    assert empty.scenarios == ()


def test_several_values_give_no_single_accessor_value():
    spec = spec_of(Task=["Classification", "Regression"])
    assert spec.task_type is None
    assert spec.values("Task") == ("Classification", "Regression")
    with pytest.raises(KeyError):
        spec.values("Name")


def test_legacy_spec_without_license_gets_the_default():
    d = digits_spec()
    del d["License"]
    assert SemanticSpec.from_dict(d).license == "Apache-2.0"
    # ... but a requirement without License means "any licence", and a submission must say.
    assert SemanticSpec.from_dict(d, requirement=True).License is None
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(d)
    assert info.value.field == "License"
    assert "MIT" in str(info.value)


def test_tolerated_variants():
    d = digits_spec()
    d["Scenario"]["Values"] = "Education"  # a single string
    d["Data"]["Values"] = "Table"
    d["learnware_id"] = {"Values": "00000001"}  # unknown keys are dropped
    d["Extra"] = [1, 2, 3]
    d["Input"]["Description"] = {i: "x" for i in range(3)}  # integer keys
    spec = check_semantic_spec(d)
    assert spec.scenarios == ("Education",)
    assert spec.data_type == "Table"
    assert spec.Input.Description == {"0": "x", "1": "x", "2": "x"}
    out = spec.to_dict()
    assert out["Scenario"]["Values"] == ["Education"]
    assert "learnware_id" not in out and "Extra" not in out


def test_absent_or_empty_input_output_are_tolerated():
    d = digits_spec()
    d["Data"]["Values"] = ["Image"]
    d["Task"]["Values"] = ["Segmentation"]
    del d["Input"]
    d["Output"] = {}  # the deployed market stores {} when Output does not apply
    spec = check_semantic_spec(d)
    assert spec.Input is None and spec.Output is None
    assert "Input" not in spec.to_dict() and "Output" not in spec.to_dict()


def test_partial_input_description_is_allowed():
    d = digits_spec()
    d["Input"]["Description"] = {"0": "first", "63": "last"}
    assert check_semantic_spec(d).Input.Description == {"0": "first", "63": "last"}
    d["Input"] = {"Dimension": 64}
    assert check_semantic_spec(d).Input.Description == {}


def set_path(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``d`` with the dotted ``path`` set (``DELETE`` removes it)."""
    d = copy.deepcopy(d)
    *parents, last = path.split(".")
    target = d
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return d


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("Data", "Table", "Data"),
        ("Data", ["Table"], "Data"),
        ("Data.Type", DELETE, "Data.Type"),
        ("Data.Values", DELETE, "Data.Values"),
        ("Data.Values", 5, "Data.Values"),
        ("Data.Values", {"Table": 1}, "Data.Values"),
        ("Data.Values", [1], "Data.Values.0"),
        ("Data.Values", [None], "Data.Values.0"),
        ("Name.Values", ["digits"], "Name.Values"),
        ("Name.Values", 7, "Name.Values"),
        ("Input", [64], "Input"),
        ("Input", "64", "Input"),
        ("Input.Dimension", "64", "Input.Dimension"),
        ("Input.Dimension", 64.0, "Input.Dimension"),
        ("Input.Dimension", True, "Input.Dimension"),
        ("Input.Dimension", DELETE, "Input.Dimension"),
        ("Input.Description", ["a", "b"], "Input.Description"),
        ("Input.Description.3", 3, "Input.Description.3"),
        ("Output.Description.9", None, "Output.Description.9"),
    ],
)
def test_structural_errors_name_the_field(path, value, field):
    broken = set_path(digits_spec(), path, value)
    for parse in (
        SemanticSpec.from_dict,
        check_semantic_spec,
        lambda d: SemanticSpec.from_dict(d, requirement=True),
    ):
        with pytest.raises(SemanticSpecError) as info:
            parse(broken)
        assert info.value.field == field


@pytest.mark.parametrize("spec", [None, [], "Table", 42])
def test_a_spec_that_is_not_a_mapping(spec):
    with pytest.raises(SemanticSpecError) as info:
        SemanticSpec.from_dict(spec)
    assert info.value.field == "semantic_spec"


@pytest.mark.parametrize(
    ("path", "value", "field", "hint"),
    [
        ("Data", DELETE, "Data", "Table, Image, Text"),
        ("Task", DELETE, "Task", "Classification"),
        ("Library", DELETE, "Library", "Scikit-learn"),
        ("Scenario", DELETE, "Scenario", "Education"),
        ("Name", DELETE, "Name", "String"),
        ("Description", DELETE, "Description", "String"),
        ("Data.Values", [], "Data.Values", "exactly one"),
        ("Data.Values", ["Table", "Image"], "Data.Values", "exactly one"),
        ("Data.Values", ["Tabular"], "Data.Values", "Table, Image, Text"),
        ("Data.Values", ["table"], "Data.Values", "'table' is not allowed"),
        ("Task.Values", ["Clustering"], "Task.Values", "Object Detection"),
        ("Library.Values", ["JAX"], "Library.Values", "PyTorch"),
        ("License.Values", ["WTFPL"], "License.Values", "Apache-2.0"),
        ("License.Values", ["MIT", "GPL-3.0"], "License.Values", "exactly one"),
        ("Scenario.Values", [], "Scenario.Values", "at least one"),
        ("Scenario.Values", ["Education", "Space"], "Scenario.Values", "'Space'"),
        ("Name.Values", "", "Name.Values", "non-empty"),
        ("Name.Values", "   ", "Name.Values", "non-empty"),
        ("Description.Values", "", "Description.Values", "non-empty"),
        ("Data.Type", "Tag", "Data.Type", "'Class'"),
        ("Scenario.Type", "Class", "Scenario.Type", "'Tag'"),
        ("Name.Type", "Class", "Name.Type", "'String'"),
        ("License.Type", "String", "License.Type", "'Class'"),
        ("Input", DELETE, "Input", "Data is Table"),
        ("Input.Dimension", 0, "Input.Dimension", "at least 1"),
        ("Input.Dimension", -3, "Input.Dimension", "at least 1"),
        ("Input.Description", {"64": "x"}, "Input.Description.64", "'0' … '63'"),
        ("Input.Description", {"-1": "x"}, "Input.Description.-1", "'0' … '63'"),
        ("Input.Description", {"07": "x"}, "Input.Description.07", "'0' … '63'"),
        ("Input.Description", {"x": "x"}, "Input.Description.x", "'0' … '63'"),
        ("Input.Description", {" 3": "x"}, "Input.Description. 3", "'0' … '63'"),
        ("Input.Description", {"٣": "x"}, "Input.Description.٣", "'0' … '63'"),
        ("Output", DELETE, "Output", "Task is Classification"),
        ("Output.Dimension", 1, "Output.Dimension", "number of classes"),
        ("Output.Description", {"10": "x"}, "Output.Description.10", "'0' … '9'"),
    ],
)
def test_submission_rules(path, value, field, hint):
    broken = set_path(digits_spec(), path, value)
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(broken)
    assert info.value.field == field
    assert hint in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


def test_regression_output_may_have_dimension_one():
    d = set_path(digits_spec(), "Task.Values", ["Regression"])
    d["Output"] = {"Dimension": 1, "Description": {"0": "house price"}}
    assert check_semantic_spec(d).output_dim == 1
    d["Output"]["Dimension"] = 0
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(d)
    assert info.value.field == "Output.Dimension"
    del d["Output"]
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(d)
    assert info.value.field == "Output"


def test_input_output_only_required_where_the_reference_requires_them():
    d = digits_spec()
    d["Data"]["Values"] = ["Text"]
    d["Task"]["Values"] = ["Feature Extraction"]
    del d["Input"], d["Output"]
    assert check_semantic_spec(d).input_dim is None
    # A present one is checked all the same.
    d["Input"] = {"Dimension": 3, "Description": {"3": "x"}}
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(d)
    assert info.value.field == "Input.Description.3"


@pytest.mark.parametrize(
    ("key", "bound", "requirement"),
    [
        ("Name", MAX_NAME_CHARS, False),
        ("Description", MAX_DESCRIPTION_CHARS, False),
        ("Name", MAX_REQUIREMENT_NAME_CHARS, True),
        ("Description", MAX_REQUIREMENT_DESCRIPTION_CHARS, True),
    ],
)
def test_names_and_descriptions_the_market_takes_in_are_bounded(key, bound, requirement):
    d = digits_spec()
    d[key]["Values"] = "x" * bound
    spec = SemanticSpec.from_dict(d, requirement=requirement)
    assert check_text_lengths(spec, requirement=requirement) is spec
    d[key]["Values"] = "x" * (bound + 1)
    spec = SemanticSpec.from_dict(d, requirement=requirement)
    with pytest.raises(SemanticSpecError) as info:
        check_text_lengths(spec, requirement=requirement)
    assert info.value.field == f"{key}.Values"
    assert f"may have at most {bound:,}" in info.value.reason
    # What the market stores is never refused for its length: only new text is bounded.
    if not requirement:
        assert check_semantic_spec(d).to_dict()[key]["Values"] == "x" * (bound + 1)


def test_check_accepts_a_parsed_spec():
    spec = SemanticSpec.from_dict(digits_spec())
    assert check_semantic_spec(spec) is spec
    assert spec.validate_submission() is spec


# --- requirements ---------------------------------------------------------------------------


def test_requirement_fields_may_be_empty_or_absent():
    empty = generate_semantic_spec()
    spec = SemanticSpec.from_dict(empty, requirement=True)
    assert spec.values("Data") == () and spec.name is None
    assert SemanticSpec.from_dict({}, requirement=True).to_dict() == {}
    with pytest.raises(SemanticSpecError) as info:
        check_semantic_spec(empty)  # the same dict is not a valid submission
    assert info.value.field == "Data.Values"


def test_requirement_class_may_list_alternatives():
    spec = spec_of(Data=["Table", "Image"], License=["MIT", "Apache-2.0"], Name="")
    assert spec.values("Data") == ("Table", "Image")
    assert spec.validate_requirement() is spec


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"Data": ["Table", "Tabular"]}, "Data.Values"),
        ({"Task": ["classification"]}, "Task.Values"),
        ({"Scenario": ["Space"]}, "Scenario.Values"),
        ({"License": ["Proprietary"]}, "License.Values"),
        ({"Library": "Keras"}, "Library.Values"),
        ({"Input": {"Dimension": 0}}, "Input.Dimension"),
        ({"Input": {"Dimension": 4, "Description": {"4": "x"}}}, "Input.Description.4"),
        ({"Output": {"Dimension": 2, "Description": {"a": "x"}}}, "Output.Description.a"),
    ],
)
def test_requirement_values_must_be_in_the_vocabulary(changes, field):
    with pytest.raises(SemanticSpecError) as info:
        spec_of(**changes)
    assert info.value.field == field


# --- generate_semantic_spec -----------------------------------------------------------------


def test_generate_semantic_spec_builds_the_reference_format():
    d = digits_spec()
    generated = generate_semantic_spec(
        name="digits-svc",
        description="Linear SVC trained on 8x8 digit images.",
        data_type="Table",
        task_type="Classification",
        library_type="Scikit-learn",
        scenarios="Education",
        license="MIT",
        input_description=d["Input"],
        output_description=d["Output"],
    )
    assert generated == d
    d["Model"] = {"Type": "Optional", "Values": ["Others"]}  # a submission's default
    assert check_semantic_spec(generated).to_dict() == d


def test_generate_semantic_spec_defaults():
    assert generate_semantic_spec() == {
        "Data": {"Type": "Class", "Values": []},
        "Task": {"Type": "Class", "Values": []},
        "Library": {"Type": "Class", "Values": []},
        "Scenario": {"Type": "Tag", "Values": []},
        "License": {"Type": "Class", "Values": []},
        "Name": {"Type": "String", "Values": ""},
        "Description": {"Type": "String", "Values": ""},
    }
    several = generate_semantic_spec(scenarios=["Nature", "Health"], task_type=("Regression",))
    assert several["Scenario"]["Values"] == ["Nature", "Health"]
    assert several["Task"]["Values"] == ["Regression"]


def test_generate_semantic_spec_checks_structure():
    with pytest.raises(SemanticSpecError) as info:
        generate_semantic_spec(input_description={"Dimension": "five"})
    assert info.value.field == "Input.Dimension"


# --- tag matching ---------------------------------------------------------------------------


LEARNWARE = SemanticSpec.from_dict(digits_spec())


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ({}, True),
        ({"Data": [], "Task": [], "Scenario": [], "Name": ""}, True),
        ({"Data": ["Table"]}, True),
        ({"Data": ["Image"]}, False),
        ({"Task": ["Regression", "Classification"]}, True),
        ({"Task": ["Regression", "Segmentation"]}, False),
        ({"Library": ["Scikit-learn"], "License": ["MIT"]}, True),
        ({"Library": ["Scikit-learn"], "License": ["GPL-3.0"]}, False),
        ({"Scenario": ["Education"]}, True),
        ({"Scenario": ["Business", "Education"]}, True),
        ({"Scenario": ["Business", "Health"]}, False),
        # Name, Description, Input and Output play no part in tag matching.
        ({"Data": ["Table"], "Name": "something else entirely"}, True),
        ({"Description": "weather forecasts"}, True),
        ({"Input": {"Dimension": 3}, "Output": {"Dimension": 7}}, True),
    ],
)
def test_tags_match(requirement, expected):
    assert tags_match(spec_of(**requirement), LEARNWARE) is expected


def test_tags_match_learnware_without_a_value_fails_a_given_key():
    no_library = SemanticSpec.from_dict(set_path(digits_spec(), "Library.Values", []))
    absent_scenario = SemanticSpec.from_dict(set_path(digits_spec(), "Scenario", DELETE))
    assert tags_match(spec_of(Library=["Scikit-learn"]), no_library) is False
    assert tags_match(spec_of(Scenario=["Education"]), absent_scenario) is False
    # Keys the user leaves empty do not care.
    assert tags_match(spec_of(Data=["Table"]), no_library) is True
    assert tags_match(spec_of(Data=["Table"]), absent_scenario) is True


def test_tags_match_legacy_learnware_license_default():
    legacy = SemanticSpec.from_dict(set_path(digits_spec(), "License", DELETE))
    assert tags_match(spec_of(License=["Apache-2.0"]), legacy) is True
    assert tags_match(spec_of(License=["MIT"]), legacy) is False


# --- properties -----------------------------------------------------------------------------

_TEXT = st.text(min_size=1, max_size=40).filter(str.strip)


@st.composite
def features(draw: st.DrawFn, min_dimension: int) -> dict[str, Any]:
    dimension = draw(st.integers(min_dimension, 300))
    indices = draw(st.sets(st.integers(0, dimension - 1), max_size=12))
    return {
        "Dimension": dimension,
        "Description": {str(i): draw(st.text(max_size=30)) for i in sorted(indices)},
    }


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.sampled_from(DATA_TYPES))
    tasks = TASK_TYPES if data == "Text" else tuple(t for t in TASK_TYPES if t != "Text Generation")
    task = draw(st.sampled_from(tasks))
    model = draw(st.sampled_from(MODEL_TYPES)) if data == "Text" else "Others"
    d: dict[str, Any] = {
        "Data": {"Type": "Class", "Values": [data]},
        "Task": {"Type": "Class", "Values": [task]},
        "Model": {"Type": "Optional", "Values": [model]},
        "Library": {"Type": "Class", "Values": [draw(st.sampled_from(LIBRARIES))]},
        "Scenario": {
            "Type": "Tag",
            "Values": draw(
                st.lists(st.sampled_from(SCENARIOS), min_size=1, max_size=5, unique=True)
            ),
        },
        "License": {"Type": "Class", "Values": [draw(st.sampled_from(LICENSES))]},
        "Name": {"Type": "String", "Values": draw(_TEXT)},
        "Description": {"Type": "String", "Values": draw(_TEXT)},
    }
    if data == "Table" or draw(st.booleans()):
        d["Input"] = draw(features(1))
    if task in ("Classification", "Regression") or draw(st.booleans()):
        d["Output"] = draw(features(2 if task == "Classification" else 1))
    return d


@settings(max_examples=200)
@given(valid_specs())
def test_valid_specs_pass_and_round_trip(d):
    spec = check_semantic_spec(d)
    assert spec.to_dict() == d
    assert SemanticSpec.from_dict(json.loads(json.dumps(d))).to_dict() == d
    assert tags_match(spec, spec)


@settings(max_examples=200)
@given(valid_specs(), st.data())
def test_a_requirement_built_from_a_learnware_matches_it(d, data):
    learnware = check_semantic_spec(d)
    keys = data.draw(st.sets(st.sampled_from(list(VOCABULARIES))))
    requirement: dict[str, Any] = {}
    for key in keys:
        own = list(learnware.values(key))
        extra = data.draw(st.lists(st.sampled_from(VOCABULARIES[key]), max_size=2))
        requirement[key] = {"Type": FIELD_TYPES[key], "Values": own + extra}
    assert tags_match(SemanticSpec.from_dict(requirement, requirement=True), learnware)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["Type", "Values", "Dimension", "Description", "0", "1"])
            | st.text(max_size=3),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from([*FIELD_TYPES, "Input", "Output", "Other"]),
        _json,
        max_size=6,
    )
)
def test_arbitrary_input_fails_only_with_semantic_spec_error(d):
    for parse in (
        SemanticSpec.from_dict,
        check_semantic_spec,
        lambda x: SemanticSpec.from_dict(x, requirement=True),
    ):
        try:
            spec = parse(d)
        except SemanticSpecError as exc:
            assert exc.field
        else:
            assert parse(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_0_4_vocabulary_is_accepted_with_its_rules():
    text = {
        **digits_spec(),
        "Data": {"Type": "Class", "Values": ["Text"]},
        "Task": {"Type": "Class", "Values": ["Text Generation"]},
        "Model": {"Type": "Optional", "Values": ["PEFT Model"]},
    }
    del text["Input"], text["Output"]
    spec = check_semantic_spec(text)
    assert (spec.task_type, spec.model_type) == ("Text Generation", "PEFT Model")
    assert spec.to_dict()["Model"] == {"Type": "Optional", "Values": ["PEFT Model"]}
    with pytest.raises(SemanticSpecError, match="Text Generation needs Data Text"):
        check_semantic_spec({**text, "Data": {"Type": "Class", "Values": ["Image"]}})
    base = {**digits_spec(), "Model": {"Type": "Optional", "Values": ["Base Model"]}}
    with pytest.raises(SemanticSpecError, match=r"Model\.Values: Base Model is for Text"):
        check_semantic_spec(base)
    with pytest.raises(SemanticSpecError, match=r"Model\.Type"):
        check_semantic_spec({**digits_spec(), "Model": {"Type": "Class", "Values": ["Others"]}})
    # A stored spec from before the key has the reference's default; a query gives none.
    assert SemanticSpec.from_dict(digits_spec()).model_type == "Others"
    assert SemanticSpec.from_dict({}, requirement=True).model_type is None


def test_model_filters_like_a_class_and_absent_means_others():
    stored = SemanticSpec.from_dict(digits_spec())
    legacy = SemanticSpec.model_validate({**stored.model_dump(), "Model": None})
    assert tags_match(spec_of(Model=["Others"]), legacy)
    assert not tags_match(spec_of(Model=["Base Model"]), stored)
    assert tags_match(spec_of(Model=["Base Model", "Others"]), stored)


def test_the_reference_checkers_default_spec_is_accepted():
    """What learnware 0.4's LearnwareClient.check_learnware checks a package with when given
    no semantic spec, as its generate_semantic_spec writes it (Model filled in)."""
    default = {
        "Data": {"Type": "Class", "Values": ["Text"]},
        "Task": {"Type": "Class", "Values": ["Text Generation"]},
        "Model": {"Type": "Optional", "Values": ["Others"]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "License": {"Type": "Class", "Values": ["Apache-2.0"]},
        "Scenario": {"Type": "Tag", "Values": ["Financial"]},
        "Name": {"Type": "String", "Values": "test"},
        "Description": {"Type": "String", "Values": "test"},
    }
    assert check_semantic_spec(default).to_dict() == default
