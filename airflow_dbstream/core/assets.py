"""The stream as an Airflow Asset, as plain data: its URI ``redis://host:port/db/<stream key>``, the
normaliser Airflow calls on every ``redis`` Asset URI, and the ``extra`` of the events a run emits.

The URI names the stream the way operators/lineage.py names it for OpenLineage: namespace
``redis://host:port/db``, name = the stream key (percent-encoded in the URI, ``:`` kept). A Redis
Cluster has database 0 only, so its streams are ``redis://node:port/0/<key>`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

SCHEME = "redis"
SCHEMES = ("redis", "rediss")  # rediss (TLS) names the same stream: the canonical URI says redis
DEFAULT_PORT = 6379
FORM = "redis://host:port/db/<stream key>"


@dataclass(frozen=True)
class StreamAddress:
    """Where a stream lives: the Redis server (as its connection names it), the database, the key."""

    host: str
    port: int
    db: int
    stream: str

    @property
    def namespace(self) -> str:
        """OpenLineage's namespace of the stream: ``redis://host:port/db``."""
        return f"{SCHEME}://{_netloc(self.host, self.port)}/{self.db}"

    @property
    def uri(self) -> str:
        """The canonical Asset URI: what the operator's events and a consumer's schedule both name."""
        return f"{self.namespace}/{quote(self.stream, safe=':')}"


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _db(value: Any, where: str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{where}: the Redis database must be a number >= 0, got {value!r}")
    return int(text)


def address(
    host: str | None, port: int | None, extra: Mapping[str, Any] | None, stream: str
) -> StreamAddress:
    """A stream's address from its Redis connection's fields (as RedisHook reads them): host
    ``localhost`` and port 6379 when not set, ``db`` from the extra (0 when not set, 0 on a cluster)."""
    if not stream:
        raise ValueError("A stream's Asset needs its stream key; got an empty one.")
    extra = extra or {}
    cluster = str(extra.get("cluster", "")).strip().lower() in ("1", "true", "yes", "on")
    db = 0 if cluster or extra.get("db") in (None, "") else _db(extra["db"], "the connection's extra 'db'")
    return StreamAddress((host or "localhost").strip().lower(), int(port or DEFAULT_PORT), db, stream)


def parse(uri: str) -> StreamAddress:
    """A stream Asset URI read back (any form ``sanitize_uri`` accepts)."""
    parts = sanitize_uri(urlsplit(uri))
    _, db, key = parts.path.split("/", 2)
    return StreamAddress(parts.hostname or "", parts.port or DEFAULT_PORT, int(db), unquote(key))


def sanitize_uri(parts: SplitResult) -> SplitResult:
    """Airflow's normaliser of ``redis://`` Asset URIs (declared in the provider info's ``asset-uris``):
    checks the form ``redis://host[:port]/[db/]<stream key>`` and returns it canonical: scheme redis,
    host lower case, no user or password, port 6379 and db 0 when left out, the key percent-encoded."""
    given = urlunsplit(parts)

    def bad(what: str) -> ValueError:
        return ValueError(
            f"Redis stream Asset URI {given!r}: {what}. Write it as {FORM}, e.g. "
            "redis://redis.example.com:6379/0/customers (or build it with "
            "airflow_dbstream.operators.assets.stream_asset)."
        )

    if parts.scheme.lower() not in SCHEMES:
        raise bad(f"the scheme must be one of {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise bad("it names no host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise bad(f"its port is not a port number ({exc})") from None
    if parts.query:
        raise bad("a stream's URI takes no query")
    path = parts.path.lstrip("/")
    first, slash, rest = path.partition("/")
    if slash and first.isdigit():
        db, key = int(first), rest
    elif first.isdigit() and not slash:
        raise bad(f"it names database {first} but no stream key")
    else:
        db, key = 0, path
    key = unquote(key)
    if not key:
        raise bad("it names no stream key")
    canonical = StreamAddress(parts.hostname, port, db, key)
    return urlsplit(canonical.uri)


def alias_name(redis_conn_id: str, stream: str) -> str:
    """The AssetAlias a stream's operators declare as their outlet, known at parse time without I/O
    (the Asset's URI needs the connection's host, read when the task runs)."""
    return f"dbstream:{redis_conn_id}:{stream}"


def cycle_event(figures: Mapping[str, Any]) -> dict[str, Any] | None:
    """A cycle run's event ``extra``, or None when it appended nothing (no event then). A run of
    several cycles (``run_for``) gives one event with their sums and the last watermark."""
    total = "_total" if "cycles" in figures else ""  # cycles_for: sums over its cycles
    counts = {
        name: figures.get(name + total, 0) for name in ("rows_read", "emitted", "duplicates", "deletes")
    }
    if not counts["emitted"]:
        return None
    return {
        "stream": figures["stream"],
        "action": "cycle",
        "cycles": figures.get("cycles", 1),
        **counts,
        "watermark": figures.get("watermark"),
    }


def replay_event(figures: Mapping[str, Any]) -> dict[str, Any] | None:
    """A replay's event ``extra`` (the messages it appended again), or None when it appended none."""
    if not figures.get("replayed"):
        return None
    names = ("replay", "replay_from", "replay_to", "rows_read")
    return {
        "stream": figures["stream"],
        "action": "replay",
        "emitted": figures["replayed"],
        **{name: figures.get(name) for name in names},
    }


def reconcile_event(figures: Mapping[str, Any]) -> dict[str, Any] | None:
    """A reconcile's event ``extra`` (the tombstones it appended), or None when it found no delete."""
    if not figures.get("deleted"):
        return None
    return {
        "stream": figures["stream"],
        "action": "reconcile",
        "emitted": figures["deleted"],
        "deletes": figures["deleted"],
        "keys_scanned": figures.get("keys_scanned"),
    }
