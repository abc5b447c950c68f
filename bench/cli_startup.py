"""How long ``wharf`` commands take as a user runs them: a fresh process each time.

Run: ``PYTHONPATH=. python -m bench.cli_startup [--runs 20] [--learnwares 5000]
[--before REV]`` (Redis on 127.0.0.1:6379; uses database 13 and empties it)

Each command runs ``--runs`` times after one warm-up, the commands taking turns, and each run is
timed from the moment the process is started to the moment it has exited (wall time), with its
CPU time (user + system) from the kernel. ``python -c pass`` is the floor: the interpreter's own
start-up. ``wharf search --rkme spec.json`` runs end to end against a market started here: the
API and two Celery worker processes on a Redis broker, the embedded SQLite catalog, holding
``--learnwares`` synthetic accepted learnwares (``bench.search_scale.Market``, K = 50, d = 10),
each search with a user's spec of K = 50 (``--top 5``). ``--before REV`` runs the same
commands with the code of an earlier commit too (its folders exported to a temporary directory
and put first on ``PYTHONPATH``), in the same turns.

The modules each command imports are listed from ``python -X importtime``: none of torch,
faiss, scikit-learn or sentence-transformers may be among them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import table, write_results

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")
ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "faiss", "sklearn", "sentence_transformers")
#: The repository's folders and the package each one is (pyproject.toml, package-dir).
FOLDERS = (
    "api",
    "workers",
    "market",
    "specification",
    "sandbox",
    "cli",
    "client",
    "reuse",
    "examples",
)


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit status) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed: {done.stderr.decode()[-2000:]}")
    return wall, cpu, done.returncode


def heavy_imports(args: list[str], env: dict[str, str]) -> str:
    """The heavy modules ``wharf ARGS`` imports (``python -X importtime``), or ``none``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wharf.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return ", ".join(sorted(names & set(HEAVY))) or "none"


def export_tree(rev: str, into: Path) -> Path:
    """The code of ``rev`` as an importable ``wharf`` package; returns the PYTHONPATH entry."""
    into.mkdir(parents=True)
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    package = into / "path" / "wharf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_bytes((tree / "wharf" / "__init__.py").read_bytes())
    for folder in FOLDERS:
        if (tree / folder).is_dir():
            (package / folder).symlink_to(tree / folder)
    return into / "path"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--learnwares", type=int, default=5000)
    parser.add_argument("--before", default=None, help="an earlier commit to run as well")
    args = parser.parse_args()

    import redis
    from wharf.cli.serve import LocalMarket
    from wharf.market.catalog import Catalog
    from wharf.market.settings import Settings
    from wharf.specification.files import dumps_spec

    from .search_scale import Market
    from .search_workers import populate

    os.environ["WHARF_BROKER_URL"] = REDIS
    os.environ["WHARF_RATE_LIMIT_ENABLED"] = "false"  # one token runs every search
    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-cli-"))
    data = Market(args.learnwares, 50, 10, 0.1)
    catalog = Catalog.create(Settings(data_dir=tmp / "market").catalog_url)
    populate(catalog, data, args.learnwares)
    spec = tmp / "spec.json"
    spec.write_text(dumps_spec(data.user(0)))

    wharf = str(Path(sys.executable).parent / "wharf")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "wharf --help": [wharf, "--help"],
        "wharf search --rkme spec.json --top 5": [
            wharf,
            "search",
            "--rkme",
            str(spec),
            "--top",
            "5",
        ],
    }
    with LocalMarket(tmp / "market", workers=2) as market:
        env = {**os.environ, "WHARF_URL": market.url, "WHARF_TOKEN": market.token}
        env.pop("PYTHONPATH", None)  # the installed package, as a user has it
        variants = {"": env}
        if args.before:
            old = export_tree(args.before, tmp / "before")
            variants[f" ({args.before})"] = {**env, "PYTHONPATH": str(old)}
        runs = {(name + suffix, suffix): [] for suffix in variants for name in commands}
        imports = {
            name: heavy_imports(cmd[1:], env)
            for name, cmd in commands.items()
            if name.startswith("wharf")
        }
        for turn in range(args.runs + 1):  # the first turn warms up
            for suffix, run_env in variants.items():
                for name, cmd in commands.items():
                    if suffix and name == "python -c pass":
                        continue
                    measured = run_once(cmd, run_env)
                    if turn:
                        runs[(name + suffix, suffix)].append(measured)

    floor = statistics.median(w for w, _, _ in runs[("python -c pass", "")])
    rows = []
    for (label, _), measured in runs.items():
        if not measured:
            continue
        wall = [w for w, _, _ in measured]
        cpu = [c for _, c, _ in measured]
        name = label.split(" (")[0]
        rows.append(
            [
                f"`{label}`",
                f"{1e3 * statistics.median(wall):.0f} ms",
                f"{1e3 * float(np.percentile(wall, 90)):.0f} ms",
                f"{1e3 * min(wall):.0f} ms",
                f"{1e3 * (statistics.median(wall) - floor):.0f} ms",
                f"{1e3 * statistics.median(cpu):.0f} ms",
                imports.get(name, "") if label == name else "",
            ]
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.runs} runs per command; {args.learnwares:,} learnwares in the market.",
            "",
            table(
                [
                    "command",
                    "wall p50",
                    "wall p90",
                    "wall min",
                    "p50 over `python -c pass`",
                    "CPU p50",
                    "heavy imports",
                ],
                rows,
            ),
        ]
    )
    write_results("cli_startup", "wharf command start-up and end-to-end times", body)


if __name__ == "__main__":
    main()
