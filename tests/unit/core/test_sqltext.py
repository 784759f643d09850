"""The author's SQL as one statement: trailing blanks, semicolons and comments cut, literals kept."""

from __future__ import annotations

import pytest

from airflow_dbstream.core.sqltext import statement, without_comments

BODY = "SELECT id, name FROM t WHERE u >= :window_start"
DIALECTS = ["postgres", "mysql", "sqlite", "generic"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "tail",
    [
        "",
        ";",
        " ;  \n",
        ";;",
        " -- the last line",
        "\n-- a comment line\n",
        " /* a block */",
        ";\n-- a comment after the semicolon",
        "; -- both on one line",
        ";\n/* block\n over lines */\n",
        " -- one\n; /* two */ -- three\n\n",
    ],
)
def test_what_trails_the_last_token_is_cut(dialect, tail):
    assert statement(BODY + tail, dialect) == BODY


@pytest.mark.parametrize("dialect", DIALECTS)
def test_comments_inside_the_statement_stay(dialect):
    sql = "-- leading\nSELECT id /* the key */, name -- why\nFROM t WHERE u >= :window_start"
    assert statement(sql + ";\n-- end", dialect) == sql


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "literal",
    ["'a; -- not a comment'", "'it''s; /* text */'", '"odd;--name"'],
)
def test_semicolons_and_comment_marks_in_literals_are_text(dialect, literal):
    sql = f"SELECT {literal} FROM t WHERE u >= :window_start AND x = {literal}"
    assert statement(sql + "; -- c", dialect) == sql


def test_postgres_dollar_quotes_nested_comments_and_e_strings():
    dollar = "SELECT $tag$ ; -- $$ $tag$ AS a, $$;/*$$ AS b FROM t"
    assert statement(dollar + ";\n-- c", "postgres") == dollar
    assert statement("SELECT 1 /* outer /* inner */ still */", "postgres") == "SELECT 1"
    escaped = r"SELECT E'a\'; --' AS a"
    assert statement(escaped + "; -- c", "postgres") == escaped
    assert statement("SELECT a # b FROM t", "postgres") == "SELECT a # b FROM t"  # '#' is an operator


def test_mysql_hash_comments_backslash_escapes_and_executable_comments():
    assert statement("SELECT 1 # a comment", "mysql") == "SELECT 1"
    escaped = r"SELECT 'a\'; -- ' AS a"
    assert statement(escaped + ";\n# c", "mysql") == escaped
    assert statement("SELECT 1 /*!50000 AS one */", "mysql") == "SELECT 1 /*!50000 AS one */"
    assert statement("SELECT 2--1", "mysql") == "SELECT 2--1"  # '--' needs a blank after it on MySQL
    assert statement("SELECT `a;--b` FROM t;", "mysql") == "SELECT `a;--b` FROM t"


def test_sqlite_bracket_identifiers():
    assert statement("SELECT [a;--b] FROM t; -- c", "sqlite") == "SELECT [a;--b] FROM t"


def test_a_second_statement_is_left_for_the_database_to_refuse():
    assert statement("SELECT 1; SELECT 2; -- c", "postgres") == "SELECT 1; SELECT 2"


def test_unterminated_literals_and_comments_are_left_as_they_are():
    assert statement("SELECT 'open -- ;", "postgres") == "SELECT 'open -- ;"
    assert statement("SELECT 1 /* open", "postgres") == "SELECT 1 /* open"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_without_comments_blanks_each_comment_and_keeps_the_rest(dialect):
    sql = "SELECT id -- >= :window_start\nFROM t /* :window_start */ WHERE note = '-- kept'"
    assert without_comments(sql, dialect) == "SELECT id \nFROM t   WHERE note = '-- kept'"
