"""Keyset pagination of the author's SQL over (epoch, pkey): the chunked, resumable snapshot's SQL.

The author's SELECT is wrapped as a derived table and never edited:

    SELECT * FROM (<the author's SQL>) AS dbstream_snapshot
    WHERE <epoch and pkey not NULL> AND <(epoch, pkey) after the cursor>
    ORDER BY <epoch>, <pkey...> LIMIT <chunk>

The SQL is taken through ``sqltext.statement`` first, so a trailing ``;`` or comment cannot end the
derived table early. Rows with a NULL epoch or key cannot be paged (a NULL compares as neither before
nor after the cursor): ``unpaged_sql`` reads them apart, for the pipeline's row checks to name them.

The comparison is spelled out with AND/OR instead of a row value ``(a, b) > (x, y)``, which some
databases lack or cannot index; its leading ``epoch >= :e`` lets an index on the epoch column serve it.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from airflow_dbstream.core.sqltext import statement

CURSOR_PARAM = "dbstream_k{}"


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote a result column's name exactly as the query returned it (case and all)."""
    return quote + name.replace(quote, quote * 2) + quote


def derived(sql: str, alias: str, dialect: str = "generic", select: str = "*") -> str:
    """``SELECT <select> FROM (<the author's one statement>) AS alias``: how every wrapper wraps the SQL."""
    # The newline before ')' ends a '-- comment' inside the author's SQL.
    return f"SELECT {select} FROM (\n{statement(sql, dialect)}\n) AS {alias}"


def placeholder_style(sql: str) -> Callable[[str], str]:
    """Bind the wrapper's parameters in the style the author's SQL already uses for window_start."""
    if re.search(r"%\(window_start\)s", sql):
        return lambda name: f"%({name})s"
    return lambda name: f":{name}"


def after_cursor(quoted: Sequence[str], placeholder: Callable[[str], str]) -> str:
    """``(c0, c1, ...) > (k0, k1, ...)`` in the database's own order, without row values."""
    params = [placeholder(CURSOR_PARAM.format(i)) for i in range(len(quoted))]
    alternatives = []
    for i in range(len(quoted)):
        equal = [f"{quoted[j]} = {params[j]}" for j in range(i)]
        alternatives.append(" AND ".join([*equal, f"{quoted[i]} > {params[i]}"]))
    either = " OR ".join(f"({a})" for a in alternatives)
    return f"{quoted[0]} >= {params[0]} AND ({either})"


def chunk_sql(
    sql: str,
    order_columns: Sequence[str],
    *,
    after: bool,
    limit: int,
    quote: str = '"',
    dialect: str = "generic",
) -> str:
    """One chunk of the snapshot: the next ``limit`` rows after the cursor (or the first ones)."""
    quoted = [quote_identifier(c, quote) for c in order_columns]
    # Only the rows a cursor can page: those with a NULL are ``unpaged_sql``'s (a NULL key would
    # otherwise pass "epoch > cursor", and end a chunk as a cursor that skips rows).
    where = "\nWHERE " + " AND ".join(f"{c} IS NOT NULL" for c in quoted)
    if after:
        where += f" AND {after_cursor(quoted, placeholder_style(sql))}"
    return (
        f"{derived(sql, 'dbstream_snapshot', dialect)}{where}\n"
        f"ORDER BY {', '.join(quoted)}\nLIMIT {int(limit)}"
    )


def unpaged_sql(sql: str, order_columns: Sequence[str], *, quote: str = '"', dialect: str = "generic") -> str:
    """The rows no chunk reads: a NULL in the epoch or a key column (all of them bad rows)."""
    nulls = " OR ".join(f"{quote_identifier(c, quote)} IS NULL" for c in order_columns)
    return f"{derived(sql, 'dbstream_snapshot', dialect)}\nWHERE {nulls}"


def count_sql(sql: str, dialect: str = "generic") -> str:
    return derived(sql, "dbstream_count", dialect, select="COUNT(*)")


def cursor_params(values: Sequence[Any]) -> dict[str, Any]:
    return {CURSOR_PARAM.format(i): v for i, v in enumerate(values)}


# The cursor is stored in the stream's state and bound again on resume, so each value keeps its type:
# the database then compares it exactly as it sorted it.
_DUMPERS: list[tuple[type, str, Callable[[Any], Any]]] = [
    (bool, "bool", bool),
    (int, "int", int),
    (float, "float", repr),
    (Decimal, "decimal", str),
    (str, "str", str),
    (datetime, "datetime", datetime.isoformat),
    (date, "date", date.isoformat),
    (uuid.UUID, "uuid", str),
    (bytes, "bytes", lambda v: base64.b64encode(v).decode("ascii")),
]
_LOADERS: dict[str, Callable[[Any], Any]] = {
    "bool": bool,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "str": str,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def dump_cursor(values: Sequence[Any]) -> str:
    out = []
    for value in values:
        if isinstance(value, memoryview | bytearray):
            value = bytes(value)
        for kind, tag, dump in _DUMPERS:
            if isinstance(value, kind):
                out.append([tag, dump(value)])
                break
        else:
            raise TypeError(
                f"a {type(value).__name__} key or epoch value cannot be a snapshot cursor; cast the "
                "column in the SQL (to text or a number), or set snapshot_chunk_size=None"
            )
    return json.dumps(out, separators=(",", ":"))


def load_cursor(text: str) -> list[Any]:
    return [_LOADERS[tag](value) for tag, value in json.loads(text)]
