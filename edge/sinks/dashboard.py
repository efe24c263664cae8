"""The kiosk screen: a local web page with the live state, a valence/arousal timeline and the device's health.

A sink like MQTT: it keeps a bounded summary of what the bus carries (the newest observation per
subject, a ring buffer of valence/arousal per modality, the newest health report, the last events)
and serves it with the standard library's threaded HTTP server, so it adds no dependency.

Privacy by construction: it only ever receives Observation, Event and HealthReport objects, which
hold no frames, crops or audio, so it has none to serve. It binds to 127.0.0.1 by default; a LAN
address needs `dashboard.token`, checked on every data request (`?token=` or `Authorization: Bearer`).
Without a token, requests must name a loopback host, so a web page elsewhere cannot read the state
through DNS rebinding. Static assets (the page, script and style that ship in the package) carry no data.

When the runtime has controls (edge/controls.py: the camera privacy switch, the modality switches,
the face thresholds), the page shows them and changes one with `POST /api/controls/<key>`; the command
goes through the same validation as the Home Assistant one. A POST needs a same-origin `Origin` header
(a page elsewhere cannot switch the camera back on with a form or fetch) and the token when one is set.

Updates reach the page as Server-Sent Events: one snapshot is encoded at most every
`update_interval_s`, only when something changed, and shared by every connected page; an idle
stream gets a keep-alive comment. No data (None) stays null in the JSON; the page shows it as "—".
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, ClassVar, Mapping
from urllib.parse import parse_qs, urlsplit

from ..bus import HealthReport
from ..errors import EdgeError
from ..events import Event
from ..network import is_loopback
from ..observation import Observation

log = logging.getLogger(__name__)

ENV_TOKEN = "EMOTION_EDGE_DASHBOARD_TOKEN"
ASSETS = {  # URL path -> (file in edge/dashboard, Content-Type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MODALITY_ORDER = ("face", "voice", "eeg", "fused")
MAX_CLIENTS = 8  # live pages at once; each holds one thread
KEEPALIVE_S = 15.0
TIMELINE_POINTS = 300  # per modality, whatever history_s is
MAX_SUBJECTS = 16  # per modality; the oldest is forgotten past this
MAX_EVENTS = 30
MAX_HEALTH_ROWS = 300
MAX_COMMAND_BYTES = 64  # "ON", "OFF" or a number
CONTROLS_PATH = "/api/controls/"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass
class DashboardConfig:
    SECTION: ClassVar[str] = "dashboard"

    enabled: bool = False  # serve the local dashboard page (the kiosk profile turns it on)
    host: str = "127.0.0.1"  # address to listen on; anything but loopback (e.g. "0.0.0.0") needs `token`
    port: int = 8765  # TCP port: the page is http://<host>:<port>/ (0 = any free port)
    # shared secret for data requests (?token= or "Authorization: Bearer"); required off loopback, at least 16
    # characters; the environment variable EMOTION_EDGE_DASHBOARD_TOKEN overrides it
    token: str = ""
    update_interval_s: float = 1.0  # push a new state to open pages at most this often, only when it changed
    history_s: float = 300.0  # length of the valence/arousal timeline, in seconds
    stale_after_s: float = 10.0  # a subject not updated for this long is shown as stale; a face as gone

    def validate(self) -> None:
        s = self.SECTION
        if not self.host.strip():
            raise EdgeError(f'{s}.host is empty; use "127.0.0.1" (this screen only) or a LAN address with a token')
        if not 0 <= self.port <= 65535:
            raise EdgeError(f"{s}.port must be 0-65535, not {self.port!r}")
        if not 0.1 <= self.update_interval_s <= 60:
            raise EdgeError(f"{s}.update_interval_s must be 0.1-60 seconds, not {self.update_interval_s!r}")
        if not 10 <= self.history_s <= 86400:
            raise EdgeError(f"{s}.history_s must be 10-86400 seconds, not {self.history_s!r}")
        if not 0.5 <= self.stale_after_s <= 3600:
            raise EdgeError(f"{s}.stale_after_s must be 0.5-3600 seconds, not {self.stale_after_s!r}")
        token = self.secret()
        if token and (len(token) < 16 or not token.isprintable() or " " in token):
            raise EdgeError(f"{s}.token must be at least 16 printable characters without spaces (e.g. the output "
                            "of `openssl rand -hex 16`)")
        if self.enabled and not token and not is_loopback(self.host):
            raise EdgeError(f"{s}.host = {self.host!r}: binding to the LAN needs dashboard.token (or "
                            f"{ENV_TOKEN}); set one, or keep host = \"127.0.0.1\"")

    def secret(self) -> str:
        return os.environ.get(ENV_TOKEN) or self.token


def _number(value: Any, digits: int = 3) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _contributions(value: Any) -> list[dict[str, Any]] | None:
    """Fusion's per-input weights as [{"name", "weight"}], from a {name: weight} map or a list of dicts."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = [(item.get("modality") or item.get("subject") or item.get("name"), item)
                 for item in value if isinstance(item, Mapping)]
    else:
        return None
    result = []
    for name, weight in items[:MAX_SUBJECTS]:
        status = None
        if isinstance(weight, Mapping):  # edge.fusion: {"weight", "status", "valence", ...} per modality
            weight, status = weight.get("weight", weight.get("share")), weight.get("status")
        result.append({"name": str(name), "weight": _number(weight),
                       "status": status if isinstance(status, str) else None})
    return result


def _view(observation: Observation) -> dict[str, Any]:
    probabilities = observation.probabilities
    view = {
        "subject": observation.subject,
        "label": observation.label,
        # a classifier (or the fusion) that declined to pick a label below its confidence: not the same as no data
        "uncertain": observation.label is None and observation.has_data
                     and (bool(probabilities) or observation.estimator == "fusion"),
        "valence": _number(observation.valence),
        "arousal": _number(observation.arousal),
        "confidence": _number(observation.confidence),
        "quality": _number(observation.quality),
        "estimator": observation.estimator,
        "timestamp": _number(observation.timestamp, 3),
        "latency_ms": _number(observation.latency_ms, 1),
    }
    if observation.modality == "fused" or "contributions" in observation.extra:
        view["contributions"] = _contributions(observation.extra.get("contributions"))
    return view


class _Series:
    """A modality's valence/arousal: the mean of its subjects per time bucket, the last TIMELINE_POINTS buckets."""

    def __init__(self, resolution: float):
        self.resolution = resolution
        self.points: deque = deque(maxlen=TIMELINE_POINTS + 1)  # [bucket, valence sum, arousal sum, count]

    def add(self, when: float, valence: float | None, arousal: float | None) -> None:
        bucket = int(when // self.resolution)
        if self.points and self.points[-1][0] == bucket:
            point = self.points[-1]
        else:
            point = [bucket, 0.0, 0.0, 0]
            self.points.append(point)
        if valence is not None and arousal is not None:
            point[1] += valence
            point[2] += arousal
            point[3] += 1

    def export(self, since: float) -> dict[str, Any]:
        """Bucket i (of `index`) ends at start + i * step; valence/arousal None where the modality reported only
        "no data". Parallel arrays of small numbers keep the snapshot small: it is encoded on every push."""
        points = [point for point in self.points if (point[0] + 1) * self.resolution >= since]
        first = points[0][0] if points else 0
        return {"start": round((first + 1) * self.resolution, 2), "step": self.resolution,
                "index": [bucket - first for bucket, _, _, _ in points],
                "valence": [round(v / n, 2) if n else None for _, v, _, n in points],
                "arousal": [round(a / n, 2) if n else None for _, _, a, n in points]}


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _first(section: Mapping, *keys: str) -> Any:
    for key in keys:
        if section.get(key) is not None:
            return section[key]
    return None


def _calibration(name: str, section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Whether a modality's calibration was done: a `calibration` report (None = not calibrated), a `calibrated`
    flag, and a baseline still being learnt (`warming_up`)."""
    items = []
    if "calibration" in section:
        report = section["calibration"]
        detail = None
        if isinstance(report, Mapping) and _number(report.get("accuracy")) is not None:
            chance = _number(report.get("chance"), 2)
            detail = f"accuracy {report['accuracy']:.2f}" + (f", chance {chance:.2f}" if chance is not None else "")
        items.append({"name": name, "state": "done" if report else "not calibrated", "detail": detail})
    elif isinstance(section.get("calibrated"), bool):
        items.append({"name": name, "state": "done" if section["calibrated"] else "not calibrated", "detail": None})
    if isinstance(section.get("warming_up"), bool):
        progress = _number(section.get("warmup_progress"), 2)
        items.append({"name": f"{name} baseline", "state": "learning" if section["warming_up"] else "done",
                      "detail": f"{progress:.0%}" if section["warming_up"] and progress is not None else None})
    return items


def health_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a person looks for first, wherever the runtime puts them; None where the report has none."""
    sections = metrics.get("modalities") if isinstance(metrics.get("modalities"), Mapping) else metrics
    modalities, electrodes, calibration = {}, None, []
    for name, section in sections.items():
        if not isinstance(section, Mapping):
            continue
        latency = _dig(section, "stages", "total", "median_ms")
        entry = {
            "rate": _number(_first(section, "fps", "windows_per_s", "chunks_per_s", "rate_hz"), 2),
            "latency_ms": _number(latency if latency is not None else
                                  _first(section, "latency_ms", "last_latency_ms"), 1),
            "dropped": _first(section, "dropped_frames", "dropped"),
            "source": _first(section, "camera_state", "source_state") or _dig(section, "source", "state"),
        }
        if any(value is not None for value in entry.values()):
            modalities[name] = entry
        quality = section.get("electrodes") or section.get("quality")  # EEG analyzer / the pipeline before it
        if isinstance(quality, Mapping) and quality and all(isinstance(q, Mapping) for q in quality.values()):
            electrodes = [{"name": str(channel), "status": q.get("status"), "score": _number(q.get("score"))}
                          for channel, q in quality.items()]
        calibration += _calibration(name, section)
    mqtt = metrics.get("mqtt") if isinstance(metrics.get("mqtt"), Mapping) else _dig(metrics, "sinks", "mqtt")
    mqtt = mqtt if isinstance(mqtt, Mapping) else {}
    spool = _first(metrics, "spool_depth")
    return {
        "modalities": modalities,
        "electrodes": electrodes,
        "calibration": calibration or None,
        "spool_depth": spool if spool is not None else mqtt.get("spool_depth"),
        "broker": mqtt.get("state") or ({True: "connected", False: "disconnected"}.get(mqtt.get("connected"))),
        "cpu_temp_c": _number(metrics.get("cpu_temp_c"), 1),
    }


def flatten(data: Any, prefix: str = "", rows: list | None = None, depth: int = 0) -> list[list]:
    """Every scalar of a nested report as [dotted.key, value], for the generic health table."""
    rows = [] if rows is None else rows
    if len(rows) >= MAX_HEALTH_ROWS:
        return rows
    if isinstance(data, Mapping) and depth < 6:
        for key, value in data.items():
            flatten(value, f"{prefix}.{key}" if prefix else str(key), rows, depth + 1)
    elif isinstance(data, (list, tuple)):
        if all(isinstance(item, (str, int, float, bool)) or item is None for item in data) and len(data) <= 12:
            rows.append([prefix, ", ".join("—" if item is None else str(item) for item in data)])
        else:
            rows.append([prefix, f"[{len(data)} items]"])
    elif data is None or isinstance(data, (bool, int, float)):
        rows.append([prefix, _number(data, 4) if isinstance(data, float) else data])
    else:
        rows.append([prefix, str(data)[:120]])
    return rows


def _event_view(event: Event) -> dict[str, Any]:
    data = event.to_dict()
    view = {key: data.get(key) for key in ("id", "timestamp", "modality", "kind", "label", "valence", "arousal",
                                           "confidence")}
    view["subject"] = data.get("subject_id") or data.get("track_id")  # schema 2 names the subject; 1 the track
    return view


class DashboardState:
    """What the page shows, kept bounded: newest observation per subject, timelines, health, last events."""

    def __init__(self, config: DashboardConfig, device_id: str = "", controls: Any = None):
        self.config = config
        self.device_id = device_id
        self.controls = controls  # edge.controls.Controls with at least one control, or None
        self.resolution = config.history_s / TIMELINE_POINTS
        self.subjects: dict[str, dict[str, tuple[float, dict]]] = {}  # modality -> subject -> (monotonic seen, view)
        self.series: dict[str, _Series] = {}
        self.health: HealthReport | None = None
        self.events: deque = deque(maxlen=MAX_EVENTS)
        self.face_seen = False
        self.observations = 0

    def add(self, message: Any, now: float, seen: float) -> None:
        if isinstance(message, Observation):
            self.observations += 1
            subjects = self.subjects.setdefault(message.modality, {})
            if message.modality == "face":
                self.face_seen = True
            if message.kind == "end":
                subjects.pop(message.subject, None)
            else:
                subjects.pop(message.subject, None)  # re-inserted last: dict order is "least recently updated" first
                subjects[message.subject] = (seen, _view(message))
                while len(subjects) > MAX_SUBJECTS:
                    subjects.pop(next(iter(subjects)))
            series = self.series.setdefault(message.modality, _Series(self.resolution))
            series.add(now, message.valence if message.kind != "end" else None,
                       message.arousal if message.kind != "end" else None)
        elif isinstance(message, Event):
            self.events.appendleft(_event_view(message))
        elif isinstance(message, HealthReport):
            self.health = message

    def expired_faces(self, seen: float) -> list[str]:
        """Faces not updated for stale_after_s: their "end" was lost, or the camera stalled; no longer in view."""
        faces = self.subjects.get("face", {})
        return [subject for subject, (at, _) in faces.items() if seen - at > self.config.stale_after_s]

    def snapshot(self, now: float, seen: float) -> dict[str, Any]:
        stale_after = self.config.stale_after_s
        for subject in self.expired_faces(seen):
            del self.subjects["face"][subject]
        modalities = {}
        names = sorted(set(self.subjects) | set(self.series),
                       key=lambda m: (MODALITY_ORDER.index(m) if m in MODALITY_ORDER else 3.5, m))
        for name in names:
            rows = []
            for seen_at, view in self.subjects.get(name, {}).values():
                rows.append(dict(view, age_s=round(seen - seen_at, 1), stale=seen - seen_at > stale_after))
            rows.sort(key=lambda row: (row["stale"], row["confidence"] is None, -(row["confidence"] or 0.0)))
            modalities[name] = {"subjects": rows}
        faces = len(self.subjects.get("face", {})) if self.face_seen else None
        since = now - self.config.history_s
        health = None
        if self.health is not None:
            health = {"timestamp": _number(self.health.timestamp, 3), "summary": health_summary(self.health.metrics),
                      "rows": flatten(self.health.metrics)}
        return {
            "device": self.device_id,
            "now": round(now, 3),
            "interval_s": self.config.update_interval_s,
            "history_s": self.config.history_s,
            "stale_after_s": stale_after,
            "resolution_s": self.resolution,
            "modalities": modalities,
            "presence": {"faces": faces, "present": None if faces is None else faces > 0},
            "timeline": {name: series.export(since) for name, series in self.series.items()},
            "health": health,
            "events": list(self.events),
            "controls": self.controls_view(),
        }

    def controls_view(self) -> list[dict[str, Any]] | None:
        """Each control with its current value; None when the runtime has none (the page shows no section)."""
        if self.controls is None:
            return None
        values = self.controls.state()
        return [{"key": c.key, "kind": c.kind, "name": c.name, "value": values.get(c.key),
                 "minimum": c.minimum, "maximum": c.maximum, "step": c.step, "unit": c.unit}
                for c in self.controls]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    sink: "DashboardSink"


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "emotion-edge"
    sys_version = ""
    timeout = 10  # a client that sends no request line in this time is dropped

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s: " + format, self.address_string(), *args)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_POST(self) -> None:
        self._control(self.command)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _send(self, status: int, content_type: str, payload: bytes, body: bool, cache: str = "no-store",
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", cache)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _refuse(self, status: int, reason: str, body: bool, extra: Mapping[str, str] | None = None) -> None:
        self.server.sink.count("refused")
        self._send(status, "text/plain; charset=utf-8", f"{reason}\n".encode(), body, extra=extra)

    def _serve(self, body: bool) -> None:
        sink = self.server.sink
        sink.count("requests")
        url = urlsplit(self.path)
        token = sink.config.secret()
        if not token and not sink.host_allowed(self.headers.get("Host", "")):
            return self._refuse(403, "this dashboard answers only to a loopback host name (set dashboard.token "
                                     "to open it from the LAN)", body)
        if url.path in ASSETS:
            payload, content_type = sink.assets[url.path]
            return self._send(200, content_type, payload, body, cache="no-cache")
        if url.path == "/favicon.ico":  # browsers ask for it; an answer with no content keeps their console clean
            self.send_response(204)
            self.send_header("Cache-Control", "max-age=86400")
            return self.end_headers()
        if url.path.startswith(CONTROLS_PATH):
            return self._control(self.command)
        if url.path not in ("/api/state", "/api/events"):
            return self._refuse(404, "not found", body)
        if token and not self._authorized(url.query, token):
            return self._refuse(401, "missing or wrong dashboard token", body, {"WWW-Authenticate": "Bearer"})
        if url.path == "/api/state":
            return self._send(200, "application/json", sink.snapshot_json(), body)
        self._stream(body)

    def _control(self, method: str) -> None:
        """POST /api/controls/<key> with "ON"/"OFF" or a number: 204 applied, 400 refused (JSON reason)."""
        sink = self.server.sink
        sink.count("requests")
        body = method != "HEAD"
        url = urlsplit(self.path)
        token = sink.config.secret()
        if not token and not sink.host_allowed(self.headers.get("Host", "")):
            return self._refuse(403, "this dashboard answers only to a loopback host name", body)
        controls = sink.state.controls
        key = url.path[len(CONTROLS_PATH):] if url.path.startswith(CONTROLS_PATH) else ""
        if controls is None or key not in {control.key for control in controls}:
            return self._refuse(404, "not found", body)
        if method != "POST":
            return self._refuse(405, "use POST", body, {"Allow": "POST"})
        if token and not self._authorized(url.query, token):
            return self._refuse(401, "missing or wrong dashboard token", body, {"WWW-Authenticate": "Bearer"})
        origin = self.headers.get("Origin", "")
        if origin != f"http://{self.headers.get('Host', '')}":  # no Origin, "null", or another site's page
            return self._refuse(403, "a control needs a same-origin request (Origin header) from the dashboard "
                                     "page", body)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._refuse(411, "send the command as a body with Content-Length", body)
        if not 0 <= length <= MAX_COMMAND_BYTES:
            return self._error(400, f"a command is at most {MAX_COMMAND_BYTES} bytes (ON, OFF or a number)")
        try:
            payload = self.rfile.read(length).decode("utf-8")
        except UnicodeDecodeError:
            return self._error(400, "the command is not UTF-8 text")
        reason = controls.apply(key, payload)
        if reason is not None:
            return self._error(400, reason)
        log.info("dashboard: %s set to %s", key, payload.strip()[:20])
        sink.changed()
        self.send_response(204)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _error(self, status: int, reason: str) -> None:
        self.server.sink.count("refused")
        self._send(status, "application/json", json.dumps({"error": reason}).encode(), True)

    def _authorized(self, query: str, token: str) -> bool:
        supplied = parse_qs(query).get("token", [""])[-1]
        header = self.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            supplied = header[7:].strip()
        return hmac.compare_digest(supplied.encode(), token.encode())

    def _stream(self, body: bool) -> None:
        sink = self.server.sink
        if not sink.join_stream():
            return self._refuse(503, f"too many open dashboards (at most {MAX_CLIENTS})", body)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not body:
                return
            self.wfile.write(b"retry: 3000\n\n" + b"data: " + sink.snapshot_json() + b"\n\n")
            self.wfile.flush()
            version = sink.version
            while True:
                version, payload = sink.next_push(version, KEEPALIVE_S)
                if payload is None and sink.closing:
                    return
                self.wfile.write(payload if payload is not None else b": keep-alive\n\n")
                self.wfile.flush()
        except OSError:  # the page went away (BrokenPipe, reset, or the socket timeout on a stalled reader)
            pass
        finally:
            sink.leave_stream()


def _static(name: str) -> bytes:
    try:
        return resources.files("edge").joinpath("dashboard", name).read_bytes()
    except OSError as exc:
        raise EdgeError(f"the dashboard asset edge/dashboard/{name} is missing ({exc.strerror}); reinstall "
                        "emotion-edge (the package data was not installed)") from None


class DashboardSink:
    name = "dashboard"
    accepts = (Observation, Event, HealthReport)
    queue_size = 1000

    def __init__(self, config: DashboardConfig, device_id: str = "", controls: Any = None):
        self.config = config
        has_controls = controls is not None and any(True for _ in controls)
        self.state = DashboardState(config, device_id, controls if has_controls else None)
        self.assets: dict[str, tuple[bytes, str]] = {}
        self.port: int | None = None
        self.closing = False
        self.version = 0
        self._payload: bytes | None = None
        self._dirty = False
        self._lock = threading.Lock()  # the state
        self._push = threading.Condition()  # the shared payload, its version and the client count
        self._clients = 0
        self._counters = {"requests": 0, "refused": 0, "pushes": 0}
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        config = self.config
        config.validate()  # a LAN address without a token is refused here, before anything listens
        self.assets = {path: (_static(name), content_type) for path, (name, content_type) in ASSETS.items()}
        host = "127.0.0.1" if config.host.strip().lower() == "localhost" else config.host.strip().strip("[]")
        server_class = _IPv6Server if ":" in host else _Server
        try:
            self._server = server_class((host, config.port), _Handler)
        except OSError as exc:
            raise EdgeError(f"the dashboard cannot listen on {host}:{config.port} ({exc.strerror or exc}); set "
                            "dashboard.port to a free port, or dashboard.host to an address of this machine") from None
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                          name="dashboard-http", daemon=True),
                         threading.Thread(target=self._pusher, name="dashboard-push", daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("dashboard on %s", self.url)

    def handle(self, messages: list) -> None:
        now, seen = time.time(), time.monotonic()
        with self._lock:
            for message in messages:
                self.state.add(message, now, seen)
            self._dirty = True

    def stop(self) -> None:
        with self._push:
            self.closing = True
            self._push.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def health(self) -> dict[str, Any]:
        with self._push:
            return {"url": self.url if self.port else None, "clients": self._clients, **self._counters}

    def changed(self) -> None:
        """A control was applied: the next push carries its new value."""
        with self._lock:
            self._dirty = True

    def count(self, key: str) -> None:
        with self._push:
            self._counters[key] += 1

    def host_allowed(self, host_header: str) -> bool:
        """Without a token only a loopback Host (or the configured host) is served: no DNS rebinding."""
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1:host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":")[0]
        return host in LOOPBACK_NAMES or host == self.config.host.strip().strip("[]").lower() or is_loopback(host)

    def snapshot_json(self) -> bytes:
        with self._lock:
            snapshot = self.state.snapshot(time.time(), time.monotonic())
        return json.dumps(snapshot, separators=(",", ":"), allow_nan=False).encode()

    def join_stream(self) -> bool:
        with self._push:
            if self._clients >= MAX_CLIENTS or self.closing:
                return False
            self._clients += 1
            return True

    def leave_stream(self) -> None:
        with self._push:
            self._clients -= 1

    def next_push(self, version: int, timeout: float) -> tuple[int, bytes | None]:
        """Wait for a snapshot newer than `version`; (version, None) on timeout or shutdown."""
        with self._push:
            self._push.wait_for(lambda: self.version != version or self.closing, timeout)
            if self.version != version and not self.closing:
                return self.version, self._payload
            return version, None

    def _pusher(self) -> None:
        """Every update_interval_s: if something changed and a page is open, encode one snapshot for all pages."""
        while True:
            with self._push:
                if self._push.wait_for(lambda: self.closing, self.config.update_interval_s):
                    return
                clients = self._clients
            if clients == 0:  # a page that connects gets a fresh snapshot anyway
                continue
            with self._lock:  # a face leaving by time changes the count as much as new data does
                dirty, self._dirty = self._dirty or bool(self.state.expired_faces(time.monotonic())), False
            if not dirty:
                continue
            payload = b"data: " + self.snapshot_json() + b"\n\n"
            with self._push:
                self.version += 1
                self._payload = payload
                self._counters["pushes"] += 1
                self._push.notify_all()


def make(config, context=None) -> DashboardSink | None:
    """The dashboard sink, or None when `[dashboard] enabled` is false (or the section is not registered)."""
    section = getattr(config, "dashboard", None)
    if section is None or not section.enabled:
        return None
    device = getattr(config, "device", None)
    return DashboardSink(section, device_id=getattr(device, "id", ""), controls=getattr(context, "controls", None))
