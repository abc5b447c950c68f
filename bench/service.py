"""Market service benchmarks: check throughput per worker process, API enqueue latency under
concurrent clients, and the API process's memory.

    PYTHONPATH=. python -m bench.service [--seconds 10] [--concurrency 50] [--checks 12]

Needs wrk (``apt-get install wrk``) as the load generator.

Runs real processes on loopback: the API (uvicorn, one process) and Celery workers, with Redis
as the broker and the embedded SQLite catalog and local object store (set ``WHARF_DATABASE_URL``
to measure PostgreSQL instead). The baseline for latency is ``GET /healthz`` at the same
concurrency: the cost of the HTTP stack alone.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.learnwares import build_examples

from bench._common import table, write_results


def variant(package: Path, tag: str) -> bytes:
    """The same learnware with one extra file: new content, same behaviour."""
    out = io.BytesIO()
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        top = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{top}/VARIANT.txt", tag)
    return out.getvalue()


WRK_SCRIPT = r"""
local boundary = "wharfbenchboundary"
local id = 0
local counter = 0
function setup(thread)
  id = id + 1
  thread:set("tid", id)
end
function init(args)
  path = args[1]
  semantic = args[2]
  pad = string.rep("x", tonumber(args[3]))
end
function request()
  counter = counter + 1
  if path == "/healthz" then
    return wrk.format("GET", path)
  end
  local parts = "--" .. boundary .. "\r\n" ..
    'Content-Disposition: form-data; name="semantic_spec"\r\n\r\n' .. semantic .. "\r\n"
  if path == "/v1/learnwares" then
    parts = parts .. "--" .. boundary .. "\r\n" ..
      'Content-Disposition: form-data; name="package"; filename="m.zip"\r\n' ..
      "Content-Type: application/zip\r\n\r\n" .. pad .. tid .. "-" .. counter .. "\r\n"
  end
  local body = parts .. "--" .. boundary .. "--\r\n"
  local headers = {}
  headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  headers["Authorization"] = "Bearer " .. os.getenv("WHARF_BENCH_TOKEN")
  return wrk.format("POST", path, headers, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f %.3f %.3f\n",
    summary.requests, summary.errors.status, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, 0))
end
"""


def wrk(
    url: str,
    path: str,
    token: str,
    *,
    concurrency: int,
    seconds: int,
    semantic: str,
    pad: int,
    script: Path,
) -> dict[str, float]:
    """Drive ``path`` with wrk (C, so the load generator does not starve the server)."""
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    args = [
        "wrk",
        "-t2",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "-s",
        str(script),
        url + path,
        "--",
        path,
        semantic,
        str(pad),
    ]
    env = {**os.environ, "WHARF_BENCH_TOKEN": token}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    n, errors, duration_us, p50, p90, p99, mx, _ = (float(x) for x in line.split()[1:])
    return {
        "n": n,
        "errors": errors,
        "rps": n / (duration_us / 1e6),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": mx,
    }


def rss_mib(pid: int) -> tuple[float, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def check_throughput(examples, workers: int, n: int, tmp: Path) -> tuple[float, int]:
    env = {"WHARF_BROKER_URL": os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")}
    os.environ.update(env)
    import redis

    redis.Redis.from_url(env["WHARF_BROKER_URL"]).flushdb()
    with (
        LocalMarket(tmp / f"checks-{workers}", workers=workers) as market,
        WharfClient(market.url, market.token) as c,
    ):
        pkgs = []
        for i in range(n):
            ex = examples[i % len(examples)]
            path = tmp / f"v{workers}-{i}.zip"
            path.write_bytes(variant(ex.package, f"{workers}-{i}"))
            pkgs.append((path, ex.semantic))
        # warm-up: one check per worker (imports, first environment decision)
        warm = [c.submit(p, s) for p, s in pkgs[:workers]]
        for sub in warm:
            c.wait(sub["job_id"], timeout=300)
        t0 = time.perf_counter()
        subs = [c.submit(p, s) for p, s in pkgs[workers:]]
        accepted = 0
        for sub in subs:
            c.wait(sub["job_id"], timeout=600)
            accepted += c.learnware(sub["learnware_id"])["status"] == "accepted"
        elapsed = time.perf_counter() - t0
    return len(subs) / elapsed, accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--checks", type=int, default=12)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    examples = build_examples(tmp / "examples")
    os.environ["WHARF_BROKER_URL"] = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
    # One token drives the whole load: without this it would measure the rate limiter's 429s.
    os.environ.setdefault("WHARF_RATE_LIMIT_ENABLED", "false")
    import redis

    redis.Redis.from_url(os.environ["WHARF_BROKER_URL"]).flushdb()
    semantic = json.dumps(examples[0].semantic, separators=(",", ":"))

    # Latency: no workers, so the API and the broker are measured alone.
    script = tmp / "load.lua"
    script.write_text(WRK_SCRIPT)
    with LocalMarket(tmp / "latency", workers=0) as market:
        api_pid = market.procs[-1].pid
        rss_idle = rss_mib(api_pid)[0]
        rows = []
        for name, path in (
            ("GET /healthz (baseline)", "/healthz"),
            ("POST /v1/searches (enqueue)", "/v1/searches"),
            ("POST /v1/learnwares (30 KB upload + enqueue)", "/v1/learnwares"),
        ):
            r = wrk(
                market.url,
                path,
                market.token,
                concurrency=args.concurrency,
                seconds=args.seconds,
                semantic=semantic,
                pad=30_000,
                script=script,
            )
            rows.append(
                [
                    name,
                    f"{r['n']:.0f}",
                    f"{r['errors']:.0f}",
                    f"{r['rps']:.0f}/s",
                    f"{r['p50']:.1f}",
                    f"{r['p90']:.1f}",
                    f"{r['p99']:.1f}",
                    f"{r['max']:.1f}",
                ]
            )
        rss_now, rss_peak = rss_mib(api_pid)

    checks = [check_throughput(examples, w, args.checks, tmp) for w in (1, 2)]

    body = f"""Broker: Redis on loopback; catalog: SQLite (embedded); store: local directory.
Load: wrk (2 threads, {args.concurrency} connections, {args.seconds} s per row) on loopback,
on the same 2 cores as the API. Each submission is a distinct 30 KB body (the API hashes and
stores it; packages are only opened by the check workers), each search a semantic-only query.
No worker runs during the latency rows, so jobs only pile up in the broker.

## API latency (ms)

{table(["request", "n", "non-2xx", "throughput", "p50", "p90", "p99", "max"], rows)}

## API process memory

| idle after start | after the load | peak |
|---|---|---|
| {rss_idle:.0f} MiB | {rss_now:.0f} MiB | {rss_peak:.0f} MiB |

## Check throughput

Each check: download from the store, read and validate the package, fit nothing (the spec
is the learnware's), run the model in the bubblewrap sandbox on 20 herded inputs, validate
outputs, write the result. The first check of each worker is a warm-up; the other
{args.checks - 1} (one worker) and {args.checks - 2} (two workers) are timed.

| worker processes | checks/s | accepted |
|---|---|---|
| 1 | {checks[0][0]:.2f} | {checks[0][1]} |
| 2 | {checks[1][0]:.2f} | {checks[1][1]} |

This machine has 2 cores, shared by the API, the broker, the workers and the benchmark
client; with more cores, check throughput grows with worker processes until the object store
or the catalog saturate (a check holds no lock while it runs).
"""
    write_results("service", "Market service: latency, memory, check throughput", body)


if __name__ == "__main__":
    main()
