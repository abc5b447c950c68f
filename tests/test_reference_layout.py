"""Tests for specification.reference_layout: the packages Wharf serves, in the layout the
reference's loader reads (files at the root, plain YAML with ``id`` and the semantic spec
file, the 0.4 keys in the spec). The reference itself loads them in
tests/test_reference_client.py."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml
from wharf.specification.errors import PackageError
from wharf.specification.package import read_package, write_package
from wharf.specification.reference_layout import SEMANTIC_SPEC_FILE, write_reference_layout

TEMPLATE_MANIFEST = b"""model:
  class_name: PickleLoadedModel
  kwargs:
    input_shape: !!python/tuple
    - 20
    output_shape: !!python/tuple
    - 3
    pickle_filename: model.pkl
stat_specifications:
- class_name: RKMETableSpecification
  file_name: stat_spec.json
  kwargs: {}
  module_path: learnware.specification
"""

SPEC = {
    "Data": {"Type": "Class", "Values": ["Table"]},
    "Task": {"Type": "Class", "Values": ["Classification"]},
    "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
    "Scenario": {"Type": "Tag", "Values": ["Business"]},
    "Name": {"Type": "String", "Values": "iris"},
    "Description": {"Type": "String", "Values": "a classifier"},
    "Input": {"Dimension": 20, "Description": {}},
    "Output": {"Dimension": 3, "Description": {}},
}


def package(top_folder: str | None = "mymodel", **extra: bytes) -> bytes:
    files = {
        "learnware.yaml": TEMPLATE_MANIFEST,
        "__init__.py": b"class PickleLoadedModel: ...\n",
        "stat_spec.json": b'{"type": "RKMETableSpecification"}',
        "requirements.txt": b"scikit-learn\n",
        "model.pkl": bytes(range(256)) * 64,
        **extra,
    }
    buf = io.BytesIO()
    write_package(buf, files, top_folder=top_folder)
    return buf.getvalue()


def served(data: bytes, learnware_id: str | None = "00000042") -> zipfile.ZipFile:
    out = io.BytesIO()
    write_reference_layout(io.BytesIO(data), out, semantic_spec=SPEC, learnware_id=learnware_id)
    return zipfile.ZipFile(io.BytesIO(out.getvalue()))


def test_files_move_to_the_root_and_the_manifest_becomes_plain_yaml():
    zf = served(package())
    assert sorted(zf.namelist()) == sorted(
        [
            "__init__.py",
            "stat_spec.json",
            "requirements.txt",
            "model.pkl",
            "learnware.yaml",
            SEMANTIC_SPEC_FILE,
        ]
    )
    manifest = yaml.safe_load(zf.read("learnware.yaml"))  # what the reference's loader does
    assert manifest["id"] == "00000042"
    assert manifest["semantic_specification"] == {"file_name": SEMANTIC_SPEC_FILE}
    assert manifest["model"]["kwargs"]["input_shape"] == [20]
    assert manifest["stat_specifications"][0]["file_name"] == "stat_spec.json"
    assert zf.read("model.pkl") == bytes(range(256)) * 64
    spec = json.loads(zf.read(SEMANTIC_SPEC_FILE))
    assert spec["Model"] == {"Type": "Optional", "Values": ["Others"]}
    assert spec["License"]["Values"] == ["Apache-2.0"]  # the stored spec's legacy default
    assert spec["Name"]["Values"] == "iris"


def test_the_served_copy_is_reproducible_and_readable_by_wharf():
    first, second = served(package()), served(package(top_folder=None))
    assert [(i.filename, first.read(i)) for i in first.infolist()] == [
        (i.filename, second.read(i)) for i in second.infolist()
    ]
    buf = io.BytesIO()
    write_reference_layout(io.BytesIO(package()), buf, semantic_spec=SPEC)
    pkg = read_package(io.BytesIO(buf.getvalue()))
    assert pkg.prefix == "" and pkg.model.kwargs["output_shape"] == [3]
    assert "id" not in yaml.safe_load(pkg.read_member("learnware.yaml"))


def test_a_packaged_semantic_spec_is_replaced_by_the_stored_one():
    zf = served(package(**{SEMANTIC_SPEC_FILE: b'{"Name": "stale"}'}))
    assert json.loads(zf.read(SEMANTIC_SPEC_FILE))["Name"]["Values"] == "iris"
    assert zf.namelist().count(SEMANTIC_SPEC_FILE) == 1


def test_a_package_wharf_refuses_is_not_served_in_the_layout():
    with pytest.raises(PackageError):
        served(package(**{"learnware.yaml": b"model: !!python/object/apply:os.getcwd []\n"}))
