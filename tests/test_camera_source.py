"""The camera source against real MJPG videos, a closed loopback RTSP port and a missing device."""

from __future__ import annotations

import os
import socket
import time

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.sources.camera import CameraConfig, CameraSource, source_kind
from tests.runtime_helpers import wait_for
from tests.videos import identify, pan_frames, photo, write_mjpg

MATCH = 8.0  # mean abs difference (0-255) below which a decoded frame is "this reference frame"


@pytest.fixture
def video(tmp_path):
    frames = pan_frames(15)
    return write_mjpg(str(tmp_path / "pan.avi"), frames, fps=50), frames


def read_all(source: CameraSource, timeout: float = 2.0, limit: int = 1000):
    got = []
    while len(got) < limit:
        frame = source.read(timeout)
        if frame is None:
            break
        got.append(frame)
    return got


@pytest.fixture
def refused_port():
    """A loopback port that refuses connections: held bound but never listening for the whole test, so no other
    process can take it and no client can be handed it as its own source port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_source_kinds():
    assert source_kind("0") == "index"
    assert source_kind("/dev/video2") == "device"
    assert source_kind("rtsp://127.0.0.1:8554/cam") == "url"
    assert source_kind("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink") == "pipeline"
    assert source_kind("demo/happy.avi") == "file"


def test_file_frames_arrive_in_order_rgb_and_stop_ends(video):
    path, refs = video
    # Unpaced, so the exact count and order checks below do not depend on this process never stalling for a
    # frame interval; the newest-frame behaviour of realtime playback has its own tests below.
    source = CameraSource(CameraConfig(source=path, on_end="stop", realtime=False))
    with source:
        frames = read_all(source)
        stats = source.stats()
        assert stats["state"] == "ended"
        started = time.monotonic()
        assert source.read(5.0) is None  # an ended source answers at once, not after the timeout
        assert time.monotonic() - started < 0.5
    assert [f.index for f in frames] == list(range(15))
    matched = [identify(f.image, refs) for f in frames]
    assert [m[0] for m in matched] == list(range(15))
    assert max(m[1] for m in matched) < MATCH
    assert stats["dropped"] == 0 and stats["read"] == 15 and stats["captured"] == 15
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:]))
    # RGB, not BGR: the decoded frame is far closer to the RGB reference than to its channel swap.
    first = frames[0].image
    assert first.shape == (120, 160, 3) and first.dtype == np.uint8
    assert identify(first, [refs[0], refs[0][..., ::-1]])[0] == 0


def test_realtime_pacing_follows_file_fps(tmp_path):
    refs = pan_frames(12)
    path = write_mjpg(str(tmp_path / "paced.avi"), refs, fps=25)
    with CameraSource(CameraConfig(source=path, on_end="stop", realtime=True)) as source:
        frames = read_all(source)
        stats = source.stats()
    # A stalled reader may lose a frame to a newer one (realtime keeps only the newest), so the checks use the
    # capture timestamps and indices of the frames that did arrive: each gap is spread over the frames it spans.
    assert stats["captured"] == 12 and stats["read"] + stats["dropped"] == 12
    assert len(frames) >= 6 and frames[-1].index == 11  # the last frame is never lost
    stamps = np.array([f.timestamp for f in frames])
    indices = np.array([f.index for f in frames])
    per_frame = np.diff(stamps) / np.diff(indices)
    assert 0.03 < float(np.median(per_frame)) < 0.055  # 25 fps = 40 ms per frame; 50 fps or unpaced fail
    # Over the whole run: the pacer never runs early and its lateness does not accumulate, so this stays near
    # 40 ms; the margins only absorb a late first or last frame.
    assert 0.025 < (stamps[-1] - stamps[0]) / (indices[-1] - indices[0]) < 0.1


def test_slow_consumer_gets_newest_frames_and_drops_are_counted(video):
    path, refs = video
    source = CameraSource(CameraConfig(source=path, on_end="stop", realtime=True))
    with source:
        frames = []
        while True:
            frame = source.read(2.0)
            if frame is None:
                break
            frames.append(frame)
            time.sleep(0.06)  # three frame intervals of work per frame
        stats = source.stats()
    assert stats["dropped"] > 0
    assert stats["captured"] == 15
    assert stats["read"] + stats["dropped"] == stats["captured"]
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 14  # the last frame is never lost
    assert len(frames) < 15
    assert [identify(f.image, refs)[0] for f in frames] == indices


def test_unpaced_file_runs_faster_than_its_fps_and_drops_nothing(tmp_path):
    refs = pan_frames(30)
    path = write_mjpg(str(tmp_path / "bench.avi"), refs, fps=10)
    with CameraSource(CameraConfig(source=path, on_end="stop", realtime=False)) as source:
        frames = []
        started = time.monotonic()
        while (frame := source.read(timeout=5.0)) is not None:
            frames.append(frame)
            time.sleep(0.005)  # a consumer slower than decoding: the source must wait for it, not drop
        elapsed = time.monotonic() - started
        stats = source.stats()
    assert [identify(f.image, refs)[0] for f in frames] == list(range(30))
    assert stats["captured"] == 30 and stats["dropped"] == 0 and stats["state"] == "ended"
    # Paced playback at 10 fps would take 2.9 s; half of that leaves room for slow sleeps on a loaded machine.
    assert elapsed < 1.5


def test_frame_buffers_are_reused_once_released_and_never_while_held(tmp_path):
    """Frames a consumer releases come back as buffers for new frames (no fresh allocation per frame);
    frames it keeps (never released) are never written over (the test above keeps all 30 and identifies each)."""
    refs = pan_frames(30)
    path = write_mjpg(str(tmp_path / "reuse.avi"), refs, fps=10)
    held = []
    buffers = set()
    with CameraSource(CameraConfig(source=path, on_end="stop", realtime=False, prefetch=2)) as source:
        index = 0
        while (frame := source.read(timeout=5.0)) is not None:
            assert identify(frame.image, refs)[0] == index  # right content at the time it is read
            buffers.add(frame.image.__array_interface__["data"][0])
            if index % 10 == 0:
                held.append((index, frame.image[10:50, 20:60]))  # kept: not released
            else:
                source.release(frame)
            index += 1
    assert index == 30
    assert len(buffers) <= 2 + 3 + len(held)  # prefetch + 3 in rotation, plus the frames still held
    crops = [ref[10:50, 20:60] for ref in refs]
    assert [identify(crop, crops)[0] for _, crop in held] == [number for number, _ in held]  # not written over


@pytest.mark.parametrize("prefetch", [1, 3])
def test_unpaced_file_decodes_at_most_prefetch_frames_ahead(tmp_path, prefetch):
    refs = pan_frames(12)
    path = write_mjpg(str(tmp_path / "ahead.avi"), refs, fps=10)
    with CameraSource(CameraConfig(source=path, on_end="stop", realtime=False, prefetch=prefetch)) as source:
        frames, ahead = [], []
        while (frame := source.read(timeout=5.0)) is not None:
            frames.append(frame)
            time.sleep(0.05)  # a slow frame: decoding runs on, but only up to `prefetch` frames
            stats = source.stats()
            ahead.append(stats["captured"] - stats["read"])
        stats = source.stats()
    assert [identify(f.image, refs)[0] for f in frames] == list(range(12))
    assert [f.index for f in frames] == list(range(12))
    assert stats["captured"] == 12 and stats["dropped"] == 0
    assert max(ahead) == prefetch  # it did decode ahead, and never further than allowed
    assert ahead[-1] == 0


def test_loop_restarts_the_file(tmp_path):
    refs = pan_frames(5)
    path = write_mjpg(str(tmp_path / "short.avi"), refs, fps=50)
    # Unpaced, so every frame across the loops arrives however slowly this process reads them.
    with CameraSource(CameraConfig(source=path, on_end="loop", realtime=False)) as source:
        frames = [source.read(5.0) for _ in range(13)]
        stats = source.stats()
    assert all(f is not None for f in frames)
    assert [identify(f.image, refs)[0] for f in frames] == [i % 5 for i in range(13)]
    assert [f.index for f in frames] == list(range(13))
    assert stats["loops"] >= 2 and stats["state"] == "running" and stats["reconnects"] == 0
    # Video time, not decode time: one frame period (1/50 s) apart, straight through the loops, however fast
    # this machine decodes and however slowly it reads.
    stamps = np.array([f.timestamp for f in frames])
    assert np.allclose(np.diff(stamps), 1 / 50, rtol=0, atol=1e-6)
    assert abs(stamps[0] - time.time()) < 30


def test_deleted_file_is_retried_with_backoff_and_recovers_when_it_comes_back(tmp_path):
    refs = pan_frames(4)
    path = write_mjpg(str(tmp_path / "live.avi"), refs, fps=50)
    config = CameraConfig(source=path, on_end="loop", realtime=True, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    with CameraSource(config) as source:
        assert source.read(2.0) is not None
        os.unlink(path)
        assert wait_for(lambda: source.stats()["state"] == "reconnecting", 3.0)
        assert wait_for(lambda: source.stats()["reconnects"] >= 3, 3.0)
        # edge.backoff.Backoff: each wait drawn from 0.05 s up to a bound of 0.05, 0.1, 0.2, 0.2 ... s, so a
        # second holds about 8 attempts (without backoff, thousands); a stalled thread may make fewer, and the
        # bound follows the time that really passed.
        before, started = source.stats()["reconnects"], time.monotonic()
        time.sleep(1.0)
        during, elapsed = source.stats()["reconnects"] - before, time.monotonic() - started
        assert 1 <= during <= elapsed / 0.05 + 3, (during, elapsed)
        delays = source._backoff.delays
        assert all(0.05 <= d <= 0.2 for d in delays) and max(delays) > 0.1, delays  # jittered, bound doubled
        while source.read(0.0) is not None:
            pass  # frames decoded before the file vanished
        assert source.read(0.3) is None
        assert "no file" in source.stats()["last_error"]

        replacement = pan_frames(4, name="camera")
        write_mjpg(path, replacement, fps=50)
        frame = source.read(3.0)
        assert frame is not None
        index, diff = identify(frame.image, replacement)
        assert diff < MATCH  # the new file's content, not a stale frame of the old one
        stats = source.stats()
    assert stats["state"] == "running" and stats["recoveries"] == 1


def test_file_replaced_mid_run_is_picked_up_at_the_next_loop(tmp_path):
    refs = pan_frames(5)
    path = write_mjpg(str(tmp_path / "swap.avi"), refs, fps=50)
    replacement = pan_frames(5, name="camera")
    with CameraSource(CameraConfig(source=path, on_end="loop", realtime=True)) as source:
        assert identify(source.read(2.0).image, refs)[1] < MATCH
        write_mjpg(path, replacement, fps=50)
        seen_new = False
        for _ in range(30):
            frame = source.read(2.0)
            if identify(frame.image, replacement)[1] < MATCH:
                seen_new = True
                break
        stats = source.stats()
    assert seen_new
    assert stats["reconnects"] == 0 and stats["state"] == "running"


def test_rtsp_to_closed_loopback_port_keeps_retrying_without_crashing(refused_port):
    url = f"rtsp://127.0.0.1:{refused_port}/camera"
    config = CameraConfig(source=url, reconnect_initial_s=0.05, reconnect_max_s=0.1, open_timeout_s=1.0)
    source = CameraSource(config)
    source.start()
    try:
        assert wait_for(lambda: source.stats()["reconnects"] >= 3, 5.0)
        assert source.stats()["state"] == "reconnecting"
        assert source.read(0.2) is None
        assert source._thread.is_alive()
    finally:
        started = time.monotonic()
        source.stop()
    assert time.monotonic() - started < 2.0
    assert source.stats()["state"] == "stopped"


def test_missing_video_device_is_retried_and_stop_interrupts_the_backoff():
    config = CameraConfig(source="/dev/video-does-not-exist", reconnect_initial_s=0.05, reconnect_max_s=5.0)
    source = CameraSource(config)
    source.start()
    assert wait_for(lambda: source.stats()["reconnects"] >= 4, 5.0)  # 0.05 + 0.1 + 0.2 + 0.4 s
    assert source.stats()["state"] == "reconnecting"
    started = time.monotonic()
    source.stop()  # now inside a wait of up to 0.8 s or more
    assert time.monotonic() - started < 0.5


def test_missing_device_is_an_error_when_not_waiting_for_it():
    with pytest.raises(EdgeError, match="camera.source.*/dev/video-does-not-exist.*wait_for_device"):
        CameraSource(CameraConfig(source="/dev/video-does-not-exist", wait_for_device=False)).start()


def test_bad_file_path_at_start_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope.avi")
    with pytest.raises(EdgeError, match=r"camera\.source: no video file at .*nope\.avi"):
        CameraSource(CameraConfig(source=missing)).start()
    not_video = tmp_path / "notes.avi"
    not_video.write_text("this is not a video\n" * 100)
    with pytest.raises(EdgeError, match="cannot decode"):
        CameraSource(CameraConfig(source=str(not_video))).start()


@pytest.mark.skipif(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer")
def test_pipeline_without_gstreamer_support_is_a_clear_error():
    with pytest.raises(EdgeError, match="GStreamer"):
        CameraSource(CameraConfig(source="videotestsrc ! videoconvert ! appsink")).start()


def test_read_before_start_returns_none_at_once():
    source = CameraSource(CameraConfig(source="/dev/video-does-not-exist"))
    started = time.monotonic()
    assert source.read(2.0) is None
    assert time.monotonic() - started < 0.5
    assert source.stats()["state"] == "stopped"


@pytest.mark.parametrize("key, value, message", [
    ("on_end", "rewind", "camera.on_end"),
    ("width", -1, "camera.width"),
    ("height", 1.5, "camera.height"),
    ("fps", float("nan"), "camera.fps"),
    ("source", "  ", "camera.source"),
    ("reconnect_initial_s", 0, "camera.reconnect_initial_s"),
    ("open_timeout_s", -1, "camera.open_timeout_s"),
    ("prefetch", 0, "camera.prefetch"),
    ("prefetch", 2.5, "camera.prefetch"),
])
def test_config_validation_names_the_key(key, value, message):
    config = CameraConfig(**{key: value})
    with pytest.raises(EdgeError, match=message.replace(".", r"\.")):
        config.validate()


def test_reconnect_max_below_initial_is_rejected():
    with pytest.raises(EdgeError, match=r"camera\.reconnect_max_s"):
        CameraConfig(reconnect_initial_s=2.0, reconnect_max_s=1.0).validate()


def test_defaults_validate():
    CameraConfig().validate()
    assert photo("camera").shape[-1] == 3
