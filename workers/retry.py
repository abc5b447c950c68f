"""How every task retries: transient failures (the store or the catalog unreachable) back off
and try again; a task is acknowledged only when done, and re-queued if its process dies."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from market.store import StoreUnavailable

TRANSIENT = (StoreUnavailable, OperationalError)

RETRY = dict(
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
    acks_late=True,
    reject_on_worker_lost=True,
)
