"""How every task retries: transient failures (the store or the catalog unreachable) back off
and try again; a task is acknowledged only when done, and re-queued if its process dies.

The back-off is 2, 4, 8, 16, 32, then 60 s, eight tries in all: a task outlasts about four
minutes of outage. No jitter: Celery's draws each wait from [0, back-off], which let a
task spend its tries in the first seconds of an outage.
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError
from wharf.market.store import StoreUnavailable

TRANSIENT = (StoreUnavailable, OperationalError)

RETRY = dict(
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=False,
    max_retries=8,
    acks_late=True,
    reject_on_worker_lost=True,
)
