"""``wharf admin hetero train|status``: the heterogeneous market's map, from a machine that
reaches the catalog and the broker (as ``wharf admin requeue``)."""

from __future__ import annotations

import argparse
import time

#: How often ``train --wait`` reads the version's state.
POLL_S = 2.0


def add_parser(admin_sub: argparse._SubParsersAction) -> None:
    p = admin_sub.add_parser(
        "hetero", help="the heterogeneous market's map: train a new version, show the versions"
    )
    sub = p.add_subparsers(dest="hetero_command", metavar="{train,status}", required=True)
    t = sub.add_parser(
        "train",
        help="train a map version on the accepted eligible learnwares (index workers run it)",
    )
    t.add_argument(
        "--wait", action="store_true", help="wait until the version is ready (or failed)"
    )
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("status", help="the version searches use, and the latest versions")
    s.set_defaults(func=cmd_status)


def _line(view: dict) -> str:
    line = (
        f"version {view['version']}: {view['state']} ({view['trigger']}), "
        f"{view['learnwares']} learnwares, {100 * view['progress']:.0f}%"
    )
    return line + (f" — {view['error']}" if view.get("error") else "")


def cmd_train(args: argparse.Namespace) -> int:
    from wharf.market.catalog import Catalog
    from wharf.market.hetero import versions
    from wharf.market.settings import get_settings
    from wharf.workers.app import HETERO_TRAIN_TASK, INDEX_QUEUE, make_celery

    settings = get_settings()
    catalog = Catalog(settings.catalog_url)
    with catalog.session() as s:
        row, created = versions.request_training(s, "admin")
        version = row.version
    if created:
        make_celery(settings).send_task(
            HETERO_TRAIN_TASK, args=[version], queue=INDEX_QUEUE, ignore_result=True
        )
        print(f"training map version {version}")
    else:
        print(f"map version {version} is already being made")
    while args.wait:
        with catalog.session(read_only=True) as s:
            view = versions.version_view(versions.get_version(s, version))
        if view["state"] in ("ready", "failed"):
            print(_line(view))
            return 0 if view["state"] == "ready" else 1
        time.sleep(POLL_S)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from wharf.market.catalog import Catalog
    from wharf.market.hetero import versions
    from wharf.market.settings import get_settings

    catalog = Catalog(get_settings().catalog_url)
    with catalog.session(read_only=True) as s:
        current = versions.current_version(s)
        rows = [versions.version_view(v) for v in versions.list_versions(s, limit=10)]
    print(f"searches use map version {current.version}" if current else "no map is ready yet")
    for view in rows:
        print(_line(view))
    return 0
