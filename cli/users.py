"""``wharf admin user list|approve|disable|enable|role|password``: the accounts of the pages,
from a machine that reaches the catalog (as ``wharf admin bootstrap``). An admin gives
themself a password here to sign in to the pages; the pages' admin section does the rest."""

from __future__ import annotations

import argparse
import getpass
import sys


def add_parser(admin_sub: argparse._SubParsersAction) -> None:
    p = admin_sub.add_parser("user", help="list users, approve or disable them, set a password")
    sub = p.add_subparsers(
        dest="user_command",
        metavar="{list,approve,disable,enable,role,password}",
        required=True,
    )
    s = sub.add_parser("list", help="every user with their email, role and state")
    s.add_argument("--pending", action="store_true", help="only those awaiting approval")
    s.set_defaults(func=cmd_list)
    for name, help_ in (
        ("approve", "let a user who signed up sign in"),
        ("enable", "let a disabled user sign in again (their old tokens stay revoked)"),
        ("disable", "sign a user out everywhere and revoke their API tokens"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("user", help="a user name or email")
        s.set_defaults(func=cmd_state, state=name)
    s = sub.add_parser("role", help="make a user an admin, or a user again")
    s.add_argument("user", help="a user name or email")
    s.add_argument("role", choices=["user", "admin"])
    s.set_defaults(func=cmd_role)
    s = sub.add_parser(
        "password", help="set a user's password for the pages (asked for, or read from stdin)"
    )
    s.add_argument("user", help="a user name or email")
    s.add_argument(
        "--stdin", action="store_true", help="read the password from the first line of stdin"
    )
    s.set_defaults(func=cmd_password)


def _catalog():
    from wharf.market.catalog import Catalog
    from wharf.market.settings import get_settings

    return Catalog.create(get_settings().catalog_url, migrate=False)


def _find(s, who: str):
    from wharf.market.catalog import repo

    user = repo.get_user_by_name(s, who) or repo.get_user_by_email(s, who)
    if user is None:
        print(f"error: no user {who!r} (a name or an email)", file=sys.stderr)
    return user


def cmd_list(args: argparse.Namespace) -> int:
    from wharf.market.catalog import UserState, repo

    with _catalog().session(read_only=True) as s:
        state = UserState.pending if args.pending else None
        for u in repo.list_users(s, state=state, limit=100_000):
            password = "password" if u.password_hash else "no password"
            print(f"{u.id}\t{u.name}\t{u.email}\t{u.role}\t{u.state}\t{password}")
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    from wharf.market.catalog import UserState, repo

    state = UserState.disabled if args.state == "disable" else UserState.active
    with _catalog().session() as s:
        user = _find(s, args.user)
        if user is None:
            return 1
        repo.set_state(s, user, state)
        print(f"{user.name} is {state}")
    return 0


def cmd_role(args: argparse.Namespace) -> int:
    from wharf.market.catalog import Role

    with _catalog().session() as s:
        user = _find(s, args.user)
        if user is None:
            return 1
        user.role = Role(args.role)
        print(f"{user.name} is {'an admin' if args.role == 'admin' else 'a user'}")
    return 0


def cmd_password(args: argparse.Namespace) -> int:
    from wharf.market.catalog import repo

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("The same again: ") != password:
            print("error: the two passwords differ", file=sys.stderr)
            return 1
    with _catalog().session() as s:
        user = _find(s, args.user)
        if user is None:
            return 1
        problem = repo.password_problem(password, user.email or "")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        repo.set_password(s, user, password)
        repo.end_sessions(s, user.id)
        print(f"{user.name} can sign in to the pages as {user.email}")
    return 0
