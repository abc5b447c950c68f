"""The heterogeneous market on the server: eligible learnwares, a map version's life (trained,
specs computed, ready), new acceptances mapped and counted, and the API's answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from wharf.market.catalog import Catalog, MapState, repo
from wharf.market.hetero import maps, versions
from wharf.market.hetero.eligible import count_eligible_since, eligible_learnwares
from wharf.market.settings import Settings
from wharf.market.store import make_store
from wharf.specification.files import dumps_spec
from wharf.specification.hetero import loads_hetero_spec
from wharf.specification.hetero.model import HeteroMap
from wharf.specification.hetero.network import HeteroMapConfig
from wharf.specification.rkme import RKME
from wharf.specification.semantic import generate_semantic_spec

from .hetero_tables import accept
from .test_api import auth, make_api

TINY = HeteroMapConfig(hidden_dim=16, num_heads=2, ffn_dim=16, projection_dim=8, num_layers=1)
WORDS = ("age", "income", "height", "rainfall", "price", "speed", "weight", "score", "rate")


def semantic(width: int, described: int | None = None, task: str = "Classification") -> dict:
    described = width if described is None else described
    return generate_semantic_spec(
        name="m",
        data_type="Table",
        task_type=task,
        library_type="Scikit-learn",
        scenarios=["Business"],
        license="MIT",
        input_description={
            "Dimension": width,
            "Description": {str(i): f"{WORDS[i % len(WORDS)]} {i}" for i in range(described)},
        },
        output_description={"Dimension": 2, "Description": {}},
    )


def rkme(width: int, seed: int, k: int = 6) -> RKME:
    rng = np.random.default_rng(seed)
    return RKME.from_arrays(rng.normal(size=(k, width)), np.full(k, 1 / k), 0.1, 100)


@pytest.fixture
def market(catalog: Catalog):
    with catalog.session() as s:
        owner = repo.create_user(s, "alice").id
    ids = [
        accept(catalog, owner, f"lw{i}", semantic(3 + i % 3), rkme(3 + i % 3, i)) for i in range(5)
    ]
    accept(catalog, owner, "undescribed", semantic(4, described=2), rkme(4, 9))
    accept(catalog, owner, "segmentation", semantic(3, task="Segmentation"), rkme(3, 10))
    return catalog, owner, ids


def test_only_described_tables_are_eligible(market):
    catalog, _, ids = market
    with catalog.session(read_only=True) as s:
        found = list(eligible_learnwares(s))
        assert [e.learnware_id for e in found] == ids
        assert found[0].descriptions == ["age 0", "income 1", "height 2"]
        assert count_eligible_since(s, None) == 5


def test_a_version_is_trained_computed_and_then_used(market, local_store, tmp_path, monkeypatch):
    catalog, owner, ids = market
    settings = Settings(data_dir=tmp_path, hetero_epochs=1, hetero_device="cpu")
    with catalog.session() as s:
        assert versions.current_version(s) is None
        with pytest.raises(versions.NoHeteroMap, match="no trained heterogeneous map"):
            versions.require_current_version(s)
    with pytest.raises(versions.NoHeteroMap):
        maps.current_map(catalog, local_store, settings)
    with catalog.session() as s:
        row, created = versions.request_training(s, "admin")
        assert created and row.version == 1 and row.state == MapState.training
        again, created = versions.request_training(s, "admin")
        assert not created and again.version == 1
    with catalog.session() as s, pytest.raises(versions.NoHeteroMap, match="version 1 is being"):
        versions.require_current_version(s)

    assert maps.train_version(catalog, local_store, settings, 1)
    with catalog.session() as s:
        row = versions.get_version(s, 1)
        assert row.state == MapState.computing and row.learnwares == 5
        assert versions.current_version(s) is None  # not until every spec is computed
    # A spec task out of time stops between batches (after one at least) and goes on later.
    monkeypatch.setattr(maps, "SPEC_BATCH", 2)
    assert maps.compute_specs(catalog, local_store, settings, 1, budget_s=0.0) == "more"
    with catalog.session(read_only=True) as s:
        assert versions.current_version(s) is None and len(versions.mapped_ids(s, 1)) == 2
        assert versions.get_version(s, 1).progress == pytest.approx(0.4)
    assert maps.compute_specs(catalog, local_store, settings, 1) == "ready"
    with catalog.session(read_only=True) as s:
        assert versions.current_version(s).version == 1
        specs = dict(versions.specs_of_version(s, 1))
    assert sorted(specs) == ids
    hmap = maps.current_map(catalog, local_store, settings)
    assert hmap.version == 1
    mapped = maps.map_requirement(hmap, semantic(4), rkme(4, 3))
    assert mapped.z_.shape == (6, 128) and mapped.map_version == 1
    spec = loads_hetero_spec(specs[ids[0]])
    assert spec.z_.shape == (6, 128) and np.allclose(spec.beta_, 1 / 6)
    # Running the tasks again changes nothing.
    assert maps.train_version(catalog, local_store, settings, 1) is False
    assert maps.compute_specs(catalog, local_store, settings, 1) == "nothing"

    # A new acceptance is mapped with the current version; enough of them start a training.
    new = accept(catalog, owner, "new", semantic(5), rkme(5, 42))
    assert maps.after_acceptance(catalog, local_store, settings, new) is None  # 100 needed
    with catalog.session(read_only=True) as s:
        assert new in dict(versions.specs_of_version(s, 1))
    eager = Settings(data_dir=tmp_path, hetero_retrain_after=1, hetero_device="cpu")
    assert maps.due_training(catalog, eager) == 2
    with catalog.session(read_only=True) as s:
        assert versions.get_version(s, 2).trigger == "auto"
    assert maps.due_training(catalog, eager) is None  # one version in the making at most

    # Version 2 replaces version 1 only when its specs are complete.
    assert maps.train_version(catalog, local_store, eager, 2)
    with catalog.session(read_only=True) as s:
        assert versions.current_version(s).version == 1
    assert maps.compute_specs(catalog, local_store, eager, 2) == "ready"
    with catalog.session(read_only=True) as s:
        assert versions.current_version(s).version == 2
        assert len(dict(versions.specs_of_version(s, 2))) == 6
        assert len(dict(versions.specs_of_version(s, 1))) == 6  # kept for searches under way

    # Version 3 drops version 1's specs and its map object.
    with catalog.session() as s:
        versions.request_training(s, "admin")
        first_key = versions.get_version(s, 1).object_key
    assert maps.train_version(catalog, local_store, eager, 3)
    assert maps.compute_specs(catalog, local_store, eager, 3) == "ready"
    with catalog.session(read_only=True) as s:
        assert versions.mapped_ids(s, 1) == set() and len(versions.mapped_ids(s, 2)) == 6
        assert versions.get_version(s, 1).object_key is None
    assert not local_store.exists(first_key)


def test_a_market_without_eligible_learnwares_fails_the_version(catalog, local_store, tmp_path):
    with catalog.session() as s:
        versions.request_training(s, "admin")
    assert not maps.train_version(catalog, local_store, Settings(data_dir=tmp_path), 1)
    with catalog.session() as s:
        row = versions.get_version(s, 1)
        assert row.state == MapState.failed and "nothing to train on" in row.error


# -- the API ----------------------------------------------------------------------------------


def check(api, spec: dict, stat: RKME, who: str = "alice"):
    return api.post(
        "/v1/hetero/check",
        headers=auth(api, who),
        files={
            "stat_spec": ("spec.json", io.BytesIO(dumps_spec(stat).encode()), "application/json")
        },
        data={"semantic_spec": json.dumps(spec)},
    )


def test_the_api_names_the_field_and_says_when_there_is_no_map(tmp_path):
    api = make_api(tmp_path)
    r = check(api, semantic(4, described=2), rkme(4, 0))
    assert r.status_code == 422 and r.json()["field"] == "semantic_spec.Input.Description"
    assert "2 of 4 columns have no description" in r.json()["detail"]
    r = check(api, semantic(3), rkme(5, 0))
    assert r.status_code == 422 and r.json()["field"] == "semantic_spec.Input.Dimension"
    r = check(api, semantic(3), rkme(3, 0))
    assert r.status_code == 409 and "no trained heterogeneous map" in r.json()["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")

    assert api.post("/v1/hetero/maps", headers=auth(api, "alice")).status_code == 403
    r = api.post("/v1/hetero/maps", headers=auth(api, "admin"))
    assert r.status_code == 202 and r.json()["version"] == 1 and r.json()["state"] == "training"
    r = api.post("/v1/hetero/maps", headers=auth(api, "admin"))
    assert r.status_code == 200 and r.json()["version"] == 1
    r = check(api, semantic(3), rkme(3, 0))
    assert r.status_code == 409 and "version 1 is being made" in r.json()["detail"]
    listed = api.get("/v1/hetero/maps", headers=auth(api, "bob")).json()
    assert listed["current"] is None and [v["version"] for v in listed["versions"]] == [1]
    assert api.get("/v1/hetero/maps/1", headers=auth(api, "bob")).json()["specs"] == 0
    assert api.get("/v1/hetero/maps/9", headers=auth(api, "bob")).status_code == 404

    assert api.get("/v1/hetero/maps/1/file", headers=auth(api, "bob")).status_code == 404
    tiny = HeteroMap.initial(TINY, seed=0, device="cpu")
    key = maps.save_map(make_store(Settings(data_dir=tmp_path)), 1, tiny)
    with api.catalog.session() as s:
        row = versions.get_version(s, 1)
        row.state, row.object_key = MapState.ready, key
    r = check(api, semantic(3), rkme(3, 0))
    assert r.status_code == 200 and r.json() == {"map_version": 1, "columns": 3}
    r = api.get("/v1/hetero/maps/1/file", headers=auth(api, "bob"))
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    loaded = HeteroMap.from_bytes(r.content, device="cpu")
    assert loaded.config == TINY


def test_the_check_log_says_whether_a_learnware_takes_part():
    from wharf.market.checker.submission import log_hetero_eligibility
    from wharf.sandbox.log import CheckLog
    from wharf.specification.semantic import SemanticSpec

    log = CheckLog()
    log_hetero_eligibility(SemanticSpec.from_dict(semantic(3)), rkme(3, 0), log)
    log_hetero_eligibility(SemanticSpec.from_dict(semantic(4, described=1)), rkme(4, 0), log)
    text = log.text()
    assert "heterogeneous market: takes part" in text
    assert "does not take part, Input.Description: 3 of 4 columns have no description" in text


def test_the_admin_command_starts_a_version_and_shows_it(tmp_path, monkeypatch, capsys):
    from wharf.cli.main import main
    from wharf.market.settings import get_settings

    monkeypatch.setenv("WHARF_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        Catalog.create(Settings(data_dir=tmp_path).catalog_url).dispose()
        assert main(["admin", "hetero", "status"]) == 0
        assert "no map is ready yet" in capsys.readouterr().out
        assert main(["admin", "hetero", "train"]) == 0  # no worker here: the task waits
        assert main(["admin", "hetero", "train"]) == 0
        out = capsys.readouterr().out
        assert "training map version 1" in out and "version 1 is already being made" in out
        assert main(["admin", "hetero", "status"]) == 0
        assert "version 1: training (admin)" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def test_an_edit_that_leaves_the_market_drops_the_spec(market, local_store, tmp_path):
    catalog, _, ids = market
    settings = Settings(data_dir=tmp_path, hetero_epochs=1, hetero_device="cpu")
    with catalog.session() as s:
        versions.request_training(s, "admin")
    maps.train_version(catalog, local_store, settings, 1)
    maps.compute_specs(catalog, local_store, settings, 1)
    edited = semantic(3)
    edited["Input"]["Description"] = {"0": "age"}  # two columns undescribed now
    with catalog.session() as s:
        repo.update_semantic(s, ids[0], edited)
    maps.after_acceptance(catalog, local_store, settings, ids[0])
    with catalog.session(read_only=True) as s:
        assert ids[0] not in dict(versions.specs_of_version(s, 1))
        assert len(dict(versions.specs_of_version(s, 1))) == 4


def test_a_large_market_trains_on_a_seeded_sample(market, local_store, tmp_path, monkeypatch):
    catalog, _, _ = market
    monkeypatch.setattr(maps, "MAX_TRAINING_LEARNWARES", 3)
    settings = Settings(data_dir=tmp_path, hetero_epochs=1, hetero_device="cpu")
    with catalog.session() as s:
        versions.request_training(s, "admin")
    assert maps.train_version(catalog, local_store, settings, 1)
    with catalog.session(read_only=True) as s:
        assert versions.get_version(s, 1).learnwares == 3
