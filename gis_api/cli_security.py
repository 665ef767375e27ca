"""``twin user …`` and ``twin app …``: manage who may log in and which apps may sign requests.

Every change is written to the audit log as an admin action by ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

DEMO_USERS = (  # documented in docs/security.md; for the demo only
    ("demo-admin", "Demo-Admin-2026", ["admin"]),
    ("demo-operator", "Demo-Operator-2026", ["operator"]),
    ("demo-planner", "Demo-Planner-2026", ["planner"]),
    ("demo-field", "Demo-Field-2026", ["field"]),
)


def _accounts():
    from gis_api.cli import _settings, _store
    from twin.security.accounts import Accounts

    settings = _settings()
    store = _store(settings)
    return Accounts(store, settings), store


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no login name in some containers
        return "cli"


def _audit(store, action: str, target: str) -> None:  # noqa: ANN001
    from twin.security import audit

    audit.record(store, _actor(), action, "ok", target=target)


def _roles(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    acc, store = _accounts()
    if args.user_command == "add":
        acc.create_user(args.name, _password(args), _roles(args.roles))
    elif args.user_command == "passwd":
        acc.set_password(args.name, _password(args))
    elif args.user_command == "roles":
        acc.set_user_roles(args.name, _roles(args.roles))
    elif args.user_command in ("enable", "disable"):
        acc.set_user_enabled(args.name, args.user_command == "enable")
    elif args.user_command == "unlock":
        acc.unlock(args.name)
    else:
        print(json.dumps(acc.list_users(), indent=2, default=str, ensure_ascii=False))
        return 0
    _audit(store, f"admin.user_{args.user_command}", args.name)
    print(f"user {args.name}: {args.user_command} done")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    acc, store = _accounts()
    if args.app_command == "add":
        secret = acc.create_app(args.app_id, _roles(args.roles), name=args.name)
        print(f"app {args.app_id} created; its secret (shown only now, keep it safe):\n{secret}")
    elif args.app_command == "rotate":
        secret = acc.rotate_app_secret(args.app_id)
        print(f"app {args.app_id}: new secret (the old one stops working now):\n{secret}")
    elif args.app_command in ("enable", "disable"):
        acc.set_app_enabled(args.app_id, args.app_command == "enable")
        print(f"app {args.app_id}: {args.app_command}d")
    else:
        print(json.dumps(acc.list_apps(), indent=2, default=str, ensure_ascii=False))
        return 0
    _audit(store, f"admin.app_{args.app_command}", args.app_id)
    return 0


def provision_demo(settings, store) -> list[tuple[str, str, list[str]]]:  # noqa: ANN001
    """The demo app (API.md: id ``demo``, secret TWIN_DEMO_APP_SECRET) and demo users."""
    from twin.errors import InvalidParameter
    from twin.security.accounts import Accounts

    acc = Accounts(store, settings)
    acc.ensure_app("demo", settings.demo_app_secret.get_secret_value(), ["exchange"])
    for name, password, roles in DEMO_USERS:
        try:
            acc.create_user(name, password, roles)
        except InvalidParameter:
            pass  # exists from an earlier demo run
    return list(DEMO_USERS)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from twin.security.accounts import ROLES

    roles_help = f"comma-separated, of: {', '.join(ROLES)}"
    u = sub.add_parser("user", help="manage users who log in (argon2id passwords, roles, lockout)")
    usub = u.add_subparsers(dest="user_command", required=True)
    for name, help_ in (("add", "create a user"), ("passwd", "set a new password (revokes their tokens)"),
                        ("roles", "set a user's roles (revokes their tokens)"), ("enable", "allow logging in"),
                        ("disable", "refuse logging in and revoke tokens"), ("unlock", "clear a lockout")):
        c = usub.add_parser(name, help=help_)
        c.add_argument("name")
        if name in ("add", "roles"):
            c.add_argument("--roles", required=True, help=roles_help)
        if name in ("add", "passwd"):
            c.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        c.set_defaults(func=cmd_user)
    usub.add_parser("list", help="list users").set_defaults(func=cmd_user)

    a = sub.add_parser("app", help="manage apps that sign requests (exchange interface, app tokens)")
    asub = a.add_subparsers(dest="app_command", required=True)
    c = asub.add_parser("add", help="register an app; prints its secret once")
    c.add_argument("app_id")
    c.add_argument("--roles", default="exchange", help=roles_help)
    c.add_argument("--name")
    c.set_defaults(func=cmd_app)
    for name, help_ in (("rotate", "issue a new secret"), ("enable", "allow signing"), ("disable", "refuse signing")):
        c = asub.add_parser(name, help=help_)
        c.add_argument("app_id")
        c.set_defaults(func=cmd_app)
    asub.add_parser("list", help="list apps (never their secrets)").set_defaults(func=cmd_app)
