"""``wharf admin migrate`` and ``wharf admin bootstrap``: run on a machine that reaches the
catalog database directly (a deployment's migration job, an operator's shell)."""

from __future__ import annotations

import argparse
import sys

from . import hetero, users


def add_parsers(admin_sub: argparse._SubParsersAction) -> None:
    p = admin_sub.add_parser(
        "migrate", help="migrate the catalog ($WHARF_DATABASE_URL) to the latest schema"
    )
    p.set_defaults(func=cmd_migrate)
    p = admin_sub.add_parser(
        "bootstrap", help="print a new API token of an admin user (created if missing)"
    )
    p.add_argument("--user", default="admin")
    p.add_argument(
        "--email",
        default=None,
        help="the email of a new admin (default: USER@localhost), for the learnware client",
    )
    p.add_argument("--name", default="bootstrap", help="a label for the token")
    p.add_argument(
        "--expires-in-days",
        type=int,
        default=None,
        help="days until the token expires (default and maximum: $WHARF_TOKEN_MAX_DAYS, 90)",
    )
    p.set_defaults(func=cmd_bootstrap)
    p = admin_sub.add_parser(
        "requeue",
        help="send again every unfinished job no live worker holds (lost by the broker, its "
        "worker gone, or a learnware left pending), and say what was done",
    )
    p.set_defaults(func=cmd_requeue)
    p = admin_sub.add_parser(
        "export", help="write accepted learnwares as a bundle (manifest.jsonl + packages/)"
    )
    p.add_argument("dir", help="a new directory for the bundle")
    p.add_argument("--ids", help="comma-separated learnware ids (default: every accepted one)")
    p.set_defaults(func=cmd_export)
    p = admin_sub.add_parser(
        "import", help="import a trusted bundle straight into the catalog (no checks run)"
    )
    p.add_argument("dir", help="a bundle directory (wharf admin export)")
    p.add_argument("--user", default="admin", help="the admin who will own the learnwares")
    p.set_defaults(func=cmd_import)
    hetero.add_parser(admin_sub)
    users.add_parser(admin_sub)


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from wharf.market.catalog import Catalog
    from wharf.market.settings import get_settings

    url = get_settings().catalog_url
    Catalog.create(url).dispose()
    print(f"catalog {make_url(url).render_as_string(hide_password=True)} is at the latest schema")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from wharf.market.catalog import Catalog, CatalogError, Role, repo
    from wharf.market.settings import get_settings

    settings = get_settings()
    try:
        expires = repo.token_expiry(args.expires_in_days, settings.token_max_days)
    except ValueError as exc:
        print(f"error: {exc} (WHARF_TOKEN_MAX_DAYS)", file=sys.stderr)
        return 1
    catalog = Catalog.create(settings.catalog_url, migrate=False)
    with catalog.session() as s:
        user = repo.get_user_by_name(s, args.user)
        if user is None:
            try:
                user = repo.create_user(s, args.user, Role.admin, email=args.email)
            except (ValueError, CatalogError) as exc:
                print(f"error: {exc} (--user, --email)", file=sys.stderr)
                return 1
        elif args.email is not None and user.email != args.email.strip().lower():
            print(f"error: user {args.user!r} exists with the email {user.email}", file=sys.stderr)
            return 1
        if user.role != Role.admin:
            print(f"error: user {args.user!r} exists and is not an admin", file=sys.stderr)
            return 1
        token, _ = repo.create_token(s, user.id, args.name, expires_at=expires)
    print(token)
    if expires is not None:
        print(f"it expires at {expires.isoformat(timespec='seconds')}", file=sys.stderr)
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from wharf.market.catalog import Catalog
    from wharf.market.settings import get_settings
    from wharf.workers.app import make_celery
    from wharf.workers.recovery import requeue

    settings = get_settings()
    done = requeue(Catalog(settings.catalog_url), make_celery(settings), settings)
    if not done.sent:
        print("nothing to send again")
    for line in done.lines():
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from wharf.market.bundle import BundleError
    from wharf.market.catalog import Catalog, repo
    from wharf.market.settings import get_settings
    from wharf.market.store import make_store
    from wharf.market.transfer import export_bundle

    settings = get_settings()
    try:
        ids = [repo.parse_id(i.strip()) for i in args.ids.split(",")] if args.ids else None
    except ValueError as exc:
        print(f"error: --ids: {exc}", file=sys.stderr)
        return 1
    catalog = Catalog(settings.catalog_url)
    with catalog.session(read_only=True) as s:
        total = len(ids) if ids is not None else repo.accepted_count(s)
    with tqdm(total=total, unit="learnware", desc="export") as bar:
        try:
            report = export_bundle(
                catalog, make_store(settings), args.dir, ids=ids, on_learnware=bar.update
            )
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"exported {report.exported} learnwares to {args.dir}")
    for lid, reason in report.skipped:
        print(f"skipped {lid}: {reason}", file=sys.stderr)
    return 0 if not report.skipped else 1


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from wharf.market.bundle import BundleError
    from wharf.market.catalog import Catalog, Role, repo
    from wharf.market.settings import get_settings
    from wharf.market.store import make_store
    from wharf.market.transfer import import_bundle

    from .bulk import print_report

    settings = get_settings()
    catalog = Catalog(settings.catalog_url)
    with catalog.session(read_only=True) as s:
        user = repo.get_user_by_name(s, args.user)
    if user is None or user.role != Role.admin:
        print(f"error: {args.user!r} is not an admin of this market (--user)", file=sys.stderr)
        return 1
    with tqdm(unit="learnware", desc="import") as bar:
        try:
            report = import_bundle(
                catalog,
                make_store(settings),
                args.dir,
                owner_id=user.id,
                who=user.name,
                max_package_bytes=settings.max_upload_bytes,
                spec_limits=settings.spec_limits,
                batch_size=settings.bulk_batch_size,
                on_batch=lambda batch: bar.update(batch.entries),
            )
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return print_report(report.to_dict())
