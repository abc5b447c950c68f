"""The SDK and the ``wharf`` command against a real market's heterogeneous map: the versions,
the map file downloaded whole (or not at all) and loaded. The map is stored as a training
would store it, without the training (an API process, no workers)."""

from __future__ import annotations

import os

import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient, WharfError
from wharf.market.catalog import Catalog, repo
from wharf.market.hetero import maps, versions
from wharf.market.settings import Settings
from wharf.market.store import make_store
from wharf.specification.hetero.model import HeteroMap

from .test_hetero_market import TINY, accept, rkme, semantic

pytestmark = pytest.mark.services


@pytest.fixture
def market(tmp_path, monkeypatch):
    """A market of its own for each test: one stores a map, the other needs none at first."""
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    with LocalMarket(tmp_path / "market", workers=0) as m:
        yield m


def store_ready_map(data_dir) -> HeteroMap:
    """A map made version 1 and ready, as training and the spec task leave one."""
    settings = Settings(data_dir=data_dir)
    catalog, store = Catalog(settings.catalog_url), make_store(settings)
    with catalog.session() as s:
        row, _ = versions.request_training(s, "admin")
        version = row.version
    hmap = HeteroMap.initial(TINY, seed=1, device="cpu")
    hmap.info["version"] = version
    key = maps.save_map(store, version, hmap)
    with catalog.session() as s:
        versions.mark_trained(s, version, key, 0, hmap.info)
    with catalog.session() as s:
        versions.mark_ready(s, version)
    return hmap


def test_the_map_is_listed_downloaded_and_loaded(market, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    with WharfClient(market.url, market.token) as client:
        assert client.hetero_maps() == {"current": None, "versions": []}
        with pytest.raises(WharfError) as missing:
            client.download_hetero_map(1, folder / "m.pt")
        assert missing.value.status == 404 and not list(folder.iterdir())

        stored = store_ready_map(market.data_dir)
        listed = client.hetero_maps()
        assert listed["current"]["version"] == 1 and listed["current"]["state"] == "ready"
        path = client.download_hetero_map(1, folder / "hetero-map-v1.pt")
        assert [p.name for p in folder.iterdir()] == ["hetero-map-v1.pt"]  # no .part left
        loaded = HeteroMap.from_bytes(path.read_bytes(), device="cpu")
        assert loaded.version == 1 and loaded.config == stored.config
        for name, tensor in stored.network.state_dict().items():
            assert loaded.network.state_dict()[name].equal(tensor), name

        with pytest.raises(WharfError, match="larger than max_bytes"):
            client.download_hetero_map(1, folder / "small.pt", max_bytes=1000)
        assert sorted(p.name for p in folder.iterdir()) == ["hetero-map-v1.pt"]


def test_the_hetero_field_reaches_the_market(market):
    """``hetero``, a form field: false never searches the heterogeneous market, true always
    does, absent does when no learnware has the table's columns and they are all described;
    409 before the market has a map, 422 naming the field that keeps a table out. (A search
    queued here never runs: there are no workers.)"""
    settings = Settings(data_dir=market.data_dir)
    catalog = Catalog(settings.catalog_url)
    with catalog.session() as s:
        owner = repo.create_user(s, "dev").id
    accept(catalog, owner, "four-columns", semantic(4), rkme(4, 1))
    spec, described = rkme(3, 0), semantic(3)

    def refused(hetero, semantic_spec=described) -> WharfError:
        with pytest.raises(WharfError) as caught:
            client.start_search(spec=spec, semantic=semantic_spec, hetero=hetero)
        return caught.value

    with WharfClient(market.url, market.token) as client:
        never = refused(False)
        assert never.status == 422 and never.problem["field"] == "stat_spec"
        assert refused(True).status == 409 and refused(None).status == 409
        undescribed = refused(None, semantic(3, described=2))
        assert undescribed.status == 422 and "Input.Description" in undescribed.problem["detail"]
        store_ready_map(market.data_dir)
        assert client.start_search(spec=spec, semantic=described, hetero=True)
        assert client.start_search(spec=spec, semantic=described)
        for semantic_spec, field in (
            (semantic(3, described=2), "semantic_spec.Input.Description"),
            (semantic(2), "semantic_spec.Input.Dimension"),
        ):
            error = refused(True, semantic_spec)
            assert error.status == 422 and error.problem["field"] == field, error.problem
