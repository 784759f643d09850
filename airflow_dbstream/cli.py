"""The status command: ``airflow dbstream status`` (a provider CLI command, Airflow >= 3.2) and
``python -m airflow_dbstream status``, one implementation.

Both run inside Airflow's settings as a server process does, so a connection is found where Airflow
finds it for a task: AIRFLOW_CONN_* variables, the secrets backend, the metadata database (UI connections).
Exit codes for cron and alerts: 0 all fresh, 1 a stream is staler than --max-freshness (or has no cycle
yet), 2 the status could not be read (unknown connection or stream, unreachable Redis, bad sources file).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_dbstream.core.errors import DbStreamInputError

DEFAULT_REDIS_CONN_ID = "redis_default"
_CONTEXT = "_AIRFLOW_PROCESS_CONTEXT"  # "server": the secrets search path includes the metadata database

# (flags, argparse keywords): the same arguments for both entry points (Airflow's Arg takes these keywords).
_HELP = {
    "--stream": "a stream key, e.g. customers (repeat for several)",
    "--all": "every stream of the YAML sources file (--config), each on its source's redis_conn_id",
    "--config": "the YAML sources file of --all (default: <dags_folder>/streams.yaml)",
    "--pattern": "every stream whose name matches GLOB (e.g. 'crm.*'), found by SCAN of the <tag>:state "
    "hashes on --redis-conn-id",
    "--redis-conn-id": f"an Airflow redis connection (default: {DEFAULT_REDIS_CONN_ID}; with --all: each "
    "source's own)",
    "--max-freshness": "exit 1 when a stream's freshness_seconds exceeds SECONDS or it has no cycle yet",
    "--json": "print JSON (one object, or a list for several streams)",
}
_KEYWORDS: dict[str, dict[str, Any]] = {
    "--stream": {"action": "append", "metavar": "KEY"},
    "--all": {"action": "store_true"},
    "--config": {"metavar": "PATH"},
    "--pattern": {"metavar": "GLOB"},
    "--redis-conn-id": {},
    "--max-freshness": {"type": float, "metavar": "SECONDS"},
    "--json": {"action": "store_true"},
}
ARGUMENTS = tuple(((flag,), {**_KEYWORDS[flag], "help": _HELP[flag]}) for flag in _KEYWORDS)
DESCRIPTION = (
    "Watermark, freshness, data age, sizes, the last cycle and consumer groups of one stream, or one "
    "line per stream for several (--all, --pattern, repeated --stream). Exit 0: fresh; 1: a stream "
    "staler than --max-freshness; 2: the status could not be read."
)


class StatusError(Exception):
    """What stops the status command: printed as one line on stderr, exit code 2."""


def get_cli_commands() -> list:
    """Airflow's provider CLI hook (provider info ``cli``): ``airflow dbstream status``."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    status = ActionCommand(
        name="status",
        help="Status of one or many streams (freshness, data age, sizes, groups)",
        description=DESCRIPTION,
        func=lazy_load_command("airflow_dbstream.cli.status_command"),
        args=tuple(Arg(flags, **keywords) for flags, keywords in ARGUMENTS),
    )
    return [GroupCommand(name="dbstream", help="DB Stream commands", subcommands=(status,))]


def status_command(args: Any) -> None:
    """``airflow dbstream status``: Airflow's CLI ignores a command's return value, so exit with it."""
    sys.exit(run_status(args))


@dataclass(frozen=True)
class Target:
    stream: str
    redis_conn_id: str
    named: bool  # asked for by --stream: a stream without state is then an error, not a line "no cycle yet"


def run_status(args: Any) -> int:
    """Print the status of the streams ``args`` select; the exit code (0, 1 or 2)."""
    try:
        if not (args.stream or args.all or args.pattern):
            raise StatusError("say which streams: --stream KEY, --all (the YAML sources) or --pattern GLOB.")
        with airflow_server_context():
            return _report(args)
    except (StatusError, DbStreamInputError) as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2


@contextmanager
def airflow_server_context() -> Iterator[None]:
    """Run as Airflow's own server-side commands do (``airflow connections get``): settings and ORM
    initialised by importing airflow, the providers' configuration loaded, and the secrets search path
    of a server process, which includes the metadata database. The process's context is restored after."""
    before = os.environ.get(_CONTEXT)
    os.environ[_CONTEXT] = "server"
    try:
        from airflow.providers_manager import ProvidersManager

        ProvidersManager().initialize_providers_configuration()
        yield
    finally:
        if before is None:
            os.environ.pop(_CONTEXT, None)
        else:
            os.environ[_CONTEXT] = before


def _report(args: Any) -> int:
    from airflow_dbstream.core.figures import format_status
    from airflow_dbstream.core.keys import StreamKeys
    from airflow_dbstream.hooks.status import stream_status

    clients = _Clients()
    targets, failed = _targets(args, clients)
    results = []
    for target in targets:
        client = clients.get(target.redis_conn_id)
        if client is None:
            failed = True
            continue
        try:
            figures = stream_status(client, StreamKeys.for_stream(target.stream))
        except Exception as exc:  # redis-py's errors: one line naming the stream, never a traceback
            error = _redis_error(target.redis_conn_id, exc)
            print(f"status: stream {target.stream!r}: {error}", file=sys.stderr)
            failed = True
            continue
        figures["redis_conn_id"] = target.redis_conn_id
        if target.named and _unknown(figures):
            print(
                f"status: stream {target.stream!r} has no messages and no state on connection "
                f"{target.redis_conn_id!r}: check the stream key and the connection's db.",
                file=sys.stderr,
            )
            failed = True
            continue
        if args.max_freshness is not None:
            fresh = figures["freshness_seconds"]
            figures["stale"] = fresh is None or fresh > args.max_freshness
        results.append(figures)
    single = bool(args.stream) and len(args.stream) == 1 and not (args.all or args.pattern)
    if single:
        if results:
            print(json.dumps(results[0], indent=2) if args.json else format_status(results[0]))
    elif args.json:
        print(json.dumps(results, indent=2))
    elif results or not failed:
        print(status_table(results, args.max_freshness))
    if failed:
        return 2
    return 1 if any(figures.get("stale") for figures in results) else 0


def _targets(args: Any, clients: _Clients) -> tuple[list[Target], bool]:
    """The streams asked for, and whether finding them failed (a connection, or a pattern matching none)."""
    from airflow_dbstream.core.keys import validate_stream_name
    from airflow_dbstream.hooks.status import find_streams

    conn_id = args.redis_conn_id or DEFAULT_REDIS_CONN_ID
    targets: dict[tuple[str, str], Target] = {}
    for stream in args.stream or ():
        validate_stream_name(stream)
        targets.setdefault((conn_id, stream), Target(stream, conn_id, named=True))
    if args.all:
        for source in _sources(args.config):
            source_conn = args.redis_conn_id or source.get("redis_conn_id") or DEFAULT_REDIS_CONN_ID
            targets.setdefault((source_conn, source["stream"]), Target(source["stream"], source_conn, False))
    failed = False
    if args.pattern:
        client = clients.get(conn_id)
        failed = client is None
        if client is not None:
            try:
                streams = find_streams(client, args.pattern)
            except Exception as exc:
                raise StatusError(f"--pattern {args.pattern!r}: {_redis_error(conn_id, exc)}") from None
            if not streams:
                print(
                    f"status: no stream matches {args.pattern!r} on connection {conn_id!r} (no <tag>:state "
                    "hash of that name): check the pattern and the connection's db.",
                    file=sys.stderr,
                )
                failed = True
            for stream in streams:
                targets.setdefault((conn_id, stream), Target(stream, conn_id, named=False))
    return list(targets.values()), failed


def _sources(config: str | None) -> list[dict[str, Any]]:
    from airflow_dbstream.factory import load_sources

    if config is None:
        from airflow.configuration import conf

        path = Path(conf.get("core", "dags_folder")) / "streams.yaml"
        if not path.is_file():
            raise StatusError(f"--all: no sources file at {path}; pass --config PATH.")
    else:
        path = Path(config)
    sources, _settings = load_sources(path)
    return sources


class _Clients:
    """One Redis client per connection id; an unknown or unreachable connection is said once, on stderr."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def get(self, conn_id: str) -> Any:
        if conn_id not in self._clients:
            self._clients[conn_id] = self._connect(conn_id)
        return self._clients[conn_id]

    @staticmethod
    def _connect(conn_id: str) -> Any:
        from airflow.exceptions import AirflowNotFoundException
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from airflow_dbstream.hooks.redis_stream import RedisStreamHook

        try:
            client = RedisStreamHook(conn_id).get_conn()
            if isinstance(client, Redis):  # a RedisCluster keeps its own retries over the cluster
                client.set_retry(Retry(NoBackoff(), 0))  # a status answers now: no retries' backoff
            client.ping()
            return client
        except AirflowNotFoundException:
            message = (
                f"connection {conn_id!r} is not defined: Airflow finds it neither in the environment "
                f"(AIRFLOW_CONN_{conn_id.upper()}), the secrets backend nor the metadata database; create it "
                f"(UI: Admin > Connections, or `airflow connections add {conn_id} --conn-type redis ...`) "
                "or pass --redis-conn-id."
            )
        except Exception as exc:
            message = _redis_error(conn_id, exc)
        print(f"status: {message}", file=sys.stderr)
        return None


def _redis_error(conn_id: str, exc: BaseException) -> str:
    cause = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"Redis of connection {conn_id!r} failed: {type(exc).__name__}: {cause}"


def status_table(results: list[dict[str, Any]], max_freshness: float | None) -> str:
    """One line per stream: what an operator scans for (freshness first, the figure to alert on)."""
    header = ("STREAM", "CONNECTION", "FRESHNESS_S", "DATA_AGE_S", "LENGTH", "PENDING", "LAST_CYCLE", "STATE")
    rows = [header]
    for figures in results:
        cycle = figures.get("last_cycle") if isinstance(figures.get("last_cycle"), dict) else {}
        pending = sum(int(group.get("pending") or 0) for group in figures.get("groups") or [])
        if not cycle:
            state = "no cycle yet"
        elif figures.get("stale"):
            state = f"STALE (> {max_freshness:g} s)"
        else:
            state = "ok"
        rows.append(
            (
                figures["stream"],
                figures.get("redis_conn_id", ""),
                _figure(figures.get("freshness_seconds")),
                _figure(figures.get("data_age_seconds")),
                str(figures.get("stream_length", "")),
                str(pending),
                str(cycle.get("finished_at") or "-"),
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _unknown(figures: dict[str, Any]) -> bool:
    """No watermark, no message, no cycle: a key nobody streams to (a typo, or another db)."""
    return figures["watermark_us"] is None and not figures["stream_length"] and not figures["last_cycle"]


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
