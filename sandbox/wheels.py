"""Choosing and fetching the wheels a set of requirements needs, on the host, running none.

Only the worker's own interpreter runs here (``sys.executable -I -m pip``), never one that
could see an installed requirement. :func:`resolve` asks pip for a dry-run install report
against the worker's environment with ``--only-binary=:all:``: pip reads only the static
metadata of wheels, so no code of any package runs, and what the worker already satisfies
is left out of the report. :func:`fetch` downloads exactly the report's wheels
(``--no-deps``, no index lookups) and checks their sha256 against the report.

Every pip run has ``--isolated`` (no pip configuration file or ``PIP_*`` variable of the
host is read), a scrubbed environment, an argument list and a deadline. The package index
and find-links come from the caller (:class:`~.limits.InstallOptions`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

TAIL_CHARS = 3000
#: A wheel's file name (PEP 427), as saved in the wheelhouse.
_WHEEL_NAME = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")


@dataclass(frozen=True)
class Source:
    """Where wheels come from: an index (``None``: PyPI) and find-links, plus pip's cache."""

    index_url: str | None
    find_links: str | None
    cache_dir: Path
    home: Path

    def args(self) -> list[str]:
        out = ["--index-url", self.index_url] if self.index_url else []
        return out + (["--find-links", self.find_links] if self.find_links else [])


@dataclass(frozen=True)
class Wheel:
    """One wheel of a resolution: its project, version, URL and expected sha256."""

    name: str
    version: str
    url: str
    sha256: str | None

    @property
    def filename(self) -> str:
        return unquote(PurePosixPath(urlsplit(self.url).path).name)


@dataclass(frozen=True)
class Resolution:
    """The wheels to install (``None`` when pip could not resolve) and pip's words."""

    wheels: tuple[Wheel, ...] | None
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.wheels is not None


class FetchError(RuntimeError):
    """The chosen wheels could not be downloaded or are not what the report named."""


def resolve(
    requirements: list[str], *, source: Source, report: Path, deadline: float
) -> Resolution:
    """The wheels pip would install for ``requirements`` into the worker's environment."""
    argv = [
        *_pip("install"), "--dry-run", "--report", str(report), "--only-binary=:all:",
        *source.args(), *_common(source), *requirements,
    ]  # fmt: skip
    report.unlink(missing_ok=True)
    code, output = run(argv, deadline, cwd=report.parent, home=source.home)
    if code != 0:
        return Resolution(None, output, timed_out=code is None)
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        wheels = tuple(_wheel(item) for item in doc["install"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Resolution(None, f"{output}\n(pip's install report is unusable: {exc})")
    return Resolution(wheels, output)


def _wheel(item: dict) -> Wheel:
    info = item["download_info"]
    url = str(info["url"])
    archive = info.get("archive_info") or {}
    sha256 = archive.get("hashes", {}).get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = archive["hash"].removeprefix("sha256=")
    wheel = Wheel(
        name=str(item["metadata"]["name"]),
        version=str(item["metadata"]["version"]),
        url=url,
        sha256=sha256,
    )
    if urlsplit(url).scheme not in ("https", "http", "file") or not _WHEEL_NAME.fullmatch(
        wheel.filename
    ):
        raise ValueError(f"{url} is not a wheel's address")
    return wheel


def fetch(wheels: tuple[Wheel, ...], dest: Path, *, source: Source, deadline: float) -> list[Path]:
    """Download ``wheels`` into ``dest`` and check them; :class:`FetchError` if that fails."""
    argv = [
        *_pip("download"), "--no-deps", "--only-binary=:all:", "--no-index",
        "--dest", str(dest), *_common(source), *(w.url for w in wheels),
    ]  # fmt: skip
    code, output = run(argv, deadline, cwd=dest, home=source.home)
    if code != 0:
        raise FetchError(f"the wheels could not be downloaded:\n{output}")
    paths = []
    for wheel in wheels:
        path = dest / wheel.filename
        if not path.is_file():
            raise FetchError(f"pip did not save {wheel.filename}:\n{output}")
        if wheel.sha256 is not None and _sha256(path) != wheel.sha256.lower():
            raise FetchError(f"{wheel.filename} does not have the sha256 the index gave")
        paths.append(path)
    return paths


def unpacked_size(paths: list[Path]) -> int:
    """What the wheels hold unpacked, from their zip directories (an install writes no more:
    each member is read up to its stated size)."""
    total = 0
    for path in paths:
        try:
            with zipfile.ZipFile(path) as archive:
                total += sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise FetchError(f"{path.name} is not a readable wheel: {exc}") from None
    return total


def _pip(command: str) -> list[str]:
    return [sys.executable, "-I", "-m", "pip", command]


def _common(source: Source) -> list[str]:
    return [
        "--isolated", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--retries", "2", "--timeout", "30", "--cache-dir", str(source.cache_dir),
    ]  # fmt: skip


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run(argv: list[str], deadline: float, *, cwd: Path, home: Path) -> tuple[int | None, str]:
    """Run ``argv`` until ``deadline`` in a scrubbed environment (no credentials, no pip
    configuration): (exit code, or None on timeout; output tail)."""
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    text = out.decode("utf-8", errors="replace").strip()
    if code is None:
        text += "\n(stopped: the install time limit was reached)"
    return code, text[-TAIL_CHARS:]
