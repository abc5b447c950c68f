"""The heterogeneous market in a real market: an admin's training runs on a worker process,
its specs are computed before the version is used, and a learnware accepted afterwards is
mapped with it (the embedded broker, SQLite and the local store)."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.learnwares import build_examples
from wharf.market.catalog import Catalog, repo
from wharf.market.settings import Settings
from wharf.specification.files import dumps_spec

from .test_hetero_market import accept, rkme, semantic

pytestmark = [pytest.mark.services, pytest.mark.slow]


def wait_for(client: httpx.Client, path: str, done, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(1.0)


def test_training_mapping_and_new_acceptances(tmp_path, monkeypatch):
    monkeypatch.setenv("WHARF_HETERO_EPOCHS", "1")
    monkeypatch.setenv("WHARF_HETERO_DEVICE", "cpu")
    monkeypatch.setenv("WHARF_MODEL_TIME_LIMIT_S", "30")
    with LocalMarket(tmp_path / "market", workers=1) as market:
        catalog = Catalog(Settings(data_dir=tmp_path / "market").catalog_url)
        with catalog.session() as s:
            owner = repo.create_user(s, "dev").id
        for i in range(4):
            accept(catalog, owner, f"lw{i}", semantic(3 + i % 2), rkme(3 + i % 2, i))
        headers = {"Authorization": f"Bearer {market.token}"}
        with httpx.Client(base_url=market.url, headers=headers, timeout=30) as client:
            r = client.post("/v1/hetero/maps")
            assert r.status_code == 202, r.text
            body = wait_for(
                client, "/v1/hetero/maps/1", lambda b: b["state"] in ("ready", "failed")
            )
            assert body["state"] == "ready", body
            assert body["learnwares"] == 4 and body["specs"] == 4
            assert client.get("/v1/hetero/maps").json()["current"]["version"] == 1
            r = client.post(
                "/v1/hetero/check",
                files={"stat_spec": ("s.json", io.BytesIO(dumps_spec(rkme(5, 7)).encode()))},
                data={"semantic_spec": json.dumps(semantic(5))},
            )
            assert r.status_code == 200 and r.json()["map_version"] == 1

            # A learnware accepted now (its columns described) is mapped with version 1.
            example = build_examples(tmp_path / "examples")[0]
            with WharfClient(market.url, market.token) as wharf:
                sub = wharf.submit(example.package, example.semantic)
                wharf.wait(sub["job_id"], timeout=240)
                assert wharf.learnware(sub["learnware_id"])["status"] == "accepted"
            body = wait_for(client, "/v1/hetero/maps/1", lambda b: b["specs"] == 5, timeout=120)
            assert body["specs"] == 5
            # An edit that leaves a column undescribed keeps the status but drops the spec.
            with WharfClient(market.url, market.token) as wharf:
                edited = json.loads(json.dumps(example.semantic))
                edited["Input"]["Description"].pop("0")
                assert wharf.update(sub["learnware_id"], semantic_spec=edited)["job_id"] == ""
            body = wait_for(client, "/v1/hetero/maps/1", lambda b: b["specs"] == 4, timeout=120)
            assert body["specs"] == 4
            r = client.get("/v1/hetero/maps/1/file")
            assert r.status_code == 200 and len(r.content) > 1_000_000
