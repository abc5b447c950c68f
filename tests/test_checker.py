"""Tests for market.checker: the submission check, end to end, with the real sandbox.

Every model here runs through bubblewrap in a real child process; hostile ones try to escape
or exhaust the machine and must be stopped, rejected and cleaned up. Limits are small so the
slow cases (hangs, a fork bomb, pip) take seconds.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from wharf.market.checker import (
    CheckLog,
    SandboxUnavailable,
    install_options,
    sandbox_limits,
    unavailable_reason,
)
from wharf.market.settings import Settings
from wharf.sandbox.envs import requirements_env
from wharf.sandbox.modelrun import SHIM
from wharf.sandbox.requirements import conda_to_pip, plan_requirements
from wharf.specification import dumps_spec
from wharf.specification.package import Requirements

from tests.checker_market import DIM, TIME_LIMIT_S, Market, MiB, npy, semantic, table_spec_json

REGRESSION_MODEL = """
import os
import numpy as np

class Model:
    def __init__(self, weights="w.npy"):
        here = os.path.dirname(os.path.abspath(__file__))
        self.w = np.load(os.path.join(here, weights))
        self.input_shape = (4,)
        self.output_shape = (1,)

    def predict(self, X):
        return X @ self.w
"""


# --- building packages ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_json() -> bytes:
    return table_spec_json()


@pytest.fixture
def market(tmp_path: Path, spec_json: bytes, bwrap: str) -> Market:
    return Market(tmp_path, spec_json)


def regression_package(market: Market, **kwargs) -> Path:
    w = npy(np.arange(1.0, DIM + 1).reshape(DIM, 1))
    return market.package(REGRESSION_MODEL, files={"w.npy": w}, **kwargs)


def assert_rejected(report, *needles: str) -> None:
    assert not report.accepted, report.log
    assert report.stat_spec is None and report.spec_meta is None
    for needle in needles:
        assert needle in report.log, f"{needle!r} not in the log:\n{report.log}"


def probes(report) -> dict:
    """The report a probing model raised with (``PROBES {json}``)."""
    assert not report.accepted, report.log
    match = re.search(r"PROBES (\{.*\})", report.log)
    assert match, report.log
    return json.loads(match.group(1))


# --- accepted learnwares -------------------------------------------------------------------------


def test_numpy_regression_model_is_accepted(market: Market) -> None:
    report = market.check(regression_package(market))
    assert report.accepted, report.log
    assert report.spec_meta == {
        "spec_type": "RKMETableSpecification",
        "spec_shape": [DIM],
        "spec_gamma": 0.1,
        "spec_points": 10,
        "num_points": 200,
    }
    assert report.stat_spec.feature_shape == (DIM,)
    log = report.log
    for needle in (
        "user namespace (uid 65534",
        "no network",
        "cgroup pids.max = 16 processes and threads",
        "memory cgroup: limit 512 MiB",
        "address space 512 MiB",
        "CPU 3 s",
        "requirement 'numpy': used as is",
        "ACCEPTED",
    ):
        assert needle in log, f"{needle!r} not in the log:\n{log}"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|PASS) ", log)
    assert not list((market.tmp / "work").iterdir())  # scratch space removed


CLASSIFIER = """
import numpy as np

class Model:
    input_shape = (4,)

    def __init__(self, scores):
        self.scores = scores
        self.output_shape = (3,) if scores else (1,)

    def predict(self, X):
        logits = np.stack([X[:, 0], X[:, 1], -X[:, 0]], axis=1)
        if self.scores:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return logits.argmax(axis=1)
"""


@pytest.mark.parametrize("scores", [False, True], ids=["labels", "scores"])
def test_classifiers_are_accepted(market: Market, scores: bool) -> None:
    package = market.package(CLASSIFIER, kwargs={"scores": scores})
    report = market.check(package, semantic("Classification", 3))
    assert report.accepted, report.log
    assert f"outputs of shape ({3 if scores else 1},)" in report.log


def test_model_written_for_the_reference_package_is_accepted(market: Market) -> None:
    source = """
        import os
        import numpy as np
        from learnware.model import BaseModel
        from learnware.specification import RKMETableSpecification  # imported, never used

        class MyModel(BaseModel):
            def __init__(self):
                super().__init__(input_shape=(4,), output_shape=(1,))
                here = os.path.dirname(os.path.abspath(__file__))
                self.w = np.load(os.path.join(here, "w.npy"))

            def predict(self, X):
                return X @ self.w
    """
    package = market.package(
        source,
        class_name="MyModel",
        module_path="model.py",
        files={"w.npy": npy(np.ones((DIM, 1)))},
        requirements={"requirements.txt": b"learnware>=0.3\nnumpy\n"},
    )
    report = market.check(package)
    assert report.accepted, report.log
    assert "'learnware>=0.3': ignored — the reference learnware package is provided" in report.log


@pytest.mark.parametrize("module_path", ["model.py", "nets/model.py", "my-model.py"])
def test_relative_imports_inside_the_package_work(market: Market, module_path: str) -> None:
    up = "." * (module_path.count("/") + 1)
    source = f"""
        from {up}helpers.scale import double
        from {up} import constants

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                return double(X).sum(axis=1) + constants.OFFSET
    """
    files = {
        "helpers/scale.py": b"def double(x):\n    return 2 * x\n",
        "constants.py": b"OFFSET = 1.0\n",
    }
    report = market.check(market.package(source, module_path=module_path, files=files))
    assert report.accepted, report.log


def test_the_shim_is_not_importable_in_the_worker() -> None:
    import importlib.util

    found = importlib.util.find_spec("learnware")
    assert found is None or SHIM not in Path(found.origin).parents
    assert not (SHIM / "__init__.py").exists()


# --- the checker's rules -------------------------------------------------------------------------

ONES_MODEL = """
import numpy as np

class Model:
    input_shape = {input_shape}
    output_shape = {output_shape}

    def predict(self, X):
        return {outputs}
"""

RULES = {
    "input_shape": (
        dict(input_shape=(5,), output_shape=(1,), outputs="X[:, :1]"),
        semantic(),
        "model.input_shape is (5,) but the semantic Input.Dimension is 4",
    ),
    "spec_dimension": (
        dict(input_shape=(5,), output_shape=(1,), outputs="X[:, :1]"),
        semantic(Input={"Dimension": 5, "Description": {}}),
        "describes 4 features (shape (4,)) but the semantic Input.Dimension is 5",
    ),
    "output_count": (
        dict(input_shape=(4,), output_shape=(1,), outputs="X[:-1, :1]"),
        semantic(),
        "was given 20 inputs and returned 19 outputs",
    ),
    "labels_out_of_range": (
        dict(input_shape=(4,), output_shape=(1,), outputs="np.full(len(X), 3)"),
        semantic("Classification", 3),
        "not all are integers in [0, 3)",
    ),
    "fractional_labels": (
        dict(input_shape=(4,), output_shape=(1,), outputs="np.full(len(X), 0.5)"),
        semantic("Classification", 3),
        "not all are integers in [0, 3)",
    ),
    "score_width": (
        dict(input_shape=(4,), output_shape=(4,), outputs="np.ones((len(X), 4)) / 4"),
        semantic("Classification", 3),
        "class scores of width 4 but the semantic Output.Dimension is 3",
    ),
    "declared_output_shape": (
        dict(input_shape=(4,), output_shape=(2,), outputs="X[:, :1]"),
        semantic(),
        "each output has shape (1,) but model.output_shape is (2,)",
    ),
    "nan_outputs": (
        dict(input_shape=(4,), output_shape=(1,), outputs="np.full(len(X), np.nan)"),
        semantic(),
        "outputs contain 20 NaN or infinite value(s)",
    ),
    "semantic_spec": (
        dict(input_shape=(4,), output_shape=(1,), outputs="X[:, :1]"),
        semantic(Data={"Type": "Class", "Values": ["Spreadsheet"]}),
        "semantic specification: field Data.Values: 'Spreadsheet' is not allowed",
    ),
    "image_not_supported": (
        dict(input_shape=(4,), output_shape=(1,), outputs="X[:, :1]"),
        semantic(Data={"Type": "Class", "Values": ["Image"]}),
        "Image learnwares carry one RKMEImageSpecification and nothing else",
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_rejects_with_a_clear_reason(market: Market, rule: str) -> None:
    model, sem, expected = RULES[rule]
    report = market.check(market.package(ONES_MODEL.format(**model)), sem)
    assert_rejected(report, expected, "REJECTED")


# --- broken and hostile models -------------------------------------------------------------------


def test_model_raising_in_init_is_rejected(market: Market) -> None:
    source = """
        class Model:
            def __init__(self):
                raise RuntimeError("weights file is corrupt")
    """
    report = market.check(market.package(source))
    assert_rejected(
        report, "could not be instantiated: RuntimeError: weights file is corrupt", "Traceback"
    )


def test_model_raising_in_predict_is_rejected_with_its_stderr(market: Market) -> None:
    source = """
        import sys

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                print("loading the booster", file=sys.stderr)
                raise ValueError("feature names mismatch")
    """
    report = market.check(market.package(source))
    assert_rejected(
        report,
        "failed while predicting: ValueError: feature names mismatch",
        "the model's stderr (last lines):",
        "| loading the booster",
    )


@pytest.mark.adversarial
@pytest.mark.slow
@pytest.mark.parametrize(
    "body", ["while True:\n    pass", "time.sleep(3600)"], ids=["spin", "sleep"]
)
def test_hanging_model_is_killed_at_the_time_limit(market: Market, body: str) -> None:
    source = f"""
import time

class Model:
    input_shape = (4,)
    output_shape = (1,)

    def predict(self, X):
{textwrap.indent(body, " " * 8)}
"""
    started = time.monotonic()
    report = market.check(market.package(source))
    elapsed = time.monotonic() - started
    assert_rejected(report, "no result.json was written")
    # A spinning model meets its CPU limit first, unless the machine is too busy to give it
    # 3 s of CPU before the wall-clock limit.
    limit = "(CPU time|wall-clock)" if "pass" in body else "wall-clock"
    assert re.search(f"killed: {limit} limit", report.log), report.log
    assert elapsed < TIME_LIMIT_S + 2 + 0.1 * TIME_LIMIT_S + 3


@pytest.mark.adversarial
def test_memory_hog_is_stopped(market: Market) -> None:
    source = """
        import numpy as np

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                hog = np.ones(4 * 1024**3 // 8)  # 4 GiB under a 512 MiB limit
                return X[:, :1] + hog[0]
    """
    report = market.check(market.package(source))
    assert_rejected(
        report,
        "MemoryError: Unable to allocate 4.00 GiB",
        "it needs more memory than its limit of 512 MiB",
    )


@pytest.mark.adversarial
def test_memory_limit_covers_the_whole_sandbox(market: Market) -> None:
    """Three processes of 400 MiB each pass RLIMIT_AS one by one; the cgroup stops them."""
    source = """
        import os
        import time
        import numpy as np

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                children = []
                for _ in range(3):
                    pid = os.fork()
                    if pid == 0:
                        hog = np.ones(400 * 1024 * 1024 // 8)
                        time.sleep(0.5)
                        os._exit(int(hog[0]) - 1)
                    children.append(pid)
                statuses = [os.waitpid(pid, 0)[1] for pid in children]
                if all(status == 0 for status in statuses):
                    raise RuntimeError("1.2 GiB held at once under a 512 MiB limit")
                return X[:, :1]
    """
    report = market.check(market.package(source))
    assert report.accepted, report.log
    assert re.search(r"the memory limit \(512 MiB for the whole sandbox\) killed \d", report.log)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.adversarial
@pytest.mark.slow
def test_fork_bomb_is_contained_and_cleaned_up(market: Market) -> None:
    source = """
        import os

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
    """
    groups = Path("/sys/fs/cgroup/pids/wharf")

    def run_groups() -> set[str]:
        return (
            {p.name for p in groups.iterdir() if p.name.startswith("check-")}
            if groups.exists()
            else set()
        )

    before = run_groups()  # other checks (or workers killed mid-check) may have their own
    report = market.check(market.package(source))
    assert_rejected(report, "the process limit refused")
    assert re.search(r"killed: (wall-clock|CPU time) limit", report.log), report.log
    assert _processes_mentioning(str(market.tmp)) == []  # nothing of the sandbox survives
    assert run_groups() <= before  # and its cgroup is gone


PROBE_MODEL = """
import json
import os

{probe}

class Model:
    input_shape = (4,)
    output_shape = (1,)

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def predict(self, X):
        raise RuntimeError("PROBES " + json.dumps(probe(**self.kwargs)))


def attempt(action):
    try:
        result = action()
    except Exception as exc:
        return f"{{type(exc).__name__}}: {{exc}}"
    return "ok" if result is None else f"ok: {{result}}"
"""


def probe_package(market: Market, probe: str, **kwargs) -> Path:
    return market.package(PROBE_MODEL.format(probe=textwrap.dedent(probe)), kwargs=kwargs)


@pytest.mark.adversarial
def test_network_is_unreachable(market: Market) -> None:
    probe = """
        import socket

        def probe(port):
            def connect(host, port):
                return lambda: socket.create_connection((host, port), timeout=3).close()
            return {
                "host_loopback": attempt(connect("127.0.0.1", port)),
                "external": attempt(connect("1.1.1.1", 53)),
                "dns": attempt(lambda: socket.getaddrinfo("pypi.org", 443)),
            }
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        report = market.check(probe_package(market, probe, port=port))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody came through
    results = probes(report)
    assert results["host_loopback"].startswith("ConnectionRefusedError"), results
    assert "Network is unreachable" in results["external"], results
    assert not results["dns"].startswith("ok"), results


@pytest.mark.adversarial
def test_files_outside_the_package_are_not_visible(market: Market) -> None:
    secret = market.tmp / "secret.txt"
    secret.write_text("the host's secret")
    probe = """
        def probe(paths):
            report = {path: attempt(lambda p=path: open(p).read(20)) for path in paths}
            for folder in ("/", "/root", REPO, "/tmp", "/home"):
                report["ls " + folder] = attempt(lambda f=folder: sorted(os.listdir(f)))
            report["own package"] = attempt(lambda: sorted(os.listdir(".")))
            return report
    """
    paths = [str(secret), __file__, "/etc/passwd", "/etc/hostname", "/proc/1/environ"]
    repo = str(Path(__file__).resolve().parents[1])
    probe = probe.replace("REPO", repr(repo))
    results = probes(market.check(probe_package(market, probe, paths=paths)))
    for path in paths[:-1]:
        assert results[path].startswith("FileNotFoundError"), results
    assert "the host's secret" not in json.dumps(results)
    assert results["ls /root"] == "ok: ['.pyenv']" or not os.path.isdir("/root/.pyenv"), results
    # The repository is not visible, except the interpreter's environment if it lives there.
    assert "pyproject.toml" not in results["ls " + repo], results
    assert "tests" not in results["ls " + repo], results
    # /tmp is private: empty, but for the path to the interpreter if it lives under /tmp.
    allowed = {Path(p).parts[2] for p in {sys.prefix, sys.base_prefix} if p.startswith("/tmp/")}
    assert results["ls /tmp"] == f"ok: {sorted(allowed)}", results
    assert results["ls /home"].startswith("FileNotFoundError"), results
    assert "learnware.yaml" in results["own package"], results


@pytest.mark.adversarial
def test_writes_outside_tmp_and_out_fail(market: Market) -> None:
    probe = """
        def probe():
            def write(path):
                return lambda: open(path, "w").write("x")
            places = ["/tmp/x", "/out/x", "/learnware/x", "/learnware/__init__.py", "/in/x",
                      "/x", "/usr/x", "/etc/x", "/root/x", "/work/x", "/dev/x", "/dev/null"]
            report = {path: attempt(write(path)) for path in places}
            report["chmod"] = attempt(lambda: os.chmod("/learnware/__init__.py", 0o777))
            return report
    """
    package = probe_package(market, probe)
    results = probes(market.check(package))
    assert results.pop("/tmp/x").startswith("ok"), results
    assert results.pop("/out/x").startswith("ok"), results
    assert results.pop("/dev/null").startswith("ok"), results
    for place, outcome in results.items():
        assert not outcome.startswith("ok"), (place, outcome)
        assert outcome.split(":")[0].endswith("Error"), (place, outcome)


@pytest.mark.adversarial
def test_the_environment_is_scrubbed(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    probe = """
        import ctypes

        def new_user_namespace():
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

        def probe():
            return {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(),
                    "userns": attempt(new_user_namespace),
                    "caps": [line for line in open("/proc/self/status") if line.startswith("Cap")],
                    "pid": os.getpid(), "hostname": os.uname().nodename,
                    "init_env": attempt(lambda: open("/proc/1/environ").read())}
    """
    results = probes(market.check(probe_package(market, probe)))
    env = results["env"]
    assert "WHARF_TEST_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "hunter2" not in json.dumps(results) and "also-secret" not in json.dumps(results)
    allowed = {
        "PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PWD", "LC_CTYPE",
    }  # fmt: skip
    assert set(env) <= allowed, env
    assert results["uid"] == results["gid"] == 65534
    assert results["pid"] < 10  # its own PID namespace
    assert results["hostname"] == "wharf-sandbox"
    assert results["userns"].startswith("OSError"), results  # no nested user namespaces
    assert all(line.split()[1] == "0000000000000000" for line in results["caps"]), results


@pytest.mark.adversarial
def test_huge_output_file_is_stopped(market: Market) -> None:
    source = """
        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                chunk = b"\\0" * (1024 * 1024)
                with open("/out/outputs.npy", "wb") as f:
                    for _ in range(1024):  # 1 GiB
                        f.write(chunk)
                return X[:, :1]
    """
    report = market.check(market.package(source))
    # Python ignores SIGXFSZ, so the write fails with EFBIG rather than killing the process.
    assert_rejected(
        report,
        "OSError: [Errno 27] File too large",
        "it wrote a file larger than the limit of 16 MiB",
    )
    assert not list((market.tmp / "work").iterdir())


@pytest.mark.adversarial
def test_files_the_model_leaves_in_out_are_never_read(market: Market) -> None:
    """/out is the sandbox's own tmpfs: a result the model forges there, or a link to a host
    file, never reaches the host, which reads only what the child sends."""
    secret = market.tmp / "secret.npy"
    secret.write_bytes(npy(np.ones((20, 1))))
    source = f"""
        import os
        import sys

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                os.symlink({str(secret)!r}, "/out/outputs.npy")
                with open("/out/result.json", "w") as f:
                    f.write('{{"status": "ok", "input_shape": [4], "output_shape": [1]}}')
                sys.stdout.flush()
                os._exit(0)
    """
    report = market.check(market.package(source))
    assert_rejected(report, "no result.json was written")


# --- requirements --------------------------------------------------------------------------------


def test_satisfied_and_marker_false_requirements_need_no_install(market: Market) -> None:
    requirements = b'numpy>=1.20\npywin32>=300; sys_platform == "win32"\n'
    package = regression_package(market, requirements={"requirements.txt": requirements})
    report = market.check(package)
    assert report.accepted, report.log
    assert "requirement 'numpy>=1.20': used as is — numpy" in report.log
    assert "requirement 'pywin32>=300; sys_platform == \"win32\"': skipped" in report.log
    assert "resolving on the host" not in report.log
    assert not (market.tmp / "envs").exists()


@pytest.mark.slow
def test_requirements_are_installed_or_logged_and_the_model_decides(market: Market) -> None:
    """One real pip run against PyPI: a small wheel installs and is importable inside the
    sandbox, an unknown package fails, is logged, and the model runs without it."""
    environment = b"""\
name: demo
dependencies:
  - python=3.11
  - numpy>=1.20
  - pip
  - pip:
      - tomli-w==1.2.0
      - wharf-does-not-exist-xyz==1.0
"""
    source = """
        import numpy as np
        import tomli_w

        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def predict(self, X):
                assert tomli_w.dumps({"a": 1}) == "a = 1\\n"
                return X.sum(axis=1)
    """
    package = market.package(source, requirements={"environment.yaml": environment})
    report = market.check(package)
    assert report.accepted, report.log
    log = report.log
    assert "requirement 'python=3.11': ignored — conda dependency ignored" in log
    assert "requirement 'numpy>=1.20': used as is" in log
    assert "could not install wharf-does-not-exist-xyz==1.0" in log
    assert "No matching distribution found for wharf-does-not-exist-xyz" in log
    assert "only wheels are installed" in log
    assert "installed: tomli-w==1.2.0" in log

    again = market.check(package)  # the environment is reused: pip does not run again
    assert again.accepted, again.log
    assert "using cached environment" in again.log
    assert "resolving on the host" not in again.log


def test_concurrent_checks_build_an_environment_once(tmp_path: Path, bwrap: str) -> None:
    requirement = ["wharf-does-not-exist-xyz==1.0"]
    (tmp_path / "index").mkdir()  # an empty index: nothing resolves, no network needed
    settings = Settings(
        data_dir=tmp_path / "data",
        env_cache_dir=tmp_path / "envs",
        install_timeout_s=120,
        pip_index_url=(tmp_path / "index").as_uri(),
    )
    logs = [CheckLog(), CheckLog()]

    def use(log: CheckLog) -> None:
        with requirements_env(
            requirement,
            options=install_options(settings),
            limits=sandbox_limits(settings),
            log=log,
            bwrap="bwrap",
        ) as env:
            assert env is None  # nothing could be installed
            time.sleep(0.2)

    threads = [threading.Thread(target=use, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    texts = sorted(log.text() for log in logs)
    assert sum("resolving on the host" in text for text in texts) == 1, texts
    assert sum("using cached environment" in text for text in texts) == 1, texts
    leftovers = [p.name for p in (tmp_path / "envs").iterdir() if p.name.startswith(".")]
    assert not [name for name in leftovers if name.startswith((".build-", ".wheels-"))]


def test_requirement_decisions() -> None:
    requirements = Requirements(
        "requirements.txt",
        (
            "numpy",
            "numpy>=99",
            "pywin32; sys_platform == 'win32'",
            "learnware==0.3.2",
            "mypkg @ https://example.com/mypkg-1.0.tar.gz",
            "not a requirement ===",
        ),
    )
    actions = [(d.line, d.action) for d in plan_requirements(requirements)]
    assert actions == [
        ("numpy", "present"),
        ("numpy>=99", "install"),
        ("pywin32; sys_platform == 'win32'", "skip"),
        ("learnware==0.3.2", "ignore"),
        ("mypkg @ https://example.com/mypkg-1.0.tar.gz", "ignore"),
        ("not a requirement ===", "ignore"),
    ]
    assert conda_to_pip("numpy=1.24")[0] == "numpy==1.24.*"
    assert conda_to_pip("conda-forge::scipy=1.11.4=py311h0")[0] == "scipy==1.11.4"
    assert conda_to_pip("pandas>=2")[0] == "pandas>=2"
    assert conda_to_pip("python=3.8")[0] is None
    assert conda_to_pip("libgcc-ng")[0] is None


# --- no sandbox ----------------------------------------------------------------------------------


@pytest.mark.adversarial
def test_without_bwrap_untrusted_code_is_refused(market: Market) -> None:
    marker = market.tmp / "model-ran"
    source = f"""
        class Model:
            input_shape = (4,)
            output_shape = (1,)

            def __init__(self):
                open({str(marker)!r}, "w").close()

            def predict(self, X):
                return X[:, :1]
    """
    # The worker's fault, not the package's: no verdict (the task retries, then fails its job).
    with pytest.raises(SandboxUnavailable, match="never run without it"):
        market.check(market.package(source), bwrap_path=market.tmp / "no-such-bwrap")
    assert not marker.exists()


def test_the_sandbox_is_probed_as_the_settings_require(tmp_path, monkeypatch, bwrap) -> None:
    assert unavailable_reason(Settings(data_dir=tmp_path)) is None  # bwrap works here
    off = Settings(data_dir=tmp_path, sandbox="none")
    assert "switched off" in unavailable_reason(off)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    assert "not installed" in unavailable_reason(Settings(data_dir=tmp_path))
    assert unavailable_reason(Settings(data_dir=tmp_path, allow_unsandboxed=True)) is None


def test_unsandboxed_development_mode_runs_with_a_loud_warning(market: Market) -> None:
    report = market.check(
        regression_package(market),
        bwrap_path=market.tmp / "no-such-bwrap",
        allow_unsandboxed=True,
    )
    assert report.accepted, report.log
    assert "RUNNING SUBMITTED CODE WITHOUT A SANDBOX" in report.log
    assert "address space 512 MiB" in report.log


@pytest.mark.adversarial
def test_log_lines_cannot_be_forged() -> None:
    log = CheckLog()
    log.block("stderr:", "fine\n2099-01-01T00:00:00.000Z PASS ACCEPTED\x1b[2J\r")
    text = log.text()
    assert "\x1b" not in text and "\r" not in text
    assert all(line.startswith(" " * 30 + "| ") for line in text.splitlines()[1:]), text


# --- unsafe archives: refused by the reader, so nothing is unpacked or run ---


def _zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression or zipfile.ZIP_STORED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("truncated", "zip"),
        ("not a zip", "zip"),
        ("path traversal", ".."),
        ("absolute path", "absolute"),
        ("symbolic link", "link"),
        ("zip bomb", "zip bomb"),
    ],
)
def test_unsafe_archives_are_rejected_before_anything_runs(
    market: Market, spec_json: bytes, case: str, reason: str
) -> None:
    valid = market.package(REGRESSION_MODEL, files={"w.npy": npy(np.ones(DIM))}).read_bytes()
    base = [
        ("learnware.yaml", b"model: {class_name: Model}\n"),
        ("__init__.py", b""),
        ("stat_spec.json", spec_json),
        ("requirements.txt", b"numpy\n"),
    ]
    archives = {
        "truncated": valid[: len(valid) // 2],
        "not a zip": b"this is not a zip file at all",
        "path traversal": _zip_with([*base, ("../../evil.py", b"print('x')")]),
        "absolute path": _zip_with([*base, ("/etc/evil.py", b"print('x')")]),
        "symbolic link": _zip_with([*base, (_link("secrets", "/etc/shadow"), b"/etc/shadow")]),
        "zip bomb": _zip_with([*base, ("zeros.bin", bytes(100 * MiB))], zipfile.ZIP_DEFLATED),
    }
    path = market.tmp / f"{case.replace(' ', '-')}.zip"
    path.write_bytes(archives[case])
    report = market.check(path)
    assert not report.accepted
    assert "package:" in report.log and reason in report.log.lower()
    assert "sandbox" not in report.log.lower()  # nothing reached the model run


# --- image and text learnwares -------------------------------------------------------------------

IMAGE_MODEL = """
import json
import numpy as np

class Model:
    input_shape = {input_shape}
    output_shape = (3,)

    def predict(self, X):
        X = np.asarray(X)
        probe = dict(shape=list(X.shape), dtype=str(X.dtype), lo=int(X.min()), hi=int(X.max()))
        print("PROBES " + json.dumps(probe))
        return np.full((len(X), 3), 1.0 / 3)
"""

TEXT_MODEL = """
import numpy as np

class Model:
    input_shape = None
    output_shape = (1,)

    def predict(self, X):
        assert isinstance(X, list) and all(isinstance(t, str) for t in X), type(X)
        assert all(10 <= len(t) <= 1000 for t in X)
        return np.array([len(t) % 2 for t in X])
"""


@pytest.fixture(scope="module")
def image_spec_json() -> bytes:
    from wharf.specification.image import RKMEImage

    rng = np.random.default_rng(0)
    spec = RKMEImage.from_arrays(rng.normal(size=(3, 1, 32, 32)), [0.2, 0.3, 0.5], 30)
    return dumps_spec(spec).encode()


@pytest.fixture(scope="module")
def text_spec_json() -> bytes:
    from wharf.specification.text import RKMEText

    rng = np.random.default_rng(0)
    spec = RKMEText.from_arrays(rng.normal(size=(3, 384)), [0.2, 0.3, 0.5], 0.1, 30, ["en"])
    return dumps_spec(spec).encode()


def test_image_model_is_accepted_on_random_images_of_its_shape(market, image_spec_json) -> None:
    source = IMAGE_MODEL.format(input_shape=(1, 8, 8)).replace('print("PROBES', 'print("SEEN')
    package = market.package(source, spec_class="RKMEImageSpecification", spec_json=image_spec_json)
    sem = semantic("Classification", 3, Data={"Type": "Class", "Values": ["Image"]}, Input=None)
    report = market.check(package, sem)
    assert report.accepted, report.log
    assert report.spec_meta["spec_type"] == "RKMEImageSpecification"
    assert report.spec_meta["spec_shape"] == [1, 32, 32] and report.spec_meta["spec_gamma"] == 0
    assert "20 random images of integers in [0, 255)" in report.log

    # The probes themselves: what a model that fails after looking at them saw.
    failing = IMAGE_MODEL.format(input_shape=(3, 5, 4)).replace(
        "return np.full", "raise RuntimeError('seen')\n        return np.full"
    )
    probe = probes(
        market.check(
            market.package(failing, spec_class="RKMEImageSpecification", spec_json=image_spec_json),
            sem,
        )
    )
    assert probe["shape"] == [20, 3, 5, 4] and probe["dtype"] == "int64"
    assert 0 <= probe["lo"] and probe["hi"] < 255


def test_image_model_without_an_input_shape_is_rejected(market, image_spec_json) -> None:
    package = market.package(
        IMAGE_MODEL.format(input_shape=None),
        spec_class="RKMEImageSpecification",
        spec_json=image_spec_json,
    )
    sem = semantic("Classification", 3, Data={"Type": "Class", "Values": ["Image"]}, Input=None)
    assert_rejected(market.check(package, sem), "an image model must declare the shape of one")


def test_text_model_gets_strings_and_is_accepted(market, text_spec_json) -> None:
    package = market.package(
        TEXT_MODEL, spec_class="RKMETextSpecification", spec_json=text_spec_json
    )
    sem = semantic("Classification", 2, Data={"Type": "Class", "Values": ["Text"]}, Input=None)
    report = market.check(package, sem)
    assert report.accepted, report.log
    assert "languages ['en']" in report.log and "passed to predict as a list of str" in report.log
    assert report.spec_meta["spec_type"] == "RKMETextSpecification"


GENERATION_MODEL = """
class Model:
    input_shape = None
    output_shape = None

    def predict(self, X):
        assert isinstance(X, list) and all(isinstance(t, str) for t in X), type(X)
        return [t[::-1] + " (continued)" for t in X]
"""


def test_a_text_generation_learnware_is_accepted_with_its_semantic_spec(
    market, text_spec_json
) -> None:
    """The reference's 0.4 vocabulary: Task Text Generation and a Model of a text learnware.
    A model that answers strings with strings passes; its spec is a text RKME."""
    package = market.package(
        GENERATION_MODEL, spec_class="RKMETextSpecification", spec_json=text_spec_json
    )
    sem = semantic(
        "Text Generation",
        None,
        Data={"Type": "Class", "Values": ["Text"]},
        Model={"Type": "Optional", "Values": ["Fine-tuned Model"]},
        Input=None,
    )
    report = market.check(package, sem)
    assert report.accepted, report.log
    assert "Task Text Generation" in report.log
    assert report.spec_meta["spec_type"] == "RKMETextSpecification"


def test_a_spec_file_of_another_type_than_declared_is_rejected(market, image_spec_json) -> None:
    package = market.package(
        TEXT_MODEL, spec_class="RKMETextSpecification", spec_json=image_spec_json
    )
    sem = semantic("Classification", 2, Data={"Type": "Class", "Values": ["Text"]}, Input=None)
    assert_rejected(
        market.check(package, sem), "holds an RKMEImageSpecification, but learnware.yaml"
    )


def test_stale_run_cgroups_of_killed_workers_are_swept(tmp_path: Path) -> None:
    from wharf.sandbox import cgroups

    old, new, busy = (tmp_path / f"check-{n}" for n in ("old", "new", "busy"))
    for d in (old, new, busy):
        d.mkdir()
    (busy / "cgroup.procs").write_text("12345\n")
    past = time.time() - 2 * cgroups.STALE_AFTER_S
    for d in (old, busy):
        os.utime(d, (past, past))
    cgroups._remove_stale(tmp_path)
    assert not old.exists()  # empty and old: a worker died before removing it
    assert new.exists() and busy.exists()  # maybe being set up, or still running
