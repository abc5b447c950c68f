"""Server time of the pages for people on a 5,000-learnware market, against the JSON API.

Run: ``PYTHONPATH=. python -m bench.web_pages [--learnwares 5000] [--runs 50]``

A fresh embedded market (SQLite catalog, local store) is filled with synthetic accepted
learnwares (``bench.search_scale.Market``: K = 50 points of d = 10, through
``bench.search_workers.populate``). The API application is built as ``wharf up`` builds it and
called in process; each request's server time runs from the moment the application receives it
to the last byte of its answer (an ASGI wrapper around the whole app, middleware included), so
no client or network time is counted. "CPU" is the process's CPU time over the same span:
the work a request costs, whatever else the machine's cores are doing. Each page is asked
``--runs`` times after one warm-up; a learnware page "first view" asks a different learnware
each time (its spec read and its picture drawn), "again" the same one (the picture cached).
Signed-in pages are asked by a client signed in (a session cookie) as the owner of every
learnware, or as an admin; 150 rejected submissions with a 40-line log and 150 pending ones
wait for review. The baseline is the JSON API's answer to the same question in the same run: ``GET
/v1/learnwares`` for a browse page, ``GET /v1/learnwares/{id}`` for a learnware page, ``GET
/v1/jobs/{id}`` for a search result.
Target: every page ≤ 200 ms (p95).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import table, verdict, write_results
from .search_scale import Market
from .search_workers import populate

TARGET_S = 0.200


class ServerTimer:
    """ASGI wrapper: how long the app took for each request, start to the end of the body."""

    def __init__(self, app):
        self.app = app
        self.last = 0.0
        self.last_cpu = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, start_cpu = time.perf_counter(), time.process_time()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start
                self.last_cpu = time.process_time() - start_cpu

        await self.app(scope, receive, timed_send)


def finished_search(catalog, ids: list[str]) -> str:
    """A search job that ended with 20 singles and a mixture of 3, as a worker leaves it."""
    from wharf.market.catalog import JobKind, repo

    singles = [
        {
            "id": i,
            "name": "synthetic",
            "mmd2": 0.01 * n,
            "reference_score": 0.9 - 0.01 * n,
            "similarity": 0.95 - 0.01 * n,
        }
        for n, i in enumerate(ids[:20])
    ]
    mixture = {
        "ids": ids[:3],
        "names": ["synthetic"] * 3,
        "weights": [0.5, 0.3, 0.2],
        "mmd2": 0.005,
        "reference_score": 0.95,
        "similarity": 0.97,
    }
    with catalog.session() as s:
        job = repo.create_job(s, JobKind.search, request={})
        repo.finish_job(
            s, job.id, {"singles": singles, "mixture": mixture, "semantic_only": False, "stats": {}}
        )
        return job.id


def signed_in(app, settings, catalog, name: str, role: str):
    """A client signed in to the pages as ``name`` (made with a password if new)."""
    import re

    from fastapi.testclient import TestClient
    from wharf.market.catalog import Role, repo

    password = "bench passphrase"
    with catalog.session() as s:
        user = repo.get_user_by_name(s, name) or repo.create_user(s, name, Role(role))
        repo.set_password(s, user, password)
        email = user.email
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    return client


def submissions_to_review(catalog, n: int) -> str:
    """``n`` rejected learnwares with a check log and ``n`` pending ones, as the review page
    lists them; the id of one pending learnware's check job."""
    import hashlib

    from wharf.market.catalog import JobKind, repo

    semantic = {
        "Data": {"Type": "Class", "Values": ["Table"]},
        "Task": {"Type": "Class", "Values": ["Classification"]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": ["Business"]},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": "submitted"},
        "Description": {"Type": "String", "Values": "waiting for review"},
    }
    log = "model: predict() failed\n" + "Traceback line\n" * 40
    with catalog.session() as s:
        owner = repo.get_user_by_name(s, "bench").id
        job_id = ""
        for i in range(2 * n):
            sha = hashlib.sha256(f"review {i}".encode()).hexdigest()
            lw = repo.create_learnware(s, owner, semantic, sha, f"packages/{sha}.zip", 1)
            job_id = repo.create_job(s, JobKind.check, owner_id=owner, learnware_id=lw.id).id
            if i < n:
                repo.claim_for_check(s, lw.id)
                repo.finish_check(
                    s, lw.id, accepted=False, log=log, spec_meta=None, stat_spec_json=None
                )
        return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learnwares", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from wharf.api.app import create_app
    from wharf.market.catalog import Catalog, repo
    from wharf.market.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-web-"))
    settings = Settings(data_dir=tmp, rate_limit_enabled=False)
    catalog = Catalog.create(settings.catalog_url)
    t0 = time.perf_counter()
    populate(catalog, Market(args.learnwares, 50, 10, 0.1), args.learnwares)
    print(
        f"filled the catalog with {args.learnwares:,} learnwares in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    ids = [repo.format_id(i) for i in range(1, args.learnwares + 1)]
    job_id = finished_search(catalog, ids)
    check_id = submissions_to_review(catalog, 150)
    timer = ServerTimer(create_app(settings))
    client = TestClient(timer)
    owner = signed_in(timer, settings, catalog, "bench", "user")
    admin = signed_in(timer, settings, catalog, "root", "admin")
    rng = np.random.default_rng(0)
    cold_ids = iter(rng.permutation(ids).tolist())
    deep = args.learnwares // 20 // 2  # a page in the middle

    cases = [
        # (label, url, baseline?)
        ("browse `/`", lambda: "/", False),
        (
            "browse, 4 filters + text, page in the middle",
            lambda: f"/?q=synthetic&data=Table&task=Classification&scenario=Business&page={deep}",
            False,
        ),
        ("browse, text matching nothing (scans every row)", lambda: "/?q=no+such+model", False),
        ("learnware page, first view", lambda: f"/learnwares/{next(cold_ids)}", False),
        ("learnware page, again", lambda: f"/learnwares/{ids[0]}", False),
        ("search form `/search`", lambda: "/search", False),
        ("search result (20 singles, mixture of 3)", lambda: f"/searches/{job_id}", False),
        ("signed in: account and tokens `/account`", lambda: "/account", False, owner),
        ("signed in: submit form `/submit`", lambda: "/submit", False, owner),
        ("signed in: own learnwares `/mine` (newest 100)", lambda: "/mine", False, owner),
        ("signed in: a check's page", lambda: f"/checks/{check_id}", False, owner),
        ("signed in: a check's state (script)", lambda: f"/checks/{check_id}/state", False, owner),
        ("signed in: edit form", lambda: f"/learnwares/{ids[0]}/edit", False, owner),
        ("admin: figures `/admin`", lambda: "/admin", False, admin),
        ("admin: users `/admin/users`", lambda: "/admin/users", False, admin),
        (
            "admin: review, 100 rejected + 100 pending with logs",
            lambda: "/admin/review",
            False,
            admin,
        ),
        ("baseline: `GET /v1/learnwares?limit=20`", lambda: "/v1/learnwares?limit=20", True),
        (
            "baseline: same filters + text, same page",
            lambda: (
                "/v1/learnwares?name=synthetic&data_type=Table&task_type=Classification"
                f"&scenario=Business&limit=20&offset={(deep - 1) * 20}"
            ),
            True,
        ),
        ("baseline: `GET /v1/learnwares/{id}`", lambda: f"/v1/learnwares/{ids[0]}", True),
        ("baseline: `GET /v1/jobs/{id}`", lambda: f"/v1/jobs/{job_id}", True),
    ]
    rows, worst = [], 0.0
    for label, url, baseline, *who in cases:
        times, cpu, size = [], [], 0
        asking = who[0] if who else client
        for turn in range(args.runs + 1):
            r = asking.get(url())
            assert r.status_code == 200, (url(), r.status_code, r.text[:300])
            if turn:  # the first turn warms up
                times.append(timer.last)
                cpu.append(timer.last_cpu)
                size = len(r.content)
        p50, p95 = statistics.median(times), float(np.percentile(times, 95))
        if not baseline:
            worst = max(worst, p95)
        rows.append(
            [
                label,
                f"{1e3 * p50:.1f} ms",
                f"{1e3 * p95:.1f} ms",
                f"{1e3 * max(times):.1f} ms",
                f"{1e3 * statistics.median(cpu):.1f} ms",
                f"{size / 1024:.1f} KiB",
            ]
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.learnwares:,} accepted learnwares; {args.runs} requests per row.",
            "",
            table(["request", "server p50", "server p95", "max", "CPU p50", "answer"], rows),
            "",
            f"Slowest page p95: {1e3 * worst:.1f} ms, target ≤ {1e3 * TARGET_S:.0f} ms: "
            f"{verdict(worst <= TARGET_S)}.",
        ]
    )
    write_results("web_pages", "Pages for people: server time on a 5,000-learnware market", body)


if __name__ == "__main__":
    main()
