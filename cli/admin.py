"""``wharf admin migrate`` and ``wharf admin bootstrap``: run on a machine that reaches the
catalog database directly (a deployment's migration job, an operator's shell)."""

from __future__ import annotations

import argparse
import sys


def add_parsers(admin_sub: argparse._SubParsersAction) -> None:
    p = admin_sub.add_parser(
        "migrate", help="migrate the catalog ($WHARF_DATABASE_URL) to the latest schema"
    )
    p.set_defaults(func=cmd_migrate)
    p = admin_sub.add_parser(
        "bootstrap", help="print a new API token of an admin user (created if missing)"
    )
    p.add_argument("--user", default="admin")
    p.add_argument("--name", default="bootstrap", help="a label for the token")
    p.add_argument(
        "--expires-in-days",
        type=int,
        default=None,
        help="days until the token expires (default and maximum: $WHARF_TOKEN_MAX_DAYS, 90)",
    )
    p.set_defaults(func=cmd_bootstrap)
    p = admin_sub.add_parser(
        "requeue", help="queue again the checks that were interrupted or lost by the broker"
    )
    p.set_defaults(func=cmd_requeue)


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from market.catalog import Catalog
    from market.settings import get_settings

    url = get_settings().catalog_url
    Catalog.create(url).dispose()
    print(f"catalog {make_url(url).render_as_string(hide_password=True)} is at the latest schema")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from market.catalog import Catalog, Role, repo
    from market.settings import get_settings

    settings = get_settings()
    try:
        expires = repo.token_expiry(args.expires_in_days, settings.token_max_days)
    except ValueError as exc:
        print(f"error: {exc} (WHARF_TOKEN_MAX_DAYS)", file=sys.stderr)
        return 1
    catalog = Catalog.create(settings.catalog_url, migrate=False)
    with catalog.session() as s:
        user = repo.get_user_by_name(s, args.user) or repo.create_user(s, args.user, Role.admin)
        if user.role != Role.admin:
            print(f"error: user {args.user!r} exists and is not an admin", file=sys.stderr)
            return 1
        token, _ = repo.create_token(s, user.id, args.name, expires_at=expires)
    print(token)
    if expires is not None:
        print(f"it expires at {expires.isoformat(timespec='seconds')}", file=sys.stderr)
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from market.catalog import Catalog
    from market.settings import get_settings
    from workers.app import make_celery
    from workers.recovery import requeue_interrupted_checks

    settings = get_settings()
    ids = requeue_interrupted_checks(Catalog(settings.catalog_url), make_celery(settings))
    print(f"queued again: {', '.join(ids)}" if ids else "nothing to queue again")
    return 0
