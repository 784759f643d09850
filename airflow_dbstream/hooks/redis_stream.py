"""RedisStreamHook: the redis provider's hook plus the stream's scripts and state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

from airflow.providers.redis.hooks.redis import RedisHook
from redis import Redis, RedisError

from airflow_dbstream.core import keys as state_fields
from airflow_dbstream.core.deadletters import DeadLetter
from airflow_dbstream.core.errors import DbStreamRedisError
from airflow_dbstream.core.keys import StreamKeys, parse_watermark
from airflow_dbstream.core.rows import Columns, Message, Versions, pack_rows, pack_versions, take
from airflow_dbstream.core.window import trim_cutoff
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.redis_client import ClientArgs, client_args, sync_client
from airflow_dbstream.hooks.scripts import FENCED_SCRIPTS, SCRIPT_NAMES, fenced_source, script_source

if TYPE_CHECKING:
    from airflow_dbstream.hooks.lease import Lease

TRIM_CHUNK = 1000


@dataclass(frozen=True)
class EmitResult:
    emitted: int
    duplicates: int
    lowest_epoch_us: int | None = None  # the lowest epoch of the rows emitted (emit.lua), None: none


@dataclass(frozen=True)
class StreamState:
    """What ``<tag>:state`` holds: the committed watermark and the last cycle's figures."""

    watermark_us: int | None
    fields: dict[str, str]


class RedisStreamHook(RedisHook):
    """
    Runs a stream's Lua scripts and reads and writes its state.

    Uses the redis provider's ``redis`` connection type, so TLS, ACL user/password, ``db`` and the
    ``cluster`` extra work as they do for RedisHook. Scripts run by EVALSHA and are reloaded by
    redis-py's Script on NOSCRIPT (restart, failover, SCRIPT FLUSH). A write that only the lock's
    holder may make takes that holder's ``Lease`` (hooks/lease.py) and runs fenced by its token.
    """

    conn_type = "dbstream_redis"  # declared in the provider info; `redis` connections work the same
    hook_name = "Redis Stream target (DB Stream)"

    def __init__(self, redis_conn_id: str = RedisHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(redis_conn_id=redis_conn_id, **kwargs)
        self._scripts: dict[str, Any] = {}

    def client_args(self) -> ClientArgs:
        """The connection read as RedisHook reads it (hooks/redis_client.py), shared with the trigger."""
        args = client_args(self.get_connection(self.redis_conn_id), self.redis_conn_id)
        self.host, self.port, self.db = args.host, args.port, args.db
        self.username, self.password = args.username, args.password
        self.cluster, self.startup_nodes = args.cluster, args.startup_nodes
        return args

    def get_conn(self) -> Any:
        """The client of the connection, retrying transient faults with the one policy of hooks/faults.py."""
        if self.redis is None:
            client = sync_client(self.client_args())
            if isinstance(client, Redis):  # RedisCluster keeps its own retries over the cluster
                client.set_retry(faults.LoggedRetry(faults.RETRIES))
            self.redis = client
        return self.redis

    def _script(self, name: str) -> Any:
        if not self._scripts:
            client = self.get_conn()
            self._scripts = {n: client.register_script(script_source(n)) for n in SCRIPT_NAMES}
            for n in FENCED_SCRIPTS:
                self._scripts[f"fenced_{n}"] = client.register_script(fenced_source(n))
        return self._scripts[name]

    def run_script(
        self, name: str, keys: StreamKeys, script_keys: list[str], args: list[Any], lease: Lease | None = None
    ) -> Any:
        """One script call, fenced by ``lease`` when given and the script writes what only its holder may."""
        if lease is not None and name in FENCED_SCRIPTS:
            script = self._script(f"fenced_{name}")
            script_keys, args = [*script_keys, lease.lock], [*args, lease.token]
        else:
            script = self._script(name)
        run = lambda: script(keys=script_keys, args=args)  # noqa: E731
        return faults.call(name, keys.stream, run, source=script.script)

    def _call(self, what: str, keys: StreamKeys, fn: Any) -> Any:
        client = self.get_conn()
        return faults.call(what, keys.stream, lambda: fn(client))

    def emit(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        messages: Sequence[Message] | Versions,
        *,
        lease: Lease | None = None,
        track_keys: bool = False,
        script: str = "emit",
        precheck: bool = False,
        encode: Callable[[Sequence[int]], Columns] | None = None,
    ) -> EmitResult:
        """One script call for the whole batch: dedup against ``seen``, then XADD what is new.

        ``script="delete"`` sends the batch as soft-delete tombstones (``op=delete``) instead.
        ``precheck`` first drops the rows ``seen`` already holds (one read-only round trip), so a
        window of mostly unchanged rows sends no payloads; the script still checks what is left.
        With ``encode``, ``messages`` are a batch's ``Versions`` and ``encode(positions)`` gives the
        four columns (pkeys, epochs, digests, payloads) of those left: a row the precheck drops is
        never encoded.
        """
        if not len(messages):
            return EmitResult(0, 0)
        if encode is None:  # whole messages: their four columns, picked at the positions left
            columns = tuple(zip(*messages, strict=True))
            versions = Versions(*columns[:3])
            encode = lambda left: [take(c, left) for c in columns]  # noqa: E731
        else:
            assert isinstance(messages, Versions)
            versions = messages
        left = self.may_be_new(keys, versions) if precheck else range(len(versions))
        skipped = len(versions) - len(left)
        if not left:
            return EmitResult(0, skipped)
        columns = encode(left)
        args = [variant, maxlen or 0, pack_rows(*columns)]
        script_keys = [keys.stream, keys.seen, keys.digest] + ([keys.keys] if track_keys else [])
        emitted, duplicates, *lowest = self.run_script(script, keys, script_keys, args, lease)
        lowest_us = int(lowest[0]) if lowest and lowest[0] else None
        return EmitResult(int(emitted), int(duplicates) + skipped, lowest_us)

    def may_be_new(self, keys: StreamKeys, versions: Versions) -> Sequence[int]:
        """The positions (increasing) of the versions that ``digest`` leaves possibly new,
        by precheck.lua: the rule is applied in Redis, and an unchanged window's reply is empty.

        A batch that repeats a pkey is kept whole, since the script compares a repeat with the version
        just before it.
        """
        if len(set(versions.pkeys)) != len(versions):
            return range(len(versions))
        packed = pack_versions(versions.pkeys, versions.epochs_us, versions.digests)
        return self.run_script("precheck", keys, [keys.digest], [packed])

    def replay(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        marker: str,
        rows: Sequence[Any],
        lease: Lease,
    ) -> int:
        """Append (pkey, epoch, op, payload) rows again, marked ``replay=marker``; no dedup, no state."""
        if not rows:
            return 0
        args = [variant, maxlen or 0, marker, pack_rows(*zip(*rows, strict=True), versions=False)]
        return int(self.run_script("replay", keys, [keys.stream], args, lease))

    def dead_letter(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        letters: Sequence[DeadLetter],
        lease: Lease | None = None,
        marker: str = "",
    ) -> int:
        """Append bad rows to ``<tag>:dead``, each bad version once (``dead_seen``); a replay's
        ``marker`` appends them all again, marked. Returns how many were appended."""
        if not letters:
            return 0
        args: list[Any] = [variant, maxlen or 0, marker, *chain.from_iterable(letters)]
        return int(self.run_script("deadletter", keys, [keys.dead, keys.dead_seen], args, lease))

    def read_state(self, keys: StreamKeys) -> StreamState:
        raw = self._call("read_state", keys, lambda client: client.hgetall(keys.state))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return StreamState(parse_watermark(fields.get(state_fields.WATERMARK)), fields)

    def commit(
        self,
        keys: StreamKeys,
        watermark_us: int | None,
        lookback_us: int,
        figures: Mapping[str, Any],
        lease: Lease | None = None,
    ) -> int | None:
        """Move the watermark forward (never back), record the cycle, then trim ``seen``."""
        args: list[Any] = ["" if watermark_us is None else watermark_us]
        for field, value in figures.items():
            args += (field, "" if value is None else str(value))
        committed_us = parse_watermark(self.run_script("commit", keys, [keys.state], args, lease))
        if committed_us is not None:
            self.trim(keys, trim_cutoff(committed_us, lookback_us))
        return committed_us

    def trim(self, keys: StreamKeys, cutoff_us: int, chunk: int = TRIM_CHUNK) -> int:
        """Remove ``seen`` members scored below cutoff, ``chunk`` per call so Redis never stalls."""
        return self._chunked("trim", keys, [keys.seen, keys.digest], [cutoff_us, chunk], chunk)

    def trim_dead(self, keys: StreamKeys, cutoff_us: int, chunk: int = TRIM_CHUNK) -> int:
        """Remove the dead letters' identities scored below cutoff from ``dead_seen``, as ``trim`` does."""
        return self._chunked("trim", keys, [keys.dead_seen], [cutoff_us, chunk], chunk)

    def upgrade_versions(
        self, keys: StreamKeys, *, keep_digests: bool, lease: Lease, chunk: int = TRIM_CHUNK
    ) -> int:
        """Rewrite the bare digests an earlier build left in ``digest`` into versions (upgrade.lua), about
        ``chunk`` per call; ``keep_digests`` when they are of today's digest format. Returns how many."""
        cursor, done = "0", 0
        while True:
            args = [cursor, chunk, "1" if keep_digests else "0"]
            cursor, n = self.run_script("upgrade", keys, [keys.seen, keys.digest], args, lease)
            cursor, done = cursor.decode() if isinstance(cursor, bytes) else str(cursor), done + int(n)
            if cursor == "0":
                return done

    def _chunked(
        self,
        name: str,
        keys: StreamKeys,
        script_keys: list[str],
        args: list[Any],
        chunk: int,
        lease: Lease | None = None,
    ) -> int:
        """Call a script that handles at most ``chunk`` members a call until it handles fewer."""
        done = 0
        while True:
            n = int(self.run_script(name, keys, script_keys, args, lease))
            done += n
            if n < chunk:
                return done

    def save_fields(self, keys: StreamKeys, fields: Mapping[str, Any]) -> None:
        """Record progress (a snapshot's cursor, a replay's figures) in ``<tag>:state``; not the watermark."""
        mapping = {k: str(v) for k, v in fields.items()}
        self._call("save_fields", keys, lambda client: client.hset(keys.state, mapping=mapping))

    def drop_fields(self, keys: StreamKeys, *names: str) -> None:
        self._call("drop_fields", keys, lambda client: client.hdel(keys.state, *names))

    def reset(self, keys: StreamKeys, note: str, lease: Lease) -> None:
        """Forget the watermark, ``seen``, digests and ``dead_seen`` (never the stream nor ``dead``), keeping
        ``note`` as last_reset."""
        self.run_script("reset", keys, [keys.seen, keys.digest, keys.state, keys.dead_seen], [note], lease)

    def last_entry_id(self, keys: StreamKeys) -> str | None:
        """The id of the newest entry the stream was given (XINFO STREAM's last-generated-id), for the
        Asset event of a run that appended; None when Redis would not say (the error is logged)."""
        try:
            info = self._call("last_entry_id", keys, lambda client: client.xinfo_stream(keys.stream))
        except (DbStreamRedisError, RedisError) as exc:
            self.log.warning(
                "Stream %s: the Asset event goes without last_entry_id, XINFO STREAM failed (%s). Grant "
                "'xinfo|stream' (airflow_dbstream.core.acl.ASSET_COMMANDS) to have it.",
                keys.stream,
                exc,
            )
            return None
        value = info.get("last-generated-id")
        return value.decode() if isinstance(value, bytes) else value

    def seen_size(self, keys: StreamKeys) -> int:
        return int(self._call("seen_size", keys, lambda client: client.zcard(keys.seen)))

    def mark_keys(self, keys: StreamKeys, pkeys: Sequence[str], at_us: int) -> None:
        """Reconcile: the tracked keys found in the source are known present at ``at_us``."""
        if pkeys:
            mapping = dict.fromkeys(pkeys, at_us)
            self._call("mark_keys", keys, lambda client: client.zadd(keys.keys, mapping, xx=True, gt=True))

    def count_keys(self, keys: StreamKeys, below_us: int) -> tuple[int, int]:
        """Reconcile: the tracked keys, and those not known present since ``below_us``."""

        def read(client: Any) -> tuple[int, int]:
            return int(client.zcard(keys.keys)), int(client.zcount(keys.keys, "-inf", f"({below_us}"))

        return self._call("count_keys", keys, read)

    def sweep(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        cutoff_us: int,
        lease: Lease,
        chunk: int = TRIM_CHUNK,
    ) -> int:
        """Reconcile: one tombstone per tracked key not known present since the cutoff, in chunks."""
        script_keys = [keys.stream, keys.seen, keys.digest, keys.keys]
        return self._chunked(
            "sweep", keys, script_keys, [variant, maxlen or 0, cutoff_us, chunk], chunk, lease
        )
