"""A heterogeneous search from the ``wharf`` command, as a user runs it: ``spec describe`` on
their CSV, the descriptions edited, ``search --data --semantic`` on a real market (a worker,
the map stored as a training would store it, every learnware's spec computed with it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from wharf.cli.main import main
from wharf.cli.serve import LocalMarket
from wharf.market.catalog import Catalog, repo
from wharf.market.hetero import maps, versions
from wharf.market.settings import Settings
from wharf.market.store import make_store
from wharf.specification.hetero.model import HeteroMap

from .hetero_tables import TASKS, accept, semantic_of, spec_of, table, user_table
from .test_hetero_market import TINY

pytestmark = [pytest.mark.services, pytest.mark.slow]


def ready_map(data_dir: Path) -> None:
    """Map version 1 (untrained: enough to search with), and every eligible spec mapped."""
    settings = Settings(data_dir=data_dir, hetero_device="cpu")
    catalog, store = Catalog(settings.catalog_url), make_store(settings)
    with catalog.session() as s:
        version = versions.request_training(s, "admin")[0].version
    hmap = HeteroMap.initial(TINY, seed=0, device="cpu")
    hmap.info["version"] = version
    with catalog.session() as s:
        versions.mark_trained(s, version, maps.save_map(store, version, hmap), 0, hmap.info)
    assert maps.compute_specs(catalog, store, settings, version) == "ready"


def test_describe_edit_and_search(tmp_path, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with LocalMarket(tmp_path / "market", workers=1) as market:
        catalog = Catalog(Settings(data_dir=market.data_dir).catalog_url)
        with catalog.session() as s:
            owner = repo.create_user(s, "dev").id
        for i, task in enumerate(TASKS):
            X, descriptions = table(task, 200, i)
            if X.shape[1] == user_table(5)[0].shape[1]:
                continue  # the user's columns: no learnware has as many
            accept(catalog, owner, task, semantic_of(descriptions, name=task), spec_of(X))
        ready_map(market.data_dir)

        X, descriptions = user_table(200)
        header = [f"col{i}" for i in range(X.shape[1])] + ["label"]
        labels = np.arange(len(X)) % 2
        np.savetxt(
            "user.csv",
            np.column_stack([X, labels]),
            delimiter=",",
            comments="",
            header=",".join(header),
        )
        assert main(["spec", "describe", "user.csv", "--label", "label", "-o", "req.json"]) == 0
        req = json.loads(Path("req.json").read_text())
        assert req["Input"]["Dimension"] == X.shape[1]
        req["Input"]["Description"] = {str(i): d for i, d in enumerate(descriptions)}  # edited
        req["Task"] = {"Type": "Class", "Values": []}
        Path("req.json").write_text(json.dumps(req))
        capsys.readouterr()

        auth = ["--url", market.url, "--token", market.token]
        search = ["search", "--data", "user.csv", "--label", "label", "--semantic", "req.json"]
        assert main([*search, "--top", "3", *auth]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "heterogeneous search (map version 1)", out
        assert out[1].startswith("learnware") and len(out) >= 3
        assert main([*search, "--hetero", "--json", *auth]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["hetero"] == {"map_version": 1} and result["singles"]
        assert main([*search, "--no-hetero", *auth]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: stat_spec: ") and err.count("\n") == 1, err
