"""The ``nats-edge`` command line.

``nats-edge [run] [flags]`` starts the broker and accepts nats-server's common flags with the same
meaning (``-a -p -n -c -m --user --pass --auth -D -V -DV -l``), so scripts written for nats-server work
against it. Other subcommands: ``check-config``, ``bench``. Exit codes: 0 ok, 1 a runtime or config
error (one line on stderr, never a traceback), 2 a usage error (as argparse and nats-server do).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from edge import NATS_SERVER_VERSION, __version__, build_kind
from edge.errors import ConfigError, EdgeError

PROG = "nats-edge"


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server options (as nats-server spells them)")
    g.add_argument("-a", "--addr", "--net", dest="host", metavar="HOST", help="bind to HOST (default 127.0.0.1)")
    g.add_argument("-p", "--port", dest="port", type=int, metavar="PORT", help="client port (4222; -1 = random)")
    g.add_argument("-n", "--name", "--server_name", dest="server_name", metavar="NAME", help="server (gateway) name")
    g.add_argument("-m", "--http_port", dest="http_port", type=int, metavar="PORT", help="monitoring port")
    g.add_argument("--mqtt_port", dest="mqtt_port", type=int, metavar="PORT",
                   help="listen for MQTT 3.1.1 clients on PORT (the [mqtt] section's port)")
    g.add_argument("--ports_file_dir", dest="ports_file_dir", metavar="DIR", help="write <prog>_<pid>.ports here")
    g.add_argument("--max_payload", dest="max_payload", metavar="SIZE", help="maximum message payload (e.g. 1MB)")
    g.add_argument("--leaf", dest="leaf", metavar="URL",
                   help="join a hub as a leaf node (nats-leaf://[user:pass@]host:port)")
    g = p.add_argument_group("authentication")
    g.add_argument("--user", dest="user", metavar="USER", help="user required for connections")
    g.add_argument("--pass", dest="password", metavar="PASSWORD", help="password required for connections")
    g.add_argument("--auth", dest="token", metavar="TOKEN", help="authorization token required for connections")
    g = p.add_argument_group("TLS (as nats-server spells them)")
    g.add_argument("--tls", dest="tls", action="store_true", default=None, help="enable TLS, do not verify clients")
    g.add_argument("--tlscert", dest="tlscert", metavar="FILE", help="server certificate file")
    g.add_argument("--tlskey", dest="tlskey", metavar="FILE", help="private key for the server certificate")
    g.add_argument("--tlsverify", dest="tlsverify", action="store_true", default=None,
                   help="enable TLS, verify client certificates")
    g.add_argument("--tlscacert", dest="tlscacert", metavar="FILE", help="client certificate CA for verification")
    g = p.add_argument_group("logging")
    g.add_argument("-l", "--log", dest="log_file", metavar="FILE", help="write the log to FILE")
    g.add_argument("-D", "--debug", dest="debug", action="store_true", default=None, help="debug output")
    g.add_argument("-V", "--trace", dest="trace", action="store_true", default=None, help="trace protocol lines")
    g.add_argument("-DV", dest="debug_trace", action="store_true", help="debug and trace")
    g.add_argument("-T", "--logtime", dest="logtime", choices=["true", "false"], help="timestamp log lines")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", dest="config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--profile", dest="profile", metavar="NAME", help="hardware profile from hw_profiles/ (or 'auto')")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, as config keys: flags override the file."""
    out: dict[str, Any] = {}
    for key in ("host", "port", "server_name", "http_port", "ports_file_dir", "log_file", "max_payload"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    if getattr(args, "debug", None) or getattr(args, "debug_trace", False):
        out["debug"] = True
    if getattr(args, "trace", None) or getattr(args, "debug_trace", False):
        out["trace"] = True
    if getattr(args, "logtime", None) is not None:
        out["logtime"] = args.logtime == "true"
    auth: dict[str, Any] = {}
    if args.user is not None:
        auth["user"] = args.user
    if args.password is not None:
        auth["password"] = args.password
    if args.token is not None:
        auth["token"] = args.token
    if auth:
        out["authorization"] = auth
    tls = {k: getattr(args, a) for a, k in (("tlscert", "cert_file"), ("tlskey", "key_file"), ("tlscacert", "ca_file"))
           if getattr(args, a, None) is not None}
    if getattr(args, "tlsverify", None):
        tls["verify"] = True
    if tls or getattr(args, "tls", None):
        out["tls"] = tls
    if getattr(args, "mqtt_port", None) is not None:
        out["mqtt"] = {"port": args.mqtt_port}
    if getattr(args, "leaf", None):
        out["leafnodes"] = {"remotes": [{"urls": [args.leaf]}]}
    if getattr(args, "demo", False):  # simulated sensors (edge.adapters.demo); keeps the file's other adapters
        out["adapters"] = {"demo": [{"name": "demo"}]}
    return out


def _load_checked(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Any:
    """Settings from the profile, the file and ``overrides``, and every configured feature able to work
    here (edge.config.features): ``run``, its SIGHUP reload and ``check-config`` fail the same way."""
    from edge.config import load_settings
    from edge.config.features import check_features

    settings = load_settings(args.config, profile=args.profile, overrides=overrides)
    check_features(settings)
    return settings


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.runtime.main import run_broker

    overrides = _overrides(args)
    settings = _load_checked(args, overrides)
    # SIGHUP re-reads the same sources with the same flags on top (edge.runtime.reload).
    return run_broker(settings, reload=lambda: _load_checked(args, overrides))


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load_checked(args)
    sources = ", ".join(settings.sources) or "built-in defaults"
    print(f"configuration ok ({sources})")
    return 0


def _cmd_outbox(args: argparse.Namespace) -> int:
    from edge.store.forwarder import outbox_command, resolve_directory

    directory = args.dir
    if not directory:
        from edge.config import load_settings

        settings = load_settings(args.config, profile=args.profile)
        sf = settings.sections.get("store_forward")
        if sf is None:
            print(f"{PROG}: no [store_forward] section; pass --dir", file=sys.stderr)
            return 1
        directory, _ = resolve_directory(sf, settings.state_dir)
    print(outbox_command(directory, as_json=args.json))
    return 0


def _cmd_mqtt(args: argparse.Namespace) -> int:
    from edge.mqtt.inspect import mqtt_command

    directory = args.dir
    if not directory:
        from edge.config import load_settings
        from edge.config.mqtt import MQTTSettings
        from edge.mqtt.listener import resolve_mqtt_directory

        settings = load_settings(args.config, profile=args.profile)
        directory = resolve_mqtt_directory(settings.sections.get("mqtt") or MQTTSettings(), settings.state_dir)
    print(mqtt_command(directory, as_json=args.json))
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized without ``shutil``: argparse imports shutil (and with it bz2 and lzma,
    ~0.6 MB resident in a broker that never uses them) only to ask for the terminal width."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                stdout = sys.__stdout__ or sys.stdout
                columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(stdout.fileno()).columns
            except (ValueError, OSError, AttributeError):
                columns = 80  # shutil.get_terminal_size's fallback
            width = columns - 2  # as argparse does
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommand parsers (created with its class) share ``_HelpFormatter``
    and reject unknown arguments themselves, so ``nats-edge run --bogus`` shows ``run``'s usage
    (argparse hands a subcommand's leftovers up to the top-level parser, which shows its own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")  # exits 2
        return ns, extras


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = _Parser(prog=PROG, description="A NATS-protocol broker for IoT gateways.")
    version = f"{PROG} {__version__} (nats-server {NATS_SERVER_VERSION} protocol, {build_kind()} build)"
    parser.add_argument("-v", "--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}

    run = sub.add_parser("run", help="run the broker (the default command)")
    _add_config_flags(run)
    _add_server_flags(run)
    run.add_argument("--demo", action="store_true", help="publish simulated sensor readings on dev.<gateway>.demo.>")
    handlers["run"] = _cmd_run

    check = sub.add_parser("check-config", help="validate the configuration without starting")
    _add_config_flags(check)
    handlers["check-config"] = _cmd_check_config

    sub.add_parser("bench", help="benchmark nats-edge (and nats-server side by side with --compare)", add_help=False)

    outbox = sub.add_parser("outbox", help="show a store-and-forward outbox directory (also with the broker stopped)")
    outbox.add_argument("--dir", help="the outbox directory (default: from the configuration)")
    outbox.add_argument("--json", action="store_true", help="print JSON")
    _add_config_flags(outbox)
    handlers["outbox"] = _cmd_outbox

    mqtt = sub.add_parser("mqtt", help="list the MQTT listener's persistent sessions and retained messages")
    mqtt.add_argument("--dir", help="the MQTT state directory (default: from the configuration)")
    mqtt.add_argument("--json", action="store_true", help="print JSON")
    _add_config_flags(mqtt)
    handlers["mqtt"] = _cmd_mqtt

    from edge.runtime.service_cli import add_service_parser

    handlers["service"] = add_service_parser(sub)

    from edge.runtime.simulate import add_simulate_parser

    handlers["simulate-device"] = add_simulate_parser(sub)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, handlers = _build_parser()
    commands = {"run", "check-config", "bench", "service", "simulate-device", "outbox", "mqtt", "-h", "--help", "-v",
                "--version"}
    if not argv or argv[0] not in commands:
        argv = ["run", *argv]
    if argv[0] == "bench":
        # The benchmark owns its own flags; it is a separate program that happens to ship with us.
        from edge.bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    handler = handlers[args.command]
    del parser, handlers  # ~0.15 MB of argparse objects that would live as long as the broker runs
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 1
    except EdgeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
