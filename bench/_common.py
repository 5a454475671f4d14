"""What the benchmarks share: a throwaway database, Django set up on it in this process with the embedded
default's settings, bulk inserts, query counting, timing and printing.

The database is a SQLite file in a temporary directory, or, when ``BENCH_DATABASE_URL`` names a PostgreSQL
server (``postgres://postgres@127.0.0.1:5432/postgres``), a database created on it for the run and dropped at
the end. Either way it is migrated in-process and never the developer's own ``db.sqlite3``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class BenchDatabase:
    url: str
    label: str
    tmpdir: Path

    @property
    def vendor(self) -> str:
        return "postgresql" if self.url.startswith("postgres") else "sqlite"


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a small world, for a first look (seconds)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (and PostgreSQL database) afterwards",
    )
    return parser.parse_args()


def _postgres(url: str) -> Any:
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    return connection


@contextlib.contextmanager
def bench_database(name: str, *, keep: bool = False) -> Iterator[BenchDatabase]:
    """A fresh, empty database for one benchmark, removed afterwards (unless ``keep``)."""
    tmpdir = Path(tempfile.mkdtemp(prefix=f"coinlink-bench-{name}-"))
    server = os.environ.get("BENCH_DATABASE_URL", "")
    database = ""
    try:
        if server:
            parts = urlsplit(server)
            if parts.scheme not in ("postgres", "postgresql"):
                raise SystemExit(f"BENCH_DATABASE_URL must be a postgres:// URL, not {parts.scheme}://")
            database = f"coinlink_bench_{name}_{os.getpid()}"
            admin = _postgres(server)
            try:
                with admin.cursor() as cursor:
                    cursor.execute(f'CREATE DATABASE "{database}"')
                    cursor.execute("SHOW server_version")
                    version = cursor.fetchone()[0]
            finally:
                admin.close()
            url = urlunsplit(parts._replace(path=f"/{database}"))
            label = f"PostgreSQL {version} at {parts.hostname}:{parts.port or 5432}, database {database} (dropped after)"
        else:
            import sqlite3

            url = f"sqlite:///{tmpdir / 'bench.sqlite3'}"
            label = f"SQLite {sqlite3.sqlite_version} file in {tmpdir} (WAL, the embedded default)"
        yield BenchDatabase(url=url, label=label, tmpdir=tmpdir)
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if database and not keep:
            admin = _postgres(server)
            try:
                with admin.cursor() as cursor:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                admin.close()
        if keep:
            print(f"\nkept: {tmpdir}" + (f" and PostgreSQL database {database}" if database else ""))
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)


def app_environment(db: BenchDatabase) -> dict[str, str]:
    """The embedded default (SQLite unless BENCH_DATABASE_URL, in-memory channel layer, local-memory cache,
    Celery eager), whatever the shell exported, on the bench database, with media in the temporary directory.
    DEBUG is off as in production: with it on Django keeps a copy of every query it runs."""
    return {
        "DJANGO_SETTINGS_MODULE": "coinlink.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "DATABASE_URL": db.url,
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_RESULT_BACKEND": "cache+memory://",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "AGENTS_RUN_IN_PROCESS": "false",
        "LOG_LEVEL": "WARNING",
        "MEDIA_ROOT": str(db.tmpdir / "media"),
        "PRIVATE_MEDIA_ROOT": str(db.tmpdir / "private-media"),
        "STATIC_ROOT": str(db.tmpdir / "static"),
    }


def setup_django(db: BenchDatabase) -> float:
    """Configure Django on the bench database in this process and migrate it; returns the seconds migrating
    took."""
    os.environ.update(app_environment(db))
    import logging

    import django

    django.setup()
    from django.core.management import call_command

    # Kombu warns that the in-memory broker URL names no host; it needs none.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    return time.perf_counter() - started


def print_header(title: str, db: BenchDatabase, *, quick: bool) -> None:
    print(f"\n=== {title}{' (--quick: the small world)' if quick else ''} ===")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"database: {db.label}"
    )


# --- bulk inserts -------------------------------------------------------------------------------------------


def db_datetime() -> Callable[[Any], Any]:
    """How a raw insert passes an aware UTC datetime: SQLite stores Django's naive UTC text, PostgreSQL takes
    the datetime itself."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return lambda value: None if value is None else str(value.replace(tzinfo=None))
    return lambda value: value


def db_datetimes(values: Any) -> list[str]:
    """``db_datetime`` for a NumPy array of UTC ``datetime64[s]``, vectorised: Django's naive UTC text on
    SQLite, ISO 8601 with the offset (which PostgreSQL's COPY parses) otherwise."""
    import numpy as np
    from django.db import connection

    text = np.char.replace(np.datetime_as_string(values, unit="s"), "T", " ")
    if connection.vendor != "sqlite":
        text = np.char.add(text, "+00:00")
    return text.tolist()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    return str(value).translate(_COPY_ESCAPES)


def insert_rows(
    model: Any, fields: Sequence[str], rows: Iterable[Sequence[Any]], *, batch: int = 50_000
) -> int:
    """INSERT ``rows`` (tuples in the order of ``fields``, datetimes through ``db_datetime``) into the
    model's table on the raw connection, in large batches: executemany on SQLite, COPY on PostgreSQL.
    Returns how many rows went in. Call ``reset_sequences`` after inserting explicit ids."""
    from django.db import connection

    qn = connection.ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(name).column) for name in fields)
    table = qn(model._meta.db_table)
    # Table and column names come from the model, values only through placeholders or COPY's data.
    count = 0
    rows = iter(rows)
    with connection.cursor() as cursor:
        while chunk := list(itertools.islice(rows, batch)):
            if connection.vendor == "postgresql":
                data = io.StringIO("".join("\t".join(map(_copy_value, row)) + "\n" for row in chunk))
                cursor.cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", data)
            else:
                placeholders = ", ".join(["%s"] * len(fields))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", chunk)  # noqa: S608
            count += len(chunk)
    return count


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """One transaction for loading a world. On SQLite the connection gets a 256 MB page cache for it (the
    default 2 MB thrashes on the indexes of a million-row table) and is closed afterwards, so everything that
    is measured runs on a fresh connection with the defaults."""
    from django.db import connection, transaction

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size = -262144")
    try:
        with transaction.atomic():
            yield
    finally:
        connection.close()


def reset_sequences(*models: Any) -> None:
    """After inserting explicit ids, PostgreSQL's sequences must move past them (SQLite's AUTOINCREMENT does
    by itself)."""
    from django.core.management.color import no_style
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), list(models)):
            cursor.execute(sql)


def analyze() -> bool:
    """On PostgreSQL, fresh planner statistics after a bulk load, as autovacuum would soon gather them; True
    when it ran. SQLite gathers none by itself (nothing in the application runs ANALYZE there), so a world on
    SQLite is measured as the embedded default would find it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return True


# --- measuring ----------------------------------------------------------------------------------------------


_PLACEHOLDERS = re.compile(r"(?:%s|\?)(?:\s*,\s*(?:%s|\?))+")


class QueryCounter:
    """A ``connection.execute_wrapper`` that counts the queries and their time under the current ``label``,
    and per statement (IN lists folded), so the slowest can be named."""

    def __init__(self, label: str = "-") -> None:
        self.label = label
        self.counts: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.statements: defaultdict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - started
            self.counts[self.label] += 1
            self.seconds[self.label] += took
            entry = self.statements[(self.label, _PLACEHOLDERS.sub("...", sql))]
            entry[0] += 1
            entry[1] += took

    def slowest(self, n: int) -> list[tuple[str, int, float, str]]:
        """(label, count, seconds, statement) of the ``n`` statements that took longest in all."""
        ranked = sorted(self.statements.items(), key=lambda item: -item[1][1])[:n]
        return [(label, int(count), seconds, sql) for (label, sql), (count, seconds) in ranked]


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed: ...`` then ``elapsed[0]`` is the seconds the block took."""
    elapsed = [0.0]
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - started


def interleaved(fns: dict[str, Callable[[], Any]], *, repeat: int) -> dict[str, list[float]]:
    """The seconds of ``repeat`` calls of each function, called in turn (a, b, c, a, b, c, ...) after one
    unmeasured warm-up each, so that whatever else the machine is doing falls on all of them alike."""
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def human(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.2f} ms"


def times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.0f}x"


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<46} {value:>12}  {note}".rstrip())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> None:
    """Columns padded to their widest cell; the first ``left`` columns and the last are text (left-aligned),
    the others numbers (right-aligned)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def cells(values: Sequence[str]) -> str:
        return "  ".join(
            str(v).ljust(w) if i < left or i == last else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print("  " + cells(headers))
    for r in rows:
        print("  " + cells(r))
