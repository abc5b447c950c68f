#!/bin/sh
# Entry point of the Wharf images: one image per target, one role per container.
#
#   api                        uvicorn api.main:app on port 8000 (extra arguments go to uvicorn)
#   worker QUEUES [CONCURRENCY] a Celery worker (wharf worker) for QUEUES, e.g. "check" or "search"
#   migrate                    migrate the catalog at $WHARF_DATABASE_URL to the latest schema
#   create-admin-token [USER]  print a new API token of an admin user (created if missing)
#   healthcheck                a worker answers a Celery ping; otherwise GET /healthz on the API
#   anything else              run as a command (e.g. "wharf --help", "python")
#
# Configuration comes only from WHARF_* environment variables (market/settings.py).
set -eu

# Where a worker leaves its Celery node name for `healthcheck` (/tmp is writable in every
# deployment: the tasks themselves need it).
NODE_FILE="${WORKER_NODE_FILE:-/tmp/wharf-worker-node}"

require_database_url() {
    if [ -z "${WHARF_DATABASE_URL:-}" ]; then
        echo "wharf-entrypoint: WHARF_DATABASE_URL is not set; refusing to $1 the embedded SQLite catalog" >&2
        exit 64
    fi
}

role="${1:-}"
if [ "$#" -gt 0 ]; then
    shift
fi

case "$role" in
    api)
        exec python -m uvicorn api.main:app --host 0.0.0.0 --port 8000 --no-server-header "$@"
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
            exec python -m celery -A workers.app inspect ping \
                --destination "$(cat "$NODE_FILE")" --timeout 10
        fi
        exec python -c 'import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=5) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError as exc:
    sys.exit(f"unhealthy: {exc}")'
        ;;
    "")
        sed -n '2,11p' "$0" >&2
        exit 64
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
