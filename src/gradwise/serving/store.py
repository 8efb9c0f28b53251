"""The prediction store: every served prediction and every piece of feedback, in a database.

Writes happen off the request path: the server hands records to a queue, and one writer
thread per process turns them into JSON and inserts them in batches, one transaction every
`flush_interval_s` (or sooner when many are waiting). A `kill -9` of the server therefore
loses at most the records of the last flush interval; what was committed stays, and the
database is never left half-written (SQLite in WAL mode, or PostgreSQL, commit atomically).

SQLite (WAL mode, no set-up) is the default, at RUN/monitor/predictions.sqlite; several
replicas on several machines write to one PostgreSQL (`postgresql+psycopg://...`).
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from gradwise.errors import ConfigError
from gradwise.logs import LOG

log = logging.getLogger(LOG)

DEFAULT_STORE = "monitor/predictions.sqlite"  # under the run directory
OFF = "off"

metadata = sa.MetaData()
# one row per request: the body as the client sent it and the answer as it was sent back, so
# logging costs no re-encoding on the server (the monitor splits them into instances)
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # no secondary index: an index on the random request ids made every insert a random
    # B-tree write (3x the writer's CPU on a store of 100,000 requests); the monitor reads
    # the rows after the last id it saw (the primary key) and sorts those by time itself
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("time", sa.Float, nullable=False),  # Unix seconds
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("replica_id", sa.String(128), nullable=False),
    sa.Column("n_instances", sa.Integer, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),  # the request body: {"instances": [...]}
    sa.Column("outputs", sa.Text, nullable=False),  # the predictions: [{...}, ...] as JSON
    sa.Column("confidence", sa.Float, nullable=True),  # mean top probability of the instances
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("label", sa.Text, nullable=False),  # the true label or value, as JSON
)


def store_url(store: str | None, run_dir: str | Path) -> str | None:
    """The SQLAlchemy URL of a `--store` value: None -> RUN/monitor/predictions.sqlite, a path
    -> SQLite there, `off` -> None (no log), `postgresql://` -> the psycopg driver.

    Raises:
        ConfigError: a URL SQLAlchemy cannot parse.
    """
    if store == OFF:
        return None
    if store is None:
        path = Path(run_dir) / DEFAULT_STORE
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in store:  # a file path
        Path(store).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(store).expanduser()}"
    if store.startswith(("postgresql://", "postgres://")):
        store = "postgresql+psycopg://" + store.split("://", 1)[1]
    try:
        sa.engine.make_url(store)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"--store {store!r} is not a database URL; give a SQLite path, sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST:PORT/DB."
        ) from None
    return store


def make_engine(url: str) -> sa.Engine:
    """An engine with SQLite in WAL mode (readers never block the writer; a crash mid-write
    leaves the last committed state) and a busy timeout so several processes can write.

    Raises:
        ConfigError: the database driver is not installed or the URL is unusable.
    """
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(
            f"Cannot use the store {url}: {exc}. For PostgreSQL install psycopg "
            "(pip install 'gradwise[postgres]')."
        ) from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash in WAL mode
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_tables(engine: sa.Engine) -> None:
    """Create the tables if missing (several replicas may race to do it).

    Raises:
        ConfigError: the database holds tables of these names with other columns.
    """
    try:
        metadata.create_all(engine)
    except sa.exc.IntegrityError:
        pass  # another replica created them first
    except sa.exc.ProgrammingError as exc:
        if "already exists" not in str(exc):
            raise
    inspector = sa.inspect(engine)
    for table in (predictions, feedback):
        found = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in found]
        if missing:
            raise ConfigError(
                f"The store {redact_url(str(engine.url))} has a {table.name} table without the "
                f"column(s) {', '.join(missing)}: another tool or an older gradwise wrote it. "
                "Give --store a new database (or file)."
            )


def open_store(url: str) -> sa.Engine:
    """An engine on a usable store: reachable, tables created and of the expected shape.

    Raises:
        ConfigError: the database cannot be reached, or holds tables of another shape.
    """
    engine = make_engine(url)
    try:
        create_tables(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"Cannot open the prediction store {redact_url(url)}: {reason}. Check --store (and "
            "that the database server is running)."
        ) from None
    except ConfigError:
        engine.dispose()
        raise
    return engine


PREDICTION_KEYS = (
    "request_id", "time", "model_version", "replica_id", "n_instances", "inputs", "outputs",
    "confidence",
)  # fmt: skip
FEEDBACK_KEYS = ("request_id", "row", "time", "label")


ROWS_PER_INSERT = 500  # rows per multi-row INSERT (SQLite allows 32766 parameters)


@dataclass(frozen=True)
class _Insert:
    """Multi-row INSERTs in the driver's own parameter style: one statement per
    ROWS_PER_INSERT rows, so the driver releases and retakes the GIL once per statement
    rather than once per row (as executemany does), and SQLAlchemy's per-row work is not
    paid on the server's time."""

    table: str
    keys: tuple[str, ...]
    mark: str  # the placeholder: ? (qmark) or %s (format)
    quoted: tuple[str, ...]

    def statements(self, rows: list[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
        """(SQL, parameters) per chunk of rows; each row holds the values in `keys` order."""
        one = "(" + ", ".join([self.mark] * len(self.keys)) + ")"
        head = f"INSERT INTO {self.table} ({', '.join(self.quoted)}) VALUES "
        out = []
        for a in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[a : a + ROWS_PER_INSERT]
            params = tuple(itertools.chain.from_iterable(chunk))
            out.append((head + ", ".join([one] * len(chunk)), params))
        return out


def _driver_insert(table: sa.Table, keys: tuple[str, ...], engine: sa.Engine) -> _Insert:
    dialect = engine.dialect
    marks = {"qmark": "?", "format": "%s", "pyformat": "%s"}
    if dialect.paramstyle not in marks:
        raise ConfigError(
            f"The store's driver uses the {dialect.paramstyle} parameter style; gradwise writes "
            "to SQLite and PostgreSQL (psycopg)."
        )
    quote = dialect.identifier_preparer.quote
    return _Insert(table.name, keys, marks[dialect.paramstyle], tuple(quote(k) for k in keys))


class PredictionRecord(NamedTuple):
    """One served request, as it went over the wire (a tuple: made on the request path).

    Attributes:
        inputs: the request body (JSON bytes or text).
        outputs: the JSON list of per-instance predictions sent back.
        confidence: the mean top probability over the instances (None for regression).
    """

    request_id: str
    time: float
    model_version: str
    n_instances: int
    inputs: bytes | str
    outputs: str
    confidence: float | None


class FeedbackRecord(NamedTuple):
    """The true label of instance `row` of request `request_id`, as JSON-able data."""

    request_id: str
    row: int
    time: float
    label: Any


class PredictionStore:
    """A writer thread that inserts records in batches, off the request path.

    Args:
        url: SQLAlchemy URL.
        replica_id: written with every prediction, so the monitor can tell replicas apart.
        flush_interval_s: longest a record waits before its transaction commits (the most a
            `kill -9` can lose).
        max_pending: records kept in memory while the database is unreachable; beyond it the
            oldest are dropped (counted in `n_dropped`) rather than the server running out
            of memory.
    """

    def __init__(
        self,
        url: str,
        replica_id: str,
        flush_interval_s: float = 0.5,
        max_pending: int = 200_000,
    ) -> None:
        self.url = url
        self.replica_id = replica_id
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[PredictionRecord | FeedbackRecord] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: sa.Engine | None = None
        self._insert_prediction: _Insert | None = None
        self._insert_feedback: _Insert | None = None
        self._flushed = threading.Condition()
        # put() runs on the event loop (predict, feedback) and in Starlette's thread pool (a
        # generation's summary): `+= 1` is a read, an add and a write, which threads can
        # interleave and so lose counts
        self._counting = threading.Lock()
        self.n_queued = 0
        self.n_written = 0
        self.n_dropped = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Connect, create the tables, and start the writer thread.

        Raises:
            ConfigError: the database cannot be reached or written.
        """
        self._engine = open_store(self.url)
        self._insert_prediction = _driver_insert(predictions, PREDICTION_KEYS, self._engine)
        self._insert_feedback = _driver_insert(feedback, FEEDBACK_KEYS, self._engine)
        self._thread = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        return self.n_queued - self.n_written - self.n_dropped

    def put(self, record: PredictionRecord | FeedbackRecord) -> None:
        """Queue a record (never blocks; safe from any thread)."""
        with self._counting:
            self.n_queued += 1
        self._queue.put(record)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every record queued so far is written; True if it was in time."""
        target = self.n_queued
        deadline = time.monotonic() + timeout_s
        with self._flushed:
            while self.n_written + self.n_dropped < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive:
                    return False
                self._flushed.wait(left)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_s)
        if self._engine is not None:
            self._engine.dispose()
        self._thread = None

    def _write_loop(self) -> None:
        # The writer sleeps between flushes rather than waiting on the queue: woken by every
        # put, it would take the GIL from the event loop once per request.
        pending: list[PredictionRecord | FeedbackRecord] = []
        while True:
            stopping = self._stop.wait(self.flush_interval_s)
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if pending:
                pending = self._write(pending, give_up=stopping)
            if stopping and self._queue.empty() and not pending:
                return

    def _write(
        self, records: list[PredictionRecord | FeedbackRecord], give_up: bool
    ) -> list[PredictionRecord | FeedbackRecord]:
        """Insert `records` in one transaction; returns what is still to write."""
        assert self._engine is not None
        preds = [self._prediction_row(r) for r in records if isinstance(r, PredictionRecord)]
        labels = [_feedback_row(r) for r in records if isinstance(r, FeedbackRecord)]
        try:
            with self._engine.begin() as conn:
                for insert, rows in (
                    (self._insert_prediction, preds),
                    (self._insert_feedback, labels),
                ):
                    assert insert is not None
                    for sql, params in insert.statements(rows):
                        conn.exec_driver_sql(sql, params)
        except sa.exc.SQLAlchemyError as exc:
            self.last_error = str(exc).splitlines()[0]
            log.warning("prediction store: write failed (%s); will retry", self.last_error)
            if give_up:
                self._done(dropped=len(records))
                return []
            excess = max(0, len(records) - self.max_pending)
            if excess:
                self._done(dropped=excess)
            time.sleep(min(1.0, self.flush_interval_s))
            return records[excess:]
        self.last_error = None
        self._done(written=len(records))
        return []

    def _done(self, written: int = 0, dropped: int = 0) -> None:
        with self._flushed:
            self.n_written += written
            self.n_dropped += dropped
            self._flushed.notify_all()

    def _prediction_row(self, r: PredictionRecord) -> tuple[Any, ...]:
        inputs = r.inputs.decode("utf-8", "replace") if isinstance(r.inputs, bytes) else r.inputs
        # in PREDICTION_KEYS order
        return (
            r.request_id,
            r.time,
            r.model_version,
            self.replica_id,
            r.n_instances,
            inputs,
            r.outputs,
            r.confidence,
        )


def _feedback_row(r: FeedbackRecord) -> tuple[Any, ...]:
    return (r.request_id, r.row, r.time, json.dumps(r.label))  # FEEDBACK_KEYS order


def redact_url(url: str) -> str:
    """The URL without its password, for messages (the server's and the monitor's)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
