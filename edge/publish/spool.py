"""A bounded, ordered on-disk queue of outgoing MQTT messages (sqlite3 in WAL mode, stdlib only).

Every event is written here before it is handed to the MQTT client and deleted only after the
broker acknowledged it, so a broker outage or a process restart loses nothing. Past
`max_events` the oldest rows are dropped and counted, which bounds disk use on a device that
stays offline for days.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgeError

log = logging.getLogger(__name__)

SPOOL_FILENAME = "mqtt_spool.sqlite3"


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    created: float


class Spool:
    """Thread-safe FIFO of (topic, payload, qos) rows that survives restarts."""

    def __init__(self, path: Path, max_events: int = 100_000):
        if max_events < 1:
            raise EdgeError(f"mqtt.spool_max_events must be at least 1, not {max_events}")
        self.path = Path(path)
        self.max_events = int(max_events)
        self._lock = threading.Lock()
        self._dropped = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create the MQTT spool directory {self.path.parent}: {exc}; "
                            "point the spool directory at a writable location") from exc
        self._db = self._open()
        self._depth = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        if self._depth:
            log.info("MQTT spool %s holds %d undelivered events from an earlier run", self.path, self._depth)
        self._trim()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # A corrupt spool must not stop the device: keep the file for inspection, start empty.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("MQTT spool %s is unreadable (%s); moved it to %s and starting an empty spool",
                      self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                candidate = Path(str(self.path) + suffix)
                if candidate.exists():
                    os.replace(candidate, Path(str(aside) + suffix))
            return self._connect()
        except OSError as exc:
            raise EdgeError(f"cannot open the MQTT spool {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (not a power cut mid-commit) without an fsync per event.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS events ("
                   "id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL, "
                   "qos INTEGER NOT NULL, created REAL NOT NULL)")
        db.execute("SELECT COUNT(*) FROM events").fetchone()
        return db

    def append(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        """Store one message; returns its id. Drops the oldest rows when the bound is reached."""
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        with self._lock:
            cursor = self._db.execute("INSERT INTO events (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                                      (topic, data, int(qos), time.time()))
            self._depth += 1
            self._trim()
            return int(cursor.lastrowid)

    def _trim(self) -> None:
        excess = self._depth - self.max_events
        if excess <= 0:
            return
        self._db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)", (excess,))
        self._depth -= excess
        self._dropped += excess
        log.warning("MQTT spool full (%d events): dropped the %d oldest undelivered event(s)",
                    self.max_events, excess)

    def peek(self, after_id: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """The oldest `limit` messages with id > after_id, in order."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, qos, created FROM events WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (int(after_id), int(limit))).fetchall()
        return [SpooledMessage(row[0], row[1], bytes(row[2]), row[3], row[4]) for row in rows]

    def ack(self, message_id: int) -> bool:
        """Delete a delivered message; False when it was already gone (dropped by the bound)."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM events WHERE id = ?", (int(message_id),)).rowcount
            self._depth -= deleted
            return deleted > 0

    def depth(self) -> int:
        with self._lock:
            return self._depth

    @property
    def dropped(self) -> int:
        """Events dropped by the bound since this spool was opened."""
        with self._lock:
            return self._dropped

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.debug("spool checkpoint failed: %s", exc)
            self._db.close()
