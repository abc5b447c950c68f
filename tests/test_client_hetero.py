"""The SDK and the ``wharf`` command against a real market's heterogeneous map: the versions,
the map file downloaded whole (or not at all) and loaded. The map is stored as a training
would store it, without the training (an API process, no workers)."""

from __future__ import annotations

import os

import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient, WharfError
from wharf.market.catalog import Catalog
from wharf.market.hetero import maps, versions
from wharf.market.settings import Settings
from wharf.market.store import make_store
from wharf.specification.hetero.model import HeteroMap

from .test_hetero_market import TINY

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("market")
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WHARF_")]:
            mp.delenv(name)
        with LocalMarket(data_dir, workers=0) as m:
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
    with WharfClient(market.url, market.token) as client:
        assert client.hetero_maps() == {"current": None, "versions": []}
        with pytest.raises(WharfError) as missing:
            client.download_hetero_map(1, tmp_path / "m.pt")
        assert missing.value.status == 404 and not list(tmp_path.iterdir())

        stored = store_ready_map(market.data_dir)
        listed = client.hetero_maps()
        assert listed["current"]["version"] == 1 and listed["current"]["state"] == "ready"
        path = client.download_hetero_map(1, tmp_path / "hetero-map-v1.pt")
        assert [p.name for p in tmp_path.iterdir()] == ["hetero-map-v1.pt"]  # no .part left
        loaded = HeteroMap.from_bytes(path.read_bytes(), device="cpu")
        assert loaded.version == 1 and loaded.config == stored.config
        for name, tensor in stored.network.state_dict().items():
            assert loaded.network.state_dict()[name].equal(tensor), name

        with pytest.raises(WharfError, match="larger than max_bytes"):
            client.download_hetero_map(1, tmp_path / "small.pt", max_bytes=1000)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hetero-map-v1.pt"]
