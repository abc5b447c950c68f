"""Heterogeneous search in a running market (worker processes, the embedded broker, SQLite and
the local store): a user whose columns differ finds the planted learnware, a learnware accepted
after the map is ready becomes findable and a deleted one disappears, and a retrain while
searches run breaks none of them."""

from __future__ import annotations

import io
import json
import threading

import httpx
import numpy as np
import pytest
from wharf.cli.serve import LocalMarket
from wharf.market.catalog import Catalog, repo
from wharf.market.hetero import maps
from wharf.market.settings import Settings
from wharf.market.store import make_store
from wharf.specification.files import dumps_spec

from . import hetero_tables as ht
from .test_hetero_e2e import wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def search(client: httpx.Client, X: np.ndarray, names: list[str], hetero: str | None) -> dict:
    """A search's ended job (waited for)."""
    data = {"semantic_spec": json.dumps(ht.semantic_of(names, ""))}
    if hetero is not None:
        data["hetero"] = hetero
    stat = dumps_spec(ht.spec_of(X)).encode()
    r = client.post(
        "/v1/searches",
        params={"wait": 60},
        files={"stat_spec": ("s.json", io.BytesIO(stat), "application/json")},
        data=data,
    )
    assert r.status_code in (200, 202), r.text
    job = r.json()["job"]
    if job is None or job["state"] not in ("succeeded", "failed", "cancelled"):
        job = client.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 60}).json()
    return job


def found(job: dict) -> list[str]:
    assert job["state"] == "succeeded", job
    return [s["id"] for s in job["result"]["singles"]]


def test_hetero_search_in_a_running_market(tmp_path, monkeypatch):
    monkeypatch.setenv("WHARF_HETERO_EPOCHS", "1")
    monkeypatch.setenv("WHARF_HETERO_DEVICE", "cpu")
    # Searches run back to back during the retrain: more than a token's 60 writes a minute.
    monkeypatch.setenv("WHARF_RATE_LIMIT_ENABLED", "false")
    settings = Settings(data_dir=tmp_path / "market", hetero_epochs=1, hetero_device="cpu")
    with LocalMarket(tmp_path / "market", workers=2) as market:
        catalog = Catalog(settings.catalog_url)
        with catalog.session() as s:
            owner = repo.create_user(s, "dev").id
        ids = {}
        for i, task in enumerate(ht.TASKS):
            X, names = ht.table(task, 300, i)
            ids[task] = ht.accept(catalog, owner, task, ht.semantic_of(names, task), ht.spec_of(X))
        planted = repo.format_id(ids[ht.PLANTED])
        headers = {"Authorization": f"Bearer {market.token}"}
        with httpx.Client(base_url=market.url, headers=headers, timeout=90) as client:
            X, names = ht.user_table()
            with pytest.raises(AssertionError, match="no trained heterogeneous map"):
                search(client, X, names, "true")  # 409 (a worker would fail the job saying so)

            assert client.post("/v1/hetero/maps").status_code == 202
            body = wait_for(client, "/v1/hetero/maps/1", lambda b: b["state"] != "training")
            body = wait_for(client, "/v1/hetero/maps/1", lambda b: b["state"] != "computing")
            assert body["state"] == "ready", body

            # Asked for: the planted learnware first, among the others of other tasks.
            job = search(client, X, names, "true")
            assert found(job)[0] == planted and job["result"]["hetero"] == {"map_version": 1}
            assert job["result"]["singles"][0]["name"] == ht.PLANTED
            # Automatic: this width is the houses' (a homogeneous partition), so it stays there;
            # one more column, a width no learnware has, goes to the hetero partition.
            job = search(client, X, names, None)
            assert job["result"]["hetero"] is None
            assert found(job) == [repo.format_id(ids["houses"])]
            wider = np.column_stack([X, np.full(len(X), 0.5)])
            job = search(client, wider, [*names, "store visits per month"], None)
            assert found(job)[0] == planted and job["result"]["hetero"] == {"map_version": 1}

            # Accepted after the map was ready (mapped as the acceptance task does): findable.
            X2, names2 = ht.table(ht.PLANTED, 300, 50)
            twin = ht.accept(catalog, owner, "twin", ht.semantic_of(names2, "twin"), ht.spec_of(X2))
            maps.after_acceptance(catalog, make_store(settings), settings, twin)
            top = found(search(client, X, names, "true"))[:2]
            assert sorted(top) == sorted([planted, repo.format_id(twin)])
            # Deleted: gone from the hetero results.
            with catalog.session() as s:
                repo.delete_learnware(s, ids[ht.PLANTED])
            top = found(search(client, X, names, "true"))
            assert planted not in top and top[0] == repo.format_id(twin)

            # A retrain while searches run: every search succeeds, with one version each.
            jobs: list[dict] = []
            stop = threading.Event()

            def keep_searching() -> None:
                with httpx.Client(base_url=market.url, headers=headers, timeout=90) as c:
                    while not stop.is_set():
                        jobs.append(search(c, X, names, "true"))

            searcher = threading.Thread(target=keep_searching)
            searcher.start()
            try:
                assert client.post("/v1/hetero/maps").json()["version"] == 2
                body = wait_for(client, "/v1/hetero/maps/2", lambda b: b["state"] == "ready")
                assert body["state"] == "ready", body
                jobs.append(search(client, X, names, "true"))
            finally:
                stop.set()
                searcher.join(timeout=120)
            assert len(jobs) >= 2
            for job in jobs:
                assert found(job)[0] == repo.format_id(twin)
                assert job["result"]["hetero"]["map_version"] in (1, 2)
            assert jobs[-1]["result"]["hetero"] == {"map_version": 2}
            assert {job["result"]["hetero"]["map_version"] for job in jobs} == {1, 2}
