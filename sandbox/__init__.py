"""Running untrusted code: a learnware's model, or the install of its requirements, in a
bubblewrap sandbox under resource limits.

Shared by the market's submission checker (:mod:`wharf.market.checker`) and the user side
(:mod:`wharf.reuse`). It reads no settings: limits and options arrive as plain dataclasses
(:mod:`.limits`), which the market fills from its settings and a user from arguments.

- :mod:`.runner`: :func:`~.runner.run_model` and :func:`~.runner.run_command` under every
  protection available (the layers are listed there);
- :mod:`.bubblewrap`, :mod:`.cgroups`, :mod:`._launch`: the bwrap command line, per-run
  control groups, and the launcher that joins them and sets the rlimits;
- :mod:`.modelrun`, :mod:`._child`: what a model run sees, and the program that runs the
  model inside; ``shim/`` holds the reference's ``learnware`` package as the sandbox offers it
  (package data, bound into the sandbox only);
- :mod:`.channel`, :mod:`.outputs`: the bounded pipe that brings a run's results out, and
  reading them safely;
- :mod:`.requirements`, :mod:`.wheels`, :mod:`.envs`: deciding what a package needs, fetching
  the wheels on the host without running them, installing them inside the sandbox;
- :mod:`.log`: the timestamped log a run writes what protects it to.

Nothing is imported here, so that :mod:`.limits` (which the market's settings import) stays
cheap to import.
"""
