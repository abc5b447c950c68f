#!/bin/sh
# Entry point of the Wharf images: one image per target, one role per container.
#
#   api                        the API (uvicorn) on port 8000 (extra arguments go to uvicorn)
#   worker QUEUES [CONCURRENCY] a Celery worker (wharf worker) for QUEUES, e.g. "check" or "search"
#   migrate                    migrate the catalog at $WHARF_DATABASE_URL to the latest schema
#   create-admin-token [USER]  print a new API token of an admin user (created if missing)
#   flower                     Flower, the Celery dashboard, on 0.0.0.0:5555 (needs FLOWER_BASIC_AUTH)
#   healthcheck                a worker answers a Celery ping; Flower or the API answers over HTTP
#   anything else              run as a command (e.g. "wharf --help", "python")
#
# Configuration comes only from WHARF_* environment variables (market/settings.py); Flower's
# own from FLOWER_* variables (FLOWER_BASIC_AUTH, FLOWER_PORT, ...), which it reads itself.
set -eu

# Where a worker leaves its Celery node name for `healthcheck` (/tmp is writable in every
# deployment: the tasks themselves need it).
NODE_FILE="${WORKER_NODE_FILE:-/tmp/wharf-worker-node}"
# Where the flower role leaves its port for `healthcheck`.
MONITOR_PORT_FILE="${MONITOR_PORT_FILE:-/tmp/wharf-flower-port}"

require_database_url() {
    if [ -z "${WHARF_DATABASE_URL:-}" ]; then
        echo "wharf-entrypoint: WHARF_DATABASE_URL is not set; refusing to $1 the embedded SQLite catalog" >&2
        exit 64
    fi
}

# Flower serves the workers, the queues and every task's arguments and results: never
# without authentication. FLOWER_BASIC_AUTH is USER:PASSWORD[,USER:PASSWORD...] (Flower splits
# it at commas); Flower reads it from the environment, so it stays off the command line.
require_basic_auth() {
    if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
        echo "wharf-entrypoint: FLOWER_BASIC_AUTH is not set; refusing to start Flower without authentication (set it to USER:PASSWORD)" >&2
        exit 64
    fi
    if printf '%s\n' "$FLOWER_BASIC_AUTH" | tr ',' '\n' | grep -qv '^[^:][^:]*:.'; then
        echo "wharf-entrypoint: FLOWER_BASIC_AUTH must be USER:PASSWORD[,USER:PASSWORD...] with a non-empty user and password (no commas in either); refusing to start Flower" >&2
        exit 64
    fi
}

role="${1:-}"
if [ "$#" -gt 0 ]; then
    shift
fi

case "$role" in
    api)
        # The app is made by a factory in each uvicorn process (importing wharf.api.main does
        # nothing); wharf.api.server:HttpProtocol is uvicorn's own, with a header timeout and a
        # header size cap.
        exec python -m uvicorn --factory wharf.api.main:create_app --host 0.0.0.0 --port 8000 \
            --no-server-header --http wharf.api.server:HttpProtocol "$@"
        ;;
    worker)
        if [ "$#" -lt 1 ]; then
            echo "usage: wharf-entrypoint worker QUEUES [CONCURRENCY]   (QUEUES: check, search, index)" >&2
            exit 64
        fi
        queues="$1"
        concurrency="${2:-1}"
        node="$(printf '%s' "$queues" | tr ',' '-')@$(hostname)"
        printf '%s\n' "$node" > "$NODE_FILE"
        exec wharf worker --queues "$queues" --concurrency "$concurrency" --name "$node"
        ;;
    flower)
        require_basic_auth
        # workers.app, not workers.tasks: Flower learns tasks from the workers' events and
        # needs only the broker (WHARF_BROKER_URL), not torch or the task code. It reads the
        # queue lengths with a Redis client that it picks by the broker URI's scheme, which
        # the app's own transport class would replace: Flower runs on kombu's Redis transport.
        port="${FLOWER_PORT:-5555}"
        printf '%s\n' "$port" > "$MONITOR_PORT_FILE"
        exec python -c 'import sys
from wharf.workers.app import app
if app.conf.broker_url.startswith("redis://"):
    app.conf.broker_transport = "redis"
app.start(["flower", *sys.argv[1:]])' \
            --address="${FLOWER_ADDRESS:-0.0.0.0}" --port="$port" "$@"
        ;;
    migrate)
        require_database_url migrate
        exec wharf admin migrate
        ;;
    create-admin-token)
        require_database_url "create a token in"
        exec wharf admin bootstrap --user "${1:-admin}" --name "bootstrap (wharf-entrypoint)"
        ;;
    healthcheck)
        if [ -s "$NODE_FILE" ]; then
            # The worker's own node, by name: a ping broadcast to all nodes would be answered
            # by any other worker.
            exec python -m celery -A wharf.workers.app inspect ping \
                --destination "$(cat "$NODE_FILE")" --timeout 10
        fi
        url="http://127.0.0.1:8000/healthz"
        if [ -s "$MONITOR_PORT_FILE" ]; then
            # Flower's /healthcheck needs no credentials.
            url="http://127.0.0.1:$(cat "$MONITOR_PORT_FILE")/healthcheck"
        fi
        exec python -c 'import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError as exc:
    sys.exit(f"unhealthy: {exc}")' "$url"
        ;;
    "")
        sed -n '2,13p' "$0" >&2
        exit 64
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
