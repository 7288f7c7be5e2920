"""SQL adapter: any SQLAlchemy URL, a table or a SELECT, a column mapping, aliases from a delimited column or a
child table. Rows stream through server-side cursors; every identifier is validated and quoted, every value bound.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from glinker.errors import ConfigError, DataError, DependencyError, KBError, SourceUnavailable
from glinker.kb.adapters import AdapterOptions, AdapterReport, parse_options
from glinker.types import Entity
from kb_adapters._common import _db_id, parse_alias_counts, record_to_entity, split_list

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAPPABLE = ("id", "label", "description", "aliases", "alias_counts", "types", "popularity")


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
    batch_size: int = 2000
    order_by_id: bool = True
    """Stream in id order (a stable order makes an interrupted build resumable)."""
    on_error: Literal["raise", "skip"] = "raise"


def check_identifier(name: str, where: str, dotted: bool = False) -> list[str]:
    """Split and validate a (possibly ``schema.``-qualified) SQL identifier; anything else is a ConfigError."""
    parts = name.split(".") if dotted else [name]
    if not parts or len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ConfigError(f"invalid SQL identifier {name!r}", where=where,
                          fix="use letters, digits and underscores only (optionally schema.table); quoting is done "
                              "by glinker")
    return parts


_SQL_NOISE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
"""String literals, quoted identifiers and comments: what a check of a query's statements must not read into."""


def _check_query(q: str) -> str:
    body = q.strip().rstrip(";").strip()
    bare = _SQL_NOISE.sub(lambda m: " " if m.group().startswith(("--", "/*")) else "''", body).strip()
    if not re.match(r"(?is)^(select|with)\b", bare) or ";" in bare:
        raise ConfigError("query must be one SELECT (or WITH ... SELECT) statement", where="sql.query",
                          fix="give a single SELECT without ';' inside, or use table=...")
    # a last line comment (--, or MySQL's #) must not swallow what wraps the query
    return body + "\n" if "--" in body or "#" in body else body


def _loose(key: str) -> str:
    """A key as a case- and accent-insensitive collation compares it (MariaDB's default utf8mb4_general_ci)."""
    from glinker.kb.store import fold_accents

    return fold_accents(key.strip().casefold())


def _literal_colons(query: str) -> str:
    """The query for SQLAlchemy's text(), which reads ``:name`` as a bind parameter: every lone colon escaped
    (``LIKE ':internal%'`` is text here, there are no parameters); ``::`` casts are left as they are."""
    return re.sub(r"(?<![:\\]):(?!:)", lambda _: "\\:", query)


CONNECT_TIMEOUT = 10
"""Seconds to wait for a database server's answer when connecting (``?connect_timeout=N`` in the URL overrides)."""


class SQLAdapter:
    """Streams entities from a table or SELECT of any SQLAlchemy database (SQLite, PostgreSQL, MariaDB/MySQL, ...)."""

    name: ClassVar[str] = "sql"
    options_model: ClassVar[type[AdapterOptions]] = SQLOptions
    resumable: ClassVar[bool] = False
    """A table can change between an interrupted build and its re-run: builds start over (``kb add --prune``
    updates a built KB from its table, re-embedding only changed rows)."""

    def __init__(self, source: str, **options: Any) -> None:
        self._checked_greeting = False
        self.options: SQLOptions = parse_options(self.name, SQLOptions, options)  # type: ignore[assignment]
        o = self.options
        self.url = source
        if (o.table is None) == (o.query is None):
            raise ConfigError("give exactly one of table= or query=", where="sql.table",
                              fix="e.g. -o table=entities, or -o query='SELECT ...'")
        if o.table:
            check_identifier(o.table, "sql.table", dotted=True)
        else:
            o.query = _check_query(o.query or "")
        for field, col in o.columns.items():
            if field not in _MAPPABLE:
                raise ConfigError(f"cannot map entity field {field!r}", where=f"sql.columns.{field}",
                                  fix=f"mappable fields: {', '.join(_MAPPABLE)}")
            check_identifier(col, f"sql.columns.{field}")
        for col in o.extra_columns:
            check_identifier(col, "sql.extra_columns")
        if o.alias_table:
            check_identifier(o.alias_table, "sql.alias_table", dotted=True)
            check_identifier(o.alias_key, "sql.alias_key")
            check_identifier(o.alias_column, "sql.alias_column")
            if o.alias_count_column:
                check_identifier(o.alias_count_column, "sql.alias_count_column")
        self.report = AdapterReport()
        self._engine: Any = None

    # -- connection -------------------------------------------------------------------------------------------
    def _masked_url(self) -> str:
        from glinker.io import redact

        return redact(self.url)

    def engine(self) -> Any:
        """The SQLAlchemy engine (created once; a bad URL or missing driver is a clear error)."""
        if self._engine is None:
            try:
                from sqlalchemy import create_engine
                from sqlalchemy.exc import ArgumentError, NoSuchModuleError
            except ImportError as e:  # pragma: no cover - sqlalchemy is a core dependency
                raise DependencyError("sqlalchemy is not installed", fix="pip install sqlalchemy") from e
            netloc = self.url.partition("://")[2].partition("/")[0]
            if netloc.count("@") > 1:
                raise KBError(f"the database URL {self._masked_url()} holds more than one '@' before the host",
                              where="sql.source", fix="percent-encode the user's password: '@' as %40, ':' as %3A, "
                              "'/' as %2F (urllib.parse.quote_plus(password))")
            try:
                from sqlalchemy.engine import make_url

                u = make_url(self.url)
                if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
                        and not u.database.startswith("file:") and not Path(u.database).is_file():
                    # SQLite would create an empty database file and then find no table in it
                    raise KBError(f"SQLite database file not found: {u.database}", where="sql.source",
                                  fix="check the path (sqlite:///relative/path.db, sqlite:////absolute/path.db)")
                # a server that accepts the connection and never answers (a MySQL URL at PostgreSQL's port)
                # must fail, not hang: a connect timeout unless the URL sets one
                args = {"connect_timeout": CONNECT_TIMEOUT} if u.get_driver_name() in (
                    "psycopg2", "pymysql", "mysqldb") and "connect_timeout" not in u.query else {}
                self._engine = create_engine(self.url, connect_args=args)
            except ValueError as e:  # e.g. a ':' in the password read as the port
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
            from sqlalchemy import inspect
            from sqlalchemy.exc import NoSuchTableError

            parts = o.table.split(".")
            insp = inspect(conn)
            schema = parts[0] if len(parts) == 2 else None
            try:
                cols = insp.get_columns(parts[-1], schema=schema)
            except NoSuchTableError:
                cols = []
            if not cols:
                import difflib

                names = insp.get_table_names(schema=schema) + insp.get_view_names(schema=schema)
                lower = {n.lower(): n for n in names}
                close = [lower[c] for c in difflib.get_close_matches(parts[-1].lower(), list(lower), n=1)]
                raise KBError(f"table {o.table!r} not found in {self._masked_url()} or has no columns"
                              + (f"; did you mean {close[0]!r}?" if close else ""), where="sql.table",
                              fix=f"tables there: {', '.join(sorted(names)[:20]) or 'none'}; check the name and the "
                                  "database in the URL")
            return [c["name"] for c in cols]
        from sqlalchemy.exc import DBAPIError

        try:
            res = conn.execute(select(text("*")).select_from(self._from()).limit(0))
        except DBAPIError as e:
            raise KBError(f"the query fails: {str(e.orig).strip().splitlines()[0]}", where="sql.query",
                          fix="check the query's table and column names (run it in your SQL client)") from None
        return list(res.keys())

    def _mapping(self, available: list[str]) -> dict[str, str]:
        o = self.options
        mapping = {f: f for f in _MAPPABLE if f in available}
        mapping.update(o.columns)
        for field in ("id", "label"):
            if field not in mapping:
                raise KBError(f"no column for entity field {field!r} (columns: {', '.join(available)})",
                              where=f"sql.columns.{field}", fix=f"map it: -o columns='{{\"{field}\": \"<column>\"}}'")
        for field, col in mapping.items():
            if col not in available:
                raise KBError(f"column {col!r} (for {field}) not in the source (columns: {', '.join(available)})",
                              where=f"sql.columns.{field}", fix="map an existing column")
        for col in o.extra_columns:
            if col not in available:
                raise KBError(f"extra column {col!r} not in the source", where="sql.extra_columns",
                              fix=f"available: {', '.join(available)}")
        return mapping

    def _greeting_check(self) -> None:
        """A MySQL/MariaDB server speaks first: wait for its greeting at most CONNECT_TIMEOUT seconds (the driver's
        own handshake read has no time limit, so a URL at another server's port would hang for minutes)."""
        import socket

        from sqlalchemy.engine import make_url

        u = make_url(self.url)
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

    def _connect(self) -> Any:
        from sqlalchemy.exc import OperationalError

        if not self._checked_greeting:
            self._greeting_check()
            self._checked_greeting = True
        try:
            return self.engine().connect()
        except OperationalError as e:
            raise SourceUnavailable(f"cannot connect to {self._masked_url()}: {str(e.orig).strip()}",
                                    where="sql.source",
                                    fix="check that the server runs and the URL (host, port, user, database)") from None

    # -- streaming --------------------------------------------------------------------------------------------
    def iter_entities(self) -> Iterator[Entity]:
        """Stream rows with a server-side cursor and map them to entities; aliases come per batch from the child table."""
        from sqlalchemy import bindparam, column, select
        from sqlalchemy.exc import SQLAlchemyError

        self.report = rep = AdapterReport()
        o = self.options
        with self._connect() as conn:
            available = self._source_columns(conn)
            mapping = self._mapping(available)
            wanted = list(dict.fromkeys([*mapping.values(), *o.extra_columns]))
            stmt = select(*[column(c) for c in wanted]).select_from(self._from())
            if o.order_by_id:
                stmt = stmt.order_by(column(mapping["id"]))
            alias_conn = self._connect() if o.alias_table else None
            alias_stmt = None
            if o.alias_table:
                from sqlalchemy import table

                parts = o.alias_table.split(".")
                cols = [o.alias_key, o.alias_column] + ([o.alias_count_column] if o.alias_count_column else [])
                at = table(parts[-1], *map(column, cols), schema=parts[0] if len(parts) == 2 else None)
                alias_stmt = (select(*(at.c[c] for c in cols))
                              .where(at.c[o.alias_key].in_(bindparam("keys", expanding=True))))
            inv = {v: k for k, v in mapping.items()}
            try:
                result = conn.execution_options(stream_results=True, max_row_buffer=o.batch_size).execute(stmt)
                for part in result.partitions(o.batch_size):
                    rows = [dict(r._mapping) for r in part]
                    child: dict[str, list[str]] = {}
                    child_counts: dict[str, dict[str, float]] = {}
                    if alias_stmt is not None and rows:
                        keys = [r[mapping["id"]] for r in rows]
                        # the database matched the keys by its collation ('SKU-1' = 'sku-1 ' in MariaDB's default):
                        # a returned key is given to the rows it equals, or else to those it equals but for case
                        # and surrounding spaces
                        own = {str(_db_id(k)) for k in keys}
                        loose: dict[str, list[str]] = {}
                        for k in own:
                            loose.setdefault(_loose(k), []).append(k)
                        for k, a, *n in alias_conn.execute(alias_stmt, {"keys": keys}):  # type: ignore[union-attr]
                            if a is None:
                                continue
                            k = str(_db_id(k))
                            for key in [k] if k in own else loose.get(_loose(k), []):
                                child.setdefault(key, []).append(str(a))
                                if n and n[0] is not None:
                                    by_form = child_counts.setdefault(key, {})
                                    by_form[str(a)] = by_form.get(str(a), 0.0) + float(n[0])
                    for row in rows:
                        rep.read += 1
                        rec: dict[str, Any] = {inv.get(c, c): v for c, v in row.items() if c in inv}
                        rec["extra"] = {c: row[c] for c in o.extra_columns}
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
                            rep.bad_record(e, where, o.on_error)
                            continue
                        rep.yielded += 1
                        yield ent
            except SQLAlchemyError as e:
                raise KBError(f"query failed on {self._masked_url()}: {str(getattr(e, 'orig', e)).strip()}",
                              where=f"sql.{'table' if o.table else 'query'}",
                              fix="check the table/query and the column mapping") from None
            finally:
                if alias_conn is not None:
                    alias_conn.close()

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
