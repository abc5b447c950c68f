"""Hostile requirements and outputs against the real checker: real bubblewrap, real pip.

The wheels are written here (a wheel is a zip with a ``.dist-info`` folder) and served from a
local find-links folder, with an empty local index, so nothing needs the network. A wheel's
code (a ``.pth`` file, ``sitecustomize``, a console script) may only ever run inside the
sandbox; a model may not leave more than its output limit on the worker's disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from wharf.market.checker import install_options, sandbox_limits
from wharf.reuse.runner import Learnware
from wharf.sandbox.envs import env_key

from tests.checker_market import DIM, Market, MiB, table_spec_json

pytestmark = [pytest.mark.adversarial, pytest.mark.slow, pytest.mark.services]

MISSING = "wharf-does-not-exist-xyz==1.0"


def write_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A pure-Python wheel of ``files`` (paths inside the wheel), with a valid RECORD."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: wharf-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def evil_wheel(folder: Path, marker: Path) -> Path:
    """``wharf-evil-pth``: every way a wheel can run code at an interpreter's start tries to
    create ``marker`` on the host; its ``.pth`` also leaves a sign for the model."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return write_wheel(
        folder,
        "wharf-evil-pth",
        "1.0",
        {
            "evil.pth": f"import os; os.environ['WHARF_EVIL_PTH'] = 'ran'; {touch}\n".encode(),
            "sitecustomize.py": f"{touch}\n".encode(),
            "wharf_evil/__init__.py": f"VALUE = 3\n\ndef main():\n    {touch}\n".encode(),
            "wharf_evil_pth-1.0.dist-info/entry_points.txt": (
                b"[console_scripts]\nwharf-evil = wharf_evil:main\n"
            ),
        },
    )


@pytest.fixture(scope="module")
def spec_json() -> bytes:
    return table_spec_json()


@pytest.fixture
def market(tmp_path: Path, spec_json: bytes) -> Market:
    return Market(tmp_path, spec_json)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return folder


def offline(market: Market, wheels: Path) -> dict:
    """Settings that resolve from ``wheels`` and an empty local index only."""
    index = market.tmp / "index"
    index.mkdir(exist_ok=True)
    return {"pip_find_links": str(wheels), "pip_index_url": index.as_uri()}


USES_EVIL = """
    import os
    import wharf_evil

    class Model:
        input_shape = (4,)
        output_shape = (1,)

        def predict(self, X):
            # The .pth ran here, inside the sandbox, where the host's path does not exist.
            assert os.environ.get("WHARF_EVIL_PTH") == "ran", "the .pth did not run"
            return X[:, :1] * wharf_evil.VALUE
"""


def test_requirement_code_never_runs_on_the_host(market: Market, wheels: Path) -> None:
    marker = market.tmp / "pwned"
    evil_wheel(wheels, marker)
    requirements = f"wharf-evil-pth==1.0\n{MISSING}\n".encode()
    package = market.package(USES_EVIL, requirements={"requirements.txt": requirements})

    first = market.check(package, **offline(market, wheels))
    assert first.accepted, first.log
    assert not marker.exists(), "requirement code ran on the host"
    log = first.log
    for needle in (
        "resolving on the host with the worker's pip",
        "installing wharf_evil_pth-1.0-py3-none-any.whl with pip inside the sandbox",
        "installed: wharf-evil-pth==1.0 (wheels: wharf_evil_pth-1.0-py3-none-any.whl)",
        f"could not install {MISSING}",
        "No matching distribution found for wharf-does-not-exist-xyz",
        "environment",
    ):
        assert needle in log, f"{needle!r} not in the log:\n{log}"
    env_dirs = [p for p in (market.tmp / "envs").iterdir() if len(p.name) == 64]
    assert len(env_dirs) == 1 and not (env_dirs[0] / "bin" / "python").exists()

    again = market.check(package, **offline(market, wheels))
    assert again.accepted, again.log
    assert "using cached environment" in again.log
    assert "resolving on the host" not in again.log
    assert not marker.exists(), "requirement code ran on the host"


def test_reuse_installs_requirements_only_in_the_sandbox(market: Market, wheels: Path) -> None:
    marker = market.tmp / "pwned"
    evil_wheel(wheels, marker)
    package = market.package(USES_EVIL, requirements={"requirements.txt": b"wharf-evil-pth==1.0\n"})
    settings = market.settings(**offline(market, wheels))
    limits, options = sandbox_limits(settings), install_options(settings)
    with Learnware.load(
        package, limits=limits, install_requirements=True, install_options=options
    ) as learnware:
        X = np.ones((3, DIM))
        assert np.array_equal(learnware.predict(X), X[:, :1] * 3)
    assert not marker.exists(), "requirement code ran on the host"


def test_an_install_failing_in_the_sandbox_is_never_cached(market: Market, wheels: Path) -> None:
    """pip cannot install a wheel whose file ``x`` is also a folder; it fails inside the
    sandbox, half-way, and leaves nothing. Leftovers of killed workers and a cached
    environment whose manifest is damaged are not used either."""
    write_wheel(wheels, "wharf-good", "1.0", {"wharf_good.py": b"VALUE = 1\n"})
    broken = {"wharf_broken/__init__.py": b"VALUE = 2\n", "wharf_broken/x": b"a"}
    write_wheel(wheels, "wharf-broken", "1.0", {**broken, "wharf_broken/x/y": b"b"})
    source = """
        import wharf_broken
        import wharf_good

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                return X[:, :1] * (wharf_good.VALUE + wharf_broken.VALUE)
    """
    requirements = b"wharf-good==1.0\nwharf-broken==1.0\n"
    package = market.package(source, requirements={"requirements.txt": requirements})
    settings = offline(market, wheels)
    envs = market.tmp / "envs"

    first = market.check(package, **settings)
    assert not first.accepted, first.log
    assert "the sandboxed install failed" in first.log, first.log
    assert "Not a directory" in first.log, first.log
    assert "No module named 'wharf_broken'" in first.log, first.log
    key = env_key(
        ["wharf-good==1.0", "wharf-broken==1.0"], install_options(market.settings(**settings))
    )
    assert not (envs / key).exists()
    assert not leftovers(envs)

    # A killed worker's half-built folders, and a damaged cache entry holding a module.
    (envs / f".build-{key}-0badc0de" / "site").mkdir(parents=True)
    (envs / f".wheels-{'0' * 64}-0badc0de").mkdir()
    (envs / key / "site").mkdir(parents=True)
    (envs / key / "site" / "wharf_broken.py").write_text("VALUE = 99\n")
    (envs / key / "wharf-env.json").write_text("{not json")
    write_wheel(wheels, "wharf-broken", "1.0", broken)  # fixed upstream

    second = market.check(package, **settings)
    assert second.accepted, second.log
    assert "using cached environment" not in second.log
    assert "installed: wharf-good==1.0, wharf-broken==1.0" in second.log, second.log
    assert "outputs of shape (1,)" in second.log
    assert not (envs / key / "site" / "wharf_broken.py").exists()
    assert not leftovers(envs)


def leftovers(envs: Path) -> list[str]:
    return [p.name for p in envs.iterdir() if p.name.startswith((".build-", ".wheels-"))]


FLOODS = {
    "many files": """
        for i in range(1024):  # 64 MiB in 64 KiB files; the model hides the error
            try:
                with open(f"/out/f{i}", "wb") as f:
                    f.write(b"x" * 65536)
            except OSError:
                break
    """,
    "large files": """
        for i in range(8):  # 48 MiB in files under the 16 MiB file size limit
            with open(f"/out/big{i}", "wb") as f:
                f.write(b"x" * (6 * 1024 * 1024))
    """,
    "the result channel": """
        import json
        fd = json.load(open("/in/job.json"))["result_fd"]
        os.write(fd, b"wharf-file outputs.npy %d\\n" % (64 * 1024 * 1024))
        for _ in range(1024):
            os.write(fd, b"x" * 65536)
    """,
}


@pytest.mark.parametrize("flood", list(FLOODS))
def test_a_model_flooding_its_outputs_stops_at_the_output_limit(market: Market, flood: str) -> None:
    body = textwrap.indent(textwrap.dedent(FLOODS[flood]).strip("\n"), " " * 16)
    source = f"""
        import os

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
{body}
                return X[:, :1]
    """
    work = market.tmp / "work"
    peak = [0]
    done = threading.Event()

    def watch() -> None:  # the most the worker's disk held of this check at any moment
        while not done.is_set():
            size = 0
            for folder, _, files in os.walk(work):  # folders going away mid-walk are skipped
                for name in files:
                    with contextlib.suppress(OSError):
                        size += os.lstat(os.path.join(folder, name)).st_size
            peak[0] = max(peak[0], size)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = market.check(market.package(source), model_max_output_bytes=8 * MiB)
    finally:
        done.set()
        watcher.join()
    assert not report.accepted, report.log
    assert "output limit of 8 MiB reached" in report.log, report.log
    assert "/out (8 MiB)" in report.log, report.log
    package_bytes = sum(p.stat().st_size for p in market.tmp.glob("package-*.zip")) * 4
    assert peak[0] <= 8 * MiB + package_bytes, f"{peak[0]} bytes on the worker's disk"
    assert not list(work.iterdir())


def test_the_sandbox_tmpfs_mounts_count_against_its_memory(market: Market) -> None:
    """/tmp and /dev/shm are each as large as the memory limit, but what is written there is
    memory of the sandbox: 300 MiB in each under a 512 MiB limit is stopped."""
    source = """
        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                chunk = b"x" * (1024 * 1024)
                for folder in ("/tmp", "/dev/shm"):
                    for i in range(20):  # 15 MiB files: under the file size limit
                        with open(f"{folder}/f{i}", "wb") as f:
                            for _ in range(15):
                                f.write(chunk)
                return X[:, :1]
    """
    report = market.check(market.package(source))
    assert not report.accepted, report.log
    assert "killed: memory limit of 512 MiB reached" in report.log, report.log
