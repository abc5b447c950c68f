"""Installing a package's missing requirements into cached virtual environments.

An environment is keyed by the interpreter and the sorted requirement strings, and lives at
``<envs_dir>/<key>``. It is made with ``--system-site-packages`` plus a ``.pth`` file naming
the worker's own site directories, so pip sees (and does not reinstall) what the worker
already has, and the model sees both. It is built under a temporary name and renamed into
place when complete, so a half-built environment is never used; an exclusive ``fcntl`` lock
per key keeps concurrent checks from building the same one twice.

pip runs from the worker's interpreter (``pip --python <env>``) with an argument list, a
scrubbed environment, ``--isolated``, ``--only-binary=:all:`` (no ``setup.py`` ever runs),
and one deadline for the whole build. pip is run at most once against an environment that
already holds packages it installed, and then only with ``--dry-run``: installed wheels can
carry ``.pth`` files that run code when that environment's interpreter starts, which must
only ever happen inside the sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .log import CheckLog

MANIFEST = "wharf-env.json"
VENV_TIMEOUT_S = 120
WORKER_PTH = "_wharf_worker_site.pth"
PIP_TAIL_CHARS = 3000
#: A cached environment where something failed to install is rebuilt after this long, so a
#: passing network fault is not remembered for ever.
RETRY_FAILED_AFTER_S = 3600
NO_WHEEL_HINT = (
    "only wheels are installed (--only-binary=:all:): a package published only as source, "
    "or without a wheel for this platform, cannot be installed"
)


@dataclass(frozen=True)
class RequirementsEnv:
    """An environment holding ``installed``; ``failed`` maps requirements to pip's error.

    ``cached`` is False for an environment that may be incomplete for a passing reason (a
    timeout): it is not kept in the cache and is removed when the check is done with it.
    """

    root: Path
    installed: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    cached: bool = True

    @property
    def site_packages(self) -> Path:
        return self.root / _site_packages_rel()


def env_key(requirements: list[str]) -> str:
    """The cache key: the interpreter and platform, then the sorted requirements."""
    lines = [f"{sys.implementation.cache_tag} {sysconfig.get_platform()}", *sorted(requirements)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@contextlib.contextmanager
def requirements_env(
    requirements: list[str], *, envs_dir: Path, timeout_s: float, log: CheckLog
) -> Iterator[RequirementsEnv | None]:
    """A (possibly cached) environment with as many of ``requirements`` as pip could install,
    held (a shared lock, so no one rebuilds it meanwhile) until the block ends.

    Yields ``None`` if nothing could be installed or the lock could not be had in time.
    Raises ``OSError`` only when ``envs_dir`` itself cannot be used.
    """
    envs_dir.mkdir(parents=True, exist_ok=True)
    key = env_key(requirements)
    deadline = time.monotonic() + timeout_s  # waiting for the lock and building, together
    with _locked(envs_dir / f"{key}.lock", deadline) as lock_fd:
        if lock_fd is None:
            log.warn(
                f"another check is still building environment {key[:12]}; continuing without it"
            )
            yield None
            return
        env = _reuse_or_build(requirements, envs_dir, key, deadline, log)
        fcntl.flock(lock_fd, fcntl.LOCK_SH)  # others may use it too, but not rebuild it
        try:
            yield env if env is not None and env.installed else None
        finally:
            if env is not None and not env.cached:
                shutil.rmtree(env.root, ignore_errors=True)


def _reuse_or_build(
    requirements: list[str], envs_dir: Path, key: str, deadline: float, log: CheckLog
) -> RequirementsEnv:
    final = envs_dir / key
    if (final / MANIFEST).exists() and not _stale(final):
        env = _load(final)
        log.info(f"using cached environment {key[:12]} ({', '.join(env.installed) or 'empty'})")
        _log_failures(env, log, cached=True)
        return env
    if final.exists():  # old failures to retry, or damaged: rebuild
        shutil.rmtree(final)
    for stale in envs_dir.glob(f".build-{key[:16]}-*"):  # left by a killed worker
        shutil.rmtree(stale, ignore_errors=True)
    env = _build(requirements, envs_dir, key, deadline, log)
    _log_failures(env, log, cached=False)
    if env.cached:
        os.rename(env.root, final)
        env = RequirementsEnv(final, env.installed, env.failed, cached=True)
        log.info(f"environment {key[:12]} kept in the cache for later checks")
    return env


def _build(
    requirements: list[str], envs_dir: Path, key: str, deadline: float, log: CheckLog
) -> RequirementsEnv:
    root = _new_venv(envs_dir, key, deadline)
    log.info(f"installing with pip (wheels only): {' '.join(requirements)}")
    code, tail = _pip(root, requirements, deadline)
    if code == 0:
        return _commit(root, requirements, {}, cached=True)
    timed_out = code is None
    failed: dict[str, str] = {}
    if timed_out or len(requirements) == 1:
        failed = dict.fromkeys(requirements, tail)
        return _commit(root, [], failed, cached=not timed_out)
    # Find which requirements install on their own (a dry run installs nothing), then
    # install those together into a fresh environment.
    good: list[str] = []
    for requirement in requirements:
        code, tail = _pip(root, [requirement], deadline, dry_run=True)
        timed_out |= code is None
        if code == 0:
            good.append(requirement)
        else:
            failed[requirement] = tail
    shutil.rmtree(root)
    root = _new_venv(envs_dir, key, deadline)
    if good:
        code, tail = _pip(root, good, deadline)
        timed_out |= code is None
        if code != 0:
            failed.update(dict.fromkeys(good, tail))
            good = []
    return _commit(root, good, failed, cached=not timed_out)


def _new_venv(envs_dir: Path, key: str, deadline: float) -> Path:
    root = envs_dir / f".build-{key[:16]}-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)]
    # Its own short limit: a spent install deadline must not look like a broken worker.
    limit = max(deadline, time.monotonic() + VENV_TIMEOUT_S)
    code, tail = _run(argv, limit, cwd=envs_dir, home=envs_dir / ".home")
    if code != 0:
        raise OSError(f"could not create a virtual environment in {envs_dir}: {tail}")
    # The worker's own site directories after the environment's, so pip and the model see
    # the worker's packages even when the worker itself runs in a virtual environment.
    (root / _site_packages_rel() / WORKER_PTH).write_text(
        "".join(f"{p}\n" for p in site.getsitepackages()), encoding="utf-8"
    )
    return root


def _pip(
    root: Path, requirements: list[str], deadline: float, *, dry_run: bool = False
) -> tuple[int | None, str]:
    argv = [
        sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"),
        "install", "--isolated", "--disable-pip-version-check", "--no-input",
        "--only-binary=:all:", "--no-warn-script-location", "--progress-bar", "off",
        "--root-user-action", "ignore", "--retries", "2", "--timeout", "30",
        "--cache-dir", str(root.parent / ".pip-cache"),
        *(["--dry-run"] if dry_run else []),
        *requirements,
    ]  # fmt: skip
    # cwd is the fresh environment: nothing in it can be mistaken for a local archive.
    return _run(argv, deadline, cwd=root, home=root.parent / ".home")


def _run(argv: list[str], deadline: float, *, cwd: Path, home: Path) -> tuple[int | None, str]:
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
        start_new_session=True,  # pip --python starts a second interpreter: kill both
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
    return code, text[-PIP_TAIL_CHARS:]


def _commit(
    root: Path, installed: list[str], failed: dict[str, str], *, cached: bool
) -> RequirementsEnv:
    doc = {
        "installed": installed,
        "failed": failed,
        "python": sys.implementation.cache_tag,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_ts": time.time(),
    }
    (root / MANIFEST).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return RequirementsEnv(root, tuple(installed), failed, cached=cached)


def _load(root: Path) -> RequirementsEnv:
    doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    return RequirementsEnv(root, tuple(doc["installed"]), dict(doc["failed"]), cached=True)


def _stale(root: Path) -> bool:
    try:
        doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return bool(doc["failed"]) and time.time() - doc["created_ts"] > RETRY_FAILED_AFTER_S
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _log_failures(env: RequirementsEnv, log: CheckLog, *, cached: bool) -> None:
    when = " when this environment was built" if cached else ""
    for requirement, tail in env.failed.items():
        log.warn(
            f"could not install {requirement}{when}; continuing without it: the model run "
            "decides whether it was needed"
        )
        log.block("pip said:", tail)
    if env.failed:
        log.info(f"note: {NO_WHEEL_HINT}")
    if env.installed and not cached:
        log.ok(f"installed: {', '.join(env.installed)}")


def _site_packages_rel() -> str:
    return f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


@contextlib.contextmanager
def _locked(path: Path, deadline: float) -> Iterator[int | None]:
    """Hold an exclusive lock on ``path``, waiting until ``deadline``; yields the locked file
    descriptor, or ``None`` if the lock was not had in time."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield None
                    return
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)  # releases the lock
