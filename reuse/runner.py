"""Running a downloaded learnware on the user's side.

:meth:`Learnware.load` reads a package zip with :func:`specification.package.read_package`
(checked, nothing run), extracts it once into a private temporary folder, and loads its
statistical specification. :meth:`Learnware.predict` then runs the model:

- **sandboxed** (the default): in a fresh child process under the bubblewrap sandbox and the
  limits the market's checker uses (:func:`wharf.sandbox.runner.run_model`): no network, a
  read-only view of the system, CPU-time, memory, process and file-size limits and a
  wall-clock deadline. Inputs go in and outputs come back as ``.npy`` files, never pickles.
  Each call starts one sandbox, which costs an interpreter start plus the model's import and
  construction (typically a few tenths of a second): predict large batches rather than single
  rows.
- **in-process** (``sandbox=False``): the package's code is imported and run inside *your*
  Python process with all of your rights (files, network, credentials). Only use it for
  packages you trust; it is faster, as the model is built once and kept.

A model that raises, hangs, exceeds a limit or returns something unusable gives a
:class:`LearnwareRunError` carrying the model's stderr tail; a hang ends at the time limit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import traceback
import warnings
import weakref
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from wharf.sandbox import bubblewrap, envs, outputs, runner
from wharf.sandbox.limits import InstallOptions, SandboxLimits
from wharf.sandbox.log import CheckLog
from wharf.sandbox.requirements import plan_requirements
from wharf.sandbox.runner import remove_tree
from wharf.specification.errors import PackageError
from wharf.specification.files import loads_spec
from wharf.specification.package import MANIFEST, LearnwarePackage, read_package
from wharf.specification.rkme import RKME, TABLE_SPEC_TYPE

from . import _inprocess

SandboxUnavailable = runner.SandboxUnavailable
#: Characters of the model's stderr kept in an error message.
STDERR_SHOWN = 4000

__all__ = ["Learnware", "LearnwareRunError", "SandboxUnavailable"]


class LearnwareRunError(RuntimeError):
    """The learnware's model could not produce predictions.

    Attributes
    ----------
    learnware_id : str
        The learnware that failed.
    reason : str
        What went wrong, in one line.
    stage : str or None
        How far the model got: ``"setup"``, ``"import"``, ``"init"``, ``"predict"`` or
        ``"outputs"`` (``None`` when it never reported, e.g. killed at a limit).
    stderr_tail : str
        The end of what the model wrote to stderr, then its traceback (in-process: the
        traceback only).
    """

    def __init__(
        self, learnware_id: str, reason: str, *, stage: str | None = None, stderr_tail: str = ""
    ):
        self.learnware_id = learnware_id
        self.reason = reason
        self.stage = stage
        self.stderr_tail = stderr_tail[-STDERR_SHOWN:]
        message = f"learnware {learnware_id!r}: {reason}"
        if self.stderr_tail.strip():
            message += "\n--- the model's stderr and traceback (last lines) ---\n"
            message += self.stderr_tail.rstrip()
        super().__init__(message)


class Learnware:
    """A learnware package ready to predict; made by :meth:`Learnware.load`.

    Parameters
    ----------
    Use :meth:`load`; the constructor is internal.

    Attributes
    ----------
    id : str
        The market id given to :meth:`load`, else the manifest's ``id``, else its ``name``,
        else the zip's file name without ``.zip``.
    spec : RKME or None
        The package's table RKME (``RKMETableSpecification``), if it has one.
    semantic : dict or None
        The semantic specification given to :meth:`load`, else the one the manifest names
        under ``semantic_specification: {file_name: ...}``, else ``None``.
    input_shape : tuple of int or None
        The shape of one input row, from the RKME.
    package : LearnwarePackage
        The checked package.
    sandboxed : bool
        Whether :meth:`predict` runs the model in the sandbox.
    limits : SandboxLimits
        The limits of each sandboxed run.

    Examples
    --------
    >>> import tempfile
    >>> from wharf.examples.learnwares import build_examples
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     example = build_examples(folder)[3]  # a diabetes regressor
    ...     with Learnware.load(example.package, time_limit_s=20) as lw:
    ...         print(lw.id, lw.input_shape, lw.predict(example.X_test[:5]).shape)
    diabetes-female (10,) (5, 1)
    """

    def __init__(
        self,
        *,
        package: LearnwarePackage,
        root: Path,
        package_dir: Path,
        learnware_id: str,
        spec: RKME | None,
        semantic: dict[str, Any] | None,
        sandboxed: bool,
        limits: SandboxLimits,
        bwrap: str | None,
        allow_unsandboxed: bool,
        site_dirs: tuple[Path, ...],
        resources: ExitStack,
    ):
        self.package = package
        self.id = learnware_id
        self.spec = spec
        self.semantic = semantic
        self.sandboxed = sandboxed
        self.limits = limits
        self._root = root
        self._package_dir = package_dir
        self._bwrap = bwrap
        self._allow_unsandboxed = allow_unsandboxed
        self._site_dirs = site_dirs
        self._model: Any = None
        self._module_name: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _cleanup, root, resources)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        zip_path: str | os.PathLike[str],
        *,
        sandbox: bool = True,
        limits: SandboxLimits | None = None,
        time_limit_s: float | None = None,
        memory_bytes: int | None = None,
        learnware_id: str | None = None,
        semantic: dict[str, Any] | None = None,
        install_requirements: bool = False,
        install_options: InstallOptions | None = None,
        allow_unsandboxed: bool = False,
    ) -> Learnware:
        """Read, check and extract a learnware package zip.

        Parameters
        ----------
        zip_path : path
            The package, e.g. as written by ``WharfClient.download``.
        sandbox : bool, default=True
            Run the model in the bubblewrap sandbox. ``False`` runs the package's code in
            this process, with all of its rights: only for packages you trust.
        limits : wharf.sandbox.limits.SandboxLimits, optional
            The limits of each sandboxed run: CPU time, memory, processes, file and output
            sizes. By default the market's checker's defaults (60 CPU seconds, 2 GiB).
        time_limit_s, memory_bytes : optional
            Override the CPU-time limit (the wall-clock limit follows from it) and the
            memory limit of ``limits``.
        learnware_id : str, optional
            The learnware's market id (see the ``id`` attribute).
        semantic : dict, optional
            Its semantic specification, e.g. from ``WharfClient.learnware(id)``.
        install_requirements : bool, default=False
            Install requirements this environment lacks into a cached environment, as the
            checker does (wheels only, chosen here without running any of them, installed
            by pip inside the sandbox), and make them visible in the sandbox. Without it a
            missing requirement gives a warning here and an import error at predict time.
        install_options : wharf.sandbox.limits.InstallOptions, optional
            Where those environments are cached (by default ``wharf/envs`` in the user's
            cache folder, ``$XDG_CACHE_HOME`` or ``~/.cache``), the time and size bounds of
            an install, and the package index or wheel folder pip uses (PyPI by default).
        allow_unsandboxed : bool, default=False
            Where bubblewrap cannot run, run the model with the resource limits only, with a
            warning, instead of raising :class:`SandboxUnavailable`. The model can then read
            your files and use the network: only for packages you trust.

        Raises
        ------
        PackageError
            The zip is unsafe or malformed, or its specification files are unreadable.
        SandboxUnavailable
            ``sandbox=True`` but bubblewrap cannot run here (and ``allow_unsandboxed`` is
            false).
        """
        limits = _limits(limits, time_limit_s=time_limit_s, memory_bytes=memory_bytes)
        package = read_package(zip_path)
        manifest = yaml.safe_load(package.read_member(MANIFEST)) or {}
        learnware_id = str(
            learnware_id
            or manifest.get("id")
            or package.name
            or Path(zip_path).name.removesuffix(".zip")
        )
        spec = _read_table_spec(package)
        if semantic is None:
            semantic = _read_semantic(package, manifest)
        if install_requirements and not sandbox:
            raise ValueError(
                "install_requirements=True needs sandbox=True: installed requirements are only "
                "made visible inside the sandbox"
            )
        bwrap = _working_bwrap(allow_unsandboxed) if sandbox else None
        root = Path(tempfile.mkdtemp(prefix="wharf-learnware-"))
        resources = ExitStack()
        try:
            package_dir = package.extract_to(root / "package")
            (root / "runs").mkdir()
            site_dirs = _requirements(
                package,
                learnware_id,
                install_requirements,
                install_options or InstallOptions(envs_dir=default_envs_dir()),
                limits,
                bwrap,
                allow_unsandboxed,
                resources,
            )
        except BaseException:
            resources.close()
            remove_tree(root)
            raise
        return cls(
            package=package,
            root=root,
            package_dir=package_dir,
            learnware_id=learnware_id,
            spec=spec,
            semantic=semantic,
            sandboxed=sandbox,
            limits=limits,
            bwrap=bwrap,
            allow_unsandboxed=allow_unsandboxed,
            site_dirs=site_dirs,
            resources=resources,
        )

    # -- use ---------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return None if self.spec is None else self.spec.feature_shape

    def predict(self, X: Any) -> np.ndarray:
        """Run the model on ``X`` and return its outputs, one row per input row.

        ``X`` must be numeric with one row per sample; each row must have the RKME's
        feature shape. It is passed to the model as float64.
        """
        if self._closed:
            raise RuntimeError(f"learnware {self.id!r} is closed")
        X = self._check_inputs(X)
        if self.sandboxed:
            raw = self._predict_sandboxed(X)
        else:
            raw = self._predict_in_process(X)
        if raw.ndim == 0 or len(raw) != len(X):
            got = "a scalar" if raw.ndim == 0 else f"{len(raw)} rows"
            raise LearnwareRunError(
                self.id, f"the model returned {got} for {len(X)} input rows", stage="outputs"
            )
        return raw

    def close(self) -> None:
        """Remove the extracted package and release everything; idempotent."""
        self._closed = True
        if self._module_name is not None:
            _inprocess.forget_modules(self._module_name)
            self._module_name = None
        self._model = None
        self._finalizer()

    def __enter__(self) -> Learnware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "sandboxed" if self.sandboxed else "in-process"
        state = ", closed" if self._closed else ""
        return f"Learnware(id={self.id!r}, input_shape={self.input_shape}, {mode}{state})"

    # A learnware is a handle to one extracted package; scikit-learn's ``clone`` deep-copies
    # estimator parameters, and every copy must share (not duplicate, nor later delete) it.
    def __copy__(self) -> Learnware:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Learnware:
        return self

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "a Learnware cannot be pickled: it owns a temporary folder on this machine; "
            "load the package again in the other process"
        )

    # -- internals ---------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """Where the package is extracted (removed by :meth:`close`)."""
        return self._package_dir

    def _check_inputs(self, X: Any) -> np.ndarray:
        if hasattr(X, "detach") and hasattr(X, "cpu"):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must hold numbers, got dtype {X.dtype}")
        if X.ndim < 1 or len(X) == 0:
            raise ValueError(f"X must hold at least one row; got shape {X.shape}")
        expected = self.input_shape
        if expected is not None and tuple(X.shape[1:]) != expected:
            wanted = ", ".join(["n_samples", *map(str, expected)])
            raise ValueError(
                f"X has rows of shape {tuple(X.shape[1:])}, but learnware {self.id!r} expects "
                f"rows of shape {expected}: X must have shape ({wanted})"
            )
        return np.ascontiguousarray(X, dtype=np.float64)

    def _predict_sandboxed(self, X: np.ndarray) -> np.ndarray:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._root / "runs"))
        try:
            (run_dir / "in").mkdir()
            (run_dir / "out").mkdir()
            np.save(run_dir / "in" / "inputs.npy", X, allow_pickle=False)
            model = self.package.model
            job = runner.ModelJob(
                package_dir=self._package_dir,
                module_file=model.file,
                class_name=model.class_name,
                kwargs=model.kwargs,
                input_dir=run_dir / "in",
                output_dir=run_dir / "out",
                site_dirs=self._site_dirs,
            )
            run = runner.run_model(
                job,
                self.limits,
                log=CheckLog(),
                bwrap=self._bwrap,
                allow_unsandboxed=self._allow_unsandboxed,
            )
            return self._read_outputs(run, run_dir / "out")
        finally:
            remove_tree(run_dir)

    def _read_outputs(self, run: runner.SandboxResult, out_dir: Path) -> np.ndarray:
        stopped = run.describe(self.limits)

        def fail(reason: str, stage: str | None = None) -> LearnwareRunError:
            return LearnwareRunError(self.id, reason, stage=stage, stderr_tail=run.stderr_tail)

        if run.output_problem:  # nothing it sent is read
            raise fail(f"the model's results were refused: {run.output_problem}")
        try:
            output = outputs.read_run_output(out_dir, self.limits.max_file_bytes)
        except outputs.OutputFileError as exc:
            reason = stopped or f"the model exited with status {run.exit_code}"
            raise fail(f"{reason}; {exc}") from None
        result = output.result
        error = result.get("error")
        stage = result.get("stage")
        if isinstance(error, dict):
            reason = f"the model failed at its {stage} stage: {error.get('type')}: "
            reason += str(error.get("message"))
            if error.get("builtin") in ("ImportError", "ModuleNotFoundError"):
                reason += self._missing_hint()
            tb = str(error.get("traceback") or "").strip()
            raise LearnwareRunError(
                self.id, reason, stage=stage, stderr_tail=(run.stderr_tail + "\n" + tb).strip()
            )
        if stopped or run.exit_code != 0 or result.get("status") != "ok":
            raise fail(f"the model run did not finish cleanly: {stopped or run.exit_code}", stage)
        if output.outputs is None:
            problem = result.get("output_problem", "it wrote no outputs")
            raise fail(f"predict returned {result.get('output_type', '?')}: {problem}", stage)
        return output.outputs

    def _predict_in_process(self, X: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._model is None:
                try:
                    self._model, self._module_name = _inprocess.build_model(
                        self._package_dir, self.package.model
                    )
                except Exception as exc:
                    reason = f"the model could not be built: {type(exc).__name__}: {exc}"
                    if isinstance(exc, ImportError):
                        reason += self._missing_hint()
                    raise LearnwareRunError(
                        self.id, reason, stage="init", stderr_tail=traceback.format_exc()
                    ) from exc
            model = self._model
        try:
            raw = model.predict(X.copy())
        except Exception as exc:
            raise LearnwareRunError(
                self.id,
                f"the model failed at its predict stage: {type(exc).__name__}: {exc}",
                stage="predict",
                stderr_tail=traceback.format_exc(),
            ) from exc
        return _as_output_array(raw, self.id)

    def _missing_hint(self) -> str:
        missing = _missing_requirements(self.package)
        if not missing or self._site_dirs:
            return ""
        return (
            f" (requirements not installed here: {', '.join(missing)}; load the learnware "
            "with install_requirements=True)"
        )


def default_envs_dir() -> Path:
    """Where requirements environments are cached by default: ``wharf/envs`` in the user's
    cache folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "wharf" / "envs"


def _limits(
    limits: SandboxLimits | None,
    *,
    time_limit_s: float | None = None,
    memory_bytes: int | None = None,
) -> SandboxLimits:
    """``limits`` (by default the checker's), with the given overrides."""
    limits = limits if limits is not None else SandboxLimits()
    if time_limit_s is not None:
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be > 0, got {time_limit_s!r}")
        limits = dataclasses.replace(limits, time_s=float(time_limit_s))
    if memory_bytes is not None:
        if int(memory_bytes) < 64 * 1024 * 1024:
            raise ValueError(f"memory_bytes must be at least 64 MiB, got {memory_bytes!r}")
        limits = dataclasses.replace(limits, memory_bytes=int(memory_bytes))
    return limits


def _working_bwrap(allow_unsandboxed: bool) -> str | None:
    """The bubblewrap to use, or ``None`` when running unsandboxed is allowed instead."""
    found = bubblewrap.find()
    problem = "bubblewrap (bwrap) is not installed"
    if found is not None:
        problem = bubblewrap.probe(found)
        if problem is None:
            return found
    if allow_unsandboxed:
        warnings.warn(
            f"the sandbox is unavailable ({problem}); allow_unsandboxed is set, so the "
            "learnware's code will run without isolation (only resource limits apply)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    raise SandboxUnavailable(
        f"cannot run learnwares sandboxed here: {problem}. Install bubblewrap, or load with "
        "sandbox=False to run a package you trust in this process"
    )


def _read_table_spec(package: LearnwarePackage) -> RKME | None:
    for entry in package.stat_specs:
        if entry.type == TABLE_SPEC_TYPE:
            try:
                return loads_spec(package.read_member(entry.file_name))
            except PackageError:
                raise
            except ValueError as exc:
                raise PackageError(f"is not a usable RKME: {exc}", entry.file_name) from None
    return None


def _read_semantic(package: LearnwarePackage, manifest: Any) -> dict[str, Any] | None:
    section = manifest.get("semantic_specification") if isinstance(manifest, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("file_name"), str):
        return None
    name = section["file_name"]
    try:
        doc = json.loads(package.read_member(name))
    except ValueError as exc:
        raise PackageError(f"is not a JSON semantic specification ({exc})", name) from None
    if not isinstance(doc, dict):
        raise PackageError("must hold a JSON object", name)
    return doc


def _missing_requirements(package: LearnwarePackage) -> list[str]:
    decisions = plan_requirements(package.requirements)
    return [d.requirement for d in decisions if d.action == "install" and d.requirement]


def _requirements(
    package: LearnwarePackage,
    learnware_id: str,
    install: bool,
    options: InstallOptions,
    limits: SandboxLimits,
    bwrap: str | None,
    allow_unsandboxed: bool,
    resources: ExitStack,
) -> tuple[Path, ...]:
    missing = _missing_requirements(package)
    if not missing:
        return ()
    if not install:
        warnings.warn(
            f"learnware {learnware_id!r} needs {', '.join(missing)}, not installed here; its "
            "model may fail to import (pass install_requirements=True to install them)",
            RuntimeWarning,
            stacklevel=4,
        )
        return ()
    log = CheckLog()
    # Installed by pip inside the sandbox; nothing of them runs here (see wharf.sandbox.envs).
    env = resources.enter_context(
        envs.requirements_env(
            missing,
            options=options,
            limits=limits,
            log=log,
            bwrap=bwrap,
            allow_unsandboxed=allow_unsandboxed,
        )
    )
    if env is None or env.failed:
        warnings.warn(
            f"learnware {learnware_id!r}: not every requirement could be installed:\n" + log.text(),
            RuntimeWarning,
            stacklevel=4,
        )
    return () if env is None else (env.site_packages,)


def _as_output_array(raw: Any, learnware_id: str) -> np.ndarray:
    if hasattr(raw, "detach") and hasattr(raw, "cpu"):  # a torch tensor
        raw = raw.detach().cpu().numpy()
    try:
        out = np.asarray(raw)
    except ValueError as exc:
        raise LearnwareRunError(
            learnware_id, f"predict returned {type(raw).__name__}, not an array: {exc}"
        ) from None
    if out.dtype.kind not in "biuf":
        raise LearnwareRunError(
            learnware_id,
            f"predict returned a non-numeric array (dtype {out.dtype})",
            stage="outputs",
        )
    return out


def _cleanup(root: Path, resources: ExitStack) -> None:
    try:
        resources.close()
    finally:
        remove_tree(root)
