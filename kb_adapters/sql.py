"""SQL adapter: any SQLAlchemy URL, a table or a SELECT, a column mapping, aliases from a delimited column or a
child table. Rows stream through server-side cursors; every identifier is validated and quoted, every value bound.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from glinker.errors import ConfigError, DataError, DependencyError, KBError, SourceUnavailable
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import _db_id, parse_alias_counts, plain_value, record_to_entity, split_list

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_COLUMN = re.compile(r"^(?=.{1,64}$)[A-Za-z_][A-Za-z0-9_]*(?:[ -][A-Za-z0-9_]+)*$")
"""A column name: an identifier, or words joined by single spaces or hyphens ("Company Name"): SQLAlchemy quotes
it; no quote character, semicolon or other punctuation can reach the statement."""
_MAPPABLE = ("id", "label", "description", "aliases", "alias_counts", "types", "popularity")



def parse_url(url: str) -> Any:
    """The SQLAlchemy URL of ``url``; one SQLAlchemy reads wrongly or not at all (an unencoded '@' or ':' in the
    password) is a KBError that says how to write it. Connects to nothing: `glinker pipeline validate` checks a
    pipeline's SQL source with it."""
    from glinker.io import redact

    encode = ("percent-encode the user's password: '@' as %40, ':' as %3A, '/' as %2F "
              "(urllib.parse.quote_plus(password))")
    # the credentials end at the last '@'; the password is what follows their first ':' (a user name may hold '@',
    # as Azure's user@server, a password may not: SQLAlchemy would read the rest of it as the host)
    rest = url.partition("://")[2]
    creds = rest[: rest.rfind("@")] if "@" in rest and not rest.startswith("/") else ""
    if ":" in creds and "@" in creds.partition(":")[2]:
        raise KBError(f"cannot read the database URL {redact(url)}: its password (masked here) holds an unencoded "
                      "'@'", where="sql.source", fix=encode)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url)
    except ValueError as e:  # e.g. a ':' in the password read as the port
        raise KBError(f"cannot read the database URL {redact(url)}: {e}", where="sql.source", fix=encode) from None
    except Exception as e:  # noqa: BLE001 - ArgumentError: not a URL at all
        raise KBError(f"cannot use database URL {redact(url)}: {e}", where="sql.source",
                      fix="use a SQLAlchemy URL such as postgresql+psycopg2://user@host/db, "
                          "mysql+pymysql://root@127.0.0.1/db or sqlite:///file.db") from None

class SQLOptions(AdapterOptions):
    table: str | None = None
    """Table (or ``schema.table``) to read; give this or ``query``."""
    query: str | None = None
    """A single SELECT (or WITH ... SELECT) statement; its columns are mapped like a table's."""
    columns: dict[str, str] = {}
    """Entity field -> column: id, label, description, aliases, alias_counts (``NAME=COUNT|...`` cells), types,
    popularity. Defaults to same-named columns."""
    extra_columns: list[str] = []
    """Columns kept under ``Entity.extra``."""
    list_sep: str = "|"
    """Separator of the aliases / types columns."""
    alias_table: str | None = None
    """Child table with one alias per row (``alias_key`` -> the entity id, ``alias_column`` -> the name)."""
    alias_key: str = "entity_id"
    alias_column: str = "alias"
    alias_count_column: str | None = None
    """Column of ``alias_table`` with how often the alias refers to the entity: gives ``alias_counts``, the
    p(entity | mention) prior. Rows with a NULL count are plain aliases."""
    batch_size: int = Field(2000, ge=1)
    """Rows fetched from the server at a time (at least 1)."""
    order_by_id: bool = True
    """Stream in id order (a stable order makes an interrupted build resumable)."""
    on_error: Literal["raise", "skip"] = "raise"
    read_only: bool = True
    """Run every read in a read-only transaction (PostgreSQL, MySQL/MariaDB; SQLite: ``PRAGMA query_only``). Turn it
    off for a ``query`` that calls a function creating temporary tables (PostgreSQL refuses any CREATE in a
    read-only transaction); a database user with read rights only is what really keeps the source unchanged."""


def check_identifier(name: str, where: str, dotted: bool = False, column: bool = False) -> list[str]:
    """Split and validate a (possibly ``schema.``-qualified) SQL identifier; anything else is a ConfigError.

    A ``column`` may also hold single spaces and hyphens between its words ("Company Name"); SQLAlchemy quotes it."""
    parts = name.split(".") if dotted else [name]
    ok = _COLUMN if column else _IDENT
    if not parts or len(parts) > 2 or not all(ok.match(p) for p in parts):
        allowed = ("letters, digits and underscores, words joined by single spaces or hyphens" if column else
                   "letters, digits and underscores only (optionally schema.table)")
        raise ConfigError(f"invalid SQL identifier {name!r}", where=where,
                          fix=f"use {allowed}; quoting is done by glinker. For any other name, read the rows with a "
                              "query that quotes it as your database does and gives it a plain name, e.g. "
                              "-o query='SELECT id, \"Nom (FR)\" AS name FROM \"Sociétés\"' (MySQL/MariaDB quote "
                              "with `backticks`) and columns={\"label\": \"name\"}")
    return parts


_SQL_NOISE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
"""String literals, quoted identifiers and comments: what a check of a query's statements must not read into."""


def _unlike_reading(q: str) -> str | None:
    """Where databases would not split ``q`` into statements alike: ``"a ';'"`` for a ';' outside strings, quoted
    names and comments; for a query that holds a ';' (in a string or comment, then), the first construct PostgreSQL,
    MySQL/MariaDB, SQLite or SQL Server read differently (e.g. ``"a backslash in a string"``); else None.

    Without such constructs they all read ``'...'`` and ``"..."`` (a doubled quote inside), ``-- `` line comments
    and non-nested ``/* */`` comments the same way, so a ';' this scan finds quoted is quoted for each of them. The
    constructs: a backslash in a string (PostgreSQL's ``E'\\''`` and MySQL's escapes end the string elsewhere),
    ``$`` (PostgreSQL's ``$$...$$``), ``#`` (a MySQL comment), backticks and ``[`` (MySQL, SQLite and SQL Server
    names), ``--`` without a space after it (no comment in MySQL), a line comment ended by a lone carriage return
    (only PostgreSQL ends it there), a comment inside a comment (nested in PostgreSQL and SQL Server only), MySQL's
    executed ``/*! */`` comments, Oracle's ``q'[...]'`` strings and a NUL character."""
    n = len(q)
    odd: str | None = "a NUL character" if "\0" in q else None  # the first construct read differently
    dash: str | None = None
    i = 0
    while i < n:
        c, two = q[i], q[i:i + 2]
        if c == ";":
            return f"a ';' after {dash!r}, which is no comment in MySQL/MariaDB" if dash else "a ';'"
        if two == "--":
            if i + 2 < n and ord(q[i + 2]) > 32:  # MySQL: two minus signs
                dash = dash or re.match(r"--[^\s;]{0,30}", q[i:]).group()  # type: ignore[union-attr]
                odd = odd or "'--' without a space after it"
                i += 2
                continue
            end = q.find("\n", i)
            end = n if end < 0 else end
            if re.search(r"\r(?!\n)", q[i:end]):
                odd = odd or "a line comment ended by a lone carriage return"
            i = end
        elif two == "/*":
            end = q.find("*/", i + 2)
            end = n if end < 0 else end + 2
            if q.startswith(("/*!", "/*M!", "/*+", "/*/"), i):
                odd = odd or "a MySQL '/*!' comment (run as SQL there)"
            elif "/*" in q[i + 2:end]:
                odd = odd or "a comment inside a comment"
            i = end
        elif c in "'\"":
            if c == "'" and q[i - 1:i] in ("q", "Q") and not (i >= 2 and (q[i - 2].isalnum() or q[i - 2] == "_")
                                                               and q[i - 2] not in "nN"):
                odd = odd or "an Oracle q'...' string"
            j = i + 1
            while j < n:
                if q[j] == c:
                    if q[j + 1:j + 2] != c:
                        break
                    j += 1  # a doubled quote: the string goes on
                elif q[j] == "\\":
                    odd = odd or "a backslash in a string"
                j += 1
            i = j + 1
        else:
            if c in "$#`[":
                odd = odd or {"$": "'$' (PostgreSQL's $$ strings)", "#": "'#' (a MySQL comment)",
                              "`": "a backtick", "[": "'['"}[c]
            i += 1
    return odd if odd is not None and ";" in q else None


_DIALECTS = ("postgresql", "mysql", "sqlite", "mssql")
"""The databases whose lexical rules :func:`_dialect_reading` knows (MariaDB reads as MySQL)."""


def _dialect_of(backend: str | None) -> str | None:
    """The lexical rules for a SQLAlchemy backend name, or None (unknown: every rule at once)."""
    backend = "mysql" if backend == "mariadb" else backend
    return backend if backend in _DIALECTS else None


def _dialect_reading(q: str, d: str) -> str | None:
    """How database ``d`` (one of :data:`_DIALECTS`) reads ``q``: ``"a ';'..."`` for a ';' it reads outside strings,
    quoted names and comments; for a query that holds a ';', a construct even ``d`` may read in two ways (a
    backslash before a quote: PostgreSQL's ``standard_conforming_strings``, MySQL's ``NO_BACKSLASH_ESCAPES``; MySQL's
    executed ``/*! */`` comments; a NUL character); else None.

    PostgreSQL: ``E'...'`` escapes, ``$tag$...$tag$`` strings, nested comments, a line comment ends at CR or LF, '['
    and '#' are operators. MySQL/MariaDB: backslash escapes, ``#`` comments, ``--`` is a comment only with a space
    after it, backtick names. SQLite: backtick and ``[...]`` names. SQL Server: ``[...]`` names (``]]`` inside),
    nested comments."""
    n = len(q)
    odd: str | None = "a NUL character" if "\0" in q else None
    dash: str | None = None  # MySQL: the last '--' that starts no comment

    def after_ident(k: int) -> bool:  # (PostgreSQL names go on through '$' and every non-ASCII character: "x€$$")
        return k > 0 and (q[k - 1].isalnum() or q[k - 1] in "_$" or q[k - 1] >= "\x80")

    i = 0
    while i < n:
        c, two = q[i], q[i:i + 2]
        if c == ";":
            if dash:
                return (f"a ';' after {dash!r}, which is no comment in MySQL/MariaDB ('--' starts a comment "
                        "there only with a space after it)")
            return "a ';'"
        if two == "--":
            if d == "mysql" and i + 2 < n and ord(q[i + 2]) > 32:
                dash = re.match(r"--[^\s;]{0,30}", q[i:]).group()  # type: ignore[union-attr]
                i += 2
                continue
            ends = "\n\r" if d == "postgresql" else "\n"
            end = min([k for k in (q.find(e, i) for e in ends) if k >= 0] or [n])
            if d in ("mysql", "mssql") and "\r" in q[i:end]:
                odd = odd or "a line comment with a lone carriage return in it"
            i = end
        elif c == "#" and d == "mysql":
            end = q.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            if d == "mysql" and q.startswith(("/*!", "/*M!"), i):
                odd = odd or "a MySQL '/*!' comment (run as SQL there)"
            depth, j = 1, i + 2
            while j < n and depth:
                if q.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                elif q.startswith("/*", j) and d in ("postgresql", "mssql"):
                    depth, j = depth + 1, j + 2
                else:
                    j += 1
            i = j
        elif d == "postgresql" and c == "$" and not after_ident(i) \
                and (m := re.match(r"\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$", q[i:])):
            end = q.find(m.group(), i + len(m.group()))
            i = n if end < 0 else end + len(m.group())
        elif c in "'\"" or (c == "`" and d in ("mysql", "sqlite")) or (c == "[" and d in ("mssql", "sqlite")):
            close = "]" if c == "[" else c
            doubled = not (c == "[" and d == "sqlite")
            escapes = (d == "mysql" and c != "`") or (d == "postgresql" and c == "'" and q[i - 1:i] in ("e", "E")
                                                      and not after_ident(i - 1))
            j = i + 1
            while j < n:
                if q[j] == close:
                    if doubled and q[j + 1:j + 2] == close:
                        j += 2
                        continue
                    break
                if q[j] == "\\" and c != "[" and c != "`":
                    if q[j + 1:j + 2] == c and (d == "mysql" or (d == "postgresql" and c == "'" and not escapes)):
                        odd = odd or ("a backslash before a quote in a string (read otherwise with MySQL's "
                                      "NO_BACKSLASH_ESCAPES)" if d == "mysql" else
                                      "a backslash before a quote in a string (read otherwise with "
                                      "standard_conforming_strings off)")
                    if escapes:
                        j += 1
                j += 1
            i = j + 1
        else:
            i += 1
    return odd if odd is not None and ";" in q else None


# statements that end a transaction or change the session's mode (PostgreSQL's END is COMMIT; CASE ... END, with a
# ';' literal in the same query, is refused too: the error says how to write the ';')
_TX_WORD = re.compile(r"(?i)\b(commit|rollback|end|abort|begin|start|savepoint|release|set|reset)\b")


def _check_query(q: str, dialect: str | None = None) -> str:
    """The query as it is run (its final ';' dropped), or a ConfigError unless it is one SELECT (or WITH ... SELECT).

    ``dialect``: the database the URL names (one of :data:`_DIALECTS`): the query is read with its rules alone
    (:func:`_dialect_reading`), so a ``';'`` literal next to MySQL backticks or SQL Server's ``[Id]`` is fine there;
    ``"any"`` (the URL is not known yet, ``glinker pipeline validate``): refused only when no database reads it as
    one statement; None (another database): a ';' inside a string or comment is fine unless the query also holds a
    construct that databases read differently (:func:`_unlike_reading`): there a ';' this check takes for quoted may
    end the statement for the server (PostgreSQL's ``SELECT E'\\'' ...; DROP TABLE t; COMMIT; ...``), which then
    runs the next statements in the same call. The reads also run in read-only transactions
    (:func:`_read_only_transactions`), for what one SELECT can write (a function, a sequence)."""
    body = re.sub(r"[\s;]+$", "", q.strip())
    bare = _SQL_NOISE.sub(lambda m: " " if m.group().startswith(("--", "/*")) else "''", body).strip()
    if dialect == "any":  # the database is not known yet: refuse only what no database reads as one statement
        readings = [_dialect_reading(body, d) for d in _DIALECTS]
        problem = None if None in readings else min(readings, key=lambda r: not (r or "").startswith("a ';'"))
    elif dialect in _DIALECTS:
        problem = _dialect_reading(body, dialect)
    else:
        problem = _unlike_reading(body)
    if not re.match(r"(?is)^(select|with)\b", bare) or (problem or "").startswith("a ';'"):
        said = "" if problem in (None, "a ';'") else f": it holds {problem}"
        raise ConfigError(f"query must be one SELECT (or WITH ... SELECT) statement{said}", where="sql.query",
                          fix="give a single SELECT without ';' inside, or use table=...")
    if problem is None and ";" in body and (m := _TX_WORD.search(body)) is not None:
        # read-only is per transaction: a statement that ends it (COMMIT...) would let what follows write, so a query
        # holding a ';' may not name one anywhere, whatever reading of its quotes let the ';' past
        problem = f"the word {m.group().upper()!r} (transaction control)"
    if problem is not None:
        raise ConfigError(f"query must be one SELECT (or WITH ... SELECT) statement: it holds a ';' in a string or "
                          f"comment, and {problem}, which databases do not all read alike (the ';' may end the "
                          "statement there)", where="sql.query",
                          fix="write the ';' of a value as CHR(59) (PostgreSQL), CHAR(59) (MySQL/MariaDB, SQL Server) "
                              "or char(59) (SQLite), drop the ';' from the comment, or write the query without that "
                              "construct")
    # a last line comment (--, or MySQL's #) must not swallow what wraps the query
    return body + "\n" if "--" in body or "#" in body else body


def _loose(key: str) -> str:
    """A key as a case- and accent-insensitive collation may compare it (MariaDB's default utf8mb4_general_ci): only
    to group the rows an ``ORDER BY`` id may give as neighbours, never to decide which entity a child row is of."""
    from glinker.kb.store import fold_accents

    return fold_accents(key.strip().casefold())


def _id_up_to_case(key: str) -> str:
    """A child-table key as :meth:`SQLAdapter._entities` matches it to an id when the database returned it for an id it
    does not equal exactly: letter case (simple lower-casing: never ß -> ss) and trailing spaces aside, nothing else
    (no accent or other collation equivalence)."""
    return key.rstrip(" ").lower()


def _literal_colons(query: str) -> str:
    """The query for SQLAlchemy's text(), which reads ``:name`` as a bind parameter: every lone colon escaped
    (``LIKE ':internal%'`` is text here, there are no parameters); ``::`` casts are left as they are."""
    return re.sub(r"(?<![:\\]):(?!:)", lambda _: "\\:", query)


_READ_ONLY = {"postgresql": "SET TRANSACTION READ ONLY", "mysql": "SET TRANSACTION READ ONLY",
              "mariadb": "SET TRANSACTION READ ONLY"}
"""The statement that makes the transaction about to run (PostgreSQL: the one just begun; MySQL/MariaDB: the next
one) read-only, per database (SQLAlchemy backend name). Only that transaction: nothing stays on the server
connection, which a pooler such as pgbouncer may hand to other clients."""


def _set_read_only(dbapi_connection: Any, statement: str, shown_url: str) -> bool:
    """Run ``statement`` on the driver's connection; a database that refuses it is warned about (the reads go on
    with the user's own rights) and False is returned."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return True
    except Exception as e:  # noqa: BLE001 - the driver's own error class; the reads go on
        if connection_problem(e)[0]:  # the connection dropped: no answer about the setting; the read says the error
            raise
        log.warning("%s: could not make the connection read-only (%s: %s); the source is read with the user's "
                    "own rights: give it read rights only", shown_url, statement, " ".join(str(e).split())[:200])
        try:
            dbapi_connection.rollback()
        except Exception as again:  # noqa: BLE001 - the connection is checked when it is used
            log.debug("%s: rollback after the refused setting failed: %s", shown_url, again)
        return False
    finally:
        cursor.close()


def _read_only_transactions(engine: Any, backend: str, shown_url: str) -> None:
    """Make every read of ``engine`` read-only, so it can write nothing: a ``query`` holding a data-modifying
    ``WITH`` (PostgreSQL), a function that writes or a sequence's ``nextval`` fails with the database's "read-only
    transaction" error. PostgreSQL, MySQL/MariaDB: ``SET TRANSACTION READ ONLY`` as each transaction begins (per
    transaction, never a session setting: a pooler in transaction mode would hand it to other clients); SQLite:
    ``PRAGMA query_only`` on each connection (the adapter's own, never shared). Other databases (SQL Server, Oracle)
    have no such setting: there, as everywhere, a user with read rights only is what guarantees it (docs/kb.md).
    A database that refuses the setting is warned about once and read anyway."""
    from sqlalchemy import event

    if backend == "sqlite":
        event.listen(engine, "connect", lambda dbapi_connection, record: _set_read_only(
            dbapi_connection, "PRAGMA query_only = ON", shown_url))
        return
    statement = _READ_ONLY.get(backend)
    if statement is None:
        log.debug("%s: no read-only transactions for %s; the user's rights alone keep the source unchanged",
                  shown_url, backend)
        return
    refused = False

    def on_begin(conn: Any) -> None:
        nonlocal refused
        if not refused:
            refused = not _set_read_only(conn.connection.dbapi_connection, statement, shown_url)

    event.listen(engine, "begin", on_begin)


_SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys", "pg_catalog", "pg_toast"})
"""Schemas of the database's own tables: never suggested for a table not found."""

_LOOSE_DIALECTS = ("mysql", "mariadb", "sqlite", "mssql")
"""Databases whose column names ignore case: a name that differs from one column only in case is that column."""


def _find_column(col: str, available: list[str], loose: bool) -> tuple[str | None, str | None]:
    """(the column of ``available`` that ``col`` names, None) or, when none, (None, the closest column: one that
    differs only in case first) (``loose``: the database ignores the case of column names)."""
    if col in available:
        return col, None
    same = [c for c in available if c.lower() == col.lower()]
    if loose and len(same) == 1:
        return same[0], None
    import difflib

    return None, same[0] if same else next(iter(difflib.get_close_matches(col, available, n=1)), None)


def _grant_fix(msg: str, name: str) -> str:
    """The fix for a server's refusal to read ``name``: the schema's USAGE when the message names a schema
    (PostgreSQL), else SELECT on the table."""
    schema = re.search(r'permission denied for schema "?([\w$]+)', msg)
    if schema:
        return f"grant the database user the use of the schema (GRANT USAGE ON SCHEMA {schema.group(1)} TO <user>), " \
               "or use another user"
    return f"grant the database user read rights (GRANT SELECT ON {name} TO <user>), or use another user"


CONNECT_TIMEOUT = 10
"""Seconds to wait for a database server's answer when connecting (``?connect_timeout=N`` in the URL overrides)."""

_MYSQL_UNREACHABLE = {1040, 1053, 2002, 2003, 2005, 2006, 2013, 2055}
"""MySQL/MariaDB error codes of a server that cannot be reached right now: too many connections, shutting down,
cannot connect (socket, TCP), unknown host, server gone away, lost connection."""
_MYSQL_LOGIN = {1044: "database", 1045: "login", 1049: "database", 1142: "permission", 1227: "permission",
                1698: "login", 1251: "login", 1862: "login"}
_PG_REFUSED = (("invalid connection option", "options"), ("invalid sslmode value", "options"),
               ("for connection option", "options"), ("invalid dsn", "options"),
               ("password authentication failed", "login"), ("authentication failed", "login"),
               ("no password supplied", "login"), ("fe_sendauth", "login"), ("no pg_hba.conf entry", "login"),
               ("is not permitted to log in", "login"), ("permission denied", "permission"),
               ('role "', "login"), ('database "', "database"), ("does not exist", "database"))
"""PostgreSQL's answers (by their message: psycopg gives no code at connect time) to a login it refuses, and libpq's
own refusals of a URL's options (``?sslmode=bogus``), said before any server is asked."""
_PG_BUSY = ("the database system is starting up", "the database system is shutting down",
            "the database system is in recovery mode", "too many clients", "remaining connection slots are reserved",
            "terminating connection due to administrator command")
"""Answers of a server that is there but cannot serve right now."""
_PG_UNREACHABLE = ("could not connect to server", "connection refused", "timeout expired", "timed out",
                   "could not translate host name", "name or service not known", "temporary failure in name resolution",
                   "nodename nor servname", "server closed the connection", "no route to host", "network is unreachable",
                   "connection reset", "eof detected", "connection not open", "connection already closed",
                   "lost synchronization with server", "could not receive data from server",
                   "could not send data to server", "server unexpectedly closed", "no such file or directory")


def connection_problem(exc: BaseException) -> tuple[bool, str]:
    """How a database error at connect time (or a connection lost while reading) reads: (whether the server just
    cannot be reached right now, and otherwise the kind of refusal: login, database, permission or other).

    Only an unreachable server (refused or timed-out connection, unknown host, a server gone, starting up or shutting
    down) may be served from a cached copy; a refused login, an unknown database or a permission error is the URL's
    or the account's fault, and waiting does not mend it."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None  # PyMySQL / mysqlclient: (code, message)
    if code is not None:
        if code in _MYSQL_UNREACHABLE:
            return True, ""
        return False, _MYSQL_LOGIN.get(code, "other")
    msg = str(orig).lower()
    if any(b in msg for b in _PG_BUSY):
        return True, ""
    for needle, kind in _PG_REFUSED:
        if needle in msg:
            return False, kind
    if any(u in msg for u in _PG_UNREACHABLE) or getattr(exc, "connection_invalidated", False):
        return True, ""
    return False, "other"


_REFUSED_FIX = {
    "login": "check the user name and password in the URL (percent-encode special characters of the password: "
             "urllib.parse.quote_plus(password)); a refused login is not a server that is down, so no cached KB is "
             "used in its place",
    "database": "check the database name at the end of the URL (.../dbname) and that the user may use it; the "
                "server answered, so no cached KB is used in its place",
    "permission": "grant the user the right to connect and to read the table (GRANT SELECT ...), or use another "
                  "user; the server answered, so no cached KB is used in its place",
    "options": "fix the option in the URL's query (?sslmode=require, ?connect_timeout=10: the driver's names and "
               "values); the driver refused it before asking the server, so no cached KB is used in its place",
    "other": "check the URL (host, port, user, database) and the server's log; the server answered, so no cached KB "
             "is used in its place",
}


def absolute_sqlite_url(url: str) -> str:
    """A SQLite URL naming its file by a relative path (``sqlite:///companies.db``, relative to the working folder)
    rewritten with the file's absolute path; any other URL as it is. Two folders' ``companies.db`` are two sources."""
    if not url.lower().startswith("sqlite"):
        return url
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot read is reported when it is used
        return url
    db = u.database
    if u.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:") \
            or Path(db).is_absolute():
        return url
    return u.set(database=str(Path(db).resolve())).render_as_string(hide_password=False)


class SQLAdapter:
    """Streams entities from a table or SELECT of any SQLAlchemy database (SQLite, PostgreSQL, MariaDB/MySQL, ...)."""

    name: ClassVar[str] = "sql"
    options_model: ClassVar[type[AdapterOptions]] = SQLOptions
    resumable: ClassVar[bool] = False
    """A table can change between an interrupted build and its re-run: builds start over (``kb add --prune``
    updates a built KB from its table, re-embedding only changed rows)."""

    def __init__(self, source: str, **options: Any) -> None:
        self._checked_greeting = False
        self._greeting_failed: tuple[float, SourceUnavailable] | None = None  # (when, what): said once, not per read
        self.url = self.canonical_source(source)
        self.options: SQLOptions = self.check_options(options, source=self.url)
        self.report = AdapterReport()
        self._unattached = self._unattached_named = self._unattached_unsaid = 0
        self._engine: Any = None

    @classmethod
    def canonical_source(cls, source: str) -> str:
        """The source as the adapter reads it: a relative SQLite file path made absolute (a cache of this source
        is keyed by it, so two folders' ``sqlite:///companies.db`` are two sources)."""
        return absolute_sqlite_url(source)

    @classmethod
    def check_options(cls, options: dict[str, Any], source: str | None = None) -> SQLOptions:
        """Validate the options without connecting (what ``glinker pipeline validate`` checks): names, one of
        table/query, mappable fields and identifiers. A ConfigError names the option. The ``query`` is read with the
        lexical rules of the database ``source`` names (without a source: refused only when no database reads it as
        one statement)."""
        from glinker.errors import closest

        o: SQLOptions = parse_options(cls.name, SQLOptions, dict(options))  # type: ignore[assignment]
        if (o.table is None) == (o.query is None):
            raise ConfigError("give exactly one of table= or query=", where="sql.table",
                              fix="e.g. -o table=entities, or -o query='SELECT ...' (in a pipeline file: "
                                  "`options: {table: entities}`)")
        if o.table:
            check_identifier(o.table, "sql.table", dotted=True)
        else:
            backend: str | None = None
            if source is not None:
                try:
                    from sqlalchemy.engine import make_url

                    backend = make_url(source).get_backend_name()
                except Exception:  # noqa: BLE001 - a URL it cannot read: every database's rules; said when used
                    backend = None
            o.query = _check_query(o.query or "", "any" if source is None else _dialect_of(backend))
        for field, col in o.columns.items():
            if field not in _MAPPABLE:
                guess = closest(field, _MAPPABLE)
                raise ConfigError(f"cannot map entity field {field!r}", where=f"sql.columns.{field}",
                                  fix=(f"did you mean {guess!r}? " if guess else "")
                                  + f"mappable fields: {', '.join(_MAPPABLE)} (columns maps field -> column)")
            check_identifier(col, f"sql.columns.{field}", column=True)
        for col in o.extra_columns:
            check_identifier(col, "sql.extra_columns", column=True)
        if o.alias_table:
            check_identifier(o.alias_table, "sql.alias_table", dotted=True)
            check_identifier(o.alias_key, "sql.alias_key", column=True)
            check_identifier(o.alias_column, "sql.alias_column", column=True)
            if o.alias_count_column:
                check_identifier(o.alias_count_column, "sql.alias_count_column", column=True)
        return o

    # -- connection -------------------------------------------------------------------------------------------
    def _masked_url(self) -> str:
        from glinker.io import redact

        return redact(self.url)

    def _url(self) -> Any:
        """The parsed URL (see :func:`parse_url`)."""
        return parse_url(self.url)

    def engine(self) -> Any:
        """The SQLAlchemy engine (created once; a bad URL or missing driver is a clear error)."""
        if self._engine is None:
            try:
                from sqlalchemy import create_engine
                from sqlalchemy.exc import ArgumentError, NoSuchModuleError
            except ImportError as e:  # pragma: no cover - sqlalchemy is a core dependency
                raise DependencyError("sqlalchemy is not installed", fix="pip install sqlalchemy") from e
            u = self._url()
            try:
                if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
                        and not u.database.startswith("file:") and not Path(u.database).is_file():
                    # SQLite would create an empty database file and then find no table in it
                    raise KBError(f"SQLite database file not found: {u.database}", where="sql.source",
                                  fix="check the path (sqlite:///relative/path.db, sqlite:////absolute/path.db)")
                # a server that accepts the connection and never answers (a MySQL URL at PostgreSQL's port)
                # must fail, not hang: a connect timeout unless the URL sets one
                args = {"connect_timeout": CONNECT_TIMEOUT} if u.get_driver_name() in (
                    "psycopg2", "pymysql", "mysqldb") and "connect_timeout" not in u.query else {}
                engine = create_engine(u, connect_args=args)
                if self.options.read_only:  # every read in a read-only transaction: nothing the query says can write
                    _read_only_transactions(engine, u.get_backend_name(), self._masked_url())
                self._engine = engine
            except ValueError as e:
                raise KBError(f"cannot read the database URL {self._masked_url()}: {e}", where="sql.source",
                              fix="percent-encode the user's password: '@' as %40, ':' as %3A, '/' as %2F") from None
            except (ArgumentError, NoSuchModuleError) as e:
                scheme = self.url.split(":", 1)[0]
                hint = ("write postgresql:// (SQLAlchemy does not know postgres://), e.g. postgresql+psycopg2://user@host/db"
                        if scheme == "postgres" else
                        "use a SQLAlchemy URL such as postgresql+psycopg2://user@host/db, "
                        "mysql+pymysql://root@127.0.0.1/db or sqlite:///file.db")
                raise KBError(f"cannot use database URL: {e}", where="sql.source", fix=hint) from None
            except ImportError as e:
                raise DependencyError(f"database driver missing: {e}", where="sql.source",
                                      fix="use a driver glinker[sql] installs: postgresql+psycopg2://... or "
                                          "mysql+pymysql://...; or install the one the URL names (mysqlclient "
                                          "for mysql://, psycopg for postgresql+psycopg://)") from None
        return self._engine

    def _from(self) -> Any:
        from sqlalchemy import table, text

        o = self.options
        if o.table:
            parts = o.table.split(".")
            return table(parts[-1], schema=parts[0] if len(parts) == 2 else None)
        return text(_literal_colons(o.query or "")).columns().subquery("src")  # type: ignore[arg-type]

    def _source_columns(self, conn: Any) -> list[str]:
        from sqlalchemy import select, text

        o = self.options
        if o.table:
            return self._table_columns(conn, o.table, "sql.table")
        from sqlalchemy.exc import DBAPIError

        try:
            res = conn.execute(select(text("*")).select_from(self._from()).limit(0))
        except DBAPIError as e:
            raise KBError(f"the query fails: {str(e.orig).strip().splitlines()[0]}", where="sql.query",
                          fix="check the query's table and column names (run it in your SQL client)") from None
        return list(res.keys())

    def _table_columns(self, conn: Any, name: str, where: str) -> list[str]:
        """The columns of table (or view) ``name`` (``schema.table``); a KBError at ``where`` when it is not there
        (with the closest name, looked for in the other schemas too) or the server refuses to describe it."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import DBAPIError, NoSuchTableError

        parts = name.split(".")
        insp = inspect(conn)
        schema = parts[0] if len(parts) == 2 else None
        try:
            cols = insp.get_columns(parts[-1], schema=schema)
        except NoSuchTableError:
            cols = []
        except DBAPIError as e:
            unreachable, kind = connection_problem(e)
            if unreachable:
                raise self._connection_error(e, "read from") from None
            msg = " ".join(self._driver_message(e).split())
            raise KBError(f"the server refused to describe {name!r}: {msg}", where=where,
                          fix=_grant_fix(msg, name) if kind == "permission" else
                              "check the name and the user's rights on it (run SELECT * FROM it in your SQL client)"
                          ) from None
        if cols:
            return [c["name"] for c in cols]
        import difflib

        def names_in(sch: str | None) -> list[str]:
            found = insp.get_table_names(schema=sch) + insp.get_view_names(schema=sch)
            try:  # PostgreSQL (and Oracle) materialized views are readable tables too
                found += insp.get_materialized_view_names(schema=sch)
            except NotImplementedError:
                pass
            return list(dict.fromkeys(found))

        names = names_in(schema)
        lower = {n.lower(): n for n in names}
        close = [lower[c] for c in difflib.get_close_matches(parts[-1].lower(), list(lower), n=1)]
        if close and schema:
            close = [f"{schema}.{close[0]}"]
        if not close:  # the same name (or a close one) in another schema: say it with its schema
            try:
                schemas = [x for x in insp.get_schema_names() if x != schema and x.lower() not in _SYSTEM_SCHEMAS][:50]
            except (NotImplementedError, DBAPIError):
                schemas = []
            for sch in schemas:
                try:
                    there = {n.lower(): n for n in names_in(sch)}
                except DBAPIError:
                    continue
                hit = difflib.get_close_matches(parts[-1].lower(), list(there), n=1)
                if hit:
                    close = [f"{sch}.{there[hit[0]]}"]
                    break
        raise KBError(f"table {name!r} not found in {self._masked_url()} or has no columns"
                      + (f"; did you mean {close[0]!r}?" if close else ""), where=where,
                      fix=f"tables there: {', '.join(sorted(names)[:20]) or 'none'}; check the name (schema.table for "
                          "another schema) and the database in the URL")

    def _mapping(self, available: list[str], dialect: str = "") -> tuple[dict[str, str], list[str]]:
        """Entity field -> column of the source, and the extra columns as the source names them. On databases whose
        column names ignore case (MySQL, MariaDB, SQLite, SQL Server) a name that differs from one column only in case
        is that column."""
        o = self.options
        loose = dialect in _LOOSE_DIALECTS
        by_lower: dict[str, list[str]] = {}
        for c in available:
            by_lower.setdefault(c.lower(), []).append(c)

        missing: list[tuple[str, str, str | None, bool]] = []  # (where, what, did-you-mean, only case differs)

        def real(col: str, where: str, what: str) -> str:  # `what`: how the message names the column
            found, hint = _find_column(col, available, loose)
            if found is not None:
                return found
            missing.append((where, what, hint, hint is not None and hint.lower() == col.lower() and not loose))
            return col

        mapping = {f: f for f in _MAPPABLE if f in available}
        if loose:  # an `ID` or `Label` column is the field's by default too
            mapping.update({f: by_lower[f][0] for f in _MAPPABLE if f not in mapping and len(by_lower.get(f, [])) == 1})
        mapping.update(o.columns)
        for field in ("id", "label"):
            if field not in mapping:
                raise KBError(f"no column for entity field {field!r} (columns: {', '.join(available)})",
                              where=f"sql.columns.{field}", fix=f"map it: -o columns='{{\"{field}\": \"<column>\"}}'")
        for field, col in list(mapping.items()):
            mapping[field] = real(col, f"sql.columns.{field}", f"column {col!r} (for {field})")
        extra = [real(col, "sql.extra_columns", f"extra column {col!r}") for col in o.extra_columns]
        if missing:  # every unknown column at once: a mapping with three typos took three runs
            said = "; ".join(what + (f" (did you mean {hint!r}?)" if hint else "") for _, what, hint, _ in missing)
            raise KBError(f"{said} not in the source (columns: {', '.join(available)})", where=missing[0][0],
                          fix="map existing columns" + (" (names are case-sensitive here: write them as the table "
                                                        "has them)" if any(m[3] for m in missing) else ""))
        return mapping, extra

    def _greeting_check(self) -> None:
        """A MySQL/MariaDB server speaks first: wait for its greeting at most CONNECT_TIMEOUT seconds (the driver's
        own handshake read has no time limit, so a URL at another server's port would hang for minutes)."""
        import socket

        u = self._url()
        if u.get_backend_name() not in ("mysql", "mariadb") or not u.host or "unix_socket" in u.query:
            return
        where = f"{u.host}:{u.port or 3306}"
        try:
            with socket.create_connection((u.host, u.port or 3306), timeout=CONNECT_TIMEOUT) as s:
                s.settimeout(CONNECT_TIMEOUT)
                if s.recv(1):
                    return
                why = "it closed the connection without a word"
        except socket.timeout:
            why = f"no MySQL/MariaDB greeting within {CONNECT_TIMEOUT} s (another kind of server at that port?)"
        except OSError as e:
            why = e.strerror or str(e)
        raise SourceUnavailable(f"cannot connect to {self._masked_url()}: {why}", where="sql.source",
                                fix=f"check the host and port ({where}) and that a MySQL/MariaDB server listens there")

    def _driver_message(self, exc: BaseException) -> str:
        """The driver's message of ``exc``, with the URL's password (should a driver quote it) shown as ***."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        try:
            pw = self._url().password
        except KBError:
            pw = None
        return text.replace(pw, "***") if pw and len(pw) > 2 else text

    def _connection_error(self, exc: BaseException, doing: str) -> KBError:
        """SourceUnavailable when the server cannot be reached right now (a cached KB may serve meanwhile), else a
        KBError that says what the server refused and how to mend it."""
        unreachable, kind = connection_problem(exc)
        msg = " ".join(self._driver_message(exc).split())
        if unreachable:
            return SourceUnavailable(f"cannot {doing} {self._masked_url()}: {msg}", where="sql.source",
                                     fix="check that the server runs and the URL (host, port, user, database)")
        if kind == "options":
            return KBError(f"the database driver refused an option of {self._masked_url()}: {msg}",
                           where="sql.source", fix=_REFUSED_FIX[kind])
        what = {"login": "refused the login", "database": "has no such database (or refuses it to this user)",
                "permission": "refused the access"}.get(kind, "refused the connection")
        return KBError(f"the database server at {self._masked_url()} {what}: {msg}", where="sql.source",
                       fix=_REFUSED_FIX[kind])

    def _connect(self) -> Any:
        from sqlalchemy.exc import DBAPIError

        if not self._checked_greeting:
            import time

            failed = self._greeting_failed
            if failed is not None and time.monotonic() - failed[0] < CONNECT_TIMEOUT * 6:
                raise failed[1]  # the estimate, the read and the alias reads of one build wait once, not each
            try:
                self._greeting_check()
            except SourceUnavailable as e:
                if "greeting within" in e.message:  # waited CONNECT_TIMEOUT s for nothing: not again this minute
                    self._greeting_failed = (time.monotonic(), e)
                raise
            self._greeting_failed = None
            self._checked_greeting = True
        engine = self.engine()
        try:
            return engine.connect()
        except DBAPIError as e:
            raise self._connection_error(e, "connect to") from None

    # -- streaming --------------------------------------------------------------------------------------------
    def iter_entities(self) -> Iterator[Entity]:
        """Stream rows with a server-side cursor and map them to entities; aliases come per batch from the child table.

        In id order (``order_by_id``), rows that repeat an id come in the order of their mapped values (label,
        description, aliases, alias_counts, types, popularity, extra columns, compared as text), whatever their
        order on disk: the last of them, which a KB keeps, is always the same row."""
        from sqlalchemy import bindparam, column, select
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        self.report = AdapterReport()
        # child rows of no entity (see _entities): rows in all, keys named in warnings, rows not in a warning
        self._unattached = self._unattached_named = self._unattached_unsaid = 0
        o = self.options
        with self._connect() as conn:
            available = self._source_columns(conn)
            mapping, extra = self._mapping(available, conn.dialect.name)
            wanted = list(dict.fromkeys([*mapping.values(), *extra]))
            stmt = select(*[column(c) for c in wanted]).select_from(self._from())
            if o.order_by_id:
                stmt = stmt.order_by(column(mapping["id"]))
            alias_conn = self._connect() if o.alias_table else None
            alias_stmt = None
            if o.alias_table:
                from sqlalchemy import table

                self._check_alias_columns(self._table_columns(conn, o.alias_table, "sql.alias_table"),
                                          conn.dialect.name)
                parts = o.alias_table.split(".")
                cols = [o.alias_key, o.alias_column] + ([o.alias_count_column] if o.alias_count_column else [])
                at = table(parts[-1], *map(column, cols), schema=parts[0] if len(parts) == 2 else None)
                alias_stmt = (select(*(at.c[c] for c in cols))
                              .where(at.c[o.alias_key].in_(bindparam("keys", expanding=True))))
            idcol = mapping["id"]
            order = [mapping[f] for f in _MAPPABLE if f in mapping and f != "id"] + [c for c in extra
                                                                                     if c not in mapping.values()]

            def loose_id(row: dict[str, Any]) -> str:
                return _loose(str(_db_id(row[idcol])))

            try:
                result = conn.execution_options(stream_results=True, max_row_buffer=o.batch_size).execute(stmt)
                held: list[dict[str, Any]] = []  # the last id's rows: its next rows may come in the next partition
                for part in result.partitions(o.batch_size):
                    rows = held + [dict(r._mapping) for r in part]
                    held = []
                    if o.order_by_id and rows:
                        last, k = loose_id(rows[-1]), len(rows)
                        while k > 0 and loose_id(rows[k - 1]) == last:
                            k -= 1
                        rows, held = rows[:k], rows[k:]
                    if rows:
                        yield from self._entities(rows, mapping, extra, order, alias_conn, alias_stmt)
                if held:
                    yield from self._entities(held, mapping, extra, order, alias_conn, alias_stmt)
                if self._unattached_unsaid:
                    log.warning("%s: %d alias rows in all equal no id but for the database's collation: not attached",
                                o.alias_table, self._unattached)
            except SQLAlchemyError as e:
                if isinstance(e, DBAPIError) and connection_problem(e)[0]:  # the server went away while read
                    raise self._connection_error(e, "read from") from None
                msg = str(getattr(e, "orig", e)).strip()
                if isinstance(e, DBAPIError) and connection_problem(e)[1] == "permission":
                    on_alias = bool(o.alias_table) and o.alias_table.split(".")[-1].lower() in msg.lower()
                    named = o.alias_table if on_alias else o.table
                    raise KBError(f"the server refused to read {'from ' + repr(named) if named else 'the query'}: "
                                  f"{' '.join(msg.split())}",
                                  where="sql.alias_table" if on_alias else f"sql.{'table' if o.table else 'query'}",
                                  fix=_grant_fix(msg, named or "<table>")) from None
                raise KBError(f"query failed on {self._masked_url()}: {msg}",
                              where=f"sql.{'table' if o.table else 'query'}",
                              fix="check the table/query and the column mapping") from None
            finally:
                if alias_conn is not None:
                    alias_conn.close()

    def _check_alias_columns(self, available: list[str], dialect: str) -> None:
        """alias_key, alias_column and alias_count_column name columns of the alias table (a KBError at the first
        that does not, with the closest column); on databases whose column names ignore case, in any case."""
        o = self.options
        for opt in ("alias_key", "alias_column", "alias_count_column"):
            col = getattr(o, opt)
            if col is None:
                continue
            found, hint = _find_column(col, available, dialect in _LOOSE_DIALECTS)
            if found is not None:
                continue
            raise KBError(f"column {col!r} ({opt}) is not in the alias table {o.alias_table!r}"
                          + (f"; did you mean {hint!r}?" if hint else ""), where=f"sql.{opt}",
                          fix=f"its columns: {', '.join(available)}; set -o {opt}=<column>")

    def _entities(self, rows: list[dict[str, Any]], mapping: dict[str, str], extra: list[str], order: list[str],
                  alias_conn: Any, alias_stmt: Any) -> Iterator[Entity]:
        """Entities of a batch of rows (with their child-table aliases), repeated ids in a fixed order."""
        o = self.options
        rep = self.report
        if o.order_by_id:
            def text_of(v: Any) -> tuple[bool, str]:
                return (v is not None, "" if v is None else str(v))

            # rows of one id are neighbours (ordered by the database's collation: neighbours up to case, too)
            runs: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                runs.setdefault(_loose(str(_db_id(row[mapping["id"]]))), []).append(row)
            if len(runs) < len(rows):
                rows = [r for run in runs.values() for r in sorted(
                    run, key=lambda r: (str(_db_id(r[mapping["id"]])), [text_of(r[c]) for c in order]))]
        child: dict[str, list[str]] = {}
        child_counts: dict[str, dict[str, float]] = {}
        if alias_stmt is not None and rows:
            keys = [r[mapping["id"]] for r in rows]
            # The database returns the child rows its collation equates with the ids: MariaDB's default (and
            # unicode_ci) also returns 'sku-001' and 'SKU-001 ' for SKU-001, but also 'Strase' for Straße (ß = s),
            # 'ΑΘΗΝΑ-1' for Αθήνα-1 and, in unicode_ci, Straße's rows for Strasse. The rule, the same on every
            # database: a key is of the id it equals exactly; a key equal to none is of the ids it equals but for
            # letter case and trailing spaces (what a case-insensitive collation returns it for); any other key the
            # collation matched (accents, ß = s or ss, ...) is of no entity, and is named in a warning.
            own = {str(_db_id(k)) for k in keys}
            by_case: dict[str, list[str]] = {}
            for k in own:
                by_case.setdefault(_id_up_to_case(k), []).append(k)
            unmatched: dict[str, int] = {}
            for k, a, *n in alias_conn.execute(alias_stmt, {"keys": list(dict.fromkeys(keys))}):
                if a is None:
                    continue
                k = str(_db_id(k))
                targets = [k] if k in own else by_case.get(_id_up_to_case(k), [])
                if not targets:
                    unmatched[k] = unmatched.get(k, 0) + 1
                for key in targets:
                    child.setdefault(key, []).append(str(a))
                    if n and n[0] is not None:
                        by_form = child_counts.setdefault(key, {})
                        by_form[str(a)] = by_form.get(str(a), 0.0) + float(n[0])
            if unmatched:
                self._unattached += sum(unmatched.values())
                shown = list(unmatched)[:max(0, 20 - self._unattached_named)]  # the first 20 keys by name
                self._unattached_named += len(shown)
                self._unattached_unsaid += sum(unmatched[k] for k in unmatched if k not in shown)
                if shown:
                    log.warning("%s: %d alias row(s) keyed %s equal no id but for the database's collation (accents, "
                                "ß = s/ss, ...): not attached to any entity (a child row is of the id its %s equals, "
                                "up to letter case and trailing spaces; key the rows by the exact id)", o.alias_table,
                                sum(unmatched[k] for k in shown), ", ".join(map(repr, shown)), o.alias_key)
        for row in rows:
            rep.read += 1
            rec: dict[str, Any] = {field: row[col] for field, col in mapping.items()}  # a column may feed two fields
            rec["extra"] = {c: plain_value(row[c]) for c in extra}
            if rec.get("popularity") is not None:
                try:
                    rec["popularity"] = float(rec["popularity"])
                except (TypeError, ValueError):
                    pass
            key = str(_db_id(rec.get("id")))
            if child:
                rec["aliases"] = split_list(rec.get("aliases"), o.list_sep) + sorted(set(child.get(key, [])))
            where = f"{o.table or 'query'} row id={key}"
            try:
                if key in child_counts:
                    rec["alias_counts"] = {**parse_alias_counts(rec.get("alias_counts"), o.list_sep, where),
                                           **child_counts[key]}
                ent = record_to_entity(rec, {}, o.list_sep, where, keep_extra=False)
            except DataError as e:
                field = (e.where or "").rpartition(" field ")[2]
                if mapping.get(field, field) != field:  # the record was keyed by field: say the column too
                    e.where = f"{e.where} (column {mapping[field]!r})"
                    e.args = (e.render(),)
                rep.bad_record(e, where, o.on_error)
                continue
            rep.yielded += 1
            yield ent

    def estimate_count(self) -> int | None:
        """``SELECT COUNT(*)`` over the source."""
        from sqlalchemy import func, select

        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self._from())).scalar_one())

    def describe(self) -> dict[str, Any]:
        """URL (password hidden) and options for the manifest."""
        return {"adapter": self.name, "source": self._masked_url(), "options": self.options.model_dump()}

    def close(self) -> None:
        """Dispose of the engine's pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
