"""The heterogeneous market's tasks, on the index queue: train a map version, compute its
specs, and map each new acceptance (which may start the next training).

Each takes a version number or a learnware id and finds the state in the catalog, so a task
that runs again after its worker died finishes the work or does nothing
(:mod:`market.hetero.maps`).
"""

from __future__ import annotations

import logging

from celery import Task
from celery.signals import task_success
from wharf.market.catalog import Catalog
from wharf.market.hetero import maps, versions
from wharf.market.settings import get_settings

from .app import (
    CHECK_TASK,
    HETERO_ACCEPTED_TASK,
    HETERO_SPECS_TASK,
    HETERO_TRAIN_TASK,
    INDEX_QUEUE,
    app,
)
from .retry import RETRY

log = logging.getLogger("wharf.worker")

#: Training 1,000 learnwares takes about two minutes on two cores; these stop one that hangs.
TRAIN_SOFT_TIME_LIMIT_S = 3600
SPECS_SOFT_TIME_LIMIT_S = 3600
#: A spec task maps for this long, then sends the rest to a task of its own.
SPECS_BUDGET_S = 600


def _catalog() -> Catalog:
    from .tasks import catalog  # the worker's one engine (workers.tasks imports this module)

    return catalog()


def _store():
    from .tasks import store

    return store()


class VersionTask(Task):
    """A version whose task gives up is marked failed, with the reason."""

    ignore_result = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if args:
            with _catalog().session() as s:
                versions.mark_failed(s, int(args[0]), f"{type(exc).__name__}: {exc}")


def send_training(version: int) -> None:
    app.send_task(HETERO_TRAIN_TASK, args=[version], queue=INDEX_QUEUE, ignore_result=True)


@app.task(
    name=HETERO_TRAIN_TASK,
    base=VersionTask,
    soft_time_limit=TRAIN_SOFT_TIME_LIMIT_S,
    time_limit=TRAIN_SOFT_TIME_LIMIT_S + 60,
    **RETRY,
)
def train(version: int) -> str:
    catalog, store = _catalog(), _store()

    def progress(share: float) -> None:
        with catalog.session() as s:
            versions.set_progress(s, version, share)

    if not maps.train_version(catalog, store, get_settings(), version, progress):
        return "nothing to do"
    app.send_task(HETERO_SPECS_TASK, args=[version], queue=INDEX_QUEUE, ignore_result=True)
    return "trained"


@app.task(
    name=HETERO_SPECS_TASK,
    base=VersionTask,
    soft_time_limit=SPECS_SOFT_TIME_LIMIT_S,
    time_limit=SPECS_SOFT_TIME_LIMIT_S + 60,
    **RETRY,
)
def specs(version: int) -> str:
    outcome = maps.compute_specs(_catalog(), _store(), get_settings(), version, SPECS_BUDGET_S)
    if outcome == "more":  # the next batches in a task of their own
        app.send_task(HETERO_SPECS_TASK, args=[version], queue=INDEX_QUEUE, ignore_result=True)
    return outcome


@app.task(name=HETERO_ACCEPTED_TASK, ignore_result=True, soft_time_limit=300, **RETRY)
def accepted(learnware_id: int) -> str:
    due = maps.after_acceptance(_catalog(), _store(), get_settings(), learnware_id)
    if due is not None:
        log.info("hetero map version %d: training after new eligible acceptances", due)
        send_training(due)
    return "mapped"


@task_success.connect
def _map_each_acceptance(sender=None, result=None, **_) -> None:
    """After a check accepts a learnware, map it (a task of its own on the index queue)."""
    if getattr(sender, "name", None) != CHECK_TASK or result != "accepted":
        return
    args = sender.request.args or ()
    if len(args) > 1:
        try:
            app.send_task(
                HETERO_ACCEPTED_TASK, args=[int(args[1])], queue=INDEX_QUEUE, ignore_result=True
            )
        except Exception:  # the check is done; a lost mapping waits for the next version
            log.warning("could not send the hetero mapping of learnware %s", args[1])
