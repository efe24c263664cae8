"""The on-disk spool: order, acknowledgement, the bound, restarts and a corrupt file."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

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


def test_append_many_is_one_transaction_in_order_with_the_same_drops(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3", max_events=5)
    statements = []
    spool._db.set_trace_callback(statements.append)
    batch = [("t", f"m{i}", 1) for i in range(3)] + [("t", b"x" * (spool.max_bytes + 1), 1)] + [("t", "m3", 0)]
    ids = spool.append_many(batch)
    spool._db.set_trace_callback(None)
    assert ids[3] is None and None not in ids[:3] + ids[4:] and ids[:3] + ids[4:] == sorted(ids[:3] + ids[4:])
    assert [s.split()[0] for s in statements].count("BEGIN") == 1 and statements.count("COMMIT") == 1
    assert [(m.id, m.payload, m.qos) for m in spool.peek()] == [(ids[0], b"m0", 1), (ids[1], b"m1", 1),
                                                               (ids[2], b"m2", 1), (ids[4], b"m3", 0)]
    assert spool.drops == {"too_large": 1}
    more = spool.append_many([("t", f"n{i}", 1) for i in range(4)])  # past the bound: the oldest go
    assert [m.payload for m in spool.peek()] == [b"m3", b"n0", b"n1", b"n2", b"n3"] and spool.depth() == 5
    assert spool.drops == {"too_large": 1, "bound": 3} and spool.dropped == 4 and more[-1] > ids[-1]
    assert spool.append_many([]) == []
    spool.close()


def test_ack_many_deletes_runs_and_scattered_ids_and_keeps_the_counts(tmp_path):
    spool = Spool(tmp_path / "s.sqlite3")
    ids = spool.append_many([("t", f"m{i}", 1) for i in range(1200)])
    size = spool.size_bytes()
    assert spool.ack_many(ids[:100]) == 100  # one run of consecutive ids
    scattered = ids[100:1200:2]
    assert spool.ack_many(scattered + [ids[0]]) == len(scattered)  # more ids than one statement takes; one gone
    left = [m.payload for m in spool.peek(limit=5000)]
    assert left == [f"m{i}".encode() for i in range(101, 1200, 2)] and spool.depth() == len(left)
    assert spool.size_bytes() == sum(len(p) + 1 + 40 for p in left) < size  # topic "t", ROW_OVERHEAD 40
    assert spool.ack_many(m.id for m in spool.peek(limit=5000)) == len(left)
    assert spool.depth() == 0 and spool.size_bytes() == 0
    spool.close()


def test_dead_letters_count_in_the_bounds_and_are_purged_first(tmp_path, caplog):
    """A broker that refuses everything: every event ends in dead_letter. The spool must stay bounded, giving up
    the oldest dead letters first (counted, a handful of log lines), and never an undelivered event for them."""
    path = tmp_path / "s.sqlite3"
    spool = Spool(path, max_events=10)
    refused = spool.append_many([("t", f"r{i}", 1) for i in range(6)])
    assert spool.set_aside_many((i, "Not authorized (0x87)") for i in refused) == 6
    assert spool.dead_letters() == 6 and spool.depth() == 0
    spool.append_many([("t", f"m{i}", 1) for i in range(6)])  # 12 rows > 10: two dead letters make room
    assert spool.dead_letters() == 4 and spool.depth() == 6 and spool.drops == {"dead_letter_bound": 2}
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT payload FROM dead_letter ORDER BY id")] == [b"r2", b"r3", b"r4",
                                                                                             b"r5"]
    spool.append_many([("t", f"n{i}", 1) for i in range(8)])  # dead letters all gone, then the oldest events
    assert spool.dead_letters() == 0 and [m.payload for m in spool.peek()][:2] == [b"m4", b"m5"]
    assert spool.drops == {"dead_letter_bound": 6, "bound": 4} and spool.dropped == 10
    spool.close()

    caplog.set_level(logging.INFO, logger="edge.publish.spool")
    caplog.clear()
    bounded = Spool(tmp_path / "b.sqlite3", max_bytes=128 * 1024)
    for i in range(1500):  # ~940 KB refused in total
        ids = bounded.append_many([("emotion_edge/dev1/face/event", f"{i:05d}".encode() + b"x" * 600, 1)])
        bounded.set_aside(ids[0], "Not authorized (0x87)")
    kept = bounded.dead_letters()
    assert 150 < kept < 220 and bounded.depth() == 0 and bounded.size_bytes() == 0
    assert bounded.drops == {"dead_letter_bound": 1500 - kept}
    files = sum(p.stat().st_size for p in tmp_path.glob("b.sqlite3*"))
    assert files < 128 * 1024 * 1.5 + 300 * 1024, files
    bounded.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2 and all("dead letters" in line for line in lines), lines  # first one, then the summary
    assert f"({1500 - kept} so far)" in lines[-1]
    again = Spool(tmp_path / "b.sqlite3", max_bytes=128 * 1024)  # a restart counts the kept dead letters
    assert again.dead_letters() == kept
    again.close()


def test_overload_logs_a_handful_of_lines_with_exact_counts(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge.publish.spool")
    spool = Spool(tmp_path / "s.sqlite3", max_events=100, max_bytes=64 * 1024)
    for start in range(0, 5000, 50):
        spool.append_many([("t", f"m{start + i}", 1) for i in range(50)])
    for i in range(500):
        spool.append("t", f"s{i}")
        spool.append("t", b"x" * (spool.max_bytes + 1))
    spool.close()
    assert spool.drops == {"bound": 5400, "too_large": 500}
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 4, lines  # each condition: its first occurrence, then one summary at close
    assert any("(5400 so far)" in line for line in lines) and any("(500 such event(s) so far)" in line
                                                                    for line in lines)


SPOOL_WITHOUT_PAHO = """
import sys
sys.modules["paho"] = None  # as if paho-mqtt were not installed
import edge.publish.spool, edge.publish.topics, edge.publish.discovery
from edge.publish import Spool, Topics
spool = Spool(sys.argv[1])
spool.append("t", "x")
assert spool.depth() == 1
spool.close()
try:
    from edge.publish import MqttPublisher
except ImportError:
    print("ok")
"""


def test_spool_imports_without_paho(tmp_path):
    done = subprocess.run([sys.executable, "-c", SPOOL_WITHOUT_PAHO, str(tmp_path / "s.sqlite3")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
