"""A bounded, ordered on-disk queue of outgoing MQTT messages (sqlite3 in WAL mode, stdlib only).

Every event is written here before it is handed to the MQTT client and deleted only after the
broker acknowledged it, so a broker outage or a process restart loses nothing. The queue is
bounded in events and in bytes: past either bound the oldest rows are dropped and counted, which
bounds disk use on a device that stays offline for days.

A full or failing disk never stops the device: an event that cannot be written is dropped and
counted with its reason, and writing resumes by itself once space returns. Only real corruption
(sqlite says "malformed" / "not a database", or `PRAGMA quick_check` fails) moves a spool aside,
and its readable rows are copied into a fresh spool first. The spool holds an emotion history, so
its directory is 0700 and its files 0600.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgeError
from ..logsummary import Repeats

log = logging.getLogger(__name__)

SPOOL_FILENAME = "mqtt_spool.sqlite3"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MIN_MAX_BYTES = 64 * 1024
ROW_OVERHEAD = 40  # bytes sqlite spends per row next to topic and payload (id, qos, created, cell header)
WAL_CHECKPOINT_PAGES = 64  # checkpoint the WAL every 64 pages (256 KiB) instead of sqlite's 1000 (4 MiB)
WAL_SIZE_LIMIT = 256 * 1024  # and truncate it back to this after each checkpoint
SHRINK_AT_BYTES = 256 * 1024  # a drained spool whose free pages exceed this gives them back to the disk
REOPEN_INTERVAL_S = 2.0  # how often a spool that could not be opened (disk full, I/O error) is retried
SIDE_FILES = ("-wal", "-shm", "-journal")
EVENTS_TABLE = ("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                "payload BLOB NOT NULL, qos INTEGER NOT NULL, created REAL NOT NULL)")
DEAD_LETTER_TABLE = ("CREATE TABLE IF NOT EXISTS dead_letter (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
                     "payload BLOB NOT NULL, qos INTEGER NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL)")
EVENT_SIZE = f"length(topic) + length(payload) + {ROW_OVERHEAD}"  # the bytes one row counts against max_bytes
DEAD_SIZE = f"length(topic) + length(payload) + length(reason) + {ROW_OVERHEAD}"
CHUNK = 500  # ids per statement (sqlite before 3.32 allows 999 parameters)

_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_NOT_WRITABLE = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH
_REASONS = {13: "disk_full", 8: "read_only", 10: "io_error", 11: "corrupt", 26: "corrupt"}


def _code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _reason(exc: BaseException, directory: Path) -> str:
    """A short drop reason for the health topic. sqlite reports a full disk as SQLITE_FULL only for some writes
    (the -shm file, for one, fails as an I/O error), so an I/O error on a file system without room is disk_full."""
    if isinstance(exc, sqlite3.Error):
        reason = _REASONS.get(_code(exc), "sqlite_error")
    else:
        reason = "disk_full" if getattr(exc, "errno", None) == 28 else "io_error"
    if reason == "io_error":
        try:
            room = os.statvfs(directory)
            if room.f_bavail * room.f_frsize < MIN_MAX_BYTES:
                return "disk_full"
        except OSError:
            pass
    return reason


def private_dir(path: Path, setting: str = "device.data_dir") -> Path:
    """Create `path` (0700) or tighten an existing one we own, and make sure we can write in it.

    A read-only, missing-and-uncreatable or foreign directory is an EdgeError naming the path and the fix,
    because nothing the runtime stores could be written there. Shared directories (sticky bit, like /tmp)
    and directories of other users keep their mode.
    """
    path = Path(path)
    fix = f"make {path} writable for user {os.geteuid()} or set {setting} to a writable directory"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise EdgeError(f"cannot create {path} ({exc.strerror or exc}): {fix}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise EdgeError(f"{path} is not a directory: {fix}")
    if not os.access(path, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_fs(path) else "permission denied"
        raise EdgeError(f"{path} is not writable ({why}): {fix}")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and info.st_uid == os.geteuid() and not mode & stat.S_ISVTX:
        try:
            path.chmod(0o700)
        except OSError as exc:
            log.warning("could not restrict %s to its owner (%s)", path, exc)
    return path


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _private_file(path: Path) -> None:
    """Create an empty file 0600 (an empty file is a valid empty database) or tighten an existing one;
    sqlite gives the -wal and -shm files the mode of the database file."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        return
    os.close(fd)


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    created: float


class Spool:
    """Thread-safe FIFO of (topic, payload, qos) rows that survives restarts, full disks and corruption.

    Messages the broker refused for good wait in a `dead_letter` table. They count in the same bounds as
    undelivered events and are the first to go when the spool is full (oldest first, counted as
    `dead_letter_bound`), so a broker that refuses everything cannot grow the file without limit.
    """

    def __init__(self, path: Path, max_events: int = 100_000, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_events < 1:
            raise EdgeError(f"mqtt.spool_max_events must be at least 1, not {max_events}")
        if max_bytes < MIN_MAX_BYTES:
            raise EdgeError(f"mqtt.spool_max_bytes must be at least {MIN_MAX_BYTES}, not {max_bytes}")
        self.path = Path(path)
        self.max_events = int(max_events)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._dropped = 0
        self._drops: dict[str, int] = {}
        self._failing = ""  # reason of the write failure being reported, "" while writes succeed
        self._failed_since = 0
        self._next_open = 0.0
        self._repeats = Repeats(log)  # drops happen per event: first one logged, then counts per interval
        self._depth = 0
        self._bytes = 0
        self._dead = 0  # rows in dead_letter
        self._dead_bytes = 0
        private_dir(self.path.parent, "device.data_dir")
        self._db = self._placeholder()
        self._open_ok = False
        with self._lock:
            self._try_open(initial=True)

    # ---- opening, corruption and salvage ------------------------------------------------------

    def _try_open(self, initial: bool = False) -> bool:
        """Open the spool (lock held); on a full or failing disk stay closed and retry later. Only the first
        open raises EdgeError for a spool that cannot be written at all: later ones run inside append()."""
        try:
            opened = self._open()
        except EdgeError as exc:
            if initial:
                raise
            self._next_open = time.monotonic() + REOPEN_INTERVAL_S
            self._note_failure("read_only", exc)
            return False
        except (sqlite3.Error, OSError) as exc:
            self._next_open = time.monotonic() + REOPEN_INTERVAL_S
            self._note_failure(_reason(exc, self.path.parent), exc)
            return False
        self._db.close()
        self._db, self._open_ok = opened, True
        self._depth, self._bytes = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM({EVENT_SIZE}), 0) FROM events"
                                                    ).fetchone()
        self._dead, self._dead_bytes = 0, 0
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dead_letter'").fetchone():
            self._dead, self._dead_bytes = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({DEAD_SIZE}), 0) FROM dead_letter").fetchone()
        if self._depth:
            log.info("MQTT spool %s holds %d undelivered events from an earlier run", self.path, self._depth)
        self._trim_now()
        return True

    def _open(self) -> sqlite3.Connection:
        self._finish_salvage()
        try:
            _private_file(self.path)
            for suffix in SIDE_FILES:
                side = Path(str(self.path) + suffix)
                if side.exists() and stat.S_IMODE(side.stat().st_mode) & 0o077:
                    side.chmod(0o600)
        except OSError as exc:
            if exc.errno in (1, 13, 30):  # EPERM, EACCES, EROFS
                raise self._not_writable(exc) from None
            raise
        db = None
        try:
            db = self._connect(self.path)
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check == "ok":
                return db
            problem = check
        except sqlite3.DatabaseError as exc:
            if _code(exc) in _NOT_WRITABLE:
                if db is not None:
                    db.close()
                raise self._not_writable(exc) from None
            if _code(exc) not in _CORRUPT:
                if db is not None:
                    db.close()
                raise
            problem = str(exc)
        return self._salvage(db, problem)

    def _not_writable(self, exc: BaseException) -> EdgeError:
        return EdgeError(f"cannot write the MQTT spool {self.path} ({exc}): make {self.path.parent} and its files "
                         f"writable for user {os.geteuid()} or set device.data_dir to a writable directory")

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (not a power cut mid-commit) without an fsync per event.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            db.execute(EVENTS_TABLE)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _placeholder() -> sqlite3.Connection:
        """An empty in-memory stand-in while the file cannot be opened: every reader of `_db` sees an empty spool
        instead of None, and append() stores nothing in it (it checks `_open_ok`)."""
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.execute(EVENTS_TABLE)
        return db

    def _salvage_path(self) -> Path:
        return self.path.with_name(self.path.name + ".salvage")

    def _finish_salvage(self) -> None:
        """A salvage interrupted after the corrupt file was moved aside: its copy is complete, put it in place.
        One interrupted before that is incomplete: remove it (the corrupt original is still there)."""
        salvage = self._salvage_path()
        if not salvage.exists():
            return
        if self.path.exists():
            salvage.unlink()
        else:
            os.replace(salvage, self.path)

    def _salvage(self, db: sqlite3.Connection | None, problem: str) -> sqlite3.Connection:
        """Copy every readable row into a fresh spool, then move the corrupt file aside (keeping only the newest
        corrupt file: one is enough to inspect, and each holds a copy of rows that were already replayed)."""
        salvage = self._salvage_path()
        for candidate in [salvage] + [Path(str(salvage) + s) for s in SIDE_FILES]:
            candidate.unlink(missing_ok=True)
        _private_file(salvage)
        fresh = self._connect(salvage)
        copied = 0
        try:
            if db is not None:
                copied = self._copy_readable(db, fresh)
            fresh.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename
        finally:
            fresh.close()
            if db is not None:
                db.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for old in self.path.parent.glob(f"{self.path.name}.corrupt-*"):
            old.unlink(missing_ok=True)
        for suffix in ("",) + SIDE_FILES:
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                os.replace(candidate, Path(str(aside) + suffix))
        os.replace(salvage, self.path)
        log.error("MQTT spool %s is corrupt (%s): replayed %d readable event(s) into a fresh spool and moved the "
                  "corrupt file to %s", self.path, problem, copied, aside)
        return self._connect(self.path)

    @staticmethod
    def _copy_readable(src: sqlite3.Connection, dst: sqlite3.Connection) -> int:
        """Rows of every table both files know, read in rowid order and stepping over unreadable pages.
        Returns how many events were copied."""
        try:
            tables = src.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                 "AND name NOT LIKE 'sqlite_%'").fetchall()
        except sqlite3.DatabaseError:
            tables = [("events", None)]
        known = {row[0] for row in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        copied = 0
        dst.execute("BEGIN")
        for name, sql in tables:
            if name not in known:
                if not sql:
                    continue
                dst.execute(sql)
            columns = ", ".join(f'"{row[1]}"' for row in dst.execute(f'PRAGMA table_info("{name}")'))
            marks = ", ".join("?" * (columns.count(",") + 2))
            last, misses = 0, 0
            while misses < 96:
                rows, failed = [], False
                try:
                    for row in src.execute(f'SELECT rowid, {columns} FROM "{name}" WHERE rowid > ? ORDER BY rowid '
                                           'LIMIT 500', (last,)):
                        rows.append(row)
                except sqlite3.DatabaseError:
                    failed = True
                if rows:
                    dst.executemany(f'INSERT OR IGNORE INTO "{name}" (rowid, {columns}) VALUES ({marks})', rows)
                    last, misses = rows[-1][0], 0
                    copied += len(rows) if name == "events" else 0
                if failed:  # an unreadable page: step over it one row at a time, then in growing leaps
                    misses += 1
                    last += 1 if misses <= 32 else 2 ** (misses - 32)
                elif not rows:
                    break
        dst.execute("COMMIT")
        return copied

    # ---- writing ------------------------------------------------------------------------------

    def append(self, topic: str, payload: bytes | str, qos: int = 1) -> int | None:
        """Store one message; returns its id, or None when it could not be stored (see `append_many`)."""
        return self.append_many([(topic, payload, qos)])[0]

    def append_many(self, messages: Iterable[tuple[str, bytes | str, int]]) -> list[int | None]:
        """Store (topic, payload, qos) messages in order, in one transaction; returns their ids, None for each one
        that could not be stored (counted in `drops`).

        Never raises for a full, read-only or failing disk: the batch is dropped and counted, and the next call
        tries again, so storing resumes as soon as space returns. A message larger than `max_bytes` is dropped
        alone. Past the bounds the oldest dead letters, then the oldest events are dropped in the same transaction.
        """
        now = time.time()
        rows, sizes = [], []
        for topic, payload, qos in messages:
            data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
            rows.append((topic, data, int(qos), now))
            sizes.append(len(topic.encode("utf-8")) + len(data) + ROW_OVERHEAD)
        ids: list[int | None] = [None] * len(rows)
        with self._lock:
            keep = [i for i, size in enumerate(sizes) if size <= self.max_bytes]
            for i in range(len(rows)):
                if sizes[i] > self.max_bytes:
                    self._count_drop("too_large")
                    self._repeats.note("too_large", logging.WARNING, "MQTT event of %d bytes is larger than "
                                       "mqtt.spool_max_bytes (%d); dropped it (%d such event(s) so far)",
                                       sizes[i], self.max_bytes, self._drops["too_large"])
            if not keep:
                return ids
            if not self._open_ok and (time.monotonic() < self._next_open or not self._try_open()):
                for _ in keep:
                    self._count_drop(self._failing or "unavailable")
                return ids
            saved = self._counts()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT INTO events (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                                         [rows[i] for i in keep])
                    last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    self._depth += len(keep)
                    self._bytes += sum(sizes[i] for i in keep)
                    trimmed = self._trim()
                    self._db.execute("COMMIT")
                except BaseException:
                    self._restore(saved)
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                reason = _reason(exc, self.path.parent)
                self._note_failure(reason, exc)
                for _ in keep:
                    self._count_drop(reason)
                return ids
            # One writer under the lock, AUTOINCREMENT: the batch got consecutive ids ending at `last`.
            for offset, i in enumerate(keep):
                ids[i] = last - len(keep) + 1 + offset
            self._recovered()
            self._log_trim(trimmed)
            return ids

    def _counts(self) -> tuple:
        return self._depth, self._bytes, self._dead, self._dead_bytes, self._dropped, dict(self._drops)

    def _restore(self, saved: tuple) -> None:
        self._depth, self._bytes, self._dead, self._dead_bytes, self._dropped, self._drops = saved

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("spool rollback failed: %s", exc)

    def _trim(self) -> tuple[int, int]:
        """Delete the oldest dead letters, then the oldest events, while over either bound (lock held; the
        caller owns the transaction). Returns (events, dead letters) deleted."""
        over_rows = self._depth + self._dead - self.max_events
        over_bytes = self._bytes + self._dead_bytes - self.max_bytes
        if over_rows <= 0 and over_bytes <= 0:
            return 0, 0
        dead, dead_bytes = self._oldest("dead_letter", DEAD_SIZE, over_rows, over_bytes) if self._dead else (0, 0)
        events, event_bytes = self._oldest("events", EVENT_SIZE, over_rows - dead, over_bytes - dead_bytes)
        for table, count in (("dead_letter", dead), ("events", events)):
            if count:
                self._db.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?)",
                                 (count,))
        self._dead -= dead
        self._dead_bytes -= dead_bytes
        self._depth -= events
        self._bytes -= event_bytes
        self._dropped += events + dead
        for reason, count in (("bound", events), ("dead_letter_bound", dead)):
            if count:
                self._drops[reason] = self._drops.get(reason, 0) + count
        return events, dead

    def _oldest(self, table: str, size: str, rows: int, nbytes: int) -> tuple[int, int]:
        """How many of the oldest rows of `table` cover `rows` rows and `nbytes` bytes, and their bytes."""
        count, total = 0, 0
        if rows <= 0 and nbytes <= 0:
            return 0, 0
        for (row_size,) in self._db.execute(f"SELECT {size} FROM {table} ORDER BY id"):
            if count >= rows and total >= nbytes:
                break
            count += 1
            total += row_size
        return count, total

    def _trim_now(self) -> None:
        """Trim in a transaction of its own (lock held): after opening with smaller bounds."""
        saved = self._counts()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            trimmed = self._trim()
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._restore(saved)
            self._rollback()
            self._repeats.note("trim_failed", logging.WARNING, "MQTT spool could not drop its oldest events (%s); "
                               "will retry", exc)
            return
        self._log_trim(trimmed)

    def _log_trim(self, trimmed: tuple[int, int]) -> None:
        events, dead = trimmed
        if events:
            self._repeats.note("bound", logging.WARNING, "MQTT spool full (%d events / %d bytes at most, dead "
                               "letters included): dropping the oldest undelivered events (%d so far)",
                               self.max_events, self.max_bytes, self._drops["bound"])
        if dead:
            self._repeats.note("dead_letter_bound", logging.WARNING, "MQTT spool full: purging the oldest events the "
                               "broker refused (dead letters) to make room (%d so far)",
                               self._drops["dead_letter_bound"])

    def _count_drop(self, reason: str) -> None:
        self._dropped += 1
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _note_failure(self, reason: str, exc: BaseException) -> None:
        """Log a write failure once per episode, not once per event (lock held)."""
        if not self._failing:
            self._failed_since = self._dropped
            log.warning("MQTT spool %s cannot store events (%s: %s): dropping new events until it can; "
                        "free space in %s", self.path, reason, exc, self.path.parent)
        self._failing = reason

    def _recovered(self) -> None:
        if self._failing:
            log.info("MQTT spool %s stores events again (%d event(s) dropped while it could not)",
                     self.path, self._dropped - self._failed_since)
            self._failing = ""

    # ---- reading and acknowledging ------------------------------------------------------------

    def peek(self, after_id: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """The oldest `limit` messages with id > after_id, in order (none while the spool cannot be opened)."""
        with self._lock:
            if not self._open_ok:
                if time.monotonic() < self._next_open or not self._try_open():
                    return []
            try:
                rows = self._db.execute("SELECT id, topic, payload, qos, created FROM events WHERE id > ? "
                                        "ORDER BY id LIMIT ?", (int(after_id), int(limit))).fetchall()
            except sqlite3.Error as exc:
                self._repeats.note("read_failed", logging.WARNING, "MQTT spool %s could not be read (%s); will retry",
                                   self.path, exc)
                return []
        return [SpooledMessage(row[0], row[1], bytes(row[2]), row[3], row[4]) for row in rows]

    def ack(self, message_id: int) -> bool:
        """Delete a delivered message; False when it was already gone (dropped by the bound) or the delete
        failed (then it is sent again after a restart: at-least-once)."""
        return self.ack_many([message_id]) == 1

    def ack_many(self, message_ids: Iterable[int]) -> int:
        """Delete delivered messages in one transaction; returns how many were deleted (ids already gone are
        skipped; when the delete fails none is deleted and they are sent again after a restart). A drained spool
        shrinks its file."""
        ids = sorted({int(i) for i in message_ids})
        with self._lock:
            if not self._open_ok or not ids:
                return 0
            deleted, freed = 0, 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if ids[-1] - ids[0] + 1 == len(ids):  # the usual case: a run of consecutive ids
                        chunks = [("BETWEEN ? AND ?", (ids[0], ids[-1]))]
                    else:
                        chunks = [(f"IN ({','.join('?' * len(part))})", part)
                                  for part in (ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK))]
                    for where, args in chunks:
                        count, size = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM({EVENT_SIZE}), 0) FROM events "
                                                       f"WHERE id {where}", args).fetchone()
                        self._db.execute(f"DELETE FROM events WHERE id {where}", args)
                        deleted += count
                        freed += size
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                self._repeats.note("ack_failed", logging.WARNING, "MQTT spool could not delete %d delivered event(s) "
                                   "(%s); they are sent again after a restart", len(ids), exc)
                return 0
            self._depth -= deleted
            self._bytes -= freed
            if deleted and self._depth == 0:
                self._shrink()
            return deleted

    def _shrink(self) -> None:
        """Give the free pages of a drained spool back to the disk (lock held)."""
        try:
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            if free * page < SHRINK_AT_BYTES:
                return
            # VACUUM rewrites only what is left (no events, perhaps a few dead letters), so it is quick here.
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("spool shrink failed: %s", exc)

    def depth(self) -> int:
        with self._lock:
            return self._depth

    def size_bytes(self) -> int:
        """Bytes of the stored rows, the figure `max_bytes` bounds."""
        with self._lock:
            return self._bytes

    @property
    def dropped(self) -> int:
        """Events dropped since this spool was opened: by the bounds or because they could not be written."""
        with self._lock:
            return self._dropped

    @property
    def drops(self) -> dict[str, int]:
        """Dropped events by reason: bound, disk_full, read_only, io_error, corrupt, too_large, unavailable."""
        with self._lock:
            return dict(self._drops)

    def close(self) -> None:
        self._repeats.flush()
        with self._lock:
            if not self._open_ok:
                self._db.close()
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.debug("spool checkpoint failed: %s", exc)
            self._db.close()

    def set_aside(self, message_id: int, reason: str) -> bool:
        """Move one refused message to `dead_letter` (see `set_aside_many`); True when it was moved."""
        return self.set_aside_many([(message_id, reason)]) == 1

    def set_aside_many(self, refused: Iterable[tuple[int, str]]) -> int:
        """Move messages the broker refused for good into `dead_letter` with the broker's reason, in one
        transaction: they leave the send queue (so they cannot block newer events) and are kept until the bounds
        need their room. When the move fails (full disk) they stay queued and are offered to the broker again
        after a restart. Returns how many were moved."""
        items = [(int(i), str(reason)) for i, reason in refused]
        with self._lock:
            if not self._open_ok or not items:
                return 0
            saved = self._counts()
            now, moved = time.time(), 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(DEAD_LETTER_TABLE)
                    for message_id, reason in items:
                        row = self._db.execute(f"SELECT {EVENT_SIZE} FROM events WHERE id = ?",
                                               (message_id,)).fetchone()
                        if row is None:  # already dropped by the bound
                            continue
                        self._db.execute("INSERT OR REPLACE INTO dead_letter (id, topic, payload, qos, reason, time) "
                                         "SELECT id, topic, payload, qos, ?, ? FROM events WHERE id = ?",
                                         (reason, now, message_id))
                        self._db.execute("DELETE FROM events WHERE id = ?", (message_id,))
                        moved += 1
                        self._depth -= 1
                        self._bytes -= row[0]
                        self._dead += 1
                        self._dead_bytes += row[0] + len(reason.encode("utf-8"))
                    trimmed = self._trim()
                    self._db.execute("COMMIT")
                except BaseException:
                    self._restore(saved)
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                self._repeats.note("set_aside_failed", logging.WARNING, "MQTT spool could not set aside %d refused "
                                   "event(s) (%s); they stay spooled", len(items), exc)
                return 0
            self._log_trim(trimmed)
            return moved

    def dead_letters(self) -> int:
        """How many refused messages `dead_letter` keeps (over all runs, minus those the bounds purged)."""
        with self._lock:
            return self._dead
