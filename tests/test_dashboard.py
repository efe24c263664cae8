"""The dashboard sink on a real bus, read by a real HTTP client and a real headless Chromium (issue 19).

The sink is built from its own config and subscribed to a `Bus` as the runtime does; the last test runs
the real runtime on the demo video, which needs `[dashboard]` registered in edge/config.py and SINKS.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.bus import Bus, HealthReport
from edge.controls import Controls
from edge.errors import EdgeError
from edge.events import Event, utc_timestamp
from edge.fusion import Fusion
from edge.observation import Observation
from edge.sinks import RuntimeContext
from edge.sinks import dashboard as dashboard_module
from edge.sinks.dashboard import DashboardConfig, DashboardSink
from edge.smoothing import SmoothingConfig
from tests.browser import Browser, chromium
from tests.mqtt_broker import broker_fixture, free_port  # noqa: F401

from .runtime_helpers import kill, output, printed_events, runtime_config, start_runtime, wait_for

TOKEN = "0123456789abcdef0123"
needs_chromium = pytest.mark.skipif(chromium() is None and not os.environ.get("CI"),
                                    reason="chromium is not installed here (apt-get install chromium); "
                                           ".ci/setup.sh installs it, and in CI this test runs")


@pytest.fixture
def dashboard():
    """Start a dashboard sink on a real bus: dashboard(**config) -> (sink, bus); both stopped at teardown."""
    started = []

    def make(controls=None, **overrides):
        values = dict(enabled=True, port=0, update_interval_s=0.2, history_s=10.0)
        values.update(overrides)
        sink = DashboardSink(DashboardConfig(**values), device_id="kiosk-1", controls=controls)
        bus = Bus()
        bus.subscribe(sink.name, sink.handle, sink.accepts, sink.queue_size)
        sink.start()
        bus.start()
        started.append((sink, bus))
        return sink, bus

    yield make
    for sink, bus in started:
        bus.stop()
        sink.stop()


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post(url: str, payload: str, headers: dict | None = None, method: str = "POST") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=payload.encode(), headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def state(sink: DashboardSink) -> dict:
    status, _, body = get(sink.url + "api/state")
    assert status == 200, body
    return json.loads(body)


def make_event(modality: str, track: str, label: str, valence: float, arousal: float) -> Event:
    return Event(device_id="kiosk-1", modality=modality, kind="emotion", track_id=track, label=label,
                 confidence=0.8, probabilities={label: 0.8}, valence=valence, arousal=arousal,
                 timestamp=utc_timestamp(), model={"id": "m", "sha256": "", "estimator": "classifier"},
                 latency_ms=12.0)


HEALTH = {  # the keys today's runtime and MQTT publisher report (edge/runtime.py health(), publish_health)
    "face": {"fps": 14.9, "frames": 420, "dropped_frames": 3, "camera_state": "running", "tracks": 2,
             "stages": {"total": {"median_ms": 21.5, "p95_ms": 30.1}}},
    "voice": {"windows_per_s": 1.0, "source_state": "running", "dropped": 0},
    "eeg": {"source": {"state": "connected"}, "warming_up": True, "warmup_progress": 0.4, "last_latency_ms": 8.2,
            "quality": {"TP9": {"status": "ok", "score": 0.93, "std_uv": 11.0},
                        "AF7": {"status": "noisy", "score": 0.21, "std_uv": 82.0}}},
    "spool_depth": 0, "cpu_temp_c": None, "mqtt": {"connected": True, "state": "connected"},
}


def publish_scene(bus: Bus) -> tuple[list[Event], list[Observation]]:
    """Two faces (one with no emotion yet), an uncertain voice, an EEG window with no data, a fused mood."""
    now = time.time()
    observations = [
        Observation("face", "face-1", now, kind="start"),
        Observation("face", "face-2", now, kind="start"),
        Observation("face", "face-1", now, label="happy", probabilities={"happy": 0.8}, valence=0.52, arousal=0.31,
                    confidence=0.8, quality=0.9),
        Observation("face", "face-2", now),
        Observation("voice", "room", now, label=None, probabilities={"sad": 0.4, "neutral": 0.35}, valence=-0.2,
                    arousal=0.1, confidence=0.4, quality=0.7),
        Observation("eeg", "wearer", now, estimator="index", quality=0.2),
    ]
    for observation in observations:
        bus.publish(observation)
    bus.publish(Observation("fused", "wearer", now, label="happy", valence=0.41, arousal=0.22, confidence=0.66,
                            estimator="fusion", extra={"contributions": {"face": 0.7, "voice": 0.3}}))
    events = [make_event("face", "face-1", "happy", 0.52, 0.31), make_event("voice", "room", "sad", -0.2, 0.1)]
    for event in events:
        bus.publish(event)
    bus.publish(HealthReport(now, HEALTH))
    return events, observations


def fixed(value: float | None) -> str:
    """JavaScript's value.toFixed(2) (an exact tie rounds away from zero), or the page's "—" for None."""
    return "—" if value is None else str(Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP))


def test_state_reports_what_was_published_with_no_data_as_null(dashboard):
    sink, bus = dashboard()
    assert state(sink)["presence"] == {"faces": None, "present": None}  # no face modality yet: unknown, not 0
    events, _ = publish_scene(bus)
    assert wait_for(lambda: state(sink)["health"] is not None)
    snapshot = state(sink)
    face = snapshot["modalities"]["face"]["subjects"]
    assert [row["subject"] for row in face] == ["face-1", "face-2"]  # the one with data first
    assert face[0] | {"age_s": 0, "timestamp": 0} == {
        "subject": "face-1", "label": "happy", "uncertain": False, "valence": 0.52, "arousal": 0.31,
        "confidence": 0.8, "quality": 0.9, "estimator": "classifier", "timestamp": 0, "latency_ms": None,
        "age_s": 0, "stale": False}
    assert face[1]["valence"] is None and face[1]["label"] is None and not face[1]["uncertain"]
    assert snapshot["presence"] == {"faces": 2, "present": True}
    voice = snapshot["modalities"]["voice"]["subjects"][0]
    assert voice["label"] is None and voice["uncertain"] is True and voice["valence"] == -0.2
    eeg = snapshot["modalities"]["eeg"]["subjects"][0]
    assert (eeg["valence"], eeg["arousal"], eeg["confidence"], eeg["uncertain"]) == (None, None, None, False)
    fused = snapshot["modalities"]["fused"]["subjects"][0]
    assert fused["contributions"] == [{"name": "face", "weight": 0.7, "status": None},
                                      {"name": "voice", "weight": 0.3, "status": None}]
    eeg, face = snapshot["timeline"]["eeg"], snapshot["timeline"]["face"]
    assert (eeg["valence"][-1], eeg["arousal"][-1]) == (None, None)  # a gap in the plot, not a line at 0
    assert (face["valence"][-1], face["arousal"][-1]) == (0.52, 0.31)  # face-2 has no data: the mean is face-1's
    assert abs(face["start"] + face["index"][-1] * face["step"] - time.time()) < 2
    assert [event["id"] for event in snapshot["events"]] == [event.id for event in reversed(events)]
    summary = snapshot["health"]["summary"]
    assert summary["modalities"]["face"] == {"rate": 14.9, "latency_ms": 21.5, "dropped": 3, "source": "running"}
    assert summary["modalities"]["eeg"] == {"rate": None, "latency_ms": 8.2, "dropped": None, "source": "connected"}
    assert summary["electrodes"] == [{"name": "TP9", "status": "ok", "score": 0.93},
                                     {"name": "AF7", "status": "noisy", "score": 0.21}]
    assert summary["calibration"] == [{"name": "eeg baseline", "state": "learning", "detail": "40%"}]
    assert (summary["broker"], summary["spool_depth"], summary["cpu_temp_c"]) == ("connected", 0, None)
    assert ["face.stages.total.p95_ms", 30.1] in snapshot["health"]["rows"]

    # the issue 17 EEG analyzer names its per-electrode quality "electrodes" and reports its calibration
    bus.publish(HealthReport(time.time(), {"eeg": {"electrodes": {"AF8": {"status": "flat", "score": 0.0}},
                                                   "warming_up": False, "calibration": {"accuracy": 0.71,
                                                                                        "chance": 0.5}}}))
    assert wait_for(lambda: state(sink)["health"]["summary"]["electrodes"] == [
        {"name": "AF8", "status": "flat", "score": 0.0}])
    assert state(sink)["health"]["summary"]["calibration"] == [
        {"name": "eeg", "state": "done", "detail": "accuracy 0.71, chance 0.50"},
        {"name": "eeg baseline", "state": "done", "detail": None}]

    bus.publish(Observation("face", "face-2", time.time(), kind="end"))
    assert wait_for(lambda: state(sink)["presence"] == {"faces": 1, "present": True})
    bus.publish(Observation("face", "face-1", time.time(), kind="end"))
    assert wait_for(lambda: state(sink)["presence"] == {"faces": 0, "present": False})


def test_memory_stays_bounded_whatever_the_input(dashboard):
    sink, bus = dashboard(history_s=10.0)
    for i in range(3000):  # many short-lived subjects whose end never arrives, and events
        bus.publish(Observation("face", f"face-{i}", time.time(), valence=0.1, arousal=0.1))
        if i % 10 == 0:
            bus.publish(make_event("face", f"face-{i}", "happy", 0.1, 0.1))
    bus.stop()  # delivers what is queued (a burst beyond the queue drops the oldest, as designed)
    assert sink.state.observations + bus.stats()["dashboard"]["dropped"] >= 3000
    snapshot = state(sink)
    assert len(snapshot["modalities"]["face"]["subjects"]) == dashboard_module.MAX_SUBJECTS
    assert len(snapshot["events"]) == dashboard_module.MAX_EVENTS
    assert all(len(series.points) <= dashboard_module.TIMELINE_POINTS + 1 for series in sink.state.series.values())


def read_stream(sink: DashboardSink, seconds: float, publish=None) -> list[dict]:
    """The snapshots /api/events sends in `seconds`, calling publish(elapsed) between reads."""
    with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as connection:
        connection.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received, start = b"", time.monotonic()
        while time.monotonic() - start < seconds:
            if publish is not None:
                publish(time.monotonic() - start)
            if select.select([connection], [], [], 0.005)[0]:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"Content-Type: text/event-stream" in head, head
    return [json.loads(m[6:]) for m in body.split(b"\n\n")[:-1] if m.startswith(b"data: ")]


def test_events_stream_pushes_changes_at_most_every_interval(dashboard):
    sink, bus = dashboard(update_interval_s=0.5)
    published = []

    def burst(elapsed):
        if 0.3 < elapsed < 2.3 and len(published) < (elapsed - 0.3) * 100:  # 100 observations a second for 2 s
            published.append(round(len(published) / 1000, 3))
            bus.publish(Observation("voice", "room", time.time(), valence=published[-1], arousal=0.0))

    snapshots = read_stream(sink, 4.0, burst)
    assert snapshots[0]["modalities"] == {}  # sent at connect, before anything was published
    # ~200 observations in 2 s reach the page as at most one snapshot per 0.5 s (plus the one at connect), and
    # nothing is sent in the quiet 2 s after them
    assert 3 <= len(snapshots) <= 6, [s["modalities"] for s in snapshots]
    assert snapshots[-1]["modalities"]["voice"]["subjects"][0]["valence"] == published[-1]
    assert sink.health()["pushes"] == len(snapshots) - 1


def test_a_face_whose_end_is_lost_leaves_the_count_and_open_pages_are_told(dashboard):
    sink, bus = dashboard(update_interval_s=0.2, stale_after_s=0.5)

    published = []

    def one_face(elapsed):
        if not published:  # once: the bus delivers on its own thread, so the sink's count may lag a call
            published.append(bus.publish(Observation("face", "face-1", time.time(), valence=0.1, arousal=0.1)))

    snapshots = read_stream(sink, 1.5, one_face)  # no "end" and nothing else published after the first 0.2 s
    assert 1 in [snapshot["presence"]["faces"] for snapshot in snapshots] and sink.state.observations == 1
    assert snapshots[-1]["presence"] == {"faces": 0, "present": False}  # pushed although no new data came


def test_lan_needs_a_token_and_a_wrong_token_is_refused(dashboard, monkeypatch):
    refused = DashboardSink(DashboardConfig(enabled=True, host="0.0.0.0", port=0))
    with pytest.raises(EdgeError, match="binding to the LAN needs dashboard.token") as error:
        refused.start()
    assert "\n" not in str(error.value) and refused.port is None
    with pytest.raises(EdgeError, match="at least 16"):
        DashboardConfig(enabled=True, host="0.0.0.0", token="short").validate()

    sink, bus = dashboard(host="0.0.0.0", token=TOKEN)
    base = f"http://127.0.0.1:{sink.port}"
    for path in ("/api/state", "/api/events"):
        assert get(base + path)[0] == 401
        assert get(f"{base}{path}?token=wrong-{TOKEN}")[0] == 401
        assert get(base + path, {"Authorization": "Bearer " + TOKEN[:-1]})[0] == 401
    assert get(f"{base}/api/state?token={TOKEN}")[0] == 200
    assert get(base + "/api/state", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get(base + "/")[0] == 200  # the page itself is the package's static file: no data in it
    assert sink.health()["refused"] == 6

    loopback, _ = dashboard()  # without a token, a request naming another host (DNS rebinding) is refused
    assert get(f"http://127.0.0.1:{loopback.port}/api/state", {"Host": "evil.example:80"})[0] == 403
    assert get(f"http://127.0.0.1:{loopback.port}/api/state", {"Host": f"localhost:{loopback.port}"})[0] == 200
    monkeypatch.setenv(dashboard_module.ENV_TOKEN, TOKEN)  # the environment can hold the secret instead
    from_env, _ = dashboard(host="0.0.0.0")
    assert get(f"http://127.0.0.1:{from_env.port}/api/state")[0] == 401
    assert get(f"http://127.0.0.1:{from_env.port}/api/state?token={TOKEN}")[0] == 200


def dom_cards(page) -> dict:
    return page.evaluate("""Object.fromEntries([...document.querySelectorAll('#cards .card')].map(card => [
        card.dataset.modality, Object.fromEntries([...card.querySelectorAll('[data-field]')].map(
            e => [e.dataset.field, e.textContent]))]))""")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@needs_chromium
def test_page_in_chromium_shows_the_published_values(dashboard, tmp_path):
    controls, workers = stub_controls()
    workers["face"].paused = True  # the camera privacy switch on, as the screenshot shows it
    sink, bus = dashboard(update_interval_s=0.2, history_s=10.0, controls=controls)
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(sink.url)
        page.wait_for("document.querySelector('#status').dataset.state === 'live'")
        assert page.evaluate("document.querySelector('#faces').textContent") == "—"  # no face modality yet
        for step in range(60):  # 6 s of a changing mood, pushed while the page is open
            t = time.time()
            face, voice = (0.6 * math.sin(step / 7), 0.4 * math.cos(step / 9)), (0.3 * math.sin(step / 15) - 0.2, 0.1)
            bus.publish(Observation("face", "face-1", t, label="neutral", valence=face[0], arousal=face[1],
                                    confidence=0.7))
            bus.publish(Observation("voice", "room", t, label="neutral", valence=voice[0], arousal=voice[1]))
            bus.publish(Observation("fused", "wearer", t, label="neutral", valence=(face[0] + voice[0]) / 2,
                                    arousal=(face[1] + voice[1]) / 2, estimator="fusion",
                                    extra={"contributions": {"face": 0.6, "voice": 0.4}}))
            time.sleep(0.1)
        events, observations = publish_scene(bus)
        fusion = Fusion()  # the real late fusion of these observations replaces the scene's hand-made fused one
        fused = [output for observation in observations for output in fusion.update(observation)][-1]
        bus.publish(fused)
        contributions = fused.extra["contributions"]
        weights = " · ".join(f"{name} {fixed(c['weight'])}" for name, c in contributions.items() if c["weight"] > 0)
        idle = ", ".join(f"{name} {c['status'].replace('_', ' ')}" for name, c in contributions.items()
                         if c["status"] in ("stale", "zero_weight"))
        expected = f"from {weights or '—'}" + (f" ({idle})" if idle else "")
        assert expected != "from face 0.70 · voice 0.30"  # tells the real fused state from the scene's hand-made one
        page.wait_for("document.querySelector('[data-modality=face] [data-field=label]').textContent === 'happy'")
        page.wait_for(f"document.querySelector('[data-modality=fused] [data-field=contributions]').textContent"
                      f" === {json.dumps(expected)}")
        page.wait_for("document.querySelectorAll('#events tbody tr').length === 2")
        cards = dom_cards(page)
        assert cards["face"] == {"subject": "face-1", "label": "happy", "valence": "0.52", "arousal": "0.31",
                                 "confidence": "0.80", "quality": "0.90", "age": cards["face"]["age"]}
        assert cards["voice"]["label"] == "uncertain" and cards["voice"]["valence"] == "-0.20"
        assert {k: cards["eeg"][k] for k in ("label", "valence", "arousal", "confidence")} == dict.fromkeys(
            ("label", "valence", "arousal", "confidence"), "—")
        assert cards["eeg"]["quality"] == "0.20"
        assert cards["fused"] == {
            "subject": fused.subject, "label": fused.label or "uncertain", "valence": fixed(fused.valence),
            "arousal": fixed(fused.arousal), "confidence": fixed(fused.confidence), "quality": fixed(fused.quality),
            "contributions": expected, "age": cards["fused"]["age"]}
        assert "face" in weights and "voice" in weights and "eeg" not in weights  # EEG had no data to give
        assert page.evaluate("document.querySelector('#faces').textContent") == "2"
        assert page.evaluate("document.querySelector('[data-modality=face] li[data-subject=face-2]').textContent") \
            == "face-2: — v — a —"
        dots = page.evaluate("[...document.querySelectorAll('#circumplex circle.dot')].map("
                             "d => [d.dataset.modality, +d.getAttribute('cx'), -d.getAttribute('cy')])")
        assert sorted(dots) == [["face", 0.52, 0.31], ["fused", round(fused.valence, 3), round(fused.arousal, 3)],
                                ["voice", -0.2, 0.1]]  # no EEG point
        lines = page.evaluate("Object.fromEntries(['valence', 'arousal'].map(k => [k, [...document.querySelectorAll("
                              "`#timeline-${k} polyline`)].map(p => [p.dataset.modality, p.points.numberOfItems])]))")
        for plot in lines.values():
            assert {m for m, _ in plot} == {"face", "voice", "fused"}  # EEG had no data: no line at all
            assert max(n for m, n in plot if m == "face") >= 30
        health = page.evaluate("[...document.querySelectorAll('#health .sources tr[data-modality]')].map("
                               "r => [...r.cells].map(c => c.textContent))")
        assert health == [["face", "14.9", "21.5", "3", "running"], ["voice", "1.0", "—", "0", "running"],
                          ["eeg", "—", "8.2", "—", "connected"]]
        facts = page.evaluate("Object.fromEntries([...document.querySelectorAll('#health dd')].map("
                              "d => [d.dataset.field, d.textContent]))")
        assert facts == {"broker": "connected", "spool": "0", "calibration": "eeg baseline: learning 40%",
                         "cpu-temp": "—"}
        assert page.evaluate("document.querySelector('[data-electrode=AF7]').className") == "electrode bad"
        rows = page.evaluate("[...document.querySelectorAll('#events tbody tr')].map("
                             "r => [r.dataset.event, ...[...r.cells].slice(1).map(c => c.textContent)])")
        assert rows == [[e.id, e.modality, "emotion", e.track_id, e.label, f"{e.valence:.2f}", f"{e.arousal:.2f}"]
                        for e in reversed(events)]
        switches = page.evaluate("[...document.querySelectorAll('#controls button[role=switch]')].map("
                                 "b => [b.dataset.control, b.getAttribute('aria-checked'), b.textContent])")
        assert switches == [["face_enabled", "false", "OFF"], ["voice_enabled", "true", "ON"],
                            ["camera_privacy", "true", "ON"]]
        assert page.evaluate("document.querySelector('[data-control=face_dwell_s]').value") == "0.5"
        assert page.errors() == []  # no script error and no Content-Security-Policy violation

        shot = page.screenshot(tmp_path / "dashboard.png")
        assert png_size(shot)[0] == 1280 and shot.stat().st_size > 20_000

        bus.publish(Observation("face", "face-2", time.time(), kind="end"))
        page.wait_for("document.querySelector('#faces').textContent === '1'")


@needs_chromium
def test_no_response_carries_images_or_audio(dashboard, tmp_path):
    sink, bus = dashboard()
    publish_scene(bus)
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(sink.url)
        page.wait_for("document.querySelector('[data-modality=face] [data-field=label]').textContent === 'happy'")
        assert page.evaluate("document.querySelector('#controls').hidden") is True  # no runtime, no controls
        loaded = page.responses()
    urls = {response["url"] for response in loaded}
    assert {sink.url, sink.url + "app.js", sink.url + "style.css", sink.url + "api/events"} <= urls
    for response in loaded:
        assert not response["mimeType"].startswith(("image/", "audio/", "video/")), response
    paths = {url[len(sink.url) - 1:] for url in urls} | {"/api/state", "/index.html"}
    for path in sorted(paths - {"/api/events"}):
        status, headers, body = get(f"http://127.0.0.1:{sink.port}{path}")
        assert status in (200, 204), path
        if status == 200:
            assert headers["Content-Type"].split(";")[0] in (
                "text/html", "text/javascript", "text/css", "application/json"), (path, headers)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    stream = read_stream(sink, 0.5)
    def strings(value):
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [value] if isinstance(value, str) else []
    assert stream and max(map(len, strings(stream))) < 100  # labels, ids and states: nothing like encoded media
    for path in ("/frame.jpg", "/snapshot.png", "/api/frame", "/audio.wav", "/../etc/passwd", "/edge/dashboard/app.js"):
        assert get(f"http://127.0.0.1:{sink.port}{path}")[0] == 404, path


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    from edge.demo import build_demo_video

    return build_demo_video(tmp_path_factory.mktemp("video") / "demo.avi")


@needs_chromium
def test_runtime_serves_the_dashboard_on_the_demo_video(broker, face_models, demo_video, tmp_path):
    port = free_port()
    config = runtime_config(tmp_path, face_models, demo_video, broker.port, camera={"realtime": True, "on_end": "loop"},
                            dashboard={"enabled": True, "port": port, "update_interval_s": 0.5})
    process = start_runtime(tmp_path, config)
    base = f"http://127.0.0.1:{port}/"
    try:
        def labelled_face():
            if process.poll() is not None:
                raise AssertionError(f"the runtime exited {process.returncode}:\n{output(process)[1][-2000:]}")
            try:
                snapshot = json.loads(get(base + "api/state")[2])
            except (OSError, ValueError):
                return False
            rows = snapshot["modalities"].get("face", {}).get("subjects", [])
            return any(row["label"] for row in rows) and snapshot["events"]
        assert wait_for(labelled_face, timeout=120), output(process)[1][-2000:]
        with Browser(tmp_path / "chromium") as browser:
            page = browser.open(base)
            page.wait_for("document.querySelector('[data-modality=face] [data-field=label]').textContent !== '—'"
                          " && document.querySelectorAll('#events tbody tr').length > 0", timeout=30)
            rows = page.evaluate("[...document.querySelectorAll('#events tbody tr')].map("
                                 "r => [r.dataset.event, ...[...r.cells].slice(1).map(c => c.textContent)])")
            faces = page.evaluate("document.querySelector('#faces').textContent")
            label = dom_cards(page)["face"]["label"]
            page.screenshot(tmp_path / "dashboard-runtime.png")
            assert page.errors() == []
        assert wait_for(lambda: {row[0] for row in rows} <= {e["id"] for e in printed_events(output(process)[0])})
        printed = {event["id"]: event for event in printed_events(output(process)[0])}
        for event_id, modality, kind, subject, shown_label, valence, arousal in rows:
            event = printed[event_id]  # every row is an event the runtime published, with its numbers
            assert (modality, kind, shown_label) == (event["modality"], event["kind"], event["label"] or "—")
            for shown, value in ((valence, event["valence"]), (arousal, event["arousal"])):
                assert shown == "—" if value is None else abs(float(shown) - value) <= 0.005 + 1e-9, (shown, event)
        face_labels = {e["label"] for e in printed.values() if e["modality"] == "face" and e["label"]}
        assert label in face_labels and int(faces) >= 1
    finally:
        kill(process)


KIOSK = Path(__file__).resolve().parents[1] / "firmware_config" / "kiosk"


def test_kiosk_launcher_waits_for_the_dashboard_then_starts_chromium_in_kiosk_mode(dashboard, tmp_path):
    calls = tmp_path / "browser-args"
    browser = tmp_path / "fake-chromium"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {calls}\n')
    browser.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(KIOSK_URL=f"http://127.0.0.1:{port}/", KIOSK_BROWSER=str(browser), KIOSK_WAIT_S="60",
               XDG_RUNTIME_DIR=str(tmp_path))
    launcher = subprocess.Popen([str(KIOSK / "emotion-edge-kiosk"), "--session"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        assert launcher.poll() is None and not calls.exists()  # no dashboard yet: still waiting, no browser
        dashboard(port=port)
        assert launcher.wait(timeout=10) == 0, launcher.stdout.read()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    args = calls.read_text().split()
    assert {"--kiosk", "--noerrdialogs", "--disable-infobars"} <= set(args) and args[-1] == f"http://127.0.0.1:{port}/"


def test_kiosk_install_writes_the_unit_and_autostart_entries(tmp_path):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "wayfire.ini").write_text("[core]\nplugins = autostart\n")
    env = dict(os.environ, HOME=str(home), KIOSK_NO_SYSTEM="1")
    env.pop("XDG_CONFIG_HOME", None)
    for _ in range(2):  # re-running adds nothing twice
        result = subprocess.run(["bash", str(KIOSK / "install_kiosk.sh"), "--port", "8799"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    launch = f"{home}/.local/bin/emotion-edge-kiosk --session"
    assert (home / ".config/labwc/autostart").read_text() == f"{launch} &\n"
    assert (home / ".config/wayfire.ini").read_text().count(launch) == 1
    assert f"Exec={launch}\n" in (home / ".config/autostart/emotion-edge-kiosk.desktop").read_text()
    assert (home / ".config/emotion-edge-kiosk.env").read_text() == "KIOSK_URL=http://127.0.0.1:8799/\n"
    assert os.access(home / ".local/bin/emotion-edge-kiosk", os.X_OK)
    unit = home / ".config/systemd/user/emotion-edge-kiosk.service"
    if shutil.which("systemd-analyze"):
        runtime_dir = tmp_path / "xdg"
        runtime_dir.mkdir(mode=0o700)
        verify = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True,
                                env=dict(env, XDG_RUNTIME_DIR=str(runtime_dir)), timeout=60)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    assert subprocess.run(["bash", str(KIOSK / "install_kiosk.sh"), "--port", "web"], env=env, capture_output=True,
                          text=True).stderr.strip() == "install_kiosk.sh: --port must be a number, not web"


def test_make_returns_the_sink_only_when_enabled_and_a_busy_port_is_one_line(dashboard):
    from edge.config import AppConfig, DeviceConfig

    assert dashboard_module.make(AppConfig({"device": DeviceConfig(id="pi")})) is None  # section not registered
    assert dashboard_module.make(AppConfig({"dashboard": DashboardConfig()})) is None  # off by default
    config = AppConfig({"dashboard": DashboardConfig(enabled=True), "device": DeviceConfig(id="pi")})
    sink = dashboard_module.make(config)
    assert isinstance(sink, DashboardSink) and sink.state.device_id == "pi" and sink.name == "dashboard"
    running, _ = dashboard()
    with pytest.raises(EdgeError, match=f"cannot listen on 127.0.0.1:{running.port} .*set dashboard.port"):
        DashboardSink(DashboardConfig(enabled=True, port=running.port)).start()


class PausableWorker:
    """What Controls drives on a runtime worker (edge.worker.Worker.pause/paused), without a camera."""

    def __init__(self):
        self.paused = False
        self.analyzer = SimpleNamespace(detector=SimpleNamespace(score_threshold=0.5))
        self.analyzer.detector.set_score_threshold = lambda value: setattr(self.analyzer.detector,
                                                                           "score_threshold", value)

    def pause(self, paused: bool) -> None:
        self.paused = paused


def stub_controls() -> tuple[Controls, dict]:
    """The real Controls (its validation and ranges) over a runtime reduced to the attributes it reads."""
    workers = {"face": PausableWorker(), "voice": PausableWorker()}
    return Controls(SimpleNamespace(workers=workers, config=SimpleNamespace(smoothing=SmoothingConfig()))), workers


def test_controls_apply_only_validated_same_origin_commands(dashboard):
    controls, workers = stub_controls()
    sink, bus = dashboard(controls=controls)
    base = f"http://127.0.0.1:{sink.port}"
    same_origin = {"Origin": base, "Content-Type": "text/plain"}
    shown = {c["key"]: c for c in state(sink)["controls"]}
    assert list(shown) == ["face_enabled", "voice_enabled", "camera_privacy", "face_score_threshold",
                           "face_min_confidence", "face_dwell_s"]
    assert shown["camera_privacy"] == {"key": "camera_privacy", "kind": "switch", "name": "Camera privacy",
                                       "value": "OFF", "minimum": 0.0, "maximum": 1.0, "step": 0.01, "unit": ""}
    assert shown["face_score_threshold"]["value"] == 0.5 and shown["face_score_threshold"]["minimum"] == 0.05

    refused = [  # a page elsewhere (CSRF), no Origin, a bad value, an unknown key, another method: nothing changes
        (post(f"{base}/api/controls/camera_privacy", "ON", {"Origin": "http://evil.example"}), 403),
        (post(f"{base}/api/controls/camera_privacy", "ON", {"Origin": "null"}), 403),
        (post(f"{base}/api/controls/camera_privacy", "ON"), 403),
        (post(f"{base}/api/controls/camera_privacy", "ON", {"Origin": base.replace("127.0.0.1", "localhost")}), 403),
        (post(f"{base}/api/controls/camera_privacy", "maybe", same_origin), 400),
        (post(f"{base}/api/controls/face_score_threshold", "1.5", same_origin), 400),
        (post(f"{base}/api/controls/face_score_threshold", "nan", same_origin), 400),
        (post(f"{base}/api/controls/face_score_threshold", "0.3" * 30, same_origin), 400),
        (post(f"{base}/api/controls/lights", "ON", same_origin), 404),
        (get(f"{base}/api/controls/camera_privacy"), 405),
        (post(f"{base}/api/controls/camera_privacy", "ON", same_origin, method="PUT"), 405),
    ]
    assert [status for (status, _, _), _ in refused] == [expected for _, expected in refused]
    assert json.loads(refused[5][0][2]) == {"error": "face_score_threshold must be between 0.05 and 0.95, not '1.5'"}
    assert refused[9][0][1]["Allow"] == "POST"
    assert not workers["face"].paused and workers["face"].analyzer.detector.score_threshold == 0.5
    assert controls.state()["camera_privacy"] == "OFF"

    assert post(f"{base}/api/controls/camera_privacy", "ON", same_origin)[0] == 204
    assert workers["face"].paused and state(sink)["controls"][2]["value"] == "ON"
    assert post(f"{base}/api/controls/face_score_threshold", " 0.35\n", same_origin)[0] == 204
    assert workers["face"].analyzer.detector.score_threshold == 0.35
    snapshots = read_stream(sink, 0.5)  # open pages get the new values with the next push
    assert {c["key"]: c["value"] for c in snapshots[-1]["controls"]}["face_score_threshold"] == 0.35
    assert post(f"{base}/api/controls/camera_privacy", "off", same_origin)[0] == 204 and not workers["face"].paused


def test_controls_need_the_token_and_are_absent_without_a_runtime(dashboard):
    controls, workers = stub_controls()
    sink, bus = dashboard(controls=controls, host="0.0.0.0", token=TOKEN)
    base = f"http://127.0.0.1:{sink.port}"
    url, origin = f"{base}/api/controls/voice_enabled", {"Origin": base}
    assert post(url, "OFF", origin)[0] == 401
    assert post(f"{url}?token=wrong-{TOKEN}", "OFF", origin)[0] == 401
    assert post(url, "OFF", {**origin, "Authorization": "Bearer " + TOKEN[:-1]})[0] == 401
    assert not workers["voice"].paused
    assert post(url, "OFF", {"Authorization": f"Bearer {TOKEN}"})[0] == 403  # the token alone is not enough
    assert post(url, "OFF", {**origin, "Authorization": f"Bearer {TOKEN}"})[0] == 204 and workers["voice"].paused

    plain, _ = dashboard()  # built without a runtime (context None): no controls section, nothing to POST to
    assert state(plain)["controls"] is None
    plain_base = f"http://127.0.0.1:{plain.port}"
    assert post(f"{plain_base}/api/controls/camera_privacy", "ON", {"Origin": plain_base})[0] == 404
    from edge.config import AppConfig

    config = AppConfig({"dashboard": DashboardConfig(enabled=True)})
    made = dashboard_module.make(config, RuntimeContext(("face",), {}, controls))
    assert made.state.controls is controls
    assert dashboard_module.make(config, RuntimeContext(("face",), {}, None)).state.controls is None


@needs_chromium
def test_camera_privacy_switch_in_chromium_pauses_the_runtimes_camera(broker, face_models, demo_video, tmp_path):
    port = free_port()
    config = runtime_config(tmp_path, face_models, demo_video, broker.port, camera={"realtime": True, "on_end": "loop"},
                            dashboard={"enabled": True, "port": port, "update_interval_s": 0.5})
    process = start_runtime(tmp_path, config)
    base = f"http://127.0.0.1:{port}/"

    def health(key):
        if process.poll() is not None:
            raise AssertionError(f"the runtime exited {process.returncode}:\n{output(process)[1][-2000:]}")
        try:
            snapshot = json.loads(get(base + "api/state")[2])
        except (OSError, ValueError):
            return None
        rows = dict(map(tuple, (snapshot["health"] or {}).get("rows", [])))
        return rows.get(key), {c["key"]: c["value"] for c in snapshot["controls"] or []}

    try:
        assert wait_for(lambda: (health("face.paused") or (None,))[0] is False, timeout=120), output(process)[1][-2000:]
        with Browser(tmp_path / "chromium") as browser:
            page = browser.open(base)
            switch = "document.querySelector('#controls [data-control=camera_privacy]')"
            page.wait_for(f"{switch}.getAttribute('aria-checked') === 'false'")
            assert page.evaluate("document.querySelector('#controls').hidden") is False
            page.evaluate(f"{switch}.click()")
            assert wait_for(lambda: health("face.paused") == (True, health("face.paused")[1])
                            and health("face.paused")[1]["camera_privacy"] == "ON", timeout=30)
            page.wait_for(f"{switch}.getAttribute('aria-checked') === 'true' && {switch}.textContent === 'ON'")
            threshold = "document.querySelector('#controls [data-control=face_score_threshold]')"
            page.evaluate(f"{threshold}.value = '2'; {threshold}.dispatchEvent(new Event('change'))")
            page.wait_for("document.querySelector('#control-error').textContent === "
                          "\"face_score_threshold: face_score_threshold must be between 0.05 and 0.95, not '2'\"")
            page.screenshot(tmp_path / "dashboard-controls.png")
            page.evaluate(f"{switch}.click()")
            assert wait_for(lambda: health("face.paused")[0] is False
                            and health("face.paused")[1]["camera_privacy"] == "OFF", timeout=30)
            assert health("face.paused")[1]["face_score_threshold"] != 2
            assert page.evaluate(f"{threshold}.value") not in ("", "2")  # back to the device's value
            refused = f"{base}api/controls/face_score_threshold: Failed to load resource: the server responded " \
                      "with a status of 400 (Bad Request)"  # Chromium logs the refused command itself
            assert [error for error in page.errors() if error != refused] == []
    finally:
        kill(process)
