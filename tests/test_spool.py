"""The on-disk spool: order, acknowledgement, the bound, restarts and a corrupt file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
import time

import pytest

from edge.errors import EdgeError
from edge.publish.spool import Spool


def test_fifo_ack_and_depth(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", max_events=100)
    ids = [spool.append("t/a", f"m{i}", qos=1) for i in range(5)]
    assert ids == sorted(ids) and spool.depth() == 5
    first = spool.peek(limit=3)
    assert [m.payload for m in first] == [b"m0", b"m1", b"m2"] and first[0].topic == "t/a" and first[0].qos == 1
    assert [m.payload for m in spool.peek(after_id=first[-1].id)] == [b"m3", b"m4"]
    assert spool.ack(ids[1]) and not spool.ack(ids[1])  # acking twice deletes once
    assert [m.payload for m in spool.peek()] == [b"m0", b"m2", b"m3", b"m4"] and spool.depth() == 4
    spool.close()


def test_bound_drops_oldest_and_counts(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", max_events=3)
    for i in range(7):
        spool.append("t", f"m{i}")
    assert [m.payload for m in spool.peek()] == [b"m4", b"m5", b"m6"]
    assert spool.depth() == 3 and spool.dropped == 4
    spool.close()


def test_survives_reopen_and_a_smaller_bound(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, max_events=10)
    for i in range(6):
        spool.append("t", f"m{i}")
    spool.ack(spool.peek(limit=1)[0].id)
    spool.close()
    again = Spool(path, max_events=10)
    assert [m.payload for m in again.peek()] == [b"m1", b"m2", b"m3", b"m4", b"m5"] and again.depth() == 5
    new_id = again.append("t", "m6")
    assert new_id > again.peek()[-2].id  # ids keep increasing across restarts, so order holds
    again.close()
    smaller = Spool(path, max_events=2)
    assert [m.payload for m in smaller.peek()] == [b"m5", b"m6"] and smaller.dropped == 4
    smaller.close()


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "s.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path, max_events=10)
    assert spool.depth() == 0
    spool.append("t", "fresh")
    assert [m.payload for m in spool.peek()] == [b"fresh"]
    assert list(tmp_path.glob("s.sqlite3.corrupt-*"))
    spool.close()


def test_concurrent_appends_keep_every_event(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", max_events=10_000)

    def writer(name):
        for i in range(200):
            spool.append("t", f"{name}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    payloads = [m.payload.decode() for m in spool.peek(limit=10_000)]
    assert len(payloads) == 800 and spool.depth() == 800
    for name in "abcd":  # each writer's events stay in its own order
        mine = [p for p in payloads if p.startswith(name)]
        assert mine == [f"{name}-{i}" for i in range(200)]
    spool.close()


def test_bad_bound_is_an_edge_error(tmp_path):
    with pytest.raises(EdgeError, match="mqtt.spool_max_events"):
        Spool(tmp_path / "s.sqlite3", max_events=0)


def _fill(spool: Spool, count: int, size: int = 600) -> list[bytes]:
    payloads = [f"{i:05d}".encode() + b"x" * size for i in range(count)]
    for payload in payloads:
        spool.append("emotion_edge/testdev/face/event", payload)
    return payloads


def test_real_corruption_replays_readable_rows_and_keeps_one_corrupt_file(tmp_path):
    """Garbage over one page of a real spool: the rows on other pages are replayed in order into a fresh spool,
    the broken file is kept for inspection, and a second corruption replaces it rather than piling up."""
    path = tmp_path / "s.sqlite3"
    spool = Spool(path)
    payloads = _fill(spool, 300)
    spool.close()
    for round_ in range(2):
        data = bytearray(path.read_bytes())
        pages = len(data) // 4096
        data[(pages // 2) * 4096:(pages // 2 + 1) * 4096] = os.urandom(4096)
        path.write_bytes(bytes(data))
        again = Spool(path)
        replayed = [m.payload for m in again.peek(limit=1000)]
        assert len(payloads) - 10 <= len(replayed) < len(payloads) and again.depth() == len(replayed)  # one page lost
        assert replayed == [p for p in payloads if p in set(replayed)]  # oldest first, nothing invented
        assert again.append("t", "after") is not None
        assert len(list(tmp_path.glob("s.sqlite3.corrupt-*"))) == 1 and not list(tmp_path.glob("*.salvage"))
        payloads = replayed + [b"after"]
        again.close()
        time.sleep(1.1)  # the next corrupt file gets another name


def test_files_are_0600_and_dirs_0700_even_when_they_existed(tmp_path):
    """An older version left 0644 files (-wal and -shm too, as a crash leaves them) in a 0755 directory."""
    directory = tmp_path / "data" / "spool"
    directory.mkdir(parents=True, mode=0o755)
    os.chmod(directory, 0o755)
    old = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                "payload BLOB NOT NULL, qos INTEGER NOT NULL, created REAL NOT NULL)")
    old.execute("INSERT INTO events (topic, payload, qos, created) VALUES ('t', x'6f6c64', 1, 0)")
    for name in ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"):  # copied while open: a crashed process's files
        shutil.copyfile(tmp_path / name, directory / name)
        os.chmod(directory / name, 0o644)
    old.close()
    spool = Spool(directory / "s.sqlite3")
    assert [m.payload for m in spool.peek()] == [b"old"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    spool.close()
    fresh = Spool(tmp_path / "new" / "s.sqlite3")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "s.sqlite3").stat().st_mode) == 0o600
    fresh.close()


def test_bytes_bound_drops_oldest_and_bounds_the_files(tmp_path):
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, max_bytes=128 * 1024)
    payloads = _fill(spool, 2000)
    kept = [m.payload for m in spool.peek(limit=5000)]
    assert kept == payloads[-len(kept):] and spool.size_bytes() <= 128 * 1024
    assert spool.drops == {"bound": 2000 - len(kept)} and len(kept) > 150
    files = sum(p.stat().st_size for p in tmp_path.glob("s.sqlite3*"))
    assert files < 128 * 1024 * 1.5 + 300 * 1024, files  # rows + page slack + the bounded WAL
    spool.close()
    with pytest.raises(EdgeError, match="mqtt.spool_max_bytes"):
        Spool(path, max_bytes=1000)


def test_wal_stays_small_and_a_drained_spool_shrinks(tmp_path):
    """sqlite's default lets the WAL grow to ~4 MB and never hands deleted rows back to the disk."""
    path = tmp_path / "s.sqlite3"
    wal = tmp_path / "s.sqlite3-wal"
    spool = Spool(path)
    _fill(spool, 2000)
    assert wal.stat().st_size <= 300 * 1024
    full = path.stat().st_size
    assert full > 1_000_000
    for message in spool.peek(limit=5000):
        spool.ack(message.id)
    assert spool.depth() == 0 and path.stat().st_size < 64 * 1024 and wal.stat().st_size == 0
    spool.close()
