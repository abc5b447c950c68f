"""The submission check: from a package zip and a semantic spec to accepted or rejected.

Steps, each logged: read the package; check the semantic spec; check the statistical spec
against it; decide and install requirements; run the model in the sandbox on inputs of its
kind; check what it returned. The first failed step rejects. Nothing from the package is
imported or run in this process.

The inputs: for a table, pseudo-samples herded from the learnware's own RKME; for text,
random strings of 10 to 1,000 printable characters; for images, integers in [0, 255) of the
model's declared ``input_shape``, drawn inside the sandbox once the model says its shape
(the reference's three probes, seeded).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import string
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from wharf.market.settings import Settings
from wharf.sandbox import bubblewrap, envs, outputs, runner
from wharf.sandbox._child import IMAGE_RECIPE
from wharf.sandbox.limits import SandboxLimits
from wharf.sandbox.log import CheckLog
from wharf.sandbox.requirements import Decision, plan_requirements
from wharf.sandbox.runner import remove_tree
from wharf.specification.errors import PackageError, SemanticSpecError, SpecificationError
from wharf.specification.herding import herd
from wharf.specification.hetero import hetero_problem
from wharf.specification.image import IMAGE_SPEC_TYPE, RKMEImage
from wharf.specification.package import LearnwarePackage, read_package
from wharf.specification.rkme import RKME, TABLE_SPEC_TYPE
from wharf.specification.semantic import SemanticSpec, check_semantic_spec
from wharf.specification.text import TEXT_SPEC_TYPE

from .judging import check_model_shapes, check_outputs
from .sandboxing import install_options, sandbox_limits
from .specs import check_stat_specs, spec_meta

logger = logging.getLogger(__name__)

#: Pseudo-samples the model is asked to predict.
N_INPUTS = 20
#: Random probe texts: lengths in this range, characters from this alphabet.
TEXT_LENGTHS = (10, 1000)
TEXT_ALPHABET = string.ascii_letters + string.digits + string.punctuation
#: Random probe images: values in [0, 255), at most this many numbers in all.
MAX_IMAGE_VALUES = 1 << 24
MiB = 1024 * 1024
STDERR_SHOWN = 4000


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_submission`.

    Attributes
    ----------
    accepted: whether every check passed.
    log: the readable, timestamped log of the check.
    stat_spec: the learnware's RKME (table, text or image), when accepted.
    spec_meta: ``spec_type``, ``spec_shape``, ``spec_gamma``, ``spec_points`` (K) and
        ``num_points`` of that spec, when accepted.
    """

    accepted: bool
    log: str
    stat_spec: RKME | RKMEImage | None = None
    spec_meta: dict[str, Any] | None = None


def check_submission(
    package_path: Path,
    semantic_spec: dict,
    *,
    settings: Settings,
    work_dir: Path,
    log: CheckLog | None = None,
    bwrap_path: str | os.PathLike[str] | None = None,
) -> CheckReport:
    """Check a submitted learnware; never raises for a bad submission.

    Parameters
    ----------
    package_path: the package zip.
    semantic_spec: the semantic specification submitted with it (reference dict format).
    settings: limits and sandbox settings (``model_*``, ``sandbox``, ``allow_unsandboxed``,
        ``install_*``, ``pip_*``, ``envs_dir``).
    work_dir: scratch space; a fresh folder is made in it and removed afterwards.
    log: where to write the log (e.g. one that streams); a new one if omitted.
    bwrap_path: the bubblewrap executable; by default ``bwrap`` on ``PATH``.

    Raises only for faults of the worker itself, such as an unwritable ``work_dir`` or
    ``envs_dir``, or :class:`~wharf.sandbox.runner.SandboxUnavailable` when the model
    cannot be run in the sandbox here (the submission is then neither accepted nor rejected).
    """
    log = log if log is not None else CheckLog()
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="check-", dir=work_dir))
    try:
        spec = _check(package_path, semantic_spec, settings, scratch, log, bwrap_path)
    except _Rejected:
        log.fail("REJECTED")
        return CheckReport(False, log.text())
    finally:
        remove_tree(scratch)
    log.ok("ACCEPTED")
    return CheckReport(True, log.text(), spec, spec_meta(spec))


class _Rejected(Exception):
    """A check failed; the reason is already in the log."""


def _check(
    package_path: Path,
    semantic_spec: dict,
    settings: Settings,
    scratch: Path,
    log: CheckLog,
    bwrap_path: str | os.PathLike[str] | None,
) -> RKME | RKMEImage:
    with _step(log, "reading the package"):
        package = _read_package(package_path, log)
        semantic = _check_semantic(semantic_spec, log)
        spec = check_stat_specs(
            package, semantic, log, settings.spec_limits, max_bytes=settings.max_spec_bytes
        )
        if spec is None:
            raise _Rejected
        log_hetero_eligibility(semantic, spec, log)
    with _step(log, "preparing the model run"):
        package_dir = _extract(package, scratch / "package", log)
        _write_inputs(spec, scratch / "in", log)
        (scratch / "out").mkdir()
    with _step(log, "deciding the requirements"):
        decisions = plan_requirements(package.requirements)
        _log_requirements(decisions, package, log)
        to_install = [d.requirement for d in decisions if d.action == "install"]
    bwrap = _bwrap(settings, bwrap_path, log)
    with _install(to_install, settings, bwrap, log) as env, _step(log, "running the model"):
        job = runner.ModelJob(
            package_dir=package_dir,
            module_file=package.model.file,
            class_name=package.model.class_name,
            kwargs=package.model.kwargs,
            input_dir=scratch / "in",
            output_dir=scratch / "out",
            site_dirs=(env.site_packages,) if env is not None else (),
        )
        run = _run_model(job, settings, log, bwrap)
    with _step(log, "checking the outputs"):
        _judge(run, scratch / "out", semantic, settings, log)
    return spec


@contextmanager
def _step(log: CheckLog, what: str) -> Iterator[None]:
    """Turn an unexpected error while ``what`` into a rejection rather than a crash, so a
    submission that trips a checker bug cannot become a task retried for ever."""
    try:
        yield
    except (_Rejected, runner.SandboxUnavailable):
        raise
    except OSError:
        raise  # the worker's disk: not the submission's fault
    except Exception as exc:
        logger.exception("checker error while %s", what)
        log.fail(f"internal checker error while {what}: {type(exc).__name__}: {exc}")
        raise _Rejected from None


def _read_package(package_path: Path, log: CheckLog) -> LearnwarePackage:
    log.info(f"package: {package_path.name}")
    try:
        package = read_package(package_path)
    except PackageError as exc:
        log.fail(f"package: {exc}")
        raise _Rejected from None
    model = package.model
    log.ok(
        f"package read: {len(package.files)} files, sha256 {package.sha256[:16]}…; model "
        f"{model.class_name} from {model.file}; requirements from {package.requirements.file}"
    )
    return package


def _extract(package: LearnwarePackage, directory: Path, log: CheckLog) -> Path:
    try:
        return package.extract_to(directory)
    except PackageError as exc:
        log.fail(f"package: {exc}")
        raise _Rejected from None
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise  # the worker's disk
        log.fail(f"package: a file path is too long to unpack ({exc.filename})")
        raise _Rejected from None


def _write_inputs(spec: RKME | RKMEImage, directory: Path, log: CheckLog) -> None:
    directory.mkdir()
    if spec.spec_type == IMAGE_SPEC_TYPE:
        recipe = {"n": N_INPUTS, "seed": 0, "low": 0, "high": 255, "max_values": MAX_IMAGE_VALUES}
        (directory / IMAGE_RECIPE).write_text(json.dumps(recipe), encoding="utf-8")
        log.info(
            f"inputs: {N_INPUTS} random images of integers in [0, 255), of the model's "
            "input_shape (seed 0)"
        )
        return
    if spec.spec_type == TEXT_SPEC_TYPE:
        np.save(directory / "inputs.npy", random_texts(N_INPUTS, seed=0), allow_pickle=False)
        log.info(
            f"inputs: {N_INPUTS} random strings of {TEXT_LENGTHS[0]} to {TEXT_LENGTHS[1]} "
            "printable characters (seed 0), passed to predict as a list of str"
        )
        return
    try:
        # A table model takes flat rows of Input.Dimension features, whatever z's shape.
        inputs = herd(spec, N_INPUTS, seed=0, device="cpu").reshape(N_INPUTS, -1)
    except SpecificationError as exc:
        log.fail(f"statistical specification: cannot draw inputs for the model from it: {exc}")
        raise _Rejected from None
    np.save(directory / "inputs.npy", inputs, allow_pickle=False)
    log.info(f"inputs: {N_INPUTS} pseudo-samples herded from the learnware's RKME (seed 0)")


def random_texts(n: int, *, seed: int) -> np.ndarray:
    """``n`` random strings (a numpy unicode array: ``.npy`` without pickle)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(TEXT_ALPHABET))
    lengths = rng.integers(TEXT_LENGTHS[0], TEXT_LENGTHS[1] + 1, size=n)
    return np.array(["".join(rng.choice(alphabet, size=int(k))) for k in lengths])


def _check_semantic(semantic_spec: dict, log: CheckLog) -> SemanticSpec:
    try:
        semantic = check_semantic_spec(semantic_spec)
    except SemanticSpecError as exc:
        log.fail(f"semantic specification: field {exc.field}: {exc.reason}")
        raise _Rejected from None
    except SpecificationError as exc:
        log.fail(f"semantic specification: {exc}")
        raise _Rejected from None
    log.ok(
        f"semantic specification: Data {semantic.data_type}, Task {semantic.task_type}, "
        f"Input.Dimension {semantic.input_dim}, Output.Dimension {semantic.output_dim}"
    )
    return semantic


def log_hetero_eligibility(semantic: SemanticSpec, spec: RKME | RKMEImage, log: CheckLog) -> None:
    """Say whether a table learnware takes part in the heterogeneous market and, if not,
    which field keeps it out; never a reason to reject it."""
    if spec.spec_type != TABLE_SPEC_TYPE:
        return
    problem = hetero_problem(semantic, spec.spec_type, spec.n_features_in_)
    if problem is None:
        log.info("heterogeneous market: takes part (every input column is described)")
    else:
        log.info(
            f"heterogeneous market: does not take part, {problem}; users whose columns "
            "differ will not find it (the check goes on: this is no reason to reject)"
        )


def _log_requirements(decisions: list[Decision], package: LearnwarePackage, log: CheckLog) -> None:
    if not decisions:
        log.info(f"requirements: {package.requirements.file} lists nothing")
    for d in decisions:
        if d.action == "present":
            log.ok(f"requirement {d.line!r}: used as is — {d.reason}")
        elif d.action == "skip":
            log.info(f"requirement {d.line!r}: skipped — {d.reason}")
        elif d.action == "ignore":
            log.warn(f"requirement {d.line!r}: ignored — {d.reason}")
        else:
            log.info(f"requirement {d.line!r}: to install — {d.reason}")


def _bwrap(
    settings: Settings, bwrap_path: str | os.PathLike[str] | None, log: CheckLog
) -> str | os.PathLike[str] | None:
    """The bubblewrap the settings ask for (``None``: switched off or not installed)."""
    if settings.sandbox != "bwrap":
        log.warn("the sandbox is switched off in the settings (sandbox = 'none')")
        return None
    bwrap = bwrap_path if bwrap_path is not None else bubblewrap.find()
    if bwrap is None:
        log.warn("bubblewrap (bwrap) is not installed on this worker")
    return bwrap


@contextmanager
def _install(
    requirements: list[str],
    settings: Settings,
    bwrap: str | os.PathLike[str] | None,
    log: CheckLog,
) -> Iterator[envs.RequirementsEnv | None]:
    if not requirements:
        yield None
        return
    with ExitStack() as stack:
        try:
            env = stack.enter_context(
                envs.requirements_env(
                    requirements,
                    options=install_options(settings),
                    limits=sandbox_limits(settings),
                    log=log,
                    bwrap=bwrap,
                    allow_unsandboxed=settings.allow_unsandboxed,
                )
            )
        except runner.SandboxUnavailable as exc:
            log.fail(str(exc))
            raise  # the worker's fault, not the package's: no verdict
        yield env


def _run_model(
    job: runner.ModelJob,
    settings: Settings,
    log: CheckLog,
    bwrap: str | os.PathLike[str] | None,
) -> runner.SandboxResult:
    limits = sandbox_limits(settings)
    try:
        run = runner.run_model(
            job, limits, log=log, bwrap=bwrap, allow_unsandboxed=settings.allow_unsandboxed
        )
    except runner.SandboxUnavailable as exc:
        log.fail(str(exc))
        raise  # the worker's fault, not the package's: no verdict
    stopped = run.describe(limits)
    log.info(
        f"model run finished in {run.wall_s:.1f} s with exit status {run.exit_code}"
        + (f" — {stopped}" if stopped else "")
    )
    for key, value in run.cgroup_stats.items():
        if key == "pids_refused" and value:
            log.warn(f"the process limit refused {value} attempt(s) to start a process")
        elif key == "memory_oom_kills" and value:
            log.warn(
                f"the memory limit ({settings.model_memory_bytes // MiB} MiB for the whole "
                f"sandbox) killed {value} process(es)"
            )
    return run


def _judge(
    run: runner.SandboxResult,
    out_dir: Path,
    semantic: SemanticSpec,
    settings: Settings,
    log: CheckLog,
) -> None:
    limits = sandbox_limits(settings)

    def reject(message: str) -> None:
        log.fail(message)
        if run.stderr_tail.strip():
            log.block("the model's stderr (last lines):", run.stderr_tail[-STDERR_SHOWN:])
        if run.stdout_tail.strip():
            log.block("the model's stdout (last lines):", run.stdout_tail[-STDERR_SHOWN:])
        raise _Rejected

    if run.output_problem:  # nothing it sent is read
        reject(f"the model's results were refused — {run.output_problem}")
    try:
        output = outputs.read_run_output(out_dir, limits.max_file_bytes)
    except outputs.OutputFileError as exc:
        reason = run.describe(limits) or f"it exited with status {run.exit_code}"
        reject(f"the model run failed — {reason}; {exc}")
    result = output.result
    error = result.get("error")
    stage = result.get("stage")
    if stage in ("setup", "import", "init") and isinstance(error, dict):
        reject(
            _error_line(
                f"the model could not be {_STAGE_VERBS.get(stage, 'running')}", error, limits
            )
        )
    if not check_model_shapes(result, semantic, log):
        reject("the model's declared shapes do not fit its semantic specification")
    if isinstance(error, dict):
        reject(
            _error_line(
                f"the model failed while {_STAGE_VERBS.get(stage, 'running')}", error, limits
            )
        )
    stopped = run.describe(limits)
    if stopped or run.exit_code != 0 or result.get("status") != "ok":
        reject(f"the model run did not finish cleanly: {stopped or f'exit {run.exit_code}'}")
    if not check_outputs(output, semantic, N_INPUTS, log):
        reject("the model's outputs break the rules above")


_STAGE_VERBS = {
    "setup": "started",
    "import": "imported",
    "init": "instantiated",
    "inputs": "drawing its inputs",
    "predict": "predicting",
    "outputs": "returning its outputs",
}


def _error_line(prefix: str, error: dict, limits: SandboxLimits) -> str:
    text = f"{prefix}: {error.get('type')}: {error.get('message')}"
    if error.get("builtin") == "MemoryError":
        text += f" (it needs more memory than its limit of {limits.memory_bytes // MiB} MiB)"
    elif error.get("errno") == errno.EFBIG:
        text += f" (it wrote a file larger than the limit of {limits.max_file_bytes // MiB} MiB)"
    tb = str(error.get("traceback") or "").strip()
    if tb:
        text += "\n" + tb
    return text
