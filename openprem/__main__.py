"""``openprem`` / ``python -m openprem``: the command line of the embedded install.

openprem run [--no-sandbox] [--no-quickstart] [--env-file PATH]   everything in one process (make run)
openprem run --multiconnect [--shards N] [--standbys M] [--masters K] [--webapps W] [--backend mariadb|postgres]
                                                                   a multiconnect deployment, one process per node
openprem migrate [--env-file PATH]                                 both apps' migrations, then exit
openprem sandbox ARGS...                                           chatd's CLI (same as python -m chatd)
openprem webhook-echo [--host H] [--port P]                        demo webhook receiver
openprem quickstart                                                print the quick start again
openprem healthcheck webapp|coreapp|chatd                          container HEALTHCHECK
openprem backup FILE | restore FILE [--url U] [--user U]          the API's backup/restore, with progress
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from openprem.nodes import SHARD_COUNTS

MULTICONNECT_ONLY = ("shards", "standbys", "masters", "webapps", "backend", "workdir", "db_prefix")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not minimum <= value <= 64:
            raise argparse.ArgumentTypeError(f"must be between {minimum} and 64")
        return value

    parse.__name__ = "count"  # what argparse names in "invalid count value"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openprem",
        description="OpenPrem: a self-hosted, On-Premises-compatible WhatsApp Business API client.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run chatd, coreapp and webapp in one process (embedded: SQLite, in-process bus)")
    run.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        help="do not start chatd; coreapp connects to the network named by WA_CHAT_* instead",
    )
    run.add_argument("--no-quickstart", dest="quickstart", action="store_false", help="do not print the quick start")
    run.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="env file to read before the environment (default: conf/embedded.conf if it exists; "
        "conf/whatsapp.conf is for docker compose and is never read here)",
    )

    multi = run.add_argument_group(
        "multiconnect", "one OS process per node, MariaDB or PostgreSQL, a private Mosquitto (README: Multiconnect)"
    )
    multi.add_argument(
        "--multiconnect", action="store_true", help="run masters, coreapps and webapps as separate processes"
    )
    multi.add_argument("--shards", type=int, choices=SHARD_COUNTS, default=None, help="shard count (default 2)")
    multi.add_argument("--standbys", type=_count(0), default=None, help="coreapps beyond the shards (default 1)")
    multi.add_argument("--masters", type=_count(1), default=None, help="master nodes (default 2)")
    multi.add_argument("--webapps", type=_count(1), default=None, help="webapps (default 2)")
    multi.add_argument(
        "--backend", choices=("mariadb", "postgres"), default=None, help="database server (default mariadb)"
    )
    multi.add_argument("--workdir", type=Path, default=None, help="state and logs (default var/multiconnect)")
    multi.add_argument(
        "--db-prefix", default=None, help="database name prefix (default openprem_mc_: database openprem_mc_openprem)"
    )

    migrate = sub.add_parser("migrate", help="run the webapp and coreapp migrations and exit")
    migrate.add_argument("--env-file", type=Path, default=None, help="as for run")

    sub.add_parser("sandbox", help="chatd's command line (openprem sandbox --help)", add_help=False)

    echo = sub.add_parser("webhook-echo", help="a webhook receiver that prints every request and answers 200")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=8000)

    sub.add_parser("quickstart", help="print the quick start commands")

    health = sub.add_parser("healthcheck", help="container health check (exit 0 when healthy)")
    health.add_argument("target", choices=("webapp", "coreapp", "chatd"))

    from openprem.backup import add_arguments

    backup = sub.add_parser("backup", help="POST /v1/settings/backup and write the blob (progress on a terminal)")
    add_arguments(backup, restore=False)
    restore = sub.add_parser("restore", help="POST /v1/settings/restore with a backup file (progress on a terminal)")
    add_arguments(restore, restore=True)
    return parser


def sandbox_main(argv: Sequence[str]) -> int:
    """Forward to chatd's CLI (imported lazily: chatd is optional for the other commands)."""
    import importlib

    cli = importlib.import_module("chatd.cli")
    entry = getattr(cli, "main", None) or cli.run
    result = entry(list(argv))
    return int(result) if isinstance(result, int) else 0


def multiconnect_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """``MulticonnectOptions`` from ``run --multiconnect ...`` (``parser.error`` on options that do not apply)."""
    from openprem.multiconnect_run import MulticonnectOptions

    if not args.sandbox or args.env_file is not None:
        parser.error("--multiconnect starts its own chatd and reads no env file: drop --no-sandbox/--env-file")
    given = {name: getattr(args, name) for name in MULTICONNECT_ONLY if getattr(args, name) is not None}
    return MulticonnectOptions(quickstart=args.quickstart, **given)


def run_multiconnect(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from openprem.multiconnect_run import run as run_cluster

    return run_cluster(multiconnect_options(parser, args))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "sandbox":
        return sandbox_main(args_list[1:])

    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "run" and args.multiconnect:
        return run_multiconnect(parser, args)
    if args.command == "run":
        given = [f"--{name.replace('_', '-')}" for name in MULTICONNECT_ONLY if getattr(args, name) is not None]
        if given:
            parser.error(f"{', '.join(given)} only with --multiconnect")
        from openprem.embedded import RunOptions, run

        return run(RunOptions(sandbox=args.sandbox, quickstart=args.quickstart), env_file=args.env_file)
    if args.command == "migrate":
        from openprem.embedded import run_migrate

        return run_migrate(env_file=args.env_file)
    if args.command == "webhook-echo":
        from openprem.webhook_echo import main as echo_main

        return echo_main(args.host, args.port)
    if args.command == "quickstart":
        from openprem.quickstart import banner

        print(banner(), end="")
        return 0
    if args.command == "healthcheck":
        from openprem.healthcheck import main as health_main

        return health_main(args.target)
    if args.command in ("backup", "restore"):
        from openprem.backup import main as backup_main

        return backup_main(args.command, args)
    raise AssertionError(args.command)  # argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
