"""``wharf up`` as a real process: whatever stops it (SIGTERM, SIGINT, SIGHUP, even SIGKILL),
nothing it started is left running; a taken port is refused before anything starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from wharf.cli.serve import free_port

WHARF = Path(sys.executable).parent / "wharf"

pytestmark = pytest.mark.services  # `wharf up`: a real market's processes


def _env(data_dir: Path) -> dict[str, str]:
    """The embedded market in ``data_dir``, whatever WHARF_ settings the caller has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    return {**env, "WHARF_DATA_DIR": str(data_dir)}


def _command() -> list[str]:
    if WHARF.exists():
        return [str(WHARF)]
    return [sys.executable, "-m", "wharf.cli.main"]


def _children() -> dict[int, int]:
    """``pid → parent pid`` of every process on this machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":  # a zombie is dead; only its parent has not reaped it
                out[int(entry.name)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_children())


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen, int, set[int]]:
    """``wharf up`` with one worker, once it says it is up; its port and process tree."""
    port = free_port()
    proc = subprocess.Popen(
        [*_command(), "up", "--port", str(port), "--workers", "1", "--data-dir", str(tmp_path)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("Wharf is up"):
                break
        assert proc.poll() is None, proc.stderr.read()
    finally:
        watchdog.cancel()
    deadline = time.monotonic() + 60
    while len(tree := _descendants(proc.pid)) < 3:  # the API, the worker and its pool process
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
            pytest.fail(f"the market did not stay up: {proc.stderr.read()} {tree} {logs}")
        time.sleep(0.2)
    return proc, port, tree


def _serves(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_every_process(tmp_path, sig):
    proc, port, tree = _start_up(tmp_path)
    assert _serves(port)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0
    assert f"stopping ({sig.name})" in proc.stderr.read()
    assert _alive(tree) == set()  # gone by the time it exits
    assert not _serves(port)


def test_a_killed_wharf_up_leaves_nothing_serving(tmp_path):
    proc, port, tree = _start_up(tmp_path)
    proc.kill()  # no handler runs: its children learn of it from the kernel
    proc.wait(timeout=10)
    deadline = time.monotonic() + 60
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(tree) == set()
    assert not _serves(port)


def test_a_taken_port_is_refused_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*_command(), "up", "--port", str(port), "--data-dir", str(tmp_path / "m")],
            env=_env(tmp_path / "m"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0
    assert done.stdout == ""  # never "Wharf is up"
    assert done.stderr == (
        f"error: port {port} is in use (another program listens on 127.0.0.1:{port}); "
        "pick another with --port\n"
    )
    assert not (tmp_path / "m").exists()  # nothing was created or started


def test_a_port_held_by_a_market_names_it(tmp_path, capsys):
    from wharf.cli.main import main
    from wharf.cli.serve import LocalMarket

    with LocalMarket(tmp_path / "first", workers=0) as market:
        assert main(["up", "--port", str(market.port), "--data-dir", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: port {market.port} is in use (a Wharf market already answers at "
        f"http://127.0.0.1:{market.port}); pick another with --port\n"
    )
