"""The ``nats-edge service install|uninstall`` subcommand's arguments (kept out of edge/cli.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_service_parser(sub: Any) -> Callable[[argparse.Namespace], int]:
    """Add ``service`` to the CLI's subparsers; returns its handler."""
    service = sub.add_parser("service", help="install or uninstall the systemd service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    inst = actions.add_parser("install", help="write the unit and a starter config, create the user, enable")
    inst.add_argument("--root", default="/", metavar="DIR", help="install into DIR instead of / (no start)")
    inst.add_argument("--profile", default="auto", metavar="NAME", help="hardware profile, or 'auto' (default)")
    inst.add_argument("--dry-run", action="store_true", help="print what would be done")
    rm = actions.add_parser("uninstall", help="disable and remove the unit (config and state are kept)")
    rm.add_argument("--root", default="/", metavar="DIR", help="uninstall from DIR instead of /")
    rm.add_argument("--purge", action="store_true", help="also remove the config and the state directory")
    rm.add_argument("--dry-run", action="store_true", help="print what would be done")
    return _cmd_service


def _cmd_service(args: argparse.Namespace) -> int:
    from edge.runtime import service

    if args.service_command == "install":
        return service.install(args.root, args.profile, dry_run=args.dry_run)
    return service.uninstall(args.root, purge=args.purge, dry_run=args.dry_run)
