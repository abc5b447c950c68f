"""Tests for specification.package: safe reading of learnware package zips."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from wharf.specification.errors import PackageError
from wharf.specification.package import (
    DEFAULT_LIMITS,
    LearnwarePackage,
    PackageLimits,
    Requirements,
    read_package,
    write_package,
)

MANIFEST = b"""\
name: digits-svc
model:
  class_name: MyModel
  module_path: __init__.py
  kwargs: {n_classes: 10, weights: model.npy, layers: [64, 32]}
stat_specifications:
  - module_path: learnware.specification
    class_name: RKMETableSpecification
    file_name: rkme.json
    kwargs: {}
"""


def package_files(**changes: bytes | None) -> dict[str, bytes]:
    """A valid package's files; keyword arguments replace (or, with None, remove) files.

    Names with a dot or slash are passed through ``changes`` as ``{"a/b.py": ...}`` via **.
    """
    files = {
        "learnware.yaml": MANIFEST,
        "__init__.py": b"class MyModel:\n    pass\n",
        "rkme.json": b'{"type": "RKMETableSpecification", "z": [], "beta": []}',
        "requirements.txt": b"numpy>=1.26\nscikit-learn==1.5.0\n",
        "model.npy": bytes(range(256)) * 4,
    }
    for name, data in changes.items():
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


def zip_bytes(files: dict[str, bytes], top_folder: str | None = None) -> bytes:
    buf = io.BytesIO()
    write_package(buf, files, top_folder=top_folder)
    return buf.getvalue()


def raw_zip(
    *entries: tuple[str | zipfile.ZipInfo, bytes], base: dict[str, bytes] | None = None
) -> bytes:
    """A zip written with zipfile directly (no name checks), after ``base`` files if given."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in (base or {}).items():
                zf.writestr(name, data)
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def refused(data: bytes, limits: PackageLimits = DEFAULT_LIMITS) -> PackageError:
    with pytest.raises(PackageError) as info:
        read_package(io.BytesIO(data), limits=limits)
    return info.value


def manifest_refused(manifest: bytes, **changes: bytes | None) -> PackageError:
    return refused(zip_bytes(package_files(**{"learnware.yaml": manifest}, **changes)))


# --- valid packages -------------------------------------------------------------------------


def test_valid_package_from_a_path(tmp_path):
    data = zip_bytes(package_files())
    path = tmp_path / "pkg.zip"
    path.write_bytes(data)
    pkg = read_package(path)
    assert isinstance(pkg, LearnwarePackage)
    assert pkg.prefix == ""
    assert pkg.name == "digits-svc"
    assert (pkg.model.class_name, pkg.model.module_path, pkg.model.file) == (
        "MyModel",
        "__init__.py",
        "__init__.py",
    )
    assert pkg.model.kwargs == {"n_classes": 10, "weights": "model.npy", "layers": [64, 32]}
    (spec,) = pkg.stat_specs
    assert (spec.class_name, spec.module_path, spec.file_name, spec.kwargs) == (
        "RKMETableSpecification",
        "learnware.specification",
        "rkme.json",
        {},
    )
    assert spec.type == "RKMETableSpecification"
    assert pkg.requirements == Requirements(
        "requirements.txt", ("numpy>=1.26", "scikit-learn==1.5.0")
    )
    assert {f.name: f.size for f in pkg.files} == {
        name: len(content) for name, content in package_files().items()
    }
    assert pkg.sha256 == hashlib.sha256(data).hexdigest()
    assert pkg.zip_size == len(data)
    assert pkg.read_member("model.npy") == package_files()["model.npy"]


def test_valid_package_inside_one_top_folder():
    pkg = read_package(io.BytesIO(zip_bytes(package_files(), top_folder="mymodel")))
    assert pkg.prefix == "mymodel/"
    assert {f.name for f in pkg.files} == set(package_files())
    assert pkg.model.file == "__init__.py"
    assert pkg.read_member("rkme.json") == package_files()["rkme.json"]
    with pytest.raises(PackageError):
        pkg.read_member("mymodel/rkme.json")


def test_folder_entries_and_macos_metadata_are_accepted():
    data = raw_zip(
        ("mymodel/", b""),
        ("mymodel/weights/", b""),
        ("mymodel/weights/w.bin", b"\x01\x02"),
        ("__MACOSX/", b""),
        ("__MACOSX/mymodel/._learnware.yaml", b"resource fork"),
        base={f"mymodel/{name}": content for name, content in package_files().items()},
    )
    pkg = read_package(io.BytesIO(data))
    assert pkg.prefix == "mymodel/"
    names = {f.name for f in pkg.files}
    assert "weights/w.bin" in names
    assert not any("MACOSX" in name for name in names)


def test_two_top_folders_are_not_stripped():
    files = {f"a/{name}": content for name, content in package_files().items()}
    files["b/readme.txt"] = b"hi"
    error = refused(zip_bytes(files))
    assert error.member == "learnware.yaml"
    assert "missing" in error.reason


def test_non_seekable_stream_is_spooled():
    data = zip_bytes(package_files())

    class Stream(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            chunk = self.inner.read(min(len(b), 1000))
            b[: len(chunk)] = chunk
            return len(chunk)

    stream = Stream()
    assert not stream.seekable()
    pkg = read_package(stream)
    assert pkg.sha256 == hashlib.sha256(data).hexdigest()
    assert pkg.read_member("__init__.py") == package_files()["__init__.py"]


@pytest.mark.adversarial
def test_nothing_from_the_package_runs(tmp_path):
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n".encode()
    manifest = MANIFEST.replace(b"module_path: __init__.py", b"module_path: evil")
    files = package_files(**{"__init__.py": code, "evil.py": code, "learnware.yaml": manifest})
    pkg = read_package(io.BytesIO(zip_bytes(files)))
    pkg.extract_to(tmp_path / "out")
    assert pkg.model.file == "evil.py"
    assert not marker.exists()


def test_write_package_is_reproducible_and_checks_names():
    assert zip_bytes(package_files()) == zip_bytes(package_files())
    with pytest.raises(PackageError):
        write_package(io.BytesIO(), {"../evil.py": b""})


def test_module_path_forms_that_stay_inside_the_package():
    # A dotted name is looked up as a file, a package folder as its __init__.py, and a
    # relative path may start with ./
    for module_path, file in [
        ("models.net", "models/net.py"),
        ("models", "models/__init__.py"),
        ("./models/net.py", "models/net.py"),
        ("__init__", "__init__.py"),
    ]:
        manifest = f"model: {{module_path: '{module_path}'}}\n".encode()
        files = package_files(
            **{"learnware.yaml": manifest, "models/net.py": b"", "models/__init__.py": b""}
        )
        files["stat_spec.json"] = b"{}"
        pkg = read_package(io.BytesIO(zip_bytes(files)))
        assert (pkg.model.file, pkg.model.class_name) == (file, "Model")


def test_defaults_when_the_manifest_is_minimal():
    files = package_files(**{"learnware.yaml": b"{}\n", "stat_spec.json": b"{}"})
    pkg = read_package(io.BytesIO(zip_bytes(files)))
    assert pkg.name is None
    assert (pkg.model.class_name, pkg.model.module_path, pkg.model.kwargs) == (
        "Model",
        "__init__.py",
        {},
    )
    (spec,) = pkg.stat_specs
    assert (spec.module_path, spec.class_name, spec.file_name) == (
        "learnware.specification",
        "RKMETableSpecification",
        "stat_spec.json",
    )


def test_legacy_and_other_stat_spec_classes():
    manifest = b"""\
stat_specifications:
  - {module_path: learnware.specification, class_name: RKMEStatSpecification, file_name: t.json}
  - {module_path: learnware.specification, class_name: RKMETextSpecification, file_name: x.json}
  - {module_path: ./specs/image.py, class_name: RKMEImageSpecification, file_name: i.json}
"""
    files = package_files(
        **{"learnware.yaml": manifest, "t.json": b"{}", "x.json": b"{}", "i.json": b"{}"}
    )
    pkg = read_package(io.BytesIO(zip_bytes(files)))
    assert [s.type for s in pkg.stat_specs] == [
        "RKMETableSpecification",
        "RKMETextSpecification",
        "RKMEImageSpecification",
    ]
    assert pkg.stat_specs[2].module_path == "./specs/image.py"  # recorded, never imported


def test_environment_yaml():
    env = b"""\
name: lw
channels: [conda-forge]
dependencies:
  - python=3.11
  - numpy
  - pip:
    - scikit-learn==1.5.0
    - lightgbm
"""
    pkg = read_package(io.BytesIO(zip_bytes(package_files(**{"environment.yaml": env}))))
    # environment.yaml wins when both exist, as in the reference's containers.
    assert pkg.requirements == Requirements(
        "environment.yaml", ("scikit-learn==1.5.0", "lightgbm"), ("python=3.11", "numpy")
    )


def test_requirements_txt_lines():
    text = b"""\
# pinned for the model
numpy>=1.26  # inline comment
\t
-r other.txt
--index-url https://example.org/simple
-e git+https://example.org/repo.git#egg=thing
scikit-learn\\
==1.5.0
torch @ https://example.org/torch.whl
"""
    pkg = read_package(io.BytesIO(zip_bytes(package_files(**{"requirements.txt": text}))))
    assert pkg.requirements.pip == (
        "numpy>=1.26",
        "scikit-learn==1.5.0",
        "torch @ https://example.org/torch.whl",
    )


# --- unsafe zips ----------------------------------------------------------------------------


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("/tmp/evil.py", "absolute"),
        ("../evil.py", "'..'"),
        ("models/../../evil.py", "'..'"),
        ("models\\..\\..\\evil.py", "backslash"),
        ("C:/Windows/evil.py", "absolute"),
        ("C:evil.py", "absolute"),
        ("models/ads:stream", "':'"),
        ("models//evil.py", "empty"),
        ("./evil.py", "'.'"),
        ("models/\x07bell.py", "control"),
        ("x" * 256, "255 bytes"),
    ],
)
def test_unsafe_names_are_refused(name, why):
    error = refused(raw_zip((name, b"print('hi')"), base=package_files()))
    assert error.member == name
    assert why in error.reason


@pytest.mark.adversarial
def test_nul_in_a_name_is_refused():
    data = raw_zip(("evilXpy.py", b"x"), base=package_files()).replace(b"evilXpy", b"evil\x00py")
    error = refused(data)
    assert error.member == "evil\x00py.py"  # zipfile's own name stops at the NUL: "evil"
    assert "control character" in error.reason


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        (0o120777, "symbolic link"),
        (0o020644, "character device"),
        (0o060644, "block device"),
        (0o010644, "named pipe"),
        (0o140644, "socket"),
    ],
)
def test_links_and_special_files_are_refused(mode, kind):
    info = zipfile.ZipInfo("weights.bin")
    info.external_attr = mode << 16
    error = refused(raw_zip((info, b"/etc/passwd"), base=package_files()))
    assert error.member == "weights.bin"
    assert kind in error.reason


@pytest.mark.adversarial
def test_folder_mode_on_a_file_name_is_refused():
    info = zipfile.ZipInfo("weights")
    info.external_attr = (stat.S_IFDIR | 0o755) << 16
    assert refused(raw_zip((info, b""), base=package_files())).member == "weights"


@pytest.mark.adversarial
def test_encrypted_entry_is_refused():
    data = patch_headers(
        zip_bytes(package_files(**{"secret.bin": b"x" * 40})), "secret.bin", _FLAGS, 1
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("secret.bin").flag_bits & 0x1
    error = refused(data)
    assert (error.member, "encrypted" in error.reason) == ("secret.bin", True)


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("entries", "member", "why"),
    [
        ([("model.npy", b"again")], "model.npy", "twice"),
        ([("Model.npy", b"case")], "Model.npy", "letter case"),
        ([("MODELS/a.py", b""), ("models/b.py", b"")], "models/b.py", "letter case"),
        ([("model.npy/inner.py", b"")], "model.npy/inner.py", "both a file and a folder"),
        ([("data/x", b""), ("data", b"")], "data", "both a file and a folder"),
    ],
)
def test_clashing_names_are_refused(entries, member, why):
    error = refused(raw_zip(*entries, base=package_files()))
    assert error.member == member
    assert why in error.reason


@pytest.mark.adversarial
def test_too_many_files():
    files = package_files(**{f"data/{i}.txt": b"x" for i in range(20)})
    data = zip_bytes(files)
    assert read_package(io.BytesIO(data))  # fine under the default limit
    error = refused(data, PackageLimits(max_files=10))
    assert "at most 10" in str(error)


@pytest.mark.adversarial
def test_a_huge_central_directory_is_refused_before_parsing():
    names = {f"data/{'n' * 200}{i}.txt": b"" for i in range(400)}
    error = refused(zip_bytes(package_files(**names)), PackageLimits(max_files=20))
    assert "central directory" in str(error)


@pytest.mark.adversarial
def test_file_size_limits():
    big = os.urandom(5000)
    data = zip_bytes(package_files(**{"model.npy": big}))
    error = refused(data, PackageLimits(max_file_bytes=4000))
    assert error.member == "model.npy" and "at most" in error.reason
    error = refused(data, PackageLimits(max_total_bytes=5200))
    assert "add up to more than" in str(error)
    error = refused(data, PackageLimits(max_zip_bytes=2000))
    assert "zip is larger" in str(error)


@pytest.mark.adversarial
def test_zip_bomb_is_refused_from_its_declared_ratio():
    data = zip_bytes(package_files(**{"model.npy": bytes(50_000_000)}))
    assert len(data) < 200_000
    error = refused(data)
    assert error.member == "model.npy"
    assert "zip bomb" in error.reason


def test_small_files_are_not_ratio_checked():
    pkg = read_package(io.BytesIO(zip_bytes(package_files(**{"zeros.bin": bytes(500_000)}))))
    assert any(f.name == "zeros.bin" and f.size == 500_000 for f in pkg.files)


# Field offsets in a local header / central-directory entry (APPNOTE 4.3.7 and 4.3.12).
_FLAGS = ((6, 8), "<H")
_UNCOMPRESSED_SIZE = ((22, 24), "<I")


def patch_headers(data: bytes, name: str, field: tuple[tuple[int, int], str], value: int) -> bytes:
    """Overwrite one field in both headers of entry ``name``."""
    (local, central), fmt = field
    out = bytearray(data)
    encoded = name.encode()
    for signature, offset, name_length_at, name_at in (
        (b"PK\x03\x04", local, 26, 30),
        (b"PK\x01\x02", central, 28, 46),
    ):
        at = 0
        while (at := out.find(signature, at)) >= 0:
            (length,) = struct.unpack_from("<H", out, at + name_length_at)
            if out[at + name_at : at + name_at + length] == encoded:
                struct.pack_into(fmt, out, at + offset, value)
            at += 4
    return bytes(out)


@pytest.mark.adversarial
@pytest.mark.parametrize("declared", [10, 300_100])
def test_header_that_lies_about_the_size(declared):
    data = zip_bytes(package_files(**{"model.npy": b"abc" * 100_000}))
    lying = patch_headers(data, "model.npy", _UNCOMPRESSED_SIZE, declared)
    with zipfile.ZipFile(io.BytesIO(lying)) as zf:
        assert zf.getinfo("model.npy").file_size == declared  # the forgery took
    error = refused(lying)
    assert error.member == "model.npy"
    assert "corrupt" in error.reason


@pytest.mark.adversarial
def test_bad_crc_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored, so the data can be edited in place
        for name, content in package_files().items():
            zf.writestr(name, content)
        zf.writestr("weights.bin", b"A" * 1000)
    damaged = buf.getvalue().replace(b"A" * 1000, b"A" * 999 + b"B")
    error = refused(damaged)
    assert error.member == "weights.bin"
    assert "CRC" in error.reason


@pytest.mark.adversarial
@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_zip(cut):
    data = zip_bytes(package_files())
    error = refused(data[: int(len(data) * cut)])
    assert "zip" in str(error)


@pytest.mark.adversarial
@pytest.mark.parametrize("data", [b"", b"hello, world", b"PK\x03\x04" + bytes(100)])
def test_not_a_zip(data):
    assert "not a readable zip" in str(refused(data))


@pytest.mark.adversarial
def test_corrupt_deflate_stream():
    content = os.urandom(3000)
    data = zip_bytes(package_files(**{"weights.bin": content}))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("weights.bin")
    # Local header is 30 bytes + name; scribble over the middle of the compressed data.
    start = info.header_offset + 30 + len("weights.bin") + info.compress_size // 2
    damaged = data[:start] + bytes(64) + data[start + 64 :]
    assert refused(damaged).member == "weights.bin"


# --- required files and the manifest --------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "member"),
    [
        ("learnware.yaml", "learnware.yaml"),
        ("__init__.py", "__init__.py"),
        ("rkme.json", "learnware.yaml"),
    ],
)
def test_missing_required_file(missing, member):
    error = refused(zip_bytes(package_files(**{missing: None})))
    assert error.member == member
    assert missing in str(error)


def test_missing_requirements():
    error = refused(zip_bytes(package_files(**{"requirements.txt": None})))
    assert "requirements.txt or environment.yaml" in str(error)


def test_missing_default_stat_spec_file():
    error = manifest_refused(b"model: {class_name: MyModel}\n")
    assert error.reason.startswith("has no stat_specifications, so the default 'stat_spec.json'")


@pytest.mark.parametrize(
    ("manifest", "hint"),
    [
        (b"", "got nothing"),
        (b"- model\n- stats\n", "got a list"),
        (b"just a string\n", "got a string"),
        (b"model: [unclosed\n", "not YAML"),
        (b"name: \xc3\x28\n", "not YAML"),
        (b"name: 42\n", "name must be a string"),
        (b"model: MyModel\n", "model must be a mapping"),
        (b"model: {class_name: MyModel, clas_name: X}\n", "unknown key(s) 'clas_name'"),
        (b"model: {class_name: 1abc}\n", "Python class name"),
        (b"model: {class_name: os.system}\n", "Python class name"),
        (b"model: {class_name: class}\n", "Python class name"),
        (b"model: {kwargs: [1, 2]}\n", "model.kwargs must be a mapping"),
        (b"model: {kwargs: {when: 2024-01-01}}\n", "holds a date"),
        (b"model: {kwargs: {x: .nan}}\n", "not a finite number"),
        (b"model: {kwargs: {1: one}}\n", "must be a string"),
        (b"model: {kwargs: !!set {a, b}}\n", "holds a set"),
        (b"model: {kwargs: {blob: !!binary aGVsbG8=}}\n", "holds a bytes"),
        (b"stat_specifications: []\n", "non-empty list"),
        (b"stat_specifications: {class_name: RKMETableSpecification}\n", "non-empty list"),
    ],
)
def test_bad_manifest(manifest, hint):
    error = manifest_refused(manifest)
    assert error.member == "learnware.yaml"
    assert hint in error.reason


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "tagged",
    [
        b"model: !!python/object/apply:os.system ['touch {marker}']\n",
        b"model: {kwargs: {x: !!python/object/new:os.system ['touch {marker}']}}\n",
        b"!!python/name:os.system\n",
        b"model: {kwargs: {x: !!python/module:os}}\n",
        b"model: {kwargs: {x: !!python/bytes YWJj}}\n",
    ],
)
def test_python_yaml_tags_are_refused_without_running(tagged, tmp_path):
    marker = tmp_path / "ran"
    error = manifest_refused(tagged.replace(b"{marker}", str(marker).encode()))
    assert error.member == "learnware.yaml"
    assert "not plain data" in error.reason
    assert not marker.exists()


def test_plain_data_python_tags_are_read_as_plain_data():
    """What the reference's templates write (yaml.dump of a tuple) reads as lists, numbers
    and strings."""
    manifest = (
        b"model:\n  class_name: !!python/str MyModel\n  kwargs:\n"
        b"    input_shape: !!python/tuple\n    - 20\n"
        b"    nested: !!python/tuple [!!python/tuple [1, !!python/float 2.5],"
        b" {a: !!python/int 3}]\n"
        b"    flags: !!python/list [!!python/bool true, !!python/none null]\n"
        b"stat_specifications:\n- {module_path: learnware.specification, "
        b"class_name: RKMETableSpecification, file_name: rkme.json, kwargs: {}}\n"
    )
    pkg = read_package(io.BytesIO(zip_bytes(package_files(**{"learnware.yaml": manifest}))))
    assert pkg.model.class_name == "MyModel"
    assert pkg.model.kwargs == {
        "input_shape": [20],
        "nested": [[1, 2.5], {"a": 3}],
        "flags": [True, None],
    }


@pytest.mark.adversarial
def test_alias_bomb_and_cycles_are_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = ("model:\n  kwargs:\n" + "".join(f"    {line}\n" for line in lines)).encode()
    assert len(bomb) < 1000
    assert "too large" in manifest_refused(bomb).reason
    assert "too large" in manifest_refused(b"model: {kwargs: {loop: &l [*l]}}\n").reason


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "module_path",
    [
        "os",
        "subprocess",
        "os.path",
        "/etc/x.py",
        "../x.py",
        "models/../../x.py",
        "C:\\x.py",
        "missing.py",
        "missing",
        "learnware.yaml",
        "",
    ],
)
def test_model_module_outside_the_package(module_path):
    manifest = f"model: {{class_name: MyModel, module_path: '{module_path}'}}\n".encode()
    error = manifest_refused(manifest)
    assert error.member == "learnware.yaml"
    assert error.reason.startswith(
        f"model.module_path {module_path!r} is not a file inside the package"
    )


def test_module_path_message_reads_well():
    error = manifest_refused(b"model: {module_path: os}\n")
    assert str(error).startswith(
        "learnware.yaml: model.module_path 'os' is not a file inside the package"
    )


def test_model_module_path_must_be_a_string():
    assert "model.module_path" in manifest_refused(b"model: {module_path: [a]}\n").reason


_ENTRY = {
    "module_path": "learnware.specification",
    "class_name": "RKMETableSpecification",
    "file_name": "rkme.json",
}


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        ({"class_name": "HeteroMapTableSpecification"}, "not an allowed"),
        ({"module_path": "evil", "class_name": "Popen"}, "not an allowed"),
        ({"class_name": None}, "not an allowed"),
        ({"class_name": ["RKMETableSpecification"]}, "not an allowed"),
        ({"module_path": None}, "module_path must be"),
        ({"module_path": "/etc/x.py"}, "module_path must be"),
        ({"module_path": "../x.py"}, "module_path must be"),
        ({"module_path": "os;rm"}, "module_path must be"),
        ({"file_name": "nope.json"}, "file_name 'nope.json'"),
        ({"file_name": "../rkme.json"}, "file_name '../rkme.json'"),
        ({"file_name": "/work/rkme.json"}, "file_name '/work/rkme.json'"),
        ({"kwargs": 3}, "kwargs must be a mapping"),
        ({"extra": 1}, "unknown key(s) 'extra'"),
    ],
)
def test_bad_stat_spec_entry(changes, hint):
    entry = {**_ENTRY, **changes}
    entry = {key: value for key, value in entry.items() if value is not None}
    manifest = f"stat_specifications:\n  - {json.dumps(entry)}\n".encode()
    error = manifest_refused(manifest)
    assert error.member == "learnware.yaml"
    assert error.reason.startswith("stat_specifications[0]")
    assert hint in error.reason


def test_stat_spec_entry_must_be_a_mapping():
    error = manifest_refused(b"stat_specifications: [RKMETableSpecification]\n")
    assert error.reason.startswith("stat_specifications[0] must be a mapping")


def test_two_stat_specs_of_one_type():
    manifest = b"""\
stat_specifications:
  - {module_path: learnware.specification, class_name: RKMETableSpecification, file_name: rkme.json}
  - {module_path: learnware.specification, class_name: RKMEStatSpecification, file_name: rkme.json}
"""
    assert "a second RKMETableSpecification" in manifest_refused(manifest).reason


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        (b"- numpy\n", "must be a mapping"),
        (b"dependencies: numpy\n", "dependencies must be a list"),
        (b"dependencies: [numpy, {pip: numpy}]\n", "dependencies[1]"),
        (b"dependencies: [numpy, {conda: [x]}]\n", "dependencies[1]"),
        (b"dependencies: [3.11]\n", "dependencies[0]"),
        (b"dependencies: !!python/object/apply:os.getcwd []\n", "not plain data"),
    ],
)
def test_bad_environment_yaml(env, hint):
    error = refused(zip_bytes(package_files(**{"environment.yaml": env})))
    assert error.member == "environment.yaml"
    assert hint in error.reason


def test_bad_requirements_txt():
    error = refused(zip_bytes(package_files(**{"requirements.txt": b"numpy\xff\n"})))
    assert (error.member, "UTF-8" in error.reason) == ("requirements.txt", True)


@pytest.mark.adversarial
def test_metadata_size_limit():
    big = b"# padding\n" * 200 + b"numpy\n"
    error = refused(
        zip_bytes(package_files(**{"requirements.txt": big})),
        PackageLimits(max_metadata_bytes=1000),
    )
    assert error.member == "requirements.txt"


# --- reading and extracting after the check -------------------------------------------------


def test_read_member_of_an_unknown_name():
    pkg = read_package(io.BytesIO(zip_bytes(package_files())))
    with pytest.raises(PackageError) as info:
        pkg.read_member("../etc/passwd")
    assert info.value.member == "../etc/passwd"


def test_extract_to_writes_the_files_and_nothing_else(tmp_path):
    files = package_files(**{"models/net.py": b"x = 1\n", "models/w/deep.bin": b"\x00\x01"})
    pkg = read_package(io.BytesIO(zip_bytes(files, top_folder="mymodel")))
    target = tmp_path / "out"
    assert pkg.extract_to(target) == target
    written = {p.relative_to(target).as_posix(): p for p in target.rglob("*") if not p.is_dir()}
    assert set(written) == set(files)
    for name, path in written.items():
        assert path.read_bytes() == files[name]
        assert not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) & 0o111 == 0
    assert not (target / "mymodel").exists()


def test_extract_to_needs_an_empty_directory(tmp_path):
    pkg = read_package(io.BytesIO(zip_bytes(package_files())))
    (tmp_path / "stale.py").write_text("old")
    with pytest.raises(FileExistsError):
        pkg.extract_to(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.py"]
    pkg.extract_to(tmp_path / "fresh")
    assert (tmp_path / "fresh" / "learnware.yaml").read_bytes() == MANIFEST


@pytest.mark.adversarial
def test_limits_hold_while_streaming_even_if_the_zip_changes(tmp_path):
    """The sizes recorded at read time bound every later read, whatever the zip says then."""
    buf = io.BytesIO(zip_bytes(package_files()))
    pkg = read_package(buf)
    swapped = zip_bytes(package_files(**{"model.npy": os.urandom(100_000)}))
    buf.seek(0)
    buf.truncate()
    buf.write(swapped)
    with pytest.raises(PackageError) as info:
        pkg.read_member("model.npy")
    assert info.value.member == "model.npy"
    assert "more data than" in info.value.reason
    with pytest.raises(PackageError):
        pkg.extract_to(tmp_path / "out")


@pytest.mark.adversarial
def test_extract_enforces_the_total_while_streaming(tmp_path):
    """Extraction shares one byte budget across files, separate from the read-time check."""
    data = zip_bytes(package_files(**{"a.bin": os.urandom(3000), "b.bin": os.urandom(3000)}))
    pkg = read_package(io.BytesIO(data), limits=PackageLimits(max_total_bytes=9000))
    small = PackageLimits(max_total_bytes=5000)
    tightened = dataclasses.replace(pkg, limits=small)
    with pytest.raises(PackageError) as info:
        tightened.extract_to(tmp_path / "out")
    assert "add up to more than" in info.value.reason


# --- property: what write_package writes, read_package and extract_to give back --------------

_component = st.text(alphabet="abcdefxyz0123456789_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
_names = st.lists(_component, min_size=1, max_size=3).map(lambda parts: "data/" + "/".join(parts))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_names, st.binary(max_size=2000), min_size=1, max_size=8),
    st.sampled_from([None, "top", "my model"]),
)
def test_round_trip_through_extraction(extra, top_folder):
    assume(not any(a.startswith(b + "/") for a in extra for b in extra))
    files = {**package_files(), **extra}
    pkg = read_package(io.BytesIO(zip_bytes(files, top_folder=top_folder)))
    assert pkg.prefix == (f"{top_folder}/" if top_folder else "")
    assert {f.name: f.size for f in pkg.files} == {n: len(c) for n, c in files.items()}
    with tempfile.TemporaryDirectory() as tmp:
        root = pkg.extract_to(Path(tmp) / "x")
        for name, content in files.items():
            assert (root / name).read_bytes() == content


def test_make_manifest_reads_back(tmp_path):
    from wharf.specification.package import make_manifest, read_package, write_package

    path = tmp_path / "m.zip"
    write_package(
        path,
        {
            "learnware.yaml": make_manifest("Net", {"width": 3}, spec_file="rkme.json"),
            "__init__.py": b"class Net: ...\n",
            "rkme.json": b"{}",
            "requirements.txt": b"numpy\n",
        },
    )
    pkg = read_package(path)
    assert (pkg.model.class_name, pkg.model.kwargs, pkg.model.file) == (
        "Net",
        {"width": 3},
        "__init__.py",
    )
    assert [(e.class_name, e.file_name) for e in pkg.stat_specs] == [
        ("RKMETableSpecification", "rkme.json")
    ]
