"""Reading a submitted learnware package (a zip) without running anything from it.

The layout is the reference's (§5.1): ``learnware.yaml``, ``__init__.py``, one or more
statistical-specification files and ``requirements.txt`` or ``environment.yaml``, either at
the root of the zip or all inside one top folder. :func:`read_package` checks the zip is safe
to unpack, verifies every member's data, parses the manifest and returns a
:class:`LearnwarePackage`. Nothing from the package is imported or executed: module paths
are resolved to files inside the package and recorded, YAML is read with ``safe_load``, and
statistical-spec classes are matched against an allow-list by name.

Every problem raises :class:`PackageError` with a message a person can act on.
"""

from __future__ import annotations

import hashlib
import keyword
import lzma
import math
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Literal

import yaml

from .errors import PackageError

MiB = 1024 * 1024

MANIFEST = "learnware.yaml"
REQUIREMENTS_TXT = "requirements.txt"
ENVIRONMENT_YAML = "environment.yaml"
DEFAULT_STAT_SPEC_MODULE = "learnware.specification"
DEFAULT_STAT_SPEC_FILE = "stat_spec.json"

#: Statistical-specification classes a package may name, mapped to the spec type they load
#: as (``RKMEStatSpecification`` is the reference's old name for the table type).
STAT_SPEC_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "RKMETableSpecification": "RKMETableSpecification",
        "RKMEStatSpecification": "RKMETableSpecification",
        "RKMEImageSpecification": "RKMEImageSpecification",
        "RKMETextSpecification": "RKMETextSpecification",
    }
)


@dataclass(frozen=True)
class PackageLimits:
    """Caps on what a package may hold; checked on the declared sizes, then while reading.

    Attributes
    ----------
    max_zip_bytes: size of the zip file itself.
    max_files: entries in the zip (folders included).
    max_total_bytes: uncompressed bytes of all files together.
    max_file_bytes: uncompressed bytes of one file.
    max_ratio: uncompressed/compressed size of one file, for files over ``ratio_min_bytes``.
    ratio_min_bytes: files up to this size are not ratio-checked (tiny files compress a lot).
    max_metadata_bytes: ``learnware.yaml``, ``requirements.txt`` and ``environment.yaml``.
    """

    max_zip_bytes: int = 512 * MiB
    max_files: int = 2000
    max_total_bytes: int = 512 * MiB
    max_file_bytes: int = 256 * MiB
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 * MiB
    max_metadata_bytes: int = 1 * MiB


DEFAULT_LIMITS = PackageLimits()


@dataclass(frozen=True)
class PackageFile:
    """A file of the package: ``name`` is relative to the package root (top folder stripped)."""

    name: str
    size: int
    compressed_size: int


@dataclass(frozen=True)
class ModelEntry:
    """The ``model`` section of ``learnware.yaml``.

    ``module_path`` is as written; ``file`` is the package file it names, which is what a
    sandboxed runner must load (by path, never by importing ``module_path`` as a module name,
    which could pick up an installed module of the same name).
    """

    class_name: str
    module_path: str
    file: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class StatSpecEntry:
    """One ``stat_specifications`` entry. ``module_path`` is recorded, never imported."""

    class_name: str
    module_path: str
    file_name: str
    kwargs: dict[str, Any]

    @property
    def type(self) -> str:
        """The specification type this entry loads as (legacy class names resolved)."""
        return STAT_SPEC_CLASSES[self.class_name]


@dataclass(frozen=True)
class Requirements:
    """The package's dependencies, from ``file``.

    ``pip`` holds requirement strings (the lines of ``requirements.txt``, or the ``pip:``
    list of ``environment.yaml``); ``conda`` holds the other ``environment.yaml`` dependencies.
    """

    file: Literal["requirements.txt", "environment.yaml"]
    pip: tuple[str, ...]
    conda: tuple[str, ...] = ()


@dataclass(frozen=True)
class LearnwarePackage:
    """A checked learnware package; made by :func:`read_package`.

    Attributes
    ----------
    prefix: the top folder stripped from every name (``"mymodel/"``), or ``""``.
    files: the package's files (folders and ``__MACOSX/`` metadata left out).
    name: ``name`` from ``learnware.yaml``, if given.
    model: the model entry, its module resolved to a package file.
    stat_specs: the statistical-specification entries, each file present.
    requirements: the dependencies and the file they came from.
    sha256: hex digest of the whole zip.
    zip_size: size of the zip in bytes.
    limits: the limits it was read under, also applied by :meth:`read_member` and
        :meth:`extract_to`.
    """

    prefix: str
    files: tuple[PackageFile, ...]
    name: str | None
    model: ModelEntry
    stat_specs: tuple[StatSpecEntry, ...]
    requirements: Requirements
    sha256: str
    zip_size: int
    limits: PackageLimits = field(repr=False)
    # Where the zip bytes are (a path or a seekable binary file), reopened for each read.
    _source: str | os.PathLike[str] | BinaryIO = field(repr=False, compare=False)
    # Package name -> zip entry name.
    _zip_names: Mapping[str, str] = field(repr=False, compare=False)

    def read_member(self, name: str) -> bytes:
        """The bytes of one package file (``name`` relative to the package root)."""
        member = self._member(name)
        with _open_zip(self._source, self.limits) as zf:
            return b"".join(self._chunks(zf, member, _Budget(self.limits.max_total_bytes)))

    def extract_to(self, directory: str | os.PathLike[str]) -> Path:
        """Write the package's files under ``directory`` and return it.

        ``directory`` must be new or empty, so nothing stale survives from an earlier
        extraction. Files are created fresh (never through an existing file or link) with
        mode 0o644, folders with 0o755; sizes are enforced while the data streams. If an
        error interrupts it, the directory may hold part of the package.
        """
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise FileExistsError(f"extract_to needs a new or empty directory; {root} is not empty")
        budget = _Budget(self.limits.max_total_bytes)
        made: set[str] = set()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        with _open_zip(self._source, self.limits) as zf:
            for member in self.files:
                parts = member.name.split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(parts[:depth])
                    if folder not in made:
                        os.mkdir(root.joinpath(*parts[:depth]), 0o755)
                        made.add(folder)
                fd = os.open(root.joinpath(*parts), flags, 0o644)
                with os.fdopen(fd, "wb") as out:
                    for chunk in self._chunks(zf, member, budget):
                        out.write(chunk)
        return root

    def iter_members(self) -> Iterator[tuple[PackageFile, Iterator[bytes]]]:
        """Each file with a stream of its bytes, in zip order, under the limits that
        :meth:`extract_to` applies; consume each stream before asking for the next file."""
        budget = _Budget(self.limits.max_total_bytes)
        with _open_zip(self._source, self.limits) as zf:
            for member in self.files:
                yield member, self._chunks(zf, member, budget)

    def _member(self, name: str) -> PackageFile:
        for member in self.files:
            if member.name == name:
                return member
        raise PackageError("no such file in the package", name)

    def _chunks(self, zf: zipfile.ZipFile, member: PackageFile, budget: _Budget) -> Iterator[bytes]:
        return _member_chunks(zf, self._zip_names[member.name], member, budget)


def read_package(
    source: str | os.PathLike[str] | BinaryIO, *, limits: PackageLimits = DEFAULT_LIMITS
) -> LearnwarePackage:
    """Check and parse a learnware package zip, given as a path or a binary file object.

    Every member is read once here, so a truncated zip, a bad CRC or a header that lies
    about a size is found now rather than at extraction. A file object that cannot seek is
    first copied to a temporary file; a seekable one is read from its start and must stay
    open while the returned package is used.

    Examples
    --------
    >>> import io
    >>> buf = io.BytesIO()
    >>> write_package(buf, {"learnware.yaml": b"model: {class_name: MyModel}\\n",
    ...                     "__init__.py": b"", "stat_spec.json": b"{}",
    ...                     "requirements.txt": b"numpy>=1.26\\n"}, top_folder="demo")
    >>> pkg = read_package(buf)
    >>> pkg.prefix, pkg.model.class_name, pkg.requirements.pip
    ('demo/', 'MyModel', ('numpy>=1.26',))
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            sha256, size = _digest(f, limits)
    elif _seekable(source):
        source.seek(0)
        sha256, size = _digest(source, limits)
    else:
        spool = tempfile.SpooledTemporaryFile(max_size=16 * MiB)  # kept open by the package
        sha256, size = _digest(source, limits, copy_to=spool)
        source = spool

    with _open_zip(source, limits) as zf:
        entries = _check_entries(zf.infolist(), limits)
        prefix = _top_folder(entries)
        files: list[PackageFile] = []
        zip_names: dict[str, str] = {}
        for name, info in entries:
            if info.is_dir():
                continue
            package_name = name[len(prefix) :]
            files.append(PackageFile(package_name, info.file_size, info.compress_size))
            zip_names[package_name] = info.filename
        metadata = _verify_data(zf, files, zip_names, limits)

    names = set(zip_names)
    name, model, stat_specs = _parse_manifest(metadata, names)
    return LearnwarePackage(
        prefix=prefix,
        files=tuple(files),
        name=name,
        model=model,
        stat_specs=stat_specs,
        requirements=_parse_requirements(metadata, names),
        sha256=sha256,
        zip_size=size,
        limits=limits,
        _source=source,
        _zip_names=zip_names,
    )


def make_manifest(
    class_name: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    module_path: str = "__init__.py",
    spec_file: str = DEFAULT_STAT_SPEC_FILE,
    spec_class: str = "RKMETableSpecification",
) -> bytes:
    """``learnware.yaml`` for a package with one model and one statistical spec."""
    doc = {
        "model": {
            "class_name": class_name,
            "module_path": module_path,
            "kwargs": dict(kwargs or {}),
        },
        "stat_specifications": [
            {
                "module_path": DEFAULT_STAT_SPEC_MODULE,
                "class_name": spec_class,
                "file_name": spec_file,
                "kwargs": {},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def write_package(
    target: str | os.PathLike[str] | BinaryIO,
    files: Mapping[str, bytes],
    *,
    top_folder: str | None = None,
) -> None:
    """Write ``files`` (name → bytes) as a deflated package zip, inside ``top_folder`` if given.

    The zip is reproducible (fixed timestamps and modes: equal input, equal sha256). Names
    must be safe relative paths, by the rules :func:`read_package` applies.
    """
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            full = f"{top_folder}/{name}" if top_folder else name
            _clean_name(full)
            info = zipfile.ZipInfo(full, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)


# --- the zip container -----------------------------------------------------------------------

_CHUNK = 1 * MiB
_ALLOWED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What reading a damaged member can raise (bz2 reports bad data as OSError).
_CORRUPT = (zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)
#: Central-directory bytes allowed per permitted entry: room for a long name and the usual
#: extra fields, while a forged directory of millions of entries is refused before zipfile
#: turns it into objects.
_CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_FILE_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
}


class _Budget:
    """Uncompressed bytes left to read across several members."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int, member: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise PackageError(
                f"the package's files add up to more than {_size(self.limit)} uncompressed",
                member,
            )


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _digest(f: BinaryIO, limits: PackageLimits, copy_to: BinaryIO | None = None) -> tuple[str, int]:
    """sha256 and size of the rest of ``f``, refusing a zip over the size limit."""
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK):
        size += len(chunk)
        if size > limits.max_zip_bytes:
            raise PackageError(f"the zip is larger than the {_size(limits.max_zip_bytes)} allowed")
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest(), size


@contextmanager
def _open_zip(
    source: str | os.PathLike[str] | BinaryIO, limits: PackageLimits
) -> Iterator[zipfile.ZipFile]:
    with ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            f: BinaryIO = stack.enter_context(open(source, "rb"))
        else:
            f = source  # the caller's (or the package's spool): not ours to close
        _check_central_directory(f, limits)
        try:
            zf = stack.enter_context(zipfile.ZipFile(f))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
            raise PackageError(f"not a readable zip file ({exc})") from None
        yield zf


def _check_central_directory(f: BinaryIO, limits: PackageLimits) -> None:
    """Refuse a central directory too big for ``limits.max_files`` entries.

    zipfile walks the directory by its declared byte size, not its entry count, so the
    size is what must be bounded.
    """
    size = f.seek(0, os.SEEK_END)
    tail_len = min(size, 22 + 0xFFFF + 20)  # end record, longest comment, zip64 locator
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        f.seek(0)
        return  # not a zip; zipfile will say so
    (directory_size,) = struct.unpack_from("<I", tail, at + 12)
    if directory_size == 0xFFFFFFFF and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        (record_offset,) = struct.unpack_from("<Q", tail, at - 12)
        f.seek(record_offset)
        record = f.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            (directory_size,) = struct.unpack_from("<Q", record, 40)
    f.seek(0)
    cap = max(limits.max_files * _CENTRAL_DIRECTORY_BYTES_PER_ENTRY, 64 * 1024)
    if directory_size > cap:
        raise PackageError(
            f"the zip's central directory is {_size(directory_size)}, more than "
            f"{limits.max_files} entries need; the zip holds too many files or is forged"
        )


def _clean_name(name: str) -> str:
    """The entry name without a trailing '/', or PackageError if it could leave the package."""

    def refuse(why: str) -> PackageError:
        return PackageError(f"unsafe name: {why}", name)

    if "\\" in name:
        raise refuse("it contains a backslash; zip names separate folders with '/'")
    if name.startswith("/") or _DRIVE.match(name):
        raise refuse("it is an absolute path; names must be relative to the package")
    path = name[:-1] if name.endswith("/") else name
    for part in path.split("/"):
        if part == "..":
            raise refuse("a '..' component would leave the package")
        if part in ("", "."):
            raise refuse("it has an empty or '.' component")
        if ":" in part:
            raise refuse("it contains ':' (a drive letter or stream name on Windows)")
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            raise refuse("it contains a control character (NUL included)")
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            raise refuse("a component is longer than 255 bytes")
    return path


def _check_entries(
    infos: list[zipfile.ZipInfo], limits: PackageLimits
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Check every entry on its declared metadata; return (clean name, info) pairs.

    Entries under ``__MACOSX/`` (resource forks added by macOS Finder) are counted against
    the limits, then dropped.
    """
    if len(infos) > limits.max_files:
        raise PackageError(
            f"the zip has {len(infos)} entries; at most {limits.max_files} are allowed"
        )
    entries: list[tuple[str, zipfile.ZipInfo]] = []
    claimed: dict[str, tuple[str, bool]] = {}
    total = 0
    for info in infos:
        member = info.orig_filename
        name = _clean_name(member)
        is_dir = info.is_dir()
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind in _FILE_KINDS:
            raise PackageError(
                f"is {_FILE_KINDS[kind]}; only files and folders are allowed", member
            )
        if kind == stat.S_IFDIR and not is_dir:
            raise PackageError("is marked as a folder but its name does not end with '/'", member)
        if info.flag_bits & 0x1:
            raise PackageError("is encrypted; a package must not be", member)
        if is_dir:
            if info.file_size:
                raise PackageError("is a folder entry that holds data", member)
        else:
            if info.compress_type not in _ALLOWED_METHODS:
                raise PackageError(
                    f"uses compression method {info.compress_type}; use deflate or none", member
                )
            if info.file_size > limits.max_file_bytes:
                raise PackageError(
                    f"is {_size(info.file_size)} uncompressed; "
                    f"one file may be at most {_size(limits.max_file_bytes)}",
                    member,
                )
            total += info.file_size
            if total > limits.max_total_bytes:
                raise PackageError(
                    f"the files add up to more than {_size(limits.max_total_bytes)} uncompressed",
                    member,
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.ratio_min_bytes and ratio > limits.max_ratio:
                raise PackageError(
                    f"expands {ratio:.0f}:1 ({_size(info.compress_size)} to "
                    f"{_size(info.file_size)}); over {limits.max_ratio:g}:1 is refused as a "
                    "likely zip bomb",
                    member,
                )
        if name.split("/")[0] == "__MACOSX":
            continue
        _claim(claimed, name, is_dir, member)
        entries.append((name, info))
    return entries


def _claim(claimed: dict[str, tuple[str, bool]], name: str, is_dir: bool, member: str) -> None:
    """Register ``name`` and its folders; refuse duplicates and names that would collide on
    disk (equal but for letter case, or one path both a file and a folder)."""
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        folder = depth < len(parts) or is_dir
        previous = claimed.get(path.casefold())
        if previous is None:
            claimed[path.casefold()] = (path, folder)
        elif previous == (path, False) and not folder:
            raise PackageError("appears twice in the zip", member)
        elif previous != (path, True) or not folder:
            raise PackageError(
                f"clashes with {previous[0]!r}: names may not differ only in letter case, "
                "and one path cannot be both a file and a folder",
                member,
            )


def _top_folder(entries: list[tuple[str, zipfile.ZipInfo]]) -> str:
    """``"name/"`` when every entry lies inside one top folder, else ``""``."""
    tops = {name.split("/")[0] for name, _ in entries}
    if len(tops) == 1 and all(info.is_dir() or "/" in name for name, info in entries):
        return f"{tops.pop()}/"
    return ""


def _member_chunks(
    zf: zipfile.ZipFile, zip_name: str, member: PackageFile, budget: _Budget
) -> Iterator[bytes]:
    """Stream one member, holding it to its declared size and the shared byte budget.

    zipfile itself stops at the declared size and checks the CRC; counting here as well
    keeps the limits true whatever the zip library does with a lying header.
    """
    got = 0
    try:
        with zf.open(zip_name) as src:
            while chunk := src.read(_CHUNK):
                got += len(chunk)
                if got > member.size:
                    raise PackageError(
                        f"is corrupt: it holds more data than the {member.size} bytes its "
                        "header declares",
                        member.name,
                    )
                budget.take(len(chunk), member.name)
                yield chunk
    except _CORRUPT as exc:
        raise PackageError(f"is corrupt or truncated ({exc})", member.name) from None
    if got != member.size:
        raise PackageError(
            f"is corrupt: it holds {got} bytes but its header declares {member.size}", member.name
        )


def _verify_data(
    zf: zipfile.ZipFile,
    files: list[PackageFile],
    zip_names: Mapping[str, str],
    limits: PackageLimits,
) -> dict[str, bytes]:
    """Read every file once (CRC and sizes checked); return the metadata files' bytes."""
    budget = _Budget(limits.max_total_bytes)
    metadata: dict[str, bytes] = {}
    for member in files:
        keep = member.name in _METADATA
        if keep and member.size > limits.max_metadata_bytes:
            raise PackageError(
                f"is {_size(member.size)}; at most {_size(limits.max_metadata_bytes)} is allowed",
                member.name,
            )
        data = bytearray()
        for chunk in _member_chunks(zf, zip_names[member.name], member, budget):
            if keep:
                data += chunk
        if keep:
            metadata[member.name] = bytes(data)
    return metadata


# --- the manifest and requirements -----------------------------------------------------------

_METADATA = (MANIFEST, REQUIREMENTS_TXT, ENVIRONMENT_YAML)
_MODEL_KEYS = frozenset({"class_name", "module_path", "kwargs"})
_STAT_SPEC_KEYS = frozenset({"module_path", "class_name", "file_name", "kwargs"})
_MAX_YAML_NODES = 100_000
_MAX_YAML_DEPTH = 50
_COMMENT = re.compile(r"(^|\s)#.*$")


def _manifest_error(message: str) -> PackageError:
    return PackageError(message, MANIFEST)


def _parse_manifest(
    metadata: Mapping[str, bytes], names: set[str]
) -> tuple[str | None, ModelEntry, tuple[StatSpecEntry, ...]]:
    if MANIFEST not in names:
        raise PackageError(
            "is missing: a package needs learnware.yaml at its root (or in its one top folder)",
            MANIFEST,
        )
    doc = _load_yaml(metadata[MANIFEST], MANIFEST)
    if not isinstance(doc, dict):
        raise _manifest_error(
            "must be a mapping with keys such as model and stat_specifications, "
            f"got {_describe(doc)}"
        )
    if "__init__.py" not in names:
        raise PackageError("is missing: a package needs __init__.py at its root", "__init__.py")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise _manifest_error(f"name must be a string, got {name!r}")
    return name, _parse_model(doc.get("model", {}), names), _parse_stat_specs(doc, names)


def _parse_model(raw: Any, names: set[str]) -> ModelEntry:
    section = _section(raw, "model", _MODEL_KEYS)
    class_name = section.get("class_name", "Model")
    if not _is_identifier(class_name):
        raise _manifest_error(f"model.class_name must be a Python class name, got {class_name!r}")
    module_path = section.get("module_path", "__init__.py")
    file = _resolve_module(module_path, names) if isinstance(module_path, str) else None
    if file is None:
        raise _manifest_error(
            f"model.module_path {module_path!r} is not a file inside the package; give a "
            "relative .py path such as '__init__.py' or the name of a module in the package"
        )
    return ModelEntry(class_name, module_path, file, _kwargs(section, "model"))


def _parse_stat_specs(doc: dict[str, Any], names: set[str]) -> tuple[StatSpecEntry, ...]:
    if "stat_specifications" in doc:
        raw = doc["stat_specifications"]
        if not isinstance(raw, list) or not raw:
            raise _manifest_error(
                "stat_specifications must be a non-empty list of entries with "
                f"{', '.join(sorted(_STAT_SPEC_KEYS))}, got {_describe(raw)}"
            )
    else:
        if DEFAULT_STAT_SPEC_FILE not in names:
            raise _manifest_error(
                f"has no stat_specifications, so the default {DEFAULT_STAT_SPEC_FILE!r} (an "
                "RKMETableSpecification) is expected, but the package has no such file"
            )
        raw = [{"module_path": DEFAULT_STAT_SPEC_MODULE, "class_name": "RKMETableSpecification"}]
    entries: dict[str, StatSpecEntry] = {}
    for i, item in enumerate(raw):
        where = f"stat_specifications[{i}]"
        section = _section(item, where, _STAT_SPEC_KEYS)
        class_name = section.get("class_name")
        if not isinstance(class_name, str) or class_name not in STAT_SPEC_CLASSES:
            raise _manifest_error(
                f"{where}.class_name {class_name!r} is not an allowed specification class; "
                f"allowed: {', '.join(STAT_SPEC_CLASSES)}"
            )
        module_path = section.get("module_path")
        if not (isinstance(module_path, str) and _is_module_reference(module_path)):
            raise _manifest_error(
                f"{where}.module_path must be a module name such as "
                f"'{DEFAULT_STAT_SPEC_MODULE}' or a relative .py path, got {module_path!r}"
            )
        file_name = section.get("file_name", DEFAULT_STAT_SPEC_FILE)
        path = _relative_path(file_name) if isinstance(file_name, str) else None
        if path is None or path not in names:
            raise _manifest_error(
                f"{where}.file_name {file_name!r} is not a file inside the package"
            )
        entry = StatSpecEntry(class_name, module_path, path, _kwargs(section, where))
        if entry.type in entries:
            raise _manifest_error(
                f"{where} is a second {entry.type}; give at most one specification of each type"
            )
        entries[entry.type] = entry
    return tuple(entries.values())


def _section(raw: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _manifest_error(f"{where} must be a mapping, got {_describe(raw)}")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _manifest_error(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    return raw


def _kwargs(section: dict[str, Any], where: str) -> dict[str, Any]:
    kwargs = section.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise _manifest_error(f"{where}.kwargs must be a mapping, got {_describe(kwargs)}")
    return kwargs  # JSON-compatible: _load_yaml checked the whole document


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier() and not keyword.iskeyword(value)


def _is_module_reference(path: str) -> bool:
    if path.endswith(".py"):
        return _relative_path(path) is not None
    return all(_is_identifier(part) for part in path.split("."))


def _relative_path(path: str) -> str | None:
    """``path`` as a package name (``./`` dropped), or None if it is absolute or escapes."""
    if path.startswith("/") or "\\" in path or ":" in path:
        return None
    parts = [part for part in path.split("/") if part != "."]
    if not parts or any(part in ("", "..") for part in parts):
        return None
    return "/".join(parts)


def _resolve_module(module_path: str, names: set[str]) -> str | None:
    """The package file a model ``module_path`` names: a relative ``.py`` path, or a dotted
    module name looked up as ``a/b.py`` or ``a/b/__init__.py`` in the package."""
    if module_path.endswith(".py"):
        path = _relative_path(module_path)
        return path if path in names else None
    parts = module_path.split(".")
    if not all(_is_identifier(part) for part in parts):
        return None
    base = "/".join(parts)
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in names:
            return candidate
    return None


def _parse_requirements(metadata: Mapping[str, bytes], names: set[str]) -> Requirements:
    """``environment.yaml`` if present (the reference's containers prefer it), else
    ``requirements.txt``."""
    if ENVIRONMENT_YAML in names:
        doc = _load_yaml(metadata[ENVIRONMENT_YAML], ENVIRONMENT_YAML)
        if not isinstance(doc, dict):
            raise PackageError(f"must be a mapping, got {_describe(doc)}", ENVIRONMENT_YAML)
        dependencies = doc.get("dependencies", [])
        if not isinstance(dependencies, list):
            raise PackageError(
                f"dependencies must be a list, got {_describe(dependencies)}", ENVIRONMENT_YAML
            )
        conda: list[str] = []
        pip: list[str] = []
        for i, dependency in enumerate(dependencies):
            if isinstance(dependency, str):
                conda.append(dependency)
            elif (
                isinstance(dependency, dict)
                and set(dependency) == {"pip"}
                and isinstance(dependency["pip"], list)
                and all(isinstance(item, str) for item in dependency["pip"])
            ):
                pip.extend(dependency["pip"])
            else:
                raise PackageError(
                    f"dependencies[{i}] must be a string or a 'pip:' list of strings, "
                    f"got {dependency!r}",
                    ENVIRONMENT_YAML,
                )
        return Requirements(ENVIRONMENT_YAML, tuple(pip), tuple(conda))
    if REQUIREMENTS_TXT in names:
        return Requirements(REQUIREMENTS_TXT, _requirement_lines(metadata[REQUIREMENTS_TXT]))
    raise PackageError(
        "the package needs requirements.txt or environment.yaml at its root, "
        "naming what the model needs installed"
    )


def _requirement_lines(data: bytes) -> tuple[str, ...]:
    """Requirement strings from requirements.txt: comments, blank lines and option lines
    (``-r``, ``--index-url``, ``-e`` …) are skipped; backslash continuations are joined."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PackageError(f"is not UTF-8 text ({exc})", REQUIREMENTS_TXT) from None
    text = re.sub(r"\\\r?\n", "", text)
    lines = (_COMMENT.sub("", line).strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("-"))


class _PlainDataLoader(yaml.SafeLoader):
    """``safe_load`` plus the Python tags that build only plain data.

    The reference writes ``learnware.yaml`` with ``yaml.dump``, so a tuple in a model's kwargs
    (its templates' ``input_shape: (20,)``) becomes ``!!python/tuple``; such a value is read
    as a list. Tags that name a class, a function or a module stay refused, and so do bytes
    and complex numbers.
    """


def _plain(construct: Any) -> Any:
    return lambda loader, node: construct(loader, node)


for _tag, _construct in (
    ("tuple", _plain(yaml.SafeLoader.construct_sequence)),
    ("list", yaml.SafeLoader.construct_yaml_seq),
    ("dict", yaml.SafeLoader.construct_yaml_map),
    ("str", yaml.SafeLoader.construct_yaml_str),
    ("unicode", yaml.SafeLoader.construct_yaml_str),
    ("int", yaml.SafeLoader.construct_yaml_int),
    ("long", yaml.SafeLoader.construct_yaml_int),
    ("float", yaml.SafeLoader.construct_yaml_float),
    ("bool", yaml.SafeLoader.construct_yaml_bool),
    ("none", yaml.SafeLoader.construct_yaml_null),
):
    _PlainDataLoader.add_constructor(f"tag:yaml.org,2002:python/{_tag}", _construct)


def load_plain_yaml(data: bytes | str) -> Any:
    """Parse YAML as plain data (:class:`_PlainDataLoader`); raises ``yaml.YAMLError``."""
    return yaml.load(data, Loader=_PlainDataLoader)


def _load_yaml(data: bytes, member: str) -> Any:
    try:
        doc = load_plain_yaml(data)
    except yaml.YAMLError as exc:
        raise PackageError(
            f"is not YAML, or not plain data (tags that build objects, such as !!python/object, "
            f"are refused; !!python/tuple is read as a list): {exc}",
            member,
        ) from None
    except RecursionError:
        raise PackageError("is nested too deeply", member) from None
    _check_plain_data(doc, member)
    return doc


def _check_plain_data(doc: Any, member: str) -> None:
    """Refuse anything but JSON-like data, counting values as aliases expand.

    safe_load builds an alias as a second reference to one object, so a few lines can
    describe billions of values, or a cycle; whatever walks the document later (a JSON
    encoder, a constructor call) would never finish. Counting here bounds all of that.
    """
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > _MAX_YAML_NODES or depth > _MAX_YAML_DEPTH:
            raise PackageError(
                f"is too large or too deeply nested once its aliases are expanded (at most "
                f"{_MAX_YAML_NODES} values, {_MAX_YAML_DEPTH} levels)",
                member,
            )
        where = path or "the document"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise PackageError(f"{where}: key {key!r} must be a string", member)
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise PackageError(f"{where}: {value} is not a finite number", member)
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise PackageError(
                f"{where} holds a {type(value).__name__}; only strings, numbers, booleans, "
                "null, lists and mappings are allowed",
                member,
            )


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), f"a {type(value).__name__}") + f" ({value!r:.60})"


def _size(n: int) -> str:
    if n < MiB:
        return f"{n} bytes"
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"
