"""Start a program under resource limits: the first thing the sandbox's process runs.

Usage: ``python -I -S _launch.py CONFIG_JSON PROGRAM [ARGS...]``. It joins the cgroups named
in the config (by writing its pid to each ``cgroup.procs``), sets the rlimits, then replaces
itself with ``PROGRAM``. Everything the program starts inherits both.

This is a separate program rather than a ``preexec_fn`` because code run between fork and
exec in a multi-threaded worker can deadlock; here nothing but the standard library runs, in a
fresh interpreter. If a cgroup cannot be joined or a limit set, it exits with status 125 and
says why on stderr, so the program never runs with less protection than the host logged.
"""

import json
import os
import resource
import sys

LAUNCH_FAILED = 125


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    program = argv[2:]
    try:
        for procs in config.get("cgroups", []):
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        for name, (soft, hard) in config.get("rlimits", {}).items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"wharf launcher: could not apply limits: {exc}\n")
        os._exit(LAUNCH_FAILED)
    try:
        os.execv(program[0], program)
    except OSError as exc:
        sys.stderr.write(f"wharf launcher: could not start {program[0]}: {exc}\n")
        os._exit(LAUNCH_FAILED)


if __name__ == "__main__":
    main(sys.argv)
