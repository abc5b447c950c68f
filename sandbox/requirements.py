"""Deciding what to do with each of a package's requirements, without installing anything.

Every requirement ends in exactly one :class:`Decision`:

- ``skip``: its environment marker is false here (``pywin32; sys_platform == "win32"``);
- ``present``: the worker's environment already satisfies it, so it is used as is;
- ``install``: it must be installed (into a cached environment, see :mod:`.envs`);
- ``ignore``: it cannot or need not be installed (not PEP 508, a direct URL, conda-only,
  or the reference ``learnware`` package, which the sandbox's shim stands in for).

``environment.yaml`` files are read as pip requirements: their ``pip:`` list, plus plain
conda dependencies that look like Python packages (``numpy=1.24`` becomes
``numpy==1.24.*``). Conda itself is never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from wharf.specification.package import ENVIRONMENT_YAML, Requirements

#: Conda dependencies that are not Python packages, or that the worker's interpreter brings.
CONDA_ONLY = frozenset(
    {
        "python",
        "pip",
        "setuptools",
        "wheel",
        "blas",
        "bzip2",
        "ca-certificates",
        "cudatoolkit",
        "cudnn",
        "gcc",
        "gxx",
        "intel-openmp",
        "ld_impl_linux-64",
        "mkl",
        "nccl",
        "ncurses",
        "openblas",
        "openssl",
        "readline",
        "sqlite",
        "tk",
        "tzdata",
        "ucrt",
        "vc",
        "vs2015_runtime",
        "xz",
        "zlib",
    }
)
#: Provided inside the sandbox by the compatibility shim; installing it would pull in torch.
SHIMMED = frozenset({"learnware"})
_CONDA_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")


@dataclass(frozen=True)
class Decision:
    """What happens to one requirement line, and why (a sentence for the log)."""

    line: str
    action: Literal["skip", "present", "install", "ignore"]
    reason: str
    requirement: str | None = None  # the normalised string handed to pip, for "install"


def plan_requirements(requirements: Requirements) -> list[Decision]:
    """A decision for every requirement of the package, in file order."""
    decisions: list[Decision] = []
    lines: list[tuple[str, str]] = [(line, line) for line in requirements.pip]
    if requirements.file == ENVIRONMENT_YAML:
        for dependency in requirements.conda:
            converted, why = conda_to_pip(dependency)
            if converted is None:
                decisions.append(Decision(dependency, "ignore", why))
            else:
                lines.append((dependency, converted))
    seen: set[str] = set()
    for line, text in lines:
        decision = decide(line, text)
        if decision.action == "install":
            if decision.requirement in seen:
                continue
            seen.add(decision.requirement)
        decisions.append(decision)
    return decisions


def conda_to_pip(dependency: str) -> tuple[str | None, str]:
    """A pip requirement for a conda dependency, or ``None`` and why it is left out."""
    spec = dependency.split("::", 1)[-1].strip()  # drop a channel prefix
    match = _CONDA_SPEC.match(spec)
    if match is None:
        return None, "conda dependency ignored: not a package name (conda is not used)"
    name, version = match.group(1), match.group(2).replace(" ", "")
    if name.lower() in CONDA_ONLY or name.lower().startswith(("lib", "_")):
        return None, "conda dependency ignored: not a Python package (conda is not used)"
    if version[:1].isdigit():  # "name 1.24", conda's match-spec form
        version = "=" + version.split()[0]
    if version.startswith("=") and not version.startswith("=="):
        # name=1.24 means 1.24.* to conda; name=1.24.3=build pins an exact version.
        parts = version[1:].split("=")
        exact = len(parts) > 1 or parts[0].endswith("*")
        version = f"=={parts[0]}" if exact else f"=={parts[0]}.*"
    return f"{name}{version}", ""


def decide(line: str, text: str | None = None) -> Decision:
    """The decision for one requirement line (``text`` is the pip form, if it differs)."""
    try:
        req = Requirement(text if text is not None else line)
    except InvalidRequirement as exc:
        return Decision(line, "ignore", f"not a valid requirement (PEP 508): {exc}")
    if req.url:
        return Decision(
            line,
            "ignore",
            "direct URL and VCS requirements are not installed (wheels from "
            "the package index only)",
        )
    if req.marker is not None and not req.marker.evaluate():
        return Decision(line, "skip", f"its marker is false on this platform ({req.marker})")
    if canonicalize_name(req.name) in SHIMMED:
        return Decision(
            line,
            "ignore",
            "the reference learnware package is provided by the sandbox's "
            "compatibility shim (learnware.model.BaseModel)",
        )
    installed = _installed_version(req.name)
    if installed is not None and req.specifier.contains(installed, prereleases=True):
        missing = _missing_extras(req)
        if not missing:
            return Decision(
                line,
                "present",
                f"{req.name} {installed} is installed on the worker and satisfies it",
            )
        why = f"{req.name} {installed} is installed but not {', '.join(missing)}"
    elif installed is not None:
        why = f"the worker has {req.name} {installed}, which does not satisfy it"
    else:
        why = f"{req.name} is not installed on the worker"
    req.marker = None  # evaluated above; pip gets the bare requirement
    return Decision(line, "install", why, str(req))


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _missing_extras(req: Requirement) -> list[str]:
    """The requirements an extra adds (one level deep) that the worker does not satisfy."""
    if not req.extras:
        return []
    missing: list[str] = []
    for raw in metadata.requires(req.name) or []:
        try:
            dep = Requirement(raw)
        except InvalidRequirement:
            continue
        if dep.marker is None:
            continue  # not an extra's requirement; installed along with the base package
        if not any(
            dep.marker.evaluate({**default_environment(), "extra": extra}) for extra in req.extras
        ):
            continue
        version = _installed_version(dep.name)
        if version is None or not dep.specifier.contains(version, prereleases=True):
            missing.append(str(dep.name) + (str(dep.specifier) or ""))
    return missing
