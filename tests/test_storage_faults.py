"""Storage faults on a real, small file system: a 1 MB tmpfs as the data dir fills up, is restarted on while
full, then gets space back; a read-only data dir stops the runtime with one line. Needs root (mount)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import EdgeError
from edge.publish.spool import SPOOL_FILENAME, Spool
from tests.mqtt_broker import Broker, Subscriber

from .runtime_helpers import finish, kill, run_cli, runtime_config, start_runtime

PREFIX = "emotion_edge/testdev"
PAYLOAD = json.dumps({"device_id": "testdev", "label": "happy", "pad": "x" * 560})

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m", read_only: bool = False):
    """A real size-limited file system at `path`, unmounted however the test ends."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    """Write `path` until the file system says it is full."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert os.statvfs(path).f_bavail == 0


def summary(stderr: str) -> dict:
    """The run summary `emotion-edge run --print-events` prints to stderr."""
    start = stderr.rindex('{\n  "summary"')
    return json.JSONDecoder().raw_decode(stderr[start:])[0]["summary"]


def event_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith('{"device_id"')]


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "demo.avi"
    result = run_cli("demo-video", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    return path


def test_spool_on_a_full_disk_drops_counts_and_resumes(tmp_path):
    """append() never raises on a full disk, counts each drop as disk_full, and stores again once space returns;
    a restart on the still-full disk keeps the spool (no .corrupt file) and every row in it."""
    with small_disk(tmp_path / "disk") as disk:
        spool = Spool(disk / "spool" / SPOOL_FILENAME)
        stored = [spool.append("t", PAYLOAD) for _ in range(20)]
        assert all(stored)
        fill(disk / "filler")
        results = [spool.append("t", PAYLOAD) for _ in range(400)]
        dropped = results.count(None)
        assert dropped and spool.drops.get("disk_full") == dropped and spool.dropped == dropped
        kept = spool.depth()
        spool.close()

        again = Spool(disk / "spool" / SPOOL_FILENAME)  # restart while the disk is still full
        assert again.depth() == kept and not list(disk.glob("spool/*.corrupt-*"))
        assert again.append("t", PAYLOAD) is None and again.drops == {"disk_full": 1}
        (disk / "filler").unlink()
        assert again.append("t", "after") is not None  # space is back: storing resumes
        payloads = [m.payload for m in again.peek(limit=1000)]
        assert len(payloads) == kept + 1 and payloads[-1] == b"after"
        again.close()



def test_a_batch_on_a_full_disk_is_dropped_counted_and_storing_resumes(tmp_path):
    """append_many (one transaction) on a full disk: no exception, every event of the batch counted as disk_full,
    nothing half-stored; the next batch after space returns is stored whole and in order."""
    with small_disk(tmp_path / "disk") as disk:
        spool = Spool(disk / "spool" / SPOOL_FILENAME)
        assert None not in spool.append_many([("t", PAYLOAD, 1)] * 20)
        fill(disk / "filler")
        results = [spool.append_many([("t", PAYLOAD, 1)] * 50) for _ in range(40)]
        dropped = sum(ids.count(None) for ids in results)
        assert dropped and spool.drops == {"disk_full": dropped} and spool.dropped == dropped
        assert all(ids.count(None) in (0, 50) for ids in results)  # a batch is stored whole or not at all
        assert spool.depth() == 20 + 40 * 50 - dropped
        (disk / "filler").unlink()
        after = spool.append_many([("t", f"after{i}", 1) for i in range(50)])
        assert None not in after and after == sorted(after)
        payloads = [m.payload for m in spool.peek(limit=5000)]
        assert payloads[-50:] == [f"after{i}".encode() for i in range(50)] and len(payloads) == spool.depth()
        spool.close()

def test_spool_that_cannot_open_on_a_full_disk_is_not_called_corrupt(tmp_path, monkeypatch):
    """A crashed run left events in the WAL; the restart must rebuild the WAL index (-shm) on a full disk, which
    fails as a disk I/O error. That is not corruption: no .corrupt file, drops are counted, and once space is back
    the spool opens with every event of the crashed run."""
    monkeypatch.setattr("edge.publish.spool.REOPEN_INTERVAL_S", 0.0, raising=False)
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "spool" / SPOOL_FILENAME
        crash = ("import os, sys; from edge.publish.spool import Spool; spool = Spool(sys.argv[1]); "
                 f"[spool.append('t', {PAYLOAD!r}) for _ in range(30)]; os._exit(0)")
        subprocess.run([sys.executable, "-c", crash, str(path)], check=True, cwd=Path(__file__).parents[1])
        Path(str(path) + "-shm").unlink()
        fill(disk / "filler")
        spool = Spool(path)
        assert spool.append("t", PAYLOAD) is None and spool.drops == {"disk_full": 1}
        assert not list(disk.glob("spool/*.corrupt-*"))
        (disk / "filler").unlink()
        assert spool.append("t", "after") is not None
        payloads = [m.payload for m in spool.peek(limit=100)]
        assert payloads == [PAYLOAD.encode()] * 30 + [b"after"]
        spool.close()


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(item in rest for item in part)


def test_full_disk_runtime_keeps_running_and_delivers_the_backlog_later(face_models, demo_video, tmp_path):
    """The real runtime with its broker down on a 1 MB data dir: a backlog is spooled; the disk fills during the
    next run, which drops (and counts) what it cannot store yet exits 0 without a traceback; a restart on the still
    full disk does the same and declares nothing corrupt; with space and the broker back, the next run delivers
    every spooled event in order."""
    broker = Broker(tmp_path)  # not started: the broker is down until the last run
    config = runtime_config(tmp_path, face_models, demo_video, broker.port)
    data = Path(config["device"]["data_dir"])
    processes, subscriber = [], None

    def run() -> tuple[list[str], dict]:
        processes.append(start_runtime(tmp_path, config))
        out, err = finish(processes[-1])
        assert processes[-1].returncode == 0, err[-3000:]
        assert "Traceback" not in err and "worker failed" not in err, err[-3000:]
        assert not list(data.glob("spool/*.corrupt-*"))
        return event_lines(out), summary(err)["mqtt"]

    with small_disk(data):
        try:
            backlog, mqtt = run()
            assert backlog and mqtt["spool_depth"] == len(backlog) and mqtt["spool_dropped"] == 0
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            assert stat.S_IMODE((data / "spool").stat().st_mode) == 0o700
            assert stat.S_IMODE((data / "spool" / SPOOL_FILENAME).stat().st_mode) == 0o600

            fill(data / "filler")
            os.truncate(data / "filler", (data / "filler").stat().st_size - 20 * 4096)  # 80 KB left
            events, mqtt = run()  # the disk fills during this run
            spooled = mqtt["spool_depth"] - len(backlog)
            dropped = mqtt["spool_dropped"]
            assert spooled > 0 and dropped > 0 and spooled + dropped == len(events), mqtt
            assert mqtt["spool_drops"] == {"disk_full": dropped}

            # A restart on a 100% full disk: the lock and run-counter files exist from the first run and are
            # rewritten in place, so the runtime starts without a free block; the spool gets none.
            if os.statvfs(data).f_bavail:
                fill(data / "filler2")
            lost, mqtt = run()
            assert lost and mqtt["spool_drops"] == {"disk_full": len(lost)} and mqtt["spool_dropped"] == len(lost)

            (data / "filler").unlink()
            (data / "filler2").unlink(missing_ok=True)
            broker.start()
            subscriber = Subscriber(broker.port, [f"{PREFIX}/face/event"])
            last, mqtt = run()
            total = len(backlog) + spooled + len(last)
            assert subscriber.wait_for(lambda msgs: len(msgs) >= total, timeout=30)
            received = [m.payload.decode() for m in subscriber.messages]
            assert len(received) == total and mqtt["spool_depth"] == 0 and mqtt["spool_dropped"] == 0
            assert received[:len(backlog)] == backlog and received[len(backlog) + spooled:] == last
            assert is_subsequence(received[len(backlog):len(backlog) + spooled], events)
        finally:
            for process in processes:
                kill(process)
            if subscriber is not None:
                subscriber.close()
            broker.stop()


def test_read_only_data_dir_is_one_line_and_exit_2(face_models, demo_video, tmp_path):
    """`emotion-edge run` on a read-only data dir: exit 2 and one error line naming the path and the fix."""
    config = runtime_config(tmp_path, face_models, demo_video, 1883)
    data = Path(config["device"]["data_dir"])
    with small_disk(data, read_only=True):
        process = start_runtime(tmp_path, config)
        out, err = finish(process)
    assert process.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"emotion-edge: error: {data} is not writable (read-only file system): ")
    assert "device.data_dir" in errors[0]


def test_spool_in_a_read_only_dir_is_an_edge_error(tmp_path):
    with small_disk(tmp_path / "ro", read_only=True) as disk:
        with pytest.raises(EdgeError) as caught:
            Spool(disk / "spool" / SPOOL_FILENAME)
    message = str(caught.value)
    assert "\n" not in message and str(disk / "spool") in message and "device.data_dir" in message


def test_restarts_on_a_100_percent_full_disk_keep_event_ids_unique(face_models, demo_video, tmp_path):
    """The run counter needs no new block after the first start: two restarts on a data dir with not one block
    free get runs 2 and 3 (before: exit 2 blaming permissions), each connects to the broker and publishes its
    health; its events, which the full spool cannot hold, are counted as disk_full drops and, the broker being
    connected, still sent (at most once) instead of lost; no event id repeats across the three runs."""
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#"])
    config = runtime_config(tmp_path, face_models, demo_video, broker.port)
    data = Path(config["device"]["data_dir"])
    processes, printed = [], []
    try:
        with small_disk(data):
            for run in (1, 2, 3):
                if run == 2:
                    fill(data / "filler")  # not one block free from here on
                health_before = len(subscriber.on(f"{PREFIX}/health"))
                processes.append(start_runtime(tmp_path, config))
                out, err = finish(processes[-1])
                assert processes[-1].returncode == 0, err[-3000:]
                assert "Traceback" not in err and "run counter" not in err, err[-3000:]
                events = [json.loads(line) for line in event_lines(out)]
                assert events and {event["run"] for event in events} == {run}, err[-3000:]
                printed += events
                assert subscriber.wait_for(lambda msgs: len(subscriber.on(f"{PREFIX}/health")) > health_before,
                                           timeout=10)
                if run > 1:
                    assert os.statvfs(data).f_bavail == 0
                    mqtt = summary(err)["mqtt"]
                    assert mqtt["spool_drops"] == {"disk_full": len(events)}
                    assert mqtt["events_sent_unspooled"] == len(events)
            assert subscriber.wait_for(lambda msgs: len(subscriber.on(f"{PREFIX}/face/event")) >= len(printed),
                                       timeout=10)
    finally:
        for process in processes:
            kill(process)
        subscriber.close()
        broker.stop()
    ids = [event["id"] for event in printed]
    assert len(ids) == len(set(ids)) and {event["run"] for event in printed} == {1, 2, 3}
    delivered = [json.loads(m.payload)["id"] for m in subscriber.on(f"{PREFIX}/face/event")]
    assert sorted(delivered) == sorted(ids)  # every event of every run arrived once
