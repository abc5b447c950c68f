"""The standing adversarial suite: hostile packages submitted to a real market (the API, a
real Celery check worker, the real bubblewrap sandbox), as any stranger may.

Every case asserts the market's exact answer: the learnware's final status and the line of
its check log that gives the reason (the first ``FAIL`` line), or the API's status code and
problem+json ``detail`` for a package refused at upload. A model that must prove it could
not do something raises ``PROBES {json}`` with what it saw. After each group of cases, and
at the very end, an honest package is accepted: no hostile package leaves the worker unable
to check the next one.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import struct
import textwrap
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.market.checker.submission import CheckReport
from wharf.sandbox.bubblewrap import _python_dirs

from tests.checker_market import Market, MiB, semantic, table_spec_json
from tests.test_adversarial_packages import USES_EVIL, evil_wheel
from tests.test_checker import (
    PROBE_MODEL,
    _processes_mentioning,
    probes,
    regression_package,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.slow, pytest.mark.services]

OUTPUT_LIMIT = 8 * MiB
MAX_UPLOAD = 4 * MiB
MAX_SPEC = 8 * MiB
LIMITS = {
    "WHARF_RATE_LIMIT_ENABLED": "false",
    "WHARF_MODEL_TIME_LIMIT_S": "3",
    "WHARF_MODEL_MEMORY_BYTES": str(512 * MiB),
    "WHARF_MODEL_MAX_PROCESSES": "16",
    "WHARF_MODEL_MAX_FILE_BYTES": str(16 * MiB),
    "WHARF_MODEL_MAX_OUTPUT_BYTES": str(OUTPUT_LIMIT),
    "WHARF_INSTALL_TIMEOUT_S": "120",
    "WHARF_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "WHARF_MAX_SPEC_BYTES": str(MAX_SPEC),
}
#: Secrets in the market's environment, which no model may see.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAWHARFADVERSARIAL",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-wharf-adversarial",
    "GITHUB_TOKEN": "ghp_wharfadversarialtoken",
    "WHARF_S3_SECRET_ACCESS_KEY": "wharf-s3-secret-adversarial",
}
REDIS_PORT = 6379
REPO = Path(__file__).resolve().parents[1]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
WALL_S = 3 + 2.0 + 0.1 * 3  # the sandbox's wall-clock limit for a 3 s CPU limit
#: A model that never ends meets its CPU limit, or the wall clock first when the machine is
#: too busy to give it 3 s of CPU in time.
KILLED_IN_TIME = re.compile(
    r"the model run failed — killed: (CPU time limit of 3 s reached \(SIGXCPU\)|wall-clock "
    rf"limit of {re.escape(f'{WALL_S:.1f}')} s reached); no result\.json was written"
)


@dataclass
class Hostile:
    """The market under attack, and what the cases need to know about it."""

    client: WharfClient  # a user's: anyone may sign up and submit
    market: LocalMarket
    builder: Market
    tmp: Path
    scratch: Path  # the worker's TMPDIR: where its checks unpack and run
    marker: Path  # code that reached the host would create this
    honest: int = 0

    def submit(self, package: Path, sem: dict | None = None) -> tuple[str, str]:
        """Submit ``package`` as a stranger would; the learnware's final status and log."""
        sub = self.client.submit(package, sem if sem is not None else semantic())
        assert self.client.wait(sub["job_id"], timeout=180)["state"] == "succeeded"
        status = self.client.learnware(sub["learnware_id"])["status"]
        return status, self.client.log(sub["learnware_id"])

    def package(self, source: str, **kwargs) -> Path:
        return self.builder.package(source, **kwargs)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-market")
    for folder in ("packages", "wheels", "index", "scratch"):
        (tmp / folder).mkdir()
    marker = tmp / "pwned"
    evil_wheel(tmp / "wheels", marker)
    env = {
        **LIMITS,
        **SECRETS,
        "WHARF_PIP_FIND_LINKS": str(tmp / "wheels"),
        "WHARF_PIP_INDEX_URL": (tmp / "index").as_uri(),  # empty: nothing needs the network
        "TMPDIR": str(tmp / "scratch"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WHARF_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        with LocalMarket(tmp / "m", workers=1) as m, WharfClient(m.url, m.token) as admin:
            token = admin.create_token("hostile", user="stranger")["token"]
            with WharfClient(m.url, token) as stranger:
                builder = Market(tmp / "packages", table_spec_json())
                hostile = Hostile(stranger, m, builder, tmp, tmp / "scratch", marker)
                assert_honest_accepted(hostile)  # the worker is up and checks as it should
                yield hostile


def reason(log: str) -> str:
    """The message of the log's first FAIL line: why the check rejected the package."""
    for line in log.splitlines():
        match = re.fullmatch(f"{STAMP} FAIL (.*)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no FAIL line in the log:\n{log}")


def assert_rejected(status: str, log: str, expected: str | re.Pattern) -> None:
    assert status == "rejected", log
    got = reason(log)
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(got), f"{got!r} does not match {expected.pattern!r}\n{log}"
    else:
        assert got == expected, log
    assert re.search(f"^{STAMP} FAIL REJECTED$", log, re.M), log
    assert not re.search(f"^{STAMP} PASS ACCEPTED$", log, re.M), log


def probe_results(status: str, log: str) -> dict:
    """What a probing model saw; it must have been rejected for raising them."""
    assert status == "rejected", log
    assert reason(log).startswith("the model failed while predicting: RuntimeError: PROBES {")
    return probes(CheckReport(False, log))


def assert_worker_healthy(market: Hostile) -> None:
    """The market's processes are all alive and no sandbox process outlived its check."""
    assert all(p.poll() is None for p in market.market.procs)
    assert _processes_mentioning(str(market.scratch)) == []
    assert market.client.http.get("/readyz").status_code == 200
    assert not market.marker.exists(), "code from a package ran on the host"


def assert_honest_accepted(market: Hostile) -> None:
    market.honest += 1
    requirements = f"numpy\n# honest package {market.honest}\n".encode()
    package = regression_package(market.builder, requirements={"requirements.txt": requirements})
    status, log = market.submit(package)
    assert status == "accepted", log
    assert re.search(f"^{STAMP} PASS ACCEPTED$", log, re.M), log
    assert_worker_healthy(market)


def probe_package(market: Hostile, probe: str, **kwargs) -> Path:
    source = PROBE_MODEL.format(probe=textwrap.dedent(probe))
    return market.package(source, kwargs=kwargs)


# --- probes: what the model can see and reach -------------------------------------------------


def probe_host_files(market: Hostile) -> tuple[Path, object]:
    data = market.market.data_dir
    paths = {
        "shadow": "/etc/shadow",
        "catalog": str(data / "catalog.db"),
        "admin token": str(data / "admin-token"),
        "objects": str(data / "objects"),
        "scratch": str(market.scratch),
        "source": str(REPO / "market" / "settings.py"),
    }
    probe = """
        def probe(paths):
            report = {}
            for name, path in paths.items():
                report["read " + name] = attempt(lambda p=path: open(p, "rb").read(20))
                report["ls " + name] = attempt(lambda p=path: sorted(os.listdir(p)))
            for folder in ("/root", "/etc", "/home"):
                report["ls " + folder] = attempt(lambda f=folder: sorted(os.listdir(f)))
            return report
    """

    def check(results: dict) -> None:
        for name, path in paths.items():
            for verb in ("read", "ls"):
                assert results[f"{verb} {name}"] == (
                    f"FileNotFoundError: [Errno 2] No such file or directory: {path!r}"
                ), results
        assert results["ls /home"].startswith("FileNotFoundError"), results
        assert results["ls /etc"] == "ok: ['alternatives', 'ld.so.cache']", results
        # /root holds at most the interpreter's installation, when it lies there.
        interpreter = sorted({Path(p).parts[2] for p in _python_dirs() if p.startswith("/root/")})
        assert results["ls /root"] == (
            f"ok: {interpreter}"
            if interpreter
            else "FileNotFoundError: [Errno 2] No such file or directory: '/root'"
        ), results

    return probe_package(market, probe, paths=paths), check


def probe_proc(market: Hostile) -> tuple[Path, object]:
    worker_pid = market.market.procs[0].pid
    user_token = market.client.http.headers["Authorization"].removeprefix("Bearer ")
    secrets = [*SECRETS.values(), market.market.token, user_token, "WHARF_"]
    probe = """
        def probe(worker_pid, secrets):
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            report = {"pids": pids, "self": os.getpid(), "leaks": []}
            for pid in pids:
                for what in ("cmdline", "environ"):
                    text = open(f"/proc/{pid}/{what}", "rb").read().decode()
                    report["leaks"] += [[pid, what, s] for s in secrets if s in text]
            report["init"] = open("/proc/1/cmdline").read().split("\\0")[0]
            report["init environ"] = open("/proc/1/environ").read()
            report["init root"] = attempt(lambda: os.listdir("/proc/1/root") == os.listdir("/"))
            report["worker"] = attempt(lambda: open(f"/proc/{worker_pid}/environ").read())
            return report
    """

    def check(results: dict) -> None:
        assert results == {
            "pids": [1, 2],  # the sandbox's own init (bwrap) and the model: nothing else
            "self": 2,
            "leaks": [],
            "init": "/usr/bin/bwrap",
            "init environ": "PATH=/usr/bin:/bin\0LANG=C.UTF-8\0",
            "init root": "ok: True",  # the sandbox's root, not the host's
            "worker": f"FileNotFoundError: [Errno 2] No such file or directory: "
            f"'/proc/{worker_pid}/environ'",
        }, results

    return probe_package(market, probe, worker_pid=worker_pid, secrets=secrets), check


def probe_fds(market: Hostile) -> tuple[Path, object]:
    probe = """
        import stat

        def probe():
            channel = json.load(open("/in/job.json"))["result_fd"]
            report = {"channel": channel, "open": {}}
            for fd in range(3, 1025):
                try:
                    mode = os.fstat(fd).st_mode
                except OSError:
                    continue
                report["open"][fd] = {
                    "kind": stat.S_IFMT(mode),
                    "link": attempt(lambda: os.readlink(f"/proc/self/fd/{fd}")),
                    "read": attempt(lambda: os.read(fd, 0)),
                    "write": attempt(lambda: os.write(fd, b"")),
                }
            return report
    """

    def check(results: dict) -> None:
        channel = str(results["channel"])
        assert list(results["open"]) == [channel], results  # only the result channel
        seen = results["open"][channel]
        assert re.fullmatch(r"ok: pipe:\[\d+\]", seen.pop("link")), results
        assert seen == {
            "kind": stat.S_IFIFO,
            "read": "OSError: [Errno 9] Bad file descriptor",  # its write end only
            "write": "ok: 0",
        }, results

    return probe_package(market, probe), check


def probe_network(market: Hostile) -> tuple[Path, object]:
    probe = """
        import socket

        def probe(ports):
            def connect(host, port):
                return lambda: socket.create_connection((host, port), timeout=3).close()
            report = {f"127.0.0.1:{p}": attempt(connect("127.0.0.1", p)) for p in ports}
            report["1.1.1.1:53"] = attempt(connect("1.1.1.1", 53))
            report["dns"] = attempt(lambda: socket.getaddrinfo("pypi.org", 443))
            return report
    """
    ports = [market.market.port, REDIS_PORT]

    def check(results: dict) -> None:
        for port in ports:
            assert results[f"127.0.0.1:{port}"] == (
                "ConnectionRefusedError: [Errno 111] Connection refused"
            ), results
        assert results["1.1.1.1:53"] == "OSError: [Errno 101] Network is unreachable", results
        assert results["dns"].startswith("gaierror: [Errno -3]"), results

    return probe_package(market, probe, ports=ports), check


def probe_environment(market: Hostile) -> tuple[Path, object]:
    probe = """
        def probe():
            return {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid()}
    """

    def check(results: dict) -> None:
        assert results["env"] == {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONPATH": "/opt/wharf/shim",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PWD": "/learnware",
        }, results
        assert results["uid"] == results["gid"] == 65534, results

    return probe_package(market, probe), check


def probe_writes(market: Hostile) -> tuple[Path, object]:
    private = f"/tmp/wharf-adversarial-{uuid.uuid4().hex}"
    host = str(market.scratch / "x")
    probe = """
        def probe(places):
            report = {p: attempt(lambda p=p: open(p, "w").write("x")) for p in places}
            report["chmod"] = attempt(lambda: os.chmod("/learnware/__init__.py", 0o777))
            return report
    """
    places = ["/learnware/x", "/learnware/__init__.py", "/x", "/usr/x", "/usr/lib/x", host, private]

    def check(results: dict) -> None:
        assert results.pop(private) == "ok: 1", results  # its own private /tmp
        assert not Path(private).exists()  # not the host's
        assert results.pop(host) == (
            f"FileNotFoundError: [Errno 2] No such file or directory: {host!r}"
        ), results
        for place, outcome in results.items():
            assert outcome.startswith("OSError: [Errno 30] Read-only file system"), (place, outcome)

    return probe_package(market, probe, places=places), check


def probe_kernel(market: Hostile) -> tuple[Path, object]:
    """The sandbox's uid is the worker's outside: root, for a worker run as root, which the
    kernel lets write root's sysctls that need no capability. kernel.core_pattern names a
    program the kernel runs as root on the host at the next crash. The model only opens them
    for writing: it never writes."""
    probe = """
        def probe(sysctls):
            writable = []
            for root, _, files in os.walk("/proc/sys"):
                paths = [os.path.join(root, name) for name in files]
                writable += [path for path in paths if os.access(path, os.W_OK)]
            report = {"uid_map": open("/proc/self/uid_map").read().split()}
            report["writable"] = [len(writable), *writable[:5]]
            for path in sysctls:
                report[path] = attempt(lambda p=path: os.close(os.open(p, os.O_WRONLY)))
            return report
    """
    sysctls = ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches"]

    def check(results: dict) -> None:
        refused = (
            "OSError: [Errno 30] Read-only file system"
            if os.getuid() == 0  # owner of the sysctls: only the read-only mount stops it
            else "PermissionError: [Errno 13] Permission denied"
        )
        assert results == {
            "uid_map": ["65534", str(os.getuid()), "1"],
            "writable": [0],
            **{path: f"{refused}: {path!r}" for path in sysctls},
        }, results

    return probe_package(market, probe, sysctls=sysctls), check


PROBES = {
    "host files": probe_host_files,
    "kernel settings": probe_kernel,
    "/proc": probe_proc,
    "inherited descriptors": probe_fds,
    "network": probe_network,
    "environment": probe_environment,
    "writes": probe_writes,
}


@pytest.mark.parametrize("case", list(PROBES))
def test_a_probing_model_sees_and_reaches_nothing_of_the_host(market: Hostile, case: str) -> None:
    package, check = PROBES[case](market)
    check(probe_results(*market.submit(package)))


def test_an_honest_package_is_accepted_after_the_probes(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- exhaustion: processes, threads, CPU, memory, disk, outputs --------------------------------


def model(body: str, prelude: str = "") -> str:
    """A table model whose ``predict`` runs ``body`` and then returns its first feature;
    ``prelude`` (imports, functions) comes before the class."""
    return (
        f"import os\nimport numpy as np\n{prelude}\n\n"
        "class Model:\n    input_shape = (4,)\n    output_shape = (1,)\n\n"
        "    def predict(self, X):\n"
        f"{textwrap.indent(textwrap.dedent(body).strip(), ' ' * 8)}\n"
        "        return X[:, :1]\n"
    )


EXHAUSTION = {
    "fork bomb": (
        model(
            """
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """
        ),
        KILLED_IN_TIME,
    ),
    "thread bomb": (
        model(
            """
            threading.stack_size(256 * 1024)  # small stacks: the process limit comes first
            threads, error = [], None
            while error is None:
                try:
                    thread = threading.Thread(target=time.sleep, args=(60,), daemon=True)
                    thread.start()
                    threads.append(thread)
                except RuntimeError as exc:
                    error = str(exc)
            raise RuntimeError(f"started {len(threads)} threads, then: {error}")
            """,
            "import threading\nimport time",
        ),
        # pids.max 16 for the model: its main thread and 15 more
        "the model failed while predicting: RuntimeError: started 15 threads, then: "
        "can't start new thread",
    ),
    "CPU spin": (
        model("while True:\n    pass"),
        KILLED_IN_TIME,
    ),
    "memory hog": (
        model("hog = np.ones(4 * 1024**3 // 8)"),
        "the model failed while predicting: _ArrayMemoryError: Unable to allocate 4.00 GiB for an "
        "array with shape (536870912,) and data type float64 (it needs more memory than its "
        "limit of 512 MiB)",
    ),
    "filling /tmp": (
        model(
            """
            chunk = b"x" * (1024 * 1024)
            for i in range(64):  # 15 MiB files, under the file size limit: 960 MiB in all
                with open(f"/tmp/fill-{i}", "wb") as f:
                    for _ in range(15):
                        f.write(chunk)
            """
        ),
        "the model run failed — killed: memory limit of 512 MiB reached; no result.json was "
        "written",
    ),
    "flooding /out": (
        model(
            """
            for i in range(64):  # 64 MiB in 1 MiB files; the model hides the error
                try:
                    with open(f"/out/f{i}", "wb") as f:
                        f.write(b"x" * (1024 * 1024))
                except OSError:
                    break
            """
        ),
        "the model's results were refused — output limit of 8 MiB reached: the model filled /out",
    ),
    "flooding the result channel": (
        model(
            """
            fd = json.load(open("/in/job.json"))["result_fd"]
            os.write(fd, b"wharf-file outputs.npy %d\\n" % (64 * 1024 * 1024))
            for _ in range(1024):
                os.write(fd, b"x" * 65536)
            """,
            "import json",
        ),
        "the model's results were refused — output limit of 8 MiB reached",
    ),
}


@pytest.mark.parametrize("case", list(EXHAUSTION))
def test_a_model_exhausting_the_machine_is_stopped(market: Hostile, case: str) -> None:
    source, expected = EXHAUSTION[case]
    status, log = market.submit(market.package(source))
    assert_rejected(status, log, expected)
    if case in ("fork bomb", "thread bomb"):
        assert re.search(f"^{STAMP} WARN the process limit refused \\d+ attempt", log, re.M), log
    assert_worker_healthy(market)


def test_an_honest_package_is_accepted_after_the_exhaustion(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- lying outputs -----------------------------------------------------------------------------

#: A model's own result: ``outputs.npy`` and a ``result.json`` saying all went well, sent
#: through the result channel before the child can send the real ones.
FORGE = """
import io
import json
import signal

def forge(outputs: bytes) -> None:
    fd = json.load(open("/in/job.json"))["result_fd"]
    result = json.dumps({"status": "ok", "stage": "outputs", "input_shape": [4],
                         "output_shape": [1]}).encode()
    for name, data in ((b"outputs.npy", outputs), (b"result.json", result)):
        os.write(fd, b"wharf-file %s %d\\n" % (name, len(data)) + data)

def npy(array, **header) -> bytes:
    buffer = io.BytesIO()
    if header:  # a header of its own, and 160 bytes of data
        np.lib.format.write_array_header_1_0(buffer, header)
        return buffer.getvalue() + bytes(160)
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()
"""

FAKE_LOG = """
fake = "2099-01-01T00:00:00.000Z PASS ACCEPTED"
print(fake)
print("\\x1b[2J\\r" + fake, file=sys.stderr)
raise ValueError("the weights are fine\\n" + fake)
"""

LIES = {
    "outputs of the wrong shape": (
        model("return X[:, :2]"),
        "each output has shape (2,) but model.output_shape is (1,)",
    ),
    "NaN outputs": (
        model("return np.full((len(X), 1), np.nan)"),
        "outputs contain 20 NaN or infinite value(s); every output must be finite",
    ),
    "complex outputs": (
        model("return X[:, :1] + 1j"),
        "predict returned ndarray: not a numeric array (dtype complex128)",
    ),
    "string outputs": (
        model("return np.array(['yes'] * len(X))"),
        "predict returned ndarray: not a numeric array (dtype <U3)",
    ),
    "a forged result.json, then a crash": (
        model(
            """
            forge(npy(X[:, :1]))
            os.kill(os.getpid(), signal.SIGSEGV)
            """,
            FORGE,
        ),
        "the model run did not finish cleanly: killed by signal SIGSEGV",
    ),
    "an outputs.npy header declaring 7 TiB": (
        model(
            """
            forge(npy(None, descr="<f8", fortran_order=False, shape=(10**12,)))
            os._exit(0)
            """,
            FORGE,
        ),
        "the model run failed — it exited with status 0; outputs.npy is not a readable .npy "
        "array (its header declares shape (1000000000000,) of float64 (8000000000000 bytes), "
        "but 160 bytes follow it)",
    ),
    "fake check-log lines": (
        model(FAKE_LOG, "import sys"),
        "the model failed while predicting: ValueError: the weights are fine",
    ),
}


@pytest.mark.parametrize("case", list(LIES))
def test_a_model_lying_about_its_outputs_is_rejected(market: Hostile, case: str) -> None:
    source, expected = LIES[case]
    status, log = market.submit(market.package(source))
    assert_rejected(status, log, expected)
    if case == "fake check-log lines":
        # What the model wrote is indented under the line that introduces it, escapes shown
        # as '?': no line of its own, and the only verdict is the market's.
        assert re.findall("^.*ACCEPTED.*$", log, re.M) == [
            " " * 30 + "2099-01-01T00:00:00.000Z PASS ACCEPTED",  # its exception's message
            " " * 30 + "2099-01-01T00:00:00.000Z PASS ACCEPTED",  # and its traceback
            " " * 30 + "| ?[2J?2099-01-01T00:00:00.000Z PASS ACCEPTED",
            " " * 30 + "| 2099-01-01T00:00:00.000Z PASS ACCEPTED",
        ], log


def test_an_honest_package_is_accepted_after_the_lies(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- archives and manifests: refused before anything is unpacked or run -------------------------


def billion_laughs() -> bytes:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    lines.append("model: {class_name: Model, module_path: __init__.py, kwargs: {}}")
    return ("\n".join(lines) + "\n").encode()


def with_member(market: Hostile, name: str, info: zipfile.ZipInfo | str, data: bytes) -> Path:
    """An honest package with one more member."""
    honest = regression_package(market.builder)
    out = market.tmp / "packages" / name
    with zipfile.ZipFile(honest) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.infolist():
            dst.writestr(member, src.read(member))
        dst.writestr(info, data)
    return out


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


def lying_sizes(market: Hostile) -> Path:
    """A member of 64 MiB of zeros whose headers both declare 1,024 bytes."""
    path = market.package(model(""), files={"zeros.bin": bytes(64 * MiB)})
    data = bytearray(path.read_bytes())
    # (signature, offset of the uncompressed size, of the name's length, of the name)
    for signature, size_at, length_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),  # local header
        (b"PK\x01\x02", 24, 28, 46),  # central directory
    ):
        at = data.find(signature)
        while at >= 0:
            (length,) = struct.unpack_from("<H", data, at + length_at)
            if data[at + name_at : at + name_at + length] == b"learnware/zeros.bin":
                struct.pack_into("<I", data, at + size_at, 1024)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def zip_bomb(market: Hostile) -> tuple[Path, str]:
    path = market.package(model(""), files={"zeros.bin": bytes(100 * MiB)})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("learnware/zeros.bin")
    ratio = info.file_size / info.compress_size
    return path, (
        f"package: learnware/zeros.bin: expands {ratio:.0f}:1 ({info.compress_size} bytes to "
        "100 MiB); over 200:1 is refused as a likely zip bomb"
    )


ARCHIVES = {
    "YAML billion laughs": lambda m: (
        m.package(model(""), files={"learnware.yaml": billion_laughs()}),
        "package: learnware.yaml: is too large or too deeply nested once its aliases are "
        "expanded (at most 100000 values, 50 levels)",
    ),
    "zip bomb": zip_bomb,
    "zip member larger than its headers say": lambda m: (
        lying_sizes(m),
        "package: zeros.bin: is corrupt or truncated (Bad CRC-32 for file 'learnware/zeros.bin')",
    ),
    "path traversal": lambda m: (
        with_member(m, "dotdot.zip", "learnware/../../evil.py", b"print('x')\n"),
        "package: learnware/../../evil.py: unsafe name: a '..' component would leave the package",
    ),
    "absolute name": lambda m: (
        with_member(m, "absolute.zip", "/etc/evil.py", b"print('x')\n"),
        "package: /etc/evil.py: unsafe name: it is an absolute path; names must be relative to "
        "the package",
    ),
    "symbolic link": lambda m: (
        with_member(m, "link.zip", symlink("learnware/secrets"), b"/etc/shadow"),
        "package: learnware/secrets: is a symbolic link; only files and folders are allowed",
    ),
}


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_an_unsafe_archive_is_rejected_before_anything_runs(market: Hostile, case: str) -> None:
    package, expected = ARCHIVES[case](market)
    status, log = market.submit(package)
    assert_rejected(status, log, expected)
    assert "running the model" not in log and "sandbox:" not in log, log


def test_an_honest_package_is_accepted_after_the_archives(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- pickles ---------------------------------------------------------------------------------


class _Payload:
    """Pickles to a call of ``exec(code)``: whoever unpickles it runs ``code``."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def evil_pickle(marker: Path) -> bytes:
    code = textwrap.dedent(
        f"""
        import os
        try:
            open({str(marker)!r}, "w").close()
            outcome = "wrote the marker"
        except OSError as exc:
            outcome = type(exc).__name__
        with open("/tmp/unpickled", "w") as f:
            f.write(f"uid {{os.getuid()}}: {{outcome}}")
        """
    )
    return pickle.dumps(_Payload(code))


UNPICKLING_MODEL = """
import json
import os
import pickle

class Model:
    input_shape = (4,)
    output_shape = (1,)

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "model.pkl"), "rb") as f:
            pickle.load(f)

    def predict(self, X):
        raise RuntimeError("PROBES " + json.dumps({"ran": open("/tmp/unpickled").read()}))
"""


def test_a_pickled_model_named_by_the_manifest_is_never_loaded(market: Hostile) -> None:
    manifest = (
        "model:\n  class_name: Model\n  module_path: model.pkl\n  kwargs: {}\n"
        "stat_specifications:\n  - module_path: learnware.specification\n"
        "    class_name: RKMETableSpecification\n    file_name: rkme.json\n    kwargs: {}\n"
    )
    files = {"learnware.yaml": manifest.encode(), "model.pkl": evil_pickle(market.marker)}
    status, log = market.submit(market.package(model(""), files=files))
    assert_rejected(
        status,
        log,
        "package: learnware.yaml: model.module_path 'model.pkl' is not a file inside the "
        "package; give a relative .py path such as '__init__.py' or the name of a module in "
        "the package",
    )
    assert not market.marker.exists()


def test_a_pickled_statistical_spec_is_never_unpickled(market: Hostile) -> None:
    files = {"rkme.json": evil_pickle(market.marker)}
    status, log = market.submit(market.package(model(""), files=files))
    assert_rejected(status, log, "statistical specification rkme.json: spec is not UTF-8 text")
    assert not market.marker.exists()


def test_a_pickle_the_model_loads_runs_only_inside_the_sandbox(market: Hostile) -> None:
    files = {"model.pkl": evil_pickle(market.marker)}
    results = probe_results(*market.submit(market.package(UNPICKLING_MODEL, files=files)))
    # It ran, as the model asked, but as nobody in a private /tmp: the host path is not there.
    assert results == {"ran": "uid 65534: FileNotFoundError"}, results
    assert not market.marker.exists()


def test_pickled_outputs_are_never_unpickled_by_the_worker(market: Hostile) -> None:
    """The model sends an object array, whose unpickling would create the marker on the
    host, as its outputs.npy and ends before the child sends its own."""
    code = f"open({str(market.marker)!r}, 'w').close()"
    payload = f"class Payload:\n    def __reduce__(self):\n        return (exec, ({code!r},))\n"
    body = "forge(npy(np.array([Payload()] * len(X), dtype=object)))\nos._exit(0)"
    status, log = market.submit(market.package(model(body, FORGE + payload)))
    assert_rejected(
        status,
        log,
        "the model run failed — it exited with status 0; outputs.npy is not a readable .npy "
        "array (Object arrays cannot be loaded when allow_pickle=False)",
    )
    assert not market.marker.exists()


def test_an_honest_package_is_accepted_after_the_pickles(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- requirements ------------------------------------------------------------------------------


def test_requirement_install_hooks_run_only_in_the_sandbox(market: Hostile) -> None:
    """A wheel from the market's find-links with a .pth file, a sitecustomize and a console
    script, each of which would create the marker on the host; the model checks that its
    .pth ran, inside."""
    requirements = {"requirements.txt": b"wharf-evil-pth==1.0\n"}
    status, log = market.submit(market.package(USES_EVIL, requirements=requirements))
    assert status == "accepted", log
    assert re.search(
        f"^{STAMP} PASS installed: wharf-evil-pth==1.0 \\(wheels: "
        r"wharf_evil_pth-1\.0-py3-none-any\.whl\)$",
        log,
        re.M,
    ), log
    assert not market.marker.exists(), "requirement code ran on the host"
    assert_worker_healthy(market)


def test_an_honest_package_is_accepted_after_the_requirements(market: Hostile) -> None:
    assert_honest_accepted(market)


# --- specs -------------------------------------------------------------------------------------


def _spec_json(z, beta) -> bytes:
    spec = {
        "z": np.asarray(z).tolist(),
        "beta": np.asarray(beta).tolist(),
        "gamma": 0.1,
        "num_points": 100,
        "type": "RKMETableSpecification",
    }
    return json.dumps(spec).encode()


def test_a_huge_statistical_spec_is_rejected(market: Hostile) -> None:
    rng = np.random.default_rng(0)
    spec = _spec_json(rng.normal(size=(16_000, 4)), np.full(16_000, 1 / 16_000))
    status, log = market.submit(market.package(model(""), spec_json=spec))
    assert_rejected(
        status,
        log,
        "statistical specification rkme.json: z has 16000 points, over this market's limit of "
        "2000 (refit with fewer points, e.g. n_points=100)",
    )


def worker_memory(market: Hostile, *, reset: bool = False) -> int:
    """The peak resident memory of the check worker's pool process (reset to its current
    memory first, if asked)."""
    parent = str(market.market.procs[0].pid)  # worker0, started first
    deadline = time.monotonic() + 120  # the worker may still be starting its pool
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "stat").read_text().split()[3] == parent:
                    if reset:
                        (entry / "clear_refs").write_text("5")
                    status = (entry / "status").read_text()
                    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError("no worker pool process")


def test_a_spec_file_too_large_to_parse_is_refused_unread(market: Hostile) -> None:
    """64 MiB of JSON numbers (a zip of under 1 MiB) would take the worker about 1 GB to
    parse; it is refused on its size, before it is read."""
    rng = np.random.default_rng(0)
    rows = ",".join(f"[0.5,0.5,0.5,0.{d}]" for d in rng.integers(0, 10, size=1000)) + ","
    z = "[" + rows * (64 * MiB // len(rows)) + "[0.5,0.5,0.5,0.5]]"
    spec = f'{{"type": "RKMETableSpecification", "gamma": 0.1, "beta": [1], "z": {z}}}'.encode()
    package = market.package(model(""), spec_json=spec)
    assert package.stat().st_size < MAX_UPLOAD
    before = worker_memory(market, reset=True)
    status, log = market.submit(package)
    assert_rejected(
        status,
        log,
        f"statistical specification rkme.json: the file is {len(spec)} bytes, over this "
        f"market's limit of {MAX_SPEC} bytes for a specification",
    )
    assert worker_memory(market) - before < 100 * MiB


def test_a_degenerate_statistical_spec_is_rejected(market: Hostile) -> None:
    z = np.zeros((2, 4))
    z[1, 0] = 1e-3
    status, log = market.submit(market.package(model(""), spec_json=_spec_json(z, [1.0, -1.0])))
    assert_rejected(
        status,
        log,
        "statistical specification rkme.json: beta must be non-negative weights summing to 1 "
        "(the probability simplex, as every fit with nonnegative_beta=True gives); got min -1, "
        "sum 0",
    )


def test_a_huge_semantic_spec_is_refused_at_upload(market: Hostile) -> None:
    sem = semantic(Description={"Type": "String", "Values": "x" * 1_000_000})
    with open(regression_package(market.builder), "rb") as fh:
        r = market.client.http.post(
            "/v1/learnwares",
            files={"package": ("p.zip", fh, "application/zip")},
            data={"semantic_spec": json.dumps(sem)},
        )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == (
        "semantic_spec.Description.Values: is 1,000,000 characters long; a learnware's "
        "Description may have at most 10,000"
    ), r.json()


def upload_oversized(market: Hostile):
    """A package one byte over the upload limit (random bytes do not compress), whose body
    stays under the route's limit, which allows for the form around it."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=MAX_UPLOAD + 1, dtype=np.uint8).tobytes()
    package = market.package(model(""), files={"noise.bin": noise})
    with open(package, "rb") as fh:
        return market.client.http.post(
            "/v1/learnwares",
            files={"package": ("p.zip", fh, "application/zip")},
            data={"semantic_spec": json.dumps(semantic())},
        )


def test_an_oversized_package_is_refused_at_upload(market: Hostile) -> None:
    r = upload_oversized(market)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"].endswith(" is larger than the limit of 4194304 bytes (4.0 MiB)")


def test_an_oversized_package_is_refused_in_words_about_the_package(market: Hostile) -> None:
    r = upload_oversized(market)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        "the package is larger than the limit of 4194304 bytes (4.0 MiB)"
    ), r.json()


def test_an_honest_package_is_accepted_at_the_end(market: Hostile) -> None:
    assert_honest_accepted(market)
