"""The author's SQL as one statement: what trails its last token (blanks, ``;``, comments) cut off.

A query that runs alone may end in ``;`` and comments; wrapped in ``FROM (...)`` (the first load's
chunks and count) the same text is a syntax error. Every wrapper takes the SQL through ``statement``.
Comments and ``;`` inside string literals, quoted identifiers and dollar quotes are text, not cut.

Dialects (``Source.kind``): ``postgres`` (dollar quotes, nested ``/* */``, ``E'...'`` escapes),
``mysql`` (``#`` comments, ``--`` only before a blank, backslash escapes, ``/*! ... */`` is code),
``sqlite`` and ``generic`` (standard quotes plus ``[...]`` and backtick identifiers).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")


def statement(sql: str, dialect: str = "generic") -> str:
    """The SQL up to the end of its last token: no trailing blanks, semicolons or comments.

    A second statement after a ``;`` is left in place, so the database reports it as it would."""
    end = 0  # the end of the last token that is neither a blank, a ';' nor a comment
    for _start, stop, kind in _spans(sql, dialect):
        if kind == CODE:
            end = stop
    return sql[:end].strip()


def without_comments(sql: str, dialect: str = "generic") -> str:
    """The SQL with each comment blanked: what the database reads of it (e.g. which parameters)."""
    pieces = (sql[start:stop] for start, stop, _kind in _spans(sql, dialect))
    kinds = (kind for _start, _stop, kind in _spans(sql, dialect))
    return "".join(
        ("\n" if "\n" in piece else " ") if kind == COMMENT else piece
        for piece, kind in zip(pieces, kinds, strict=True)
    )


CODE, COMMENT, BLANK = "code", "comment", "blank"


def _spans(sql: str, dialect: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of each piece of the SQL in order: a code token, a comment, a blank or ';'."""
    i, n = 0, len(sql)
    while i < n:
        skipped = _skip_comment(sql, i, dialect)
        if skipped is not None:
            yield i, skipped, COMMENT
            i = skipped
        elif sql[i].isspace() or sql[i] == ";":
            yield i, i + 1, BLANK
            i += 1
        else:
            end = _token_end(sql, i, dialect)
            yield i, end, CODE
            i = end


def _skip_comment(sql: str, i: int, dialect: str) -> int | None:
    """Where the comment starting at ``i`` ends (None: no comment starts there)."""
    if sql.startswith("--", i) and (dialect != "mysql" or i + 2 == len(sql) or sql[i + 2].isspace()):
        return _line_end(sql, i)
    if dialect == "mysql" and sql.startswith("#", i):
        return _line_end(sql, i)
    if sql.startswith("/*", i) and not (dialect == "mysql" and sql.startswith("/*!", i)):
        depth, j = 1, i + 2
        while depth:
            close = sql.find("*/", j)
            if close < 0:
                return None  # unterminated: code, for the database to report
            inner = sql.find("/*", j, close) if dialect == "postgres" else -1  # Postgres nests them
            if inner >= 0:
                depth, j = depth + 1, inner + 2
            else:
                depth, j = depth - 1, close + 2
        return j
    return None


def _line_end(sql: str, i: int) -> int:
    newline = sql.find("\n", i)
    return len(sql) if newline < 0 else newline + 1


def _token_end(sql: str, i: int, dialect: str) -> int:
    """The end of the code token at ``i``: a whole quoted literal or identifier, else one character."""
    char = sql[i]
    if dialect == "postgres" and char == "$" and not (i and _IDENTIFIER_CHAR.match(sql[i - 1])):
        tag = _DOLLAR_TAG.match(sql, i)
        if tag is not None:
            close = sql.find(tag.group(), tag.end())
            return len(sql) if close < 0 else close + len(tag.group())
    if dialect == "mysql" and sql.startswith("/*!", i):
        close = sql.find("*/", i + 3)
        return len(sql) if close < 0 else close + 2
    closing = {"'": "'", '"': '"'}
    if dialect != "postgres":
        closing["`"] = "`"
    if dialect in ("sqlite", "generic"):
        closing["["] = "]"
    if char not in closing:
        return i + 1
    backslash = dialect == "mysql" and char != "`"
    if dialect == "postgres" and char == "'" and i and sql[i - 1] in "eE":
        backslash = not (i > 1 and _IDENTIFIER_CHAR.match(sql[i - 2]))  # E'...', not name'...'
    end, j = closing[char], i + 1
    while j < len(sql):
        if backslash and sql[j] == "\\":
            j += 2
        elif sql[j] == end:
            if sql.startswith(end * 2, j) and end != "]":
                j += 2  # a doubled quote stands for itself
            else:
                return j + 1
        else:
            j += 1
    return len(sql)  # unterminated: the rest is the literal, for the database to report
