"""Heterogeneous search in process: the worker's index of one map version kept in step with the
change log, a search mapped with that version, and the API's choice of the hetero partition."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from wharf.market.catalog import Catalog, repo
from wharf.market.hetero import maps, versions
from wharf.market.hetero.index import HeteroIndexes
from wharf.market.settings import Settings
from wharf.specification.files import dumps_spec
from wharf.workers import searching

from . import hetero_tables as ht
from .test_api import auth, make_api
from .test_hetero_market import accept, rkme, semantic


def make_version(catalog: Catalog, store, settings: Settings) -> int:
    with catalog.session() as s:
        row, _ = versions.request_training(s, "admin")
        version = row.version
    assert maps.train_version(catalog, store, settings, version)
    assert maps.compute_specs(catalog, store, settings, version) == "ready"
    return version


@pytest.fixture
def tasks_market(catalog: Catalog, local_store, tmp_path):
    """One learnware of each task in :mod:`.hetero_tables`, and map version 1 ready."""
    settings = Settings(data_dir=tmp_path, hetero_epochs=1, hetero_device="cpu")
    with catalog.session() as s:
        owner = repo.create_user(s, "alice").id
    ids = {}
    for i, task in enumerate(ht.TASKS):
        X, names = ht.table(task, 300, i)
        ids[task] = accept(catalog, owner, task, ht.semantic_of(names, task), ht.spec_of(X))
    assert make_version(catalog, local_store, settings) == 1
    return catalog, local_store, settings, owner, ids


def test_the_hetero_index_follows_the_change_log(tasks_market):
    catalog, store, settings, owner, ids = tasks_market
    indexes = HeteroIndexes(catalog, store)
    sync = indexes.for_version(1)
    assert sync.version == 1 and sorted(lid for lid in ids.values() if lid in sync.index) == (
        sorted(ids.values())
    )
    assert len(sync.index) == 4
    part = next(iter(sync.index.partitions.values()))
    assert part.key.spec_type == "HeteroMapTableSpecification" and part.key.feature_shape == (128,)

    # Accepted after the map was ready: mapped by after_acceptance, in the index at the next
    # catch-up; the main index's view of the change log is unchanged by it.
    new = accept(catalog, owner, "new", semantic(3), rkme(3, 1))
    maps.after_acceptance(catalog, store, settings, new)
    assert indexes.for_version(1) is sync and new in sync.index and len(sync.index) == 5

    # Deleted, or edited out of the market (a column undescribed): gone from the index.
    with catalog.session() as s:
        repo.delete_learnware(s, ids["weather"])
    edited = semantic(3, described=1)
    with catalog.session() as s:
        repo.update_semantic(s, new, edited)
    maps.after_acceptance(catalog, store, settings, new)
    sync.catch_up()
    assert ids["weather"] not in sync.index and new not in sync.index and len(sync.index) == 3

    # A new version replaces the index; a search that read version 1 just before gets the
    # version-2 index (and maps with it), never a mix of the two.
    assert make_version(catalog, store, settings) == 2
    newer = indexes.for_version(2)
    assert newer is not sync and newer.version == 2 and len(newer.index) == 3
    assert indexes.for_version(1) is newer and indexes.held is newer
    # Both versions map the same learnwares, each into its own space.
    first = sync.index.partitions[part.key].specs.spec(ids["customers"])
    second = newer.index.partitions[part.key].specs.spec(ids["customers"])
    assert not np.allclose(first.z_, second.z_)


def test_a_hetero_search_finds_the_planted_learnware(tasks_market):
    catalog, store, settings, _, ids = tasks_market
    X, names = ht.user_table()
    requirement = ht.semantic_of(names, "")
    request = {"spec": dumps_spec(ht.spec_of(X)), "semantic": requirement, "hetero": True}
    searching._sync = searching._hetero = None  # this test's catalog
    try:
        result = searching.run_search(catalog, store, settings, request)
        assert result["hetero"] == {"map_version": 1}
        assert result["singles"][0]["id"] == repo.format_id(ids[ht.PLANTED])
        assert result["singles"][0]["name"] == ht.PLANTED
        assert result["stats"]["partition"]["spec_type"] == "HeteroMapTableSpecification"
        # The semantic stage applies as before: a name matching no learnware leaves nothing.
        request["semantic"] = ht.semantic_of(names, "zzqx nothing like it")
        assert searching.run_search(catalog, store, settings, request)["singles"] == []

        # Searched homogeneously, the same table meets only the learnware of its width (of
        # another task), and the result has no hetero entry.
        request = {"spec": dumps_spec(ht.spec_of(X)), "semantic": requirement}
        result = searching.run_search(catalog, store, settings, request)
        assert result["hetero"] is None
        assert [s["id"] for s in result["singles"]] == [repo.format_id(ids["houses"])]
    finally:
        searching._sync = searching._hetero = None


def test_a_hetero_search_without_a_map_fails_saying_so(catalog, local_store, tmp_path):
    X, names = ht.user_table()
    request = {"spec": dumps_spec(ht.spec_of(X)), "semantic": ht.semantic_of(names), "hetero": 1}
    searching._hetero = None
    try:
        with pytest.raises(versions.NoHeteroMap, match="no trained heterogeneous map"):
            searching.run_search(catalog, local_store, Settings(data_dir=tmp_path), request)
    finally:
        searching._hetero = None


# -- the API ----------------------------------------------------------------------------------


def post_search(api, spec: dict | None, stat, hetero: str | None = None):
    data = {"semantic_spec": json.dumps(spec)} if spec is not None else {}
    if hetero is not None:
        data["hetero"] = hetero
    files = {"stat_spec": ("s.json", io.BytesIO(dumps_spec(stat).encode()), "application/json")}
    return api.post("/v1/searches", headers=auth(api, "alice"), files=files, data=data)


def job_request(api, job_id: str) -> dict:
    with api.catalog.session(read_only=True) as s:
        return repo.get_job(s, job_id).request


def make_ready(api) -> None:
    """Map version 1 marked ready (the API reads only its row)."""
    from wharf.market.catalog import MapState

    with api.catalog.session() as s:
        row, _ = versions.request_training(s, "admin")
        row.state, row.object_key = MapState.ready, "hetero/maps/v000001.pt"


def test_the_api_chooses_the_hetero_partition(tmp_path):
    api = make_api(tmp_path)
    with api.catalog.session() as s:
        owner = repo.get_user_by_name(s, "alice").id
    accept(api.catalog, owner, "three", semantic(3), rkme(3, 0))

    # Asked for: the columns must be described and the dimension right, and a map ready.
    r = post_search(api, semantic(4, described=2), rkme(4, 1), "true")
    assert r.status_code == 422 and r.json()["field"] == "semantic_spec.Input.Description"
    r = post_search(api, semantic(3), rkme(5, 1), "true")
    assert r.status_code == 422 and r.json()["field"] == "semantic_spec.Input.Dimension"
    r = post_search(api, semantic(4), rkme(4, 1), "true")
    assert r.status_code == 409 and "no trained heterogeneous map" in r.json()["detail"]
    # Automatic: a width no learnware has, columns described, no map yet: 409 too.
    r = post_search(api, semantic(4), rkme(4, 1))
    assert r.status_code == 409
    # Columns not described: today's 422, with a hint.
    r = post_search(api, semantic(4, described=2), rkme(4, 1))
    assert r.status_code == 422 and r.json()["field"] == "stat_spec"
    assert "no accepted learnware has a spec of 4 features" in r.json()["detail"]
    assert "Input.Description" in r.json()["detail"]
    # Never asked for hetero: today's 422, no hint.
    r = post_search(api, semantic(4), rkme(4, 1), "false")
    assert r.status_code == 422 and "Input.Description" not in r.json()["detail"]

    make_ready(api)
    r = post_search(api, semantic(4), rkme(4, 1))
    assert r.status_code == 202, r.text
    assert job_request(api, r.json()["job_id"])["hetero"] is True
    # A width the market has: homogeneous, unless asked for.
    r = post_search(api, semantic(3), rkme(3, 1))
    assert r.status_code == 202 and "hetero" not in job_request(api, r.json()["job_id"])
    r = post_search(api, semantic(3), rkme(3, 1), "true")
    assert r.status_code == 202 and job_request(api, r.json()["job_id"])["hetero"] is True
    r = post_search(api, semantic(3), rkme(3, 1), "maybe")
    assert r.status_code == 422


def test_a_hetero_search_request_loads_no_torch_in_the_api(tmp_path):
    """The API checks a hetero requirement (its columns, the map's version) without torch."""
    code = f"""
import io, json, sys
sys.path.insert(0, {str(ht.__file__.rsplit("/", 2)[0])!r})
from pathlib import Path
import numpy as np
from tests.test_api import auth, make_api
from tests.hetero_tables import accept, semantic_of
from wharf.market.catalog import MapState, repo
from wharf.market.hetero import versions
from wharf.specification.files import dumps_spec
from wharf.specification.rkme import RKME

api = make_api(Path({str(tmp_path)!r}))
with api.catalog.session() as s:
    row, _ = versions.request_training(s, "admin")
    row.state, row.object_key = MapState.ready, "hetero/maps/v000001.pt"
    owner = repo.get_user_by_name(s, "alice").id
three = RKME.from_arrays(np.ones((2, 3)), np.full(2, 0.5), 0.1, 10)
accept(api.catalog, owner, "three", semantic_of(["a", "b", "c"]), three)
stat = dumps_spec(RKME.from_arrays(np.ones((2, 4)), np.full(2, 0.5), 0.1, 10)).encode()
for hetero, described, code in (("true", 4, 202), ("", 4, 202), ("", 2, 422)):
    spec = semantic_of(["a", "b", "c", "d"])
    spec["Input"]["Description"] = dict(list(spec["Input"]["Description"].items())[:described])
    r = api.post(
        "/v1/searches",
        headers=auth(api, "alice"),
        files={{"stat_spec": ("s.json", io.BytesIO(stat), "application/json")}},
        data=dict(semantic_spec=json.dumps(spec), **({{"hetero": hetero}} if hetero else {{}})),
    )
    assert r.status_code == code, r.text
assert "torch" not in sys.modules, "torch"
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
