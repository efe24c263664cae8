"""The on-disk spool: order, acknowledgement, the bound, restarts and a corrupt file."""

from __future__ import annotations

import threading

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
