"""The least Redis ACL a production user needs for one stream, or a family of streams."""

from __future__ import annotations

# Called by the hook: scripts by SHA, (re)loaded on NOSCRIPT (the precheck of a mostly unchanged window is
# precheck.lua: HMGET digest); the state read at cycle start.
CLIENT_COMMANDS = ("evalsha", "script|load", "hgetall")
# Called inside the Lua scripts (ACL applies to them too): lease, fence, lib, emit, precheck, delete,
# commit, trim, sweep. The snapshot's progress (HSET/HDEL on <tag>:state) needs no more.
SCRIPT_COMMANDS = (
    "set", "get", "pttl", "pexpire", "del",
    "xadd", "hmget", "zadd", "hget", "hset",
    "zrange", "zrem", "hdel",
)  # fmt: skip
# Called after each cycle to keep the stream's status in <tag>:state (airflow_dbstream.hooks.status).
STATUS_COMMANDS = ("time", "zcard", "xlen", "xinfo|groups", "hset")
# Called once by a run under Airflow that appended something: the last entry id for its Asset event.
ASSET_COMMANDS = ("xinfo|stream",)
# Called by a run that resets or replays the stream (Trigger form), under the stream's lock (lease.lua:
# SET GET PTTL PEXPIRE DEL): a reset reads the state (HGETALL) and ZCARD seen, then runs reset.lua (DEL,
# HSET); a replay runs replay.lua (XADD) per batch, then records HSET last_replay. Both scripts run by
# EVALSHA, fenced (GET).
RESET_REPLAY_COMMANDS = (
    "evalsha", "script|load", "set", "get", "pttl", "pexpire", "del",
    "hgetall", "zcard", "hset", "xadd",
)  # fmt: skip
# Called by delete.lua when a query marks rows deleted (soft deletes): its per-row dedup (HGET); and by
# deadletter.lua (on_bad_row="dead_letter"), whose other commands (XADD, ZADD) a cycle has already.
DELETE_COMMANDS = ("zscore", "hget")
# Called once by the first cycle of a stream an earlier build wrote: upgrade.lua reads <tag>:digest in
# chunks (HSCAN) and each bare digest's epoch (ZSCORE seen), then HSET or HDEL.
UPGRADE_COMMANDS = ("hscan", "zscore")
# Called by ReconcileDeletesOperator (hard deletes): it counts and marks <tag>:keys, then runs sweep.lua.
RECONCILE_COMMANDS = ("zcount", "zadd", "evalsha")
# What redis-py's RedisCluster asks to learn the topology and the commands' keys.
CLUSTER_COMMANDS = ("cluster|slots", "command")

# Called by a consumer in Airflow: RedisStreamTrigger (XGROUP CREATE, XREADGROUP, XAUTOCLAIM, XACK of
# entries trimmed while pending), RedisStreamAckOperator (XACK), messages_of for ids-only events (XRANGE).
CONSUMER_COMMANDS = ("xgroup|create", "xreadgroup", "xautoclaim", "xack", "xrange")

CYCLE_COMMANDS = tuple(dict.fromkeys(CLIENT_COMMANDS + SCRIPT_COMMANDS + STATUS_COMMANDS))
REQUIRED_COMMANDS = tuple(
    dict.fromkeys(
        CYCLE_COMMANDS
        + ASSET_COMMANDS
        + DELETE_COMMANDS
        + UPGRADE_COMMANDS
        + RESET_REPLAY_COMMANDS
        + RECONCILE_COMMANDS
    )
)


def key_patterns(stream_pattern: str) -> list[str]:
    """Key patterns of a stream and its companions: ``orders`` -> ``orders`` and ``{orders}:*``."""
    if "{" in stream_pattern:
        return [stream_pattern, stream_pattern + ":*"]
    return [stream_pattern, "{" + stream_pattern + "}:*"]


def acl_rules(stream_pattern: str, *, cluster: bool = False) -> list[str]:
    """ACL SETUSER rules (after ``on >password``) granting exactly what cycles need."""
    commands = REQUIRED_COMMANDS + (CLUSTER_COMMANDS if cluster else ())
    return [
        "resetkeys",
        *(f"~{p}" for p in key_patterns(stream_pattern)),
        "resetchannels",
        "-@all",
        *(f"+{c}" for c in commands),
    ]


def consumer_acl_rules(stream_pattern: str, *, cluster: bool = False) -> list[str]:
    """ACL SETUSER rules for a reader in Airflow: the stream's key only, read and ack, no write."""
    commands = CONSUMER_COMMANDS + (CLUSTER_COMMANDS if cluster else ())
    return ["resetkeys", f"~{stream_pattern}", "resetchannels", "-@all", *(f"+{c}" for c in commands)]
