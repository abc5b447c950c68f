"""Requirements environments: the wheels a package needs beyond the worker's, installed in the
sandbox and cached per set of requirements.

No code of a requirement ever runs on the host. A wheel may carry a ``.pth`` file, console
scripts or a ``sitecustomize``, any of which runs when an interpreter that sees it starts;
so an environment has no interpreter of its own, and the host never starts one on it,
imports from it or runs its scripts. Building one takes three steps under one deadline:

1. **resolve** on the host with the worker's own pip, wheels only, reading nothing but
   static metadata (:func:`.wheels.resolve`). When the requirements do not resolve
   together, those that resolve alone are resolved together again, and the rest are
   recorded as failed;
2. **fetch** exactly the resolved wheels into a wheelhouse and check their sha256
   (:func:`.wheels.fetch`), and their unpacked size against the options' ``max_bytes``;
3. **install** them with ``pip install --no-index --no-deps --target`` run *inside* the
   sandbox (:func:`.runner.run_command`): no network, the wheelhouse read-only, only the
   new environment writable, under rlimits, cgroups and the remaining time.

An environment is the folder ``<envs_dir>/<key>`` holding ``site/`` (the installed wheels,
put ahead of the worker's packages by the model's child, inside the sandbox, which also
processes their ``.pth`` files there) and a manifest. It is built as ``.build-<key>-*`` and
renamed into place only when the sandboxed install succeeded completely; a failed or timed
out install is removed. Leftovers of a killed worker are removed by the next build, and a
cached environment whose manifest is missing, unreadable or of another layout is rebuilt.
An exclusive ``fcntl`` lock per key keeps concurrent checks from building it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import runner, wheels
from .bubblewrap import Bind, Command
from .limits import InstallOptions, SandboxLimits
from .log import CheckLog

MANIFEST = "wharf-env.json"
#: Environments of another layout (the former virtual environments) are rebuilt.
LAYOUT = 2
SITE = "site"
#: The environment and the wheelhouse as the sandboxed install sees them.
ENV_MOUNT = "/opt/wharf/env"
WHEELS_MOUNT = "/opt/wharf/wheels"
#: A cached environment where something failed to install is rebuilt after this long, so a
#: passing network fault is not remembered for ever.
RETRY_FAILED_AFTER_S = 3600
NO_WHEEL_HINT = (
    "only wheels are installed (--only-binary=:all:): a package published only as source, "
    "or without a wheel for this platform, cannot be installed"
)
_WORK_DIR = re.compile(r"\.(?:build|wheels)-([0-9a-f]{64})-[0-9a-f]+")


@dataclass(frozen=True)
class RequirementsEnv:
    """An environment holding ``installed`` (requirements) from ``wheels`` (file names);
    ``failed`` maps requirements to pip's error.

    ``cached`` is False for an environment that may be incomplete for a passing reason (a
    timeout): it is not kept in the cache and is removed when the check is done with it.
    """

    root: Path
    installed: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    cached: bool = True
    wheels: tuple[str, ...] = ()

    @property
    def site_packages(self) -> Path:
        return self.root / SITE


@dataclass(frozen=True)
class _Setup:
    """What a build needs besides the requirements: see :func:`requirements_env`."""

    options: InstallOptions
    limits: SandboxLimits
    allow_unsandboxed: bool


def env_key(requirements: list[str], options: InstallOptions) -> str:
    """The cache key: the layout, interpreter, platform and wheel source, then the sorted
    requirements."""
    lines = [
        f"layout {LAYOUT} {sys.implementation.cache_tag} {sysconfig.get_platform()}",
        f"index {options.index_url or ''} links {options.find_links or ''}",
        *sorted(requirements),
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@contextlib.contextmanager
def requirements_env(
    requirements: list[str],
    *,
    options: InstallOptions,
    limits: SandboxLimits,
    log: CheckLog,
    bwrap: str | os.PathLike[str] | None,
    allow_unsandboxed: bool = False,
) -> Iterator[RequirementsEnv | None]:
    """A (possibly cached) environment with as many of ``requirements`` as could be
    installed, held (a shared lock, so no one rebuilds it meanwhile) until the block ends.

    ``options`` says where environments are cached, the time for waiting for the lock and
    building together, the most the wheels may hold and where pip finds them; the install
    runs with the memory and processes of ``limits``. ``bwrap`` is the bubblewrap to install
    in (``None``: none here). Yields ``None`` if nothing could be installed or the lock could
    not be had in time. Raises :class:`~.runner.SandboxUnavailable` when an environment must
    be built but the sandbox cannot run here (and ``allow_unsandboxed`` is off), and
    ``OSError`` only when ``options.envs_dir`` itself cannot be used.
    """
    setup = _Setup(options, limits, allow_unsandboxed)
    envs_dir = options.envs_dir
    envs_dir.mkdir(parents=True, exist_ok=True)
    key = env_key(requirements, options)
    deadline = time.monotonic() + options.timeout_s
    with _locked(envs_dir / f"{key}.lock", deadline) as lock_fd:
        if lock_fd is None:
            log.warn(
                f"another check is still building environment {key[:12]}; continuing without it"
            )
            yield None
            return
        env = _reuse_or_build(requirements, key, deadline, setup, bwrap, log)
        fcntl.flock(lock_fd, fcntl.LOCK_SH)  # others may use it too, but not rebuild it
        try:
            yield env if env is not None and env.installed else None
        finally:
            if env is not None and not env.cached:
                shutil.rmtree(env.root, ignore_errors=True)


def _reuse_or_build(
    requirements: list[str],
    key: str,
    deadline: float,
    setup: _Setup,
    bwrap: str | os.PathLike[str] | None,
    log: CheckLog,
) -> RequirementsEnv | None:
    envs_dir = setup.options.envs_dir
    final = envs_dir / key
    env = _load(final)
    if env is not None and not _stale(final):
        log.info(f"using cached environment {key[:12]} ({', '.join(env.installed) or 'empty'})")
        _log_failures(env, log, cached=True)
        return env
    if final.exists():  # old failures to retry, damaged, or of another layout: rebuild
        shutil.rmtree(final)
    _sweep(envs_dir, key)
    env = _build(requirements, envs_dir, key, deadline, setup, bwrap, log)
    if env is None:
        return None
    _log_failures(env, log, cached=False)
    if env.cached:
        os.rename(env.root, final)
        env = RequirementsEnv(final, env.installed, env.failed, True, env.wheels)
        log.info(f"environment {key[:12]} kept in the cache for later checks")
    return env


def _build(
    requirements: list[str],
    envs_dir: Path,
    key: str,
    deadline: float,
    setup: _Setup,
    bwrap: str | os.PathLike[str] | None,
    log: CheckLog,
) -> RequirementsEnv | None:
    working = runner.isolation(bwrap, allow_unsandboxed=setup.allow_unsandboxed, log=log)
    suffix = uuid.uuid4().hex[:8]
    house = envs_dir / f".wheels-{key}-{suffix}"
    root = envs_dir / f".build-{key}-{suffix}"
    house.mkdir()
    source = wheels.Source(
        index_url=setup.options.index_url,
        find_links=setup.options.find_links,
        cache_dir=envs_dir / ".pip-cache",
        home=envs_dir / ".home",
    )
    try:
        log.info(
            "resolving on the host with the worker's pip (wheels only, metadata only): "
            + " ".join(requirements)
        )
        chosen = _choose(requirements, source, house, deadline)
        root.mkdir()
        (root / SITE).mkdir()
        if chosen.wheels:
            problem = _fetch(chosen.wheels, house, source, deadline, setup.options)
            if problem is None:
                problem = _install(root, house, chosen.wheels, deadline, setup, working, log)
            if problem is not None:  # nothing of it is used: built afresh next time
                shutil.rmtree(root)
                failed = {**chosen.failed, **dict.fromkeys(chosen.kept, problem)}
                return RequirementsEnv(root, (), failed, cached=False)
        return _commit(root, chosen, cached=chosen.final)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(house, ignore_errors=True)


@dataclass(frozen=True)
class _Choice:
    """Requirements kept and their wheels; failed ones; whether a timeout left it open."""

    kept: list[str]
    wheels: tuple[wheels.Wheel, ...]
    failed: dict[str, str]
    final: bool


def _choose(
    requirements: list[str], source: wheels.Source, house: Path, deadline: float
) -> _Choice:
    count = iter(range(1_000_000))

    def resolve(reqs: list[str]) -> wheels.Resolution:
        report = house / f"report-{next(count)}.json"
        return wheels.resolve(reqs, source=source, report=report, deadline=deadline)

    together = resolve(requirements)
    if together.wheels is not None:
        return _Choice(requirements, together.wheels, {}, True)
    if together.timed_out or len(requirements) == 1:
        failed = dict.fromkeys(requirements, together.output)
        return _Choice([], (), failed, not together.timed_out)
    good: list[str] = []
    failed = {}
    final = True
    for requirement in requirements:
        alone = resolve([requirement])
        final &= not alone.timed_out
        if alone.ok:
            good.append(requirement)
        else:
            failed[requirement] = alone.output
    if not good:
        return _Choice([], (), failed, final)
    again = resolve(good)
    if again.wheels is None:
        failed.update(dict.fromkeys(good, again.output))
        return _Choice([], (), failed, final and not again.timed_out)
    return _Choice(good, again.wheels, failed, final)


def _fetch(
    chosen: tuple[wheels.Wheel, ...],
    house: Path,
    source: wheels.Source,
    deadline: float,
    options: InstallOptions,
) -> str | None:
    """Download the chosen wheels into ``house``; what went wrong, if anything."""
    try:
        paths = wheels.fetch(chosen, house, source=source, deadline=deadline)
        size = wheels.unpacked_size(paths)
    except wheels.FetchError as exc:
        return str(exc)
    if size > options.max_bytes:
        return (
            f"the wheels hold {_mib(size)} unpacked, over the limit of "
            f"{_mib(options.max_bytes)} (install_max_bytes)"
        )
    return None


def _install(
    root: Path,
    house: Path,
    chosen: tuple[wheels.Wheel, ...],
    deadline: float,
    setup: _Setup,
    bwrap: str | None,
    log: CheckLog,
) -> str | None:
    """Install the wheels of ``house`` into ``root/site`` with pip, in the sandbox; what went
    wrong, if anything."""
    left = max(1.0, deadline - time.monotonic())
    limits = SandboxLimits(
        time_s=left,
        memory_bytes=setup.limits.memory_bytes,
        max_processes=setup.limits.max_processes,
        max_file_bytes=setup.options.max_bytes,
        max_output_bytes=0,  # no scratch output: the environment is the output
        wall_limit_s=left,
    )
    names = [wheel.filename for wheel in chosen]
    if bwrap is None:
        log.warn(
            "!!! INSTALLING REQUIREMENTS WITHOUT A SANDBOX !!! bubblewrap is unavailable and "
            "allow_unsandboxed is set (development only)"
        )
    else:
        log.info(
            f"installing {', '.join(names)} with pip inside the sandbox: no network, the "
            f"wheels read-only, only the new environment writable; memory "
            f"{_mib(limits.memory_bytes)}, {left:.0f} s left"
        )
    (root / ".tmp").mkdir()
    run = runner.run_command(_install_command(root, house, names, bwrap), limits, bwrap=bwrap)
    shutil.rmtree(root / ".tmp", ignore_errors=True)
    stopped = run.describe(limits) or _unexpected(root)
    if run.exit_code == 0 and not stopped:
        return None
    log.warn(
        "the sandboxed install failed ("
        + (stopped or f"pip's exit status {run.exit_code}")
        + "): nothing of it is kept, and a later check builds the environment afresh"
    )
    return (run.stdout_tail + "\n" + run.stderr_tail).strip()[-wheels.TAIL_CHARS :]


def _unexpected(root: Path) -> str | None:
    """What the install left in ``root`` besides its ``site`` folder, if anything: the host
    writes the manifest there and binds ``site`` into later sandboxes, so neither may be a
    link."""
    entries = {entry.name: entry for entry in os.scandir(root)}
    site = entries.pop(SITE, None)
    if site is None or site.is_symlink() or not site.is_dir(follow_symlinks=False):
        return f"{SITE}/ is missing or not a folder after the install"
    if entries:
        return f"the install left {', '.join(sorted(entries))} beside {SITE}/"
    return None


def _install_command(root: Path, house: Path, names: list[str], bwrap: str | None) -> Command:
    env_dir, wheel_dir = (ENV_MOUNT, WHEELS_MOUNT) if bwrap else (str(root), str(house))
    argv = (
        sys.executable, "-I", "-m", "pip", "install", "--isolated", "--no-index", "--no-deps",
        "--no-compile", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--no-warn-script-location", "--progress-bar", "off",
        "--target", f"{env_dir}/{SITE}", *(f"{wheel_dir}/{name}" for name in names),
    )  # fmt: skip
    # pip unpacks into TMPDIR and then moves into --target: the environment's own disk,
    # not the /tmp tmpfs (memory).
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    env["HOME"] = env["TMPDIR"] = f"{env_dir}/.tmp"
    binds = (Bind(house, WHEELS_MOUNT), Bind(root, ENV_MOUNT, writable=True)) if bwrap else ()
    return Command(argv, env, env_dir, binds)


def _commit(root: Path, chosen: _Choice, *, cached: bool) -> RequirementsEnv:
    names = tuple(wheel.filename for wheel in chosen.wheels)
    doc = {
        "layout": LAYOUT,
        "installed": chosen.kept,
        "failed": chosen.failed,
        "wheels": names,
        "python": sys.implementation.cache_tag,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_ts": time.time(),
    }
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(root / MANIFEST, flags, 0o644), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    return RequirementsEnv(root, tuple(chosen.kept), chosen.failed, cached, names)


def _load(root: Path) -> RequirementsEnv | None:
    """The cached environment at ``root``; ``None`` if absent, unreadable or of another
    layout."""
    try:
        doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        site = root / SITE
        if doc["layout"] != LAYOUT or site.is_symlink() or not site.is_dir():
            return None
        return RequirementsEnv(
            root,
            tuple(str(r) for r in doc["installed"]),
            {str(k): str(v) for k, v in doc["failed"].items()},
            True,
            tuple(str(w) for w in doc["wheels"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _stale(root: Path) -> bool:
    try:
        doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return bool(doc["failed"]) and time.time() - doc["created_ts"] > RETRY_FAILED_AFTER_S
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _sweep(envs_dir: Path, key: str) -> None:
    """Remove the build and wheel folders of workers killed mid-build: ours (we hold its
    lock), and any other whose key's lock is free (nobody is building it)."""
    for path in envs_dir.iterdir():
        match = _WORK_DIR.fullmatch(path.name)
        if match is None:
            continue
        if match.group(1) == key:
            shutil.rmtree(path, ignore_errors=True)
            continue
        with _locked(envs_dir / f"{match.group(1)}.lock", deadline=0.0) as fd:
            if fd is not None:
                shutil.rmtree(path, ignore_errors=True)


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
        wheels_text = ", ".join(env.wheels) or "none needed: the worker has them"
        log.ok(f"installed: {', '.join(env.installed)} (wheels: {wheels_text})")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB"


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
