"""Flower sees the market's tasks through the workers' events.

Real processes on Redis: Flower started by the images' entry point (``wharf-entrypoint
flower``, with basic auth, as the deployments run it), then a market (:class:`LocalMarket`:
the API and one Celery worker). A search sent through the API must show up in Flower's HTTP
API with its worker, state ``SUCCESS`` and a runtime, the worker among Flower's workers, and
nothing but ``/healthcheck`` and ``/metrics`` may answer without the password.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("flower", reason="flower is not installed: pip install -e '.[monitoring]'")

from wharf.cli.serve import LocalMarket, free_port
from wharf.client import WharfClient
from wharf.workers.app import QUEUES, SEARCH_TASK

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
#: A Redis database of its own (conftest: 13; test_market_e2e: 11; test_bulk_e2e: 9; bench: 8,
#: 12, 13, 14), emptied before and after.
pytestmark = pytest.mark.services  # a market's workers, Flower and Redis
TIMEOUT = 60.0


def poll(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """``probe()`` until it returns something truthy; its last error in the failure."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what}: nothing after {timeout} s (last: {last!r})")


def group_alive(pgid: int) -> bool:
    """Whether a process of this process group still runs (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def broker(redis_database) -> Iterator[str]:
    """A Redis database of this test's own (fails, or skips, without Redis)."""
    with redis_database() as url:
        yield url


@pytest.fixture
def flower(broker: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``wharf-entrypoint flower`` on a free local port, as a process group of its own."""
    port = free_port()
    login = ("ops", secrets.token_hex(8))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHARF_", "FLOWER_", "CELERY"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        WHARF_BROKER_URL=broker,
        WHARF_DATA_DIR=str(tmp_path / "flower-data"),
        FLOWER_BASIC_AUTH=":".join(login),
        FLOWER_PORT=str(port),
        FLOWER_ADDRESS="127.0.0.1",
        MONITOR_PORT_FILE=str(tmp_path / "flower-port"),
    )
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", str(ENTRYPOINT), "flower"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=tmp_path,  # Flower reads ./flowerconfig.py if there is one
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, f"flower exited:\n{log.read_text()}"
            return httpx.get(f"{url}/healthcheck", timeout=2).text == "OK"

        poll("Flower's /healthcheck", healthy, timeout=30)
        yield {"url": url, "auth": login, "env": env, "proc": proc, "log": log}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_flower_shows_a_search_from_the_api_with_its_worker_and_runtime(
    flower: dict[str, Any], broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, auth = flower["url"], flower["auth"]
    api = httpx.Client(base_url=url, auth=auth, timeout=10)
    # only the health check and the metrics answer without the password
    for path in ("/", "/tasks", "/workers", "/broker", "/api/tasks", "/api/workers"):
        assert httpx.get(url + path, timeout=10).status_code == 401, path
        assert httpx.get(url + path, auth=(auth[0], "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{url}/healthcheck", timeout=10).text == "OK"
    # and the image's health check of this container asks Flower
    health = subprocess.run(
        ["sh", str(ENTRYPOINT), "healthcheck"],
        env={**flower["env"], "WORKER_NODE_FILE": str(tmp_path / "no-worker")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert health.returncode == 0, health.stderr

    monkeypatch.setenv("WHARF_BROKER_URL", broker)
    market_pids: list[int] = []
    with LocalMarket(tmp_path / "market", workers=1) as market:
        market_pids = [p.pid for p in market.procs]
        with WharfClient(market.url, market.token) as client:
            job_id = client.start_search(
                semantic={"Task": {"Type": "Class", "Values": ["Regression"]}}
            )
            assert client.wait(job_id, timeout=TIMEOUT)["state"] == "succeeded"

        def succeeded() -> dict[str, Any] | None:
            response = api.get("/api/tasks")
            response.raise_for_status()
            task = response.json().get(job_id)
            return task if task and task["state"] == "SUCCESS" else None

        task = poll(f"task {job_id} in Flower's /api/tasks", succeeded)
        assert task["name"] == SEARCH_TASK
        assert task["worker"].startswith("worker0@")
        assert task["received"] and task["started"] and task["succeeded"]
        assert task["runtime"] is not None and 0 <= task["runtime"] < TIMEOUT
        assert api.get(f"/api/task/info/{job_id}").json()["state"] == "SUCCESS"

        def worker() -> dict[str, Any] | None:
            response = api.get("/api/workers", params={"refresh": "1"})
            response.raise_for_status()
            return next(
                (info for name, info in response.json().items() if name == task["worker"]),
                None,
            )

        info = poll("the worker in Flower's /api/workers", worker)
        assert {q["name"] for q in info["active_queues"]} == set(QUEUES)
        lengths = api.get("/api/queues/length").json()["active_queues"]
        assert {q["name"] for q in lengths} == set(QUEUES)
        assert all(q["messages"] == 0 for q in lengths), lengths  # nothing left waiting
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert f'flower_events_total{{task="{SEARCH_TASK}",type="task-succeeded"' in metrics

    # everything stopped: the market's processes and their pool children, then Flower
    flower["proc"].send_signal(signal.SIGTERM)
    assert flower["proc"].wait(timeout=15) == 0, flower["log"].read_text()
    for pgid in [*market_pids, flower["proc"].pid]:
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(pgid), f"process group {pgid} left running"
