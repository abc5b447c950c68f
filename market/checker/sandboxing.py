"""The sandbox as the market's settings configure it: the limits of a model run, where and
how requirements environments are built, and whether this worker can run submitted code."""

from __future__ import annotations

from wharf.market.settings import Settings
from wharf.sandbox import bubblewrap
from wharf.sandbox.limits import InstallOptions, SandboxLimits


def sandbox_limits(settings: Settings) -> SandboxLimits:
    """The limits of one model run (``WHARF_MODEL_*``)."""
    return SandboxLimits(
        time_s=settings.model_time_limit_s,
        memory_bytes=settings.model_memory_bytes,
        max_processes=settings.model_max_processes,
        max_file_bytes=settings.model_max_file_bytes,
        max_output_bytes=settings.model_output_limit_bytes,
    )


def install_options(settings: Settings) -> InstallOptions:
    """Requirements environments: the cache, the time and size bounds, the wheel source."""
    return InstallOptions(
        envs_dir=settings.envs_dir,
        timeout_s=settings.install_timeout_s,
        max_bytes=settings.install_max_bytes,
        index_url=settings.pip_index_url,
        find_links=settings.pip_find_links,
    )


def unavailable_reason(settings: Settings) -> str | None:
    """Why this machine cannot run submitted models as ``settings`` require, or ``None``.

    Check workers ask before they take any work: a host without a working bubblewrap would
    otherwise fail every check it is given, which is the worker's fault, not the packages'.
    """
    if settings.allow_unsandboxed:
        return None
    if settings.sandbox != "bwrap":
        return (
            "the sandbox is switched off (WHARF_SANDBOX=none) and running submitted code "
            "without it is not allowed (WHARF_ALLOW_UNSANDBOXED is false)"
        )
    bwrap = bubblewrap.find()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap)"
    problem = bubblewrap.probe(bwrap)
    if problem is not None:
        return f"bubblewrap at {bwrap} cannot create its namespaces here: {problem}"
    return None
