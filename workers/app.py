"""The Celery application: one queue per kind of work, settings from ``market.settings``.

Importing this module is cheap and does nothing (no torch, no task code, no settings read, no
folder, no connection), so the API uses it to send tasks by name with an app of its own
(:func:`make_celery`). :data:`app` is the workers' app, which ``celery -A`` finds: it reads the
``WHARF_*`` settings when Celery first needs its configuration, in the worker. Workers import
:mod:`workers.tasks`, which registers the task bodies on it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue
from wharf.market.settings import Settings, get_settings

CHECK_QUEUE, SEARCH_QUEUE, INDEX_QUEUE = "check", "search", "index"
QUEUES = (CHECK_QUEUE, SEARCH_QUEUE, INDEX_QUEUE)

CHECK_TASK = "wharf.check"
SEARCH_TASK = "wharf.search"
# A bulk import is a chord on the index queue: one task per batch, then one that finishes it.
BULK_BATCH_TASK = "wharf.bulk.batch"
BULK_FINISH_TASK = "wharf.bulk.finish"
# A bulk submission stages its bundle on the index queue, one task per batch; each sends the
# checks of its entries to the check queue.
BULK_SUBMIT_TASK = "wharf.bulk.submit"
# The heterogeneous market (workers.hetero), on the index queue: train a map version, map
# every eligible learnware with it, map one newly accepted learnware.
HETERO_TRAIN_TASK = "wharf.hetero.train"
HETERO_SPECS_TASK = "wharf.hetero.specs"
HETERO_ACCEPTED_TASK = "wharf.hetero.accepted"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured by ``settings`` (:func:`celery_config`)."""
    return Celery("wharf", config_source=celery_config(settings))


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration of a market run by ``settings``."""
    results = settings.results
    if results.startswith("file://"):  # the same backend, making its folder on first use
        results = "wharf.workers.fsbroker:ResultBackend+" + results
    config: dict[str, Any] = dict(
        broker_url=settings.broker,
        result_backend=results,
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        # Task modules a worker imports besides workers.tasks (celery -A's).
        include=["wharf.workers.hetero"],
        task_default_queue=CHECK_QUEUE,
        task_routes={
            CHECK_TASK: {"queue": CHECK_QUEUE},
            SEARCH_TASK: {"queue": SEARCH_QUEUE},
            BULK_BATCH_TASK: {"queue": INDEX_QUEUE},
            BULK_FINISH_TASK: {"queue": INDEX_QUEUE},
            BULK_SUBMIT_TASK: {"queue": INDEX_QUEUE},
            HETERO_TRAIN_TASK: {"queue": INDEX_QUEUE},
            HETERO_SPECS_TASK: {"queue": INDEX_QUEUE},
            HETERO_ACCEPTED_TASK: {"queue": INDEX_QUEUE},
        },
        # Result backends without native chords (the embedded file backend) poll for a
        # chord's end; the default of once a second would add up to a second to each import.
        # Each poll is one small message and a look at the batch results.
        result_chord_retry_interval=0.05,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task is acknowledged only when it is done, and handed to another worker if the
        # process running it dies: every task is idempotent, so running twice is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,  # for Flower; a 'sent' event per task would double
        # the broker traffic of every enqueue, so the API does not send one.
        broker_pool_limit=64,  # the API's thread pool shares these broker connections
        # No recycling of pool processes here: a search process keeps its index in memory
        # (reloading it costs seconds at a million learnwares). Check-only workers recycle
        # theirs (``cli.serve.worker_command``).
        # Task time limits from the settings (the task bodies, in workers.tasks, name none).
        task_annotations={
            CHECK_TASK: {
                "soft_time_limit": settings.check_soft_time_limit_s,
                "time_limit": settings.check_time_limit_s,
            },
            SEARCH_TASK: {
                "soft_time_limit": settings.search_time_limit_s,
                "time_limit": settings.search_time_limit_s + 30,
            },
        },
    )
    if settings.broker.startswith("filesystem"):
        queue_dir = settings.broker_folder / "queue"
        control_dir = settings.broker_folder / "control"
        config["broker_transport"] = (
            "wharf.workers.fsbroker:Transport"  # messages written atomically
        )
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "polling_interval": 0.05,  # the default of 1 s would dominate a search's latency
        }
    elif settings.broker.startswith(("redis://", "rediss://")):
        if settings.broker.startswith("redis://"):  # TLS keeps kombu's own transport
            config["broker_transport"] = "wharf.workers.redisbroker:Transport"
        # Redis re-delivers a message not acknowledged within this time: it must exceed the
        # longest task, or a slow check would run twice at once.
        config["broker_transport_options"] = {
            "visibility_timeout": settings.check_time_limit_s + 600
        }
    return config


class _WorkersApp(Celery):
    def on_configure(self) -> None:
        """Configure from this process's settings, when Celery first needs a setting (a
        setting that is not fit to run on refuses here, as get_settings() does)."""
        self.config_from_object(celery_config(get_settings()))


#: The workers' app (``celery -A wharf.workers.tasks worker``), configured on first use.
app = _WorkersApp("wharf")
