"""One SQL connection for the job store, on SQLite (one machine) or PostgreSQL (several Orthancs and workers).

The job store writes its SQL once, with ``?`` placeholders and portable syntax (``ON CONFLICT`` upserts,
``RETURNING``); this module hides the rest:

* :class:`SqliteDatabase`: one connection serialised by a lock, ``BEGIN IMMEDIATE`` for writes (WAL,
  ``synchronous=FULL``), exactly as the store always ran;
* :class:`PostgresDatabase`: one psycopg connection serialised by a lock, ``%s`` placeholders, a claim query
  ending in ``FOR UPDATE SKIP LOCKED``, advisory locks for what must happen once across processes. A lost
  connection (the database restarted or unreachable) raises :class:`DatabaseUnavailable` and is opened
  again on the next call, so a caller that waits and retries rides out an outage.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

PRE_PING_AFTER_S = 1.0  # an idle PostgreSQL connection is checked before use (after a server restart)

Dialect = Literal["sqlite", "postgresql"]


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached now (connection refused or lost); the call may succeed later."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class SqlDatabase(Protocol):
    dialect: Dialect

    def transaction(self) -> Any:
        """A context manager: an :class:`Executor` inside one write transaction."""

    def reading(self) -> Any:
        """A context manager: an :class:`Executor` for reads."""

    def lock_in_transaction(self, db: Executor, key: str) -> None:
        """Serialise the rest of the transaction with every other holder of ``key`` (no-op on SQLite)."""

    def exclusive(self, key: str) -> Any:
        """A context manager held by one process at a time across the installation (no-op on SQLite)."""

    def close(self) -> None: ...


class SqliteDatabase:
    """The embedded default: a file under ``ONCOFLOW_HOME``, one process at a time writing."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def lock_in_transaction(self, db: Executor, key: str) -> None:
        """``BEGIN IMMEDIATE`` already serialises every writer of the file."""

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        yield  # one process owns an SQLite job store

    def columns(self, table: str) -> set[str]:
        with self._lock:
            return {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PostgresExecutor:
    """``?`` placeholders as psycopg's ``%s``."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._connection.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))


class PostgresDatabase:
    """A shared PostgreSQL database (``ONCOFLOW_DATABASE_URL``): the queue of every Orthanc and worker."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, schema: str, connect_timeout_s: float = 5.0) -> None:
        import psycopg  # only where PostgreSQL is configured

        self._psycopg = psycopg
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.RLock()
        self._connection: Any = None
        self._used_at = 0.0  # time.monotonic() of the connection's last use
        with self.transaction() as db:
            self.lock_in_transaction(db, "oncoflow-schema")  # concurrent CREATE TABLE IF NOT EXISTS collide
            for statement in (s.strip() for s in schema.split(";")):
                if statement:
                    db.execute(statement)

    def _connect(self) -> Any:
        """The open connection, checked with ``SELECT 1`` when idle for :data:`PRE_PING_AFTER_S` (a restarted
        server closes it, and that only shows at the next use): a new one when it is gone."""
        connection = self._connection
        if connection is not None and not (connection.closed or connection.broken) \
                and time.monotonic() - self._used_at > PRE_PING_AFTER_S:
            try:
                connection.execute("SELECT 1")
            except self._psycopg.Error:
                self._drop()
        self._used_at = time.monotonic()
        if self._connection is None or self._connection.closed or self._connection.broken:
            from psycopg.rows import dict_row

            try:
                self._connection = self._psycopg.connect(self._url, autocommit=True, row_factory=dict_row,
                                                         connect_timeout=max(1, int(self._connect_timeout_s)))
            except self._psycopg.OperationalError as exc:
                self._connection = None
                raise DatabaseUnavailable(f"PostgreSQL unreachable: {_first_line(exc)}") from exc
        return self._connection

    @contextmanager
    def _using(self, in_transaction: bool) -> Iterator[_PostgresExecutor]:
        with self._lock:
            connection = self._connect()
            try:
                if in_transaction:
                    with connection.transaction():
                        yield _PostgresExecutor(connection)
                else:
                    yield _PostgresExecutor(connection)
            except self._psycopg.OperationalError as exc:
                self._drop()
                raise DatabaseUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc

    def transaction(self) -> Any:
        return self._using(in_transaction=True)

    def reading(self) -> Any:
        return self._using(in_transaction=False)

    def lock_in_transaction(self, db: Executor, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """A session advisory lock on a connection of its own (waits for the holder in another process)."""
        try:
            connection = self._psycopg.connect(self._url, autocommit=True,
                                               connect_timeout=max(1, int(self._connect_timeout_s)))
        except self._psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL unreachable: {_first_line(exc)}") from exc
        try:
            connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            yield
        finally:
            connection.close()  # releases the lock

    def _drop(self) -> None:
        try:
            if self._connection is not None:
                self._connection.close()
        finally:
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def row_dict(row: Mapping[str, Any] | sqlite3.Row) -> dict[str, Any]:
    """A row of either driver as a plain dict."""
    return {key: row[key] for key in row.keys()}  # noqa: SIM118 (sqlite3.Row has keys(), not iteration by key)
