"""``redact`` hides the password of SQLAlchemy's documented pyodbc URL form, ``?odbc_connect=<quote_plus(ODBC
string)>`` (its ``PWD=``/``Password=`` pair, percent-encoded), and the whole value of a secret query parameter;
the KB manifest, which records the source through it, keeps no password."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus, unquote_plus

import pytest

from glinker.io import redact

SECRET = "OdbcSecretPW"
ODBC = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=db.example;DATABASE=kb;UID=sa;PWD={SECRET}"
REPORTED = "mssql+pyodbc:///?odbc_connect=" + quote_plus(ODBC)
"""The audit's URL: the manifest showed ...%3BUID%3Dsa%3BPWD%3DOdbcSecretPW."""


def test_the_reported_odbc_connect_url_is_redacted() -> None:
    shown = redact(REPORTED)
    assert SECRET not in shown and SECRET not in unquote_plus(shown)
    assert shown == "mssql+pyodbc:///?odbc_connect=" + quote_plus(ODBC.replace(SECRET, "***"), safe="*")
    assert "PWD%3D***" in shown and "UID%3Dsa" in shown  # the rest as it was written
    assert redact(shown) == shown


@pytest.mark.parametrize("url", [
    "mssql+pyodbc:///?odbc_connect=" + quote_plus(f"DRIVER={{x}};SERVER=h;UID=sa;Password={SECRET};Encrypt=yes"),
    "mssql+pyodbc:///?odbc_connect=" + quote(f"DRIVER={{x}};UID=sa; pwd = {SECRET} ;TrustServerCertificate=yes"),
    "mssql+pyodbc:///?odbc_connect=" + quote_plus(f"DRIVER={{x}};UID=sa;PWD={{{SECRET};}}}}x}};APP=glinker"),
    "mssql+pyodbc:///?odbc_connect=" + quote_plus(f"PWD={SECRET};DRIVER={{x}}").lower().replace(SECRET.lower(),
                                                                                                SECRET),
    f"mssql+pyodbc:///?odbc_connect=DRIVER={{x}};UID=sa;PWD={SECRET}&autocommit=true",  # not encoded
    f"mssql+pyodbc://sa:{SECRET}@dsn_name?driver=ODBC+Driver+18&odbc_connect=" + quote_plus(f"PWD={SECRET}"),
    f"postgresql://u@h/db?password={SECRET}",
    f"postgresql://u@h/db?sslmode=require&pwd={SECRET}",
    f"postgresql://u@h/db?password=ab;{SECRET}#{SECRET}&sslmode=require",  # SQLAlchemy splits at '&' only
    f"postgresql://u@h/db?pass%77ord={SECRET}",                              # the name percent-encoded
    "postgresql://u@h/db?options=" + quote_plus(f"host=h password={SECRET}"),
])
def test_passwords_inside_query_parameters_are_hidden(url: str) -> None:
    shown = redact(url)
    assert SECRET not in shown and SECRET not in unquote_plus(shown) and "***" in shown, shown


@pytest.mark.parametrize("url", [
    "mssql+pyodbc:///?odbc_connect=" + quote_plus("DRIVER={ODBC Driver 18};SERVER=h;UID=sa;PWD=ab&ZqXTAIL;Encrypt=yes"),
    "mssql+pyodbc:///?odbc_connect=DRIVER={x};UID=sa;PWD=ab%26ZqXTAIL;Encrypt=yes",
    "postgresql://u@h/db?options=" + quote_plus("password='ab;ZqXTAIL' sslmode=require"),
    "postgresql://u@h/db?options=" + quote_plus("password='ab\\' ;ZqXTAIL' sslmode=require"),
    "postgresql://u@h/db?options=" + quote_plus("host=h password=ab;ZqXTAIL sslmode=require"),
])
def test_a_password_is_hidden_up_to_its_odbc_or_libpq_end(url: str) -> None:
    """ODBC ends a value at ';' only ('&' is part of it); libpq quotes a value holding ';' or a space: no part of the
    password is shown (the review's 'PWD=ab&ZZLEAK' and "password='ab;ZZLEAK'"), the pairs after it are."""
    shown = unquote_plus(redact(url))
    assert "ZqX" not in shown and "ab" not in shown.split("=***")[-1][:3] and "=***" in shown, shown
    if "host=h" not in shown:  # an unquoted libpq value is hidden to the end: the pairs after a quoted one stay
        assert "Encrypt=yes" in shown or "sslmode=require" in shown, shown


@pytest.mark.parametrize("url", [
    "mssql+pyodbc:///?odbc_connect=" + quote_plus("DRIVER={ODBC Driver 18};SERVER=h;Trusted_Connection=yes"),
    "postgresql://u@h/db?sslmode=require&application_name=a+b%2Fc",
    "sqlite:///companies.db",
    "redis://host:6379/0",
])
def test_urls_without_secrets_are_left_as_written(url: str) -> None:
    assert redact(url) == url


class _OdbcAdapter:
    """What a SQL Server adapter records: its source URL as given (the manifest redacts it)."""

    name: ClassVar[str] = "odbc_test"
    options_model: ClassVar[Any] = None

    def __init__(self) -> None:
        from glinker.kb.adapters import AdapterReport

        self.report = AdapterReport()

    def iter_entities(self) -> Iterator[Any]:
        from glinker.types import Entity

        self.report.yielded += 1
        yield Entity(id="C1", label="Acme")

    def estimate_count(self) -> int | None:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"adapter": self.name, "source": REPORTED, "options": {}}


def test_the_kb_manifest_and_the_sql_adapter_record_no_odbc_password(tmp_path: Path) -> None:
    from glinker.kb.adapters import described, load_adapter
    from glinker.kb.build import build_kb

    ad = load_adapter("sql", REPORTED, table="companies", columns={"label": "name"})  # no connection made
    assert SECRET not in json.dumps(described(ad)) and SECRET not in json.dumps(ad.describe())
    build_kb(_OdbcAdapter(), tmp_path / "kb", None)
    files = [p for p in (tmp_path / "kb").rglob("*") if p.is_file()]
    manifests = [p for p in files if p.name == "manifest.json"]
    assert manifests and "PWD%3D***" in manifests[0].read_text()
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
