"""A day of a kiosk's faults and events, compressed: does every event arrive, and does memory stay flat?

Runs real runtimes as subprocesses (`emotion-edge run --config F --print-events`, from `--code`, default this
checkout) against a real mosquitto, and injects the faults a device meets unattended, on a fixed schedule scaled to
`--minutes` (default 20; docs/reliability.md says what "24-hour-equivalent" means):
- runtime "disk": face on the demo video, unpaced (`camera.realtime = false`) with a tracker and smoothing tuned to
  emit an event on every change, its data dir on a tmpfs of `--tmpfs-mib` that a filler file fills to the last byte
  and frees twice (once with the broker up, the runtime stopped with SIGTERM and restarted while the disk is still
  full, once across a 30 s broker outage so the spool cannot grow). Without root there is no tmpfs: a note is printed and
  this runtime's data dir is an ordinary directory, with no disk faults;
- runtime "main": the same face input plus voice (looping espeak-ng speech, real time) and EEG
  (`simulate-muse`, events every 0.5 s);
- the broker: SIGKILL and restart 6 times (down 3 to 30 s), SIGSTOP/SIGCONT freezes 3 times (15 to 50 s, longer
  than the runtimes' 10 s keepalive);
- runtime "main" SIGKILLed 3 times, "disk" once, each restarted after 2 s (as systemd's RestartSec would); a
  runtime that exits by itself is restarted the same way.
mosquitto runs with persistence (autosave every second) and a paho subscriber with a persistent session
(clean_session false, QoS 1), so a broker restart does not lose the subscription while the hub is away.

Accounting, per runtime: produced = event ids the runtime printed (stdout, all its processes); delivered = ids
the subscriber received (unique, and duplicates); counted drops = the spool's drop counters by reason
(`spool_drops`, `events_dropped_stopped`) from each process's exit summary, or, for a SIGKILLed process, from the
last health message it published (health every second); still spooled = ids left in the spool file after the
last process stopped that never arrived; lost = produced - delivered - counted drops - still spooled. Ids a
SIGKILLed process printed after its last health report have no reported fate and are counted apart
(`missing_fate_unreported`), not as lost. Each missing id is listed with the faults within 10 s of its printing. RSS per runtime process
and spool size (sqlite file + WAL + SHM) are sampled every `--interval` s.

Usage: python benchmarks/soak.py [--minutes 20] [--code DIR] [--face-models DIR] [--voice-models DIR]
Writes benchmarks/results/soak.json (soak-LABEL.json with --label) and prints a table. Not run by CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_growth import ROOT, describe, linear_slope, make_inputs, read_memory, start_muse  # noqa: E402
from tests.mqtt_broker import Broker  # noqa: E402
from tests.runtime_helpers import toml_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SPOOL_FILES = ("mqtt_spool.sqlite3", "mqtt_spool.sqlite3-wal", "mqtt_spool.sqlite3-shm",
               "mqtt_spool.sqlite3-journal")
RESTART_DELAY_S = 2.0


def schedule(total_s: float, disk: bool) -> list[tuple[float, str, dict]]:
    """The fault plan: (second, action, arguments). Fractions of the run, fixed outage lengths in seconds."""
    plan = []
    for at, down in ((0.10, 3), (0.25, 10), (0.40, 20), (0.55, 5), (0.70, 30), (0.85, 8)):
        plan.append((at * total_s, "broker_kill", {"down_s": down}))
    for at, frozen in ((0.18, 25), (0.48, 50), (0.78, 15)):
        plan.append((at * total_s, "broker_freeze", {"frozen_s": frozen}))
    for at, name in ((0.22, "main"), (0.52, "main"), (0.90, "main"), (0.62, "disk")):
        plan.append((at * total_s, "runtime_kill", {"runtime": name}))
    if disk:  # a SIGTERM (summary counted) while full, then restarts that meet the full disk
        plan += [(0.28 * total_s, "disk_fill", {"full_s": 0.06 * total_s}),
                 (0.31 * total_s, "runtime_stop", {"runtime": "disk"}),
                 (0.68 * total_s, "disk_fill", {"full_s": 0.06 * total_s})]
    else:
        plan.append((0.31 * total_s, "runtime_stop", {"runtime": "disk"}))
    return sorted(plan, key=lambda item: item[0])


class Hub:
    """The consumer: a paho client with a persistent session that counts events by `id` and keeps health."""

    def __init__(self, port: int):
        self.ids: dict[str, Counter] = {}
        self.health: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        self.last_message = time.monotonic()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="soak-hub", protocol=paho.MQTTv311,
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.on_connect = lambda client, *_: client.subscribe(
            [("emotion_edge/+/+/event", 1), ("emotion_edge/+/health", 1)])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        now = time.monotonic()
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        with self.lock:
            self.last_message = now
            if message.topic.endswith("/event"):
                self.ids.setdefault(payload.get("device_id"), Counter())[payload.get("id")] += 1
            elif message.topic.endswith("/health"):
                self.health.append((now, payload.get("device_id"), payload.get("mqtt", {})))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Slot:
    """One device: a config and its successive runtime processes (restarted after a kill, as systemd would)."""

    def __init__(self, name: str, config: dict, work: Path, code: Path):
        self.name, self.config, self.work, self.code = name, config, work, code
        self.device = config["device"]["id"]
        self.data = Path(config["device"]["data_dir"])
        self.config_path = work / f"{name}.toml"
        self.config_path.write_text(toml_text(config))
        self.processes: list[dict] = []
        self.produced: dict[str, float] = {}  # id -> monotonic time it was first seen printed
        self.unparsed = 0
        self.spooled_ids: list[str] | None = None

    @property
    def current(self) -> dict | None:
        return self.processes[-1] if self.processes and self.processes[-1]["popen"].poll() is None else None

    def start(self, now: float) -> None:
        number = len(self.processes)
        out, err = self.work / f"{self.name}-{number}.out", self.work / f"{self.name}-{number}.err"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        with open(out, "w") as out_handle, open(err, "w") as err_handle:
            popen = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path),
                                      "--print-events"], stdout=out_handle, stderr=err_handle, cwd=self.code, env=env)
        self.processes.append({"popen": popen, "pid": popen.pid, "out": out, "err": err, "started": now,
                               "ended": None, "how": None, "offset": 0, "partial": b"", "printed": []})

    def read_output(self, now: float) -> None:
        for process in self.processes:
            if process.get("drained"):
                continue
            with open(process["out"], "rb") as handle:
                handle.seek(process["offset"])
                data = handle.read()
            process["offset"] += len(data)
            lines = (process["partial"] + data).split(b"\n")
            process["partial"] = lines.pop()
            for line in lines:
                if line.startswith(b'{"device_id"'):
                    try:
                        event_id = json.loads(line)["id"]
                    except (ValueError, KeyError):
                        self.unparsed += 1
                        continue
                    self.produced.setdefault(event_id, now)
                    process["printed"].append(event_id)
            if process["ended"] is not None:
                process["drained"] = True

    def end(self, how: str, now: float, timeout: float = 120) -> None:
        process = self.current
        if process is None:
            return
        popen = process["popen"]
        popen.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
            how += "+SIGKILL after timeout"
        process["ended"], process["how"] = now, how


def slot_running(slot: Slot) -> bool:
    return slot.current is not None and not slot.current.get("term_sent")


def spooled_ids(data: Path) -> list[str]:
    """Event ids left in a stopped runtime's spool (undelivered, or delivered but not yet deleted)."""
    path = data / "spool" / SPOOL_FILES[0]
    if not path.exists():
        return []
    ids = []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        for table in ("events", "dead_letter"):
            try:
                rows = db.execute(f"SELECT payload FROM {table}").fetchall()
            except sqlite3.Error:
                continue
            for (payload,) in rows:
                try:
                    ids.append(json.loads(payload)["id"])
                except (ValueError, KeyError, TypeError):
                    pass
    return ids


def spool_bytes(data: Path) -> int:
    return sum((data / "spool" / name).stat().st_size for name in SPOOL_FILES if (data / "spool" / name).exists())


def exit_summary(err_path: Path) -> dict | None:
    """The JSON summary a cleanly stopped runtime prints last on stderr (with --print-events)."""
    text = err_path.read_text(errors="replace")
    start = text.rfind('{\n  "summary"')
    if start < 0:
        return None
    try:
        return json.loads(text[start:])["summary"]
    except ValueError:
        return None


def fill(path: Path) -> int:
    """Write zeros into `path` until the file system is full; returns the bytes written."""
    written = 0
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as handle:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    written += handle.write(block[:size])
                except OSError:
                    break
    return written


def run(args) -> dict:
    total_s = args.minutes * 60
    work = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    notes = []
    tmpfs = work / "tmpfs"
    tmpfs.mkdir(exist_ok=True)
    disk_faults = False
    if os.geteuid() == 0 and shutil.which("mount"):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.tmpfs_mib}m,mode=0700", "tmpfs",
                                 str(tmpfs)], capture_output=True, text=True)
        disk_faults = result.returncode == 0
        if not disk_faults:
            notes.append(f"tmpfs mount failed ({result.stderr.strip()}): no disk-full faults")
    else:
        notes.append("not root: no tmpfs, so the disk-full faults are skipped")
    for note in notes:
        print(f"soak: note: {note}", flush=True)
    video, speech = make_inputs(work)
    broker = Broker(work, persistence=True, extra="autosave_interval 1\n").start()
    hub = Hub(broker.port)
    muse_name = f"soak-muse-{os.getpid()}"
    muse = start_muse(work, muse_name)
    face = {"source": str(video), "on_end": "loop", "realtime": False}
    common = {
        "face": {"models": str(args.face_models.resolve()), "infer_every": 1},
        "tracker": {"min_hits": 1, "max_missed": 1},
        "smoothing": {"alpha": 1.0, "min_confidence": 0.0, "dwell_s": 0.0},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 10, "drain_timeout_s": 60.0},
    }
    configs = {
        "disk": {"device": {"id": "soak-disk", "data_dir": str(tmpfs / "data"), "health_interval_s": 1.0},
                 "camera": face, **common,
                 "mqtt": {**common["mqtt"], "spool_max_bytes": args.spool_max_kib * 1024}},
        "main": {"device": {"id": "soak-main", "data_dir": str(work / "main-data"), "health_interval_s": 1.0},
                 "camera": face, **common,
                 "voice": {"enabled": True, "source": "file", "models": str(args.voice_models.resolve())},
                 "audio_file": {"path": str(speech), "loop": True},
                 "eeg": {"enabled": True, "event_interval_s": 0.5}, "lsl": {"name": muse_name}},
    }
    slots = {name: Slot(name, config, work, args.code) for name, config in configs.items()}
    plan = schedule(total_s, disk_faults)
    log: list[dict] = []
    samples: list[dict] = []
    pending: list[tuple[float, str, dict]] = []  # follow-ups: restart broker, SIGCONT, free disk, restart runtime
    started = time.monotonic()

    def note(action: str, **details) -> None:
        entry = {"t_s": round(time.monotonic() - started, 1), "action": action, **details}
        log.append(entry)
        print(f"  {entry['t_s']:7.1f} s  {action} {details if details else ''}", flush=True)

    for slot in slots.values():
        slot.start(time.monotonic())
    print(f"soak: {args.minutes} min, workdir {work}, broker port {broker.port}, code {args.code}", flush=True)
    next_sample = 0.0
    try:
        while True:
            now = time.monotonic()
            elapsed = now - started
            if elapsed >= total_s and not pending:
                break
            while plan and plan[0][0] <= elapsed and elapsed < total_s:
                _, action, params = plan.pop(0)
                if action == "broker_kill" and broker.process is not None:
                    broker.process.send_signal(signal.SIGCONT)
                    broker.process.kill()
                    broker.process.wait()
                    broker.process = None
                    note("broker SIGKILL", down_s=params["down_s"])
                    pending.append((elapsed + params["down_s"], "broker_start", {}))
                elif action == "broker_freeze" and broker.process is not None:
                    broker.process.send_signal(signal.SIGSTOP)
                    note("broker SIGSTOP", frozen_s=params["frozen_s"])
                    pending.append((elapsed + params["frozen_s"], "broker_cont", {}))
                elif action == "runtime_kill" and slots[params["runtime"]].current is not None:
                    slot = slots[params["runtime"]]
                    slot.end("SIGKILL", now)
                    note("runtime SIGKILL", runtime=slot.name, pid=slot.processes[-1]["pid"])
                    pending.append((elapsed + RESTART_DELAY_S, "runtime_start", {"runtime": slot.name}))
                elif action == "runtime_stop" and slot_running(slots[params["runtime"]]):
                    process = slots[params["runtime"]].processes[-1]  # it drains, then exits: restarted below
                    process["popen"].send_signal(signal.SIGTERM)
                    process["term_sent"] = now
                    note("runtime SIGTERM", runtime=params["runtime"], pid=process["pid"])
                elif action == "disk_fill":
                    written = fill(tmpfs / "filler")
                    free = shutil.disk_usage(tmpfs).free
                    note("disk filled", filler_bytes=written, free_bytes=free, spool_bytes=spool_bytes(
                        slots["disk"].data))
                    pending.append((elapsed + params["full_s"], "disk_free", {}))
            for item in sorted(pending, key=lambda p: p[0]):
                if item[0] > elapsed:
                    continue
                pending.remove(item)
                _, action, params = item
                if action == "broker_start":
                    broker.start()
                    note("broker started")
                elif action == "broker_cont" and broker.process is not None:
                    broker.process.send_signal(signal.SIGCONT)
                    note("broker SIGCONT")
                elif action == "runtime_start":
                    slots[params["runtime"]].start(time.monotonic())
                    slot = slots[params["runtime"]]
                    note("runtime started", runtime=slot.name, pid=slot.processes[-1]["pid"])
                elif action == "disk_free":
                    (tmpfs / "filler").unlink()
                    note("disk freed", free_bytes=shutil.disk_usage(tmpfs).free)
            for slot in slots.values():
                slot.read_output(now)
                process = slot.processes[-1]
                if process["ended"] is None and process["popen"].poll() is not None and process.get("term_sent"):
                    process["ended"], process["how"] = now, f"SIGTERM, exited {process['popen'].returncode}"
                    note("runtime exited after SIGTERM", runtime=slot.name, code=process["popen"].returncode,
                         took_s=round(now - process["term_sent"], 1))
                    pending.append((elapsed + RESTART_DELAY_S, "runtime_start", {"runtime": slot.name}))
                elif process["ended"] is None and process["popen"].poll() is not None:
                    process["ended"], process["how"] = now, f"exited {process['popen'].returncode}"
                    note("runtime exited by itself", runtime=slot.name, code=process["popen"].returncode,
                         last_stderr=process["err"].read_text(errors="replace").strip().splitlines()[-1:])
                    if elapsed < total_s:
                        pending.append((elapsed + RESTART_DELAY_S, "runtime_start", {"runtime": slot.name}))
            if elapsed >= next_sample:
                next_sample += args.interval
                sample = {"t_s": round(elapsed, 1), "tmpfs_free_bytes": shutil.disk_usage(tmpfs).free}
                for slot in slots.values():
                    process = slot.current
                    memory = read_memory(process["pid"]) if process else None
                    sample[slot.name] = {"pid": process["pid"] if process else None,
                                         "rss_mib": memory["rss_mib"] if memory else None,
                                         "anon_mib": memory["anon_mib"] if memory else None,
                                         "spool_bytes": spool_bytes(slot.data), "produced": len(slot.produced),
                                         "delivered": len(hub.ids.get(slot.device, ()))}
                samples.append(sample)
                if len(samples) % max(1, int(60 / args.interval)) == 1:
                    print(f"  {elapsed:7.1f} s  " + "  ".join(
                        f"{name}: RSS {sample[name]['rss_mib'] or 0:.0f} MiB "
                        f"spool {sample[name]['spool_bytes'] / 1024:.0f}"
                        f" KiB produced {sample[name]['produced']} delivered {sample[name]['delivered']}"
                        for name in slots), flush=True)
            time.sleep(0.2)
        note("end of faults: stopping the runtimes (SIGTERM, drain up to 60 s)")
        for slot in slots.values():
            slot.end("SIGTERM", time.monotonic())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and time.monotonic() - hub.last_message < 5:
            time.sleep(0.5)
        for slot in slots.values():
            slot.read_output(time.monotonic())
            slot.spooled_ids = spooled_ids(slot.data)
    finally:
        for slot in slots.values():
            process = slot.current
            if process is not None:
                process["popen"].kill()
                process["popen"].wait()
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        muse.terminate()
        muse.wait(timeout=10)
        hub.close()
        broker.stop()
        if disk_faults:
            subprocess.run(["umount", str(tmpfs)], capture_output=True)
    return account(args, slots, hub, started, samples, log, notes, total_s, work, disk_faults)


def account(args, slots, hub, started, samples, log, notes, total_s, work, disk_faults) -> dict:  # noqa: C901
    """Produced / delivered / duplicated / dropped / lost per runtime, with the faults around each lost id."""
    runtimes = {}
    # Before the publisher's batching rewrite, events_spooled counted every attempt (a dropped event too).
    attempts_counted = 'self._counters["events_spooled"] += 1' in (args.code / "edge/publish/mqtt.py").read_text()
    for name, slot in slots.items():
        delivered = hub.ids.get(slot.device, Counter())
        drops: Counter = Counter()
        processes = []
        still_spooled = None
        unreported: set[str] = set()
        for index, process in enumerate(slot.processes):
            summary = exit_summary(process["err"])
            source = "exit summary"
            stats = summary["mqtt"] if summary else None
            if stats is None:
                end = process["ended"] or time.monotonic()
                healths = [h for t, device, h in hub.health if device == slot.device and process["started"] <= t <= end]
                stats = healths[-1] if healths else {}
                source = "last health" if healths else "none"
            for reason, count in (stats.get("spool_drops") or {}).items():
                drops[reason] += count
            if stats.get("events_dropped_stopped"):
                drops["publisher_stopped"] += stats["events_dropped_stopped"]
            if index == len(slot.processes) - 1:
                still_spooled = stats.get("spool_depth")
            if source == "last health":  # events_spooled counts every spool attempt, stored or dropped, and an
                # event is printed after its attempt: ids printed past that count were never reported on
                reported = (stats.get("events_spooled") or 0) + (0 if attempts_counted else sum(
                    (stats.get("spool_drops") or {}).values()))
                unreported.update(process["printed"][reported:])
            elif source == "none":
                unreported.update(process["printed"])
            health_trail = [(round(t - started, 1), h.get("events_spooled"), h.get("spool_drops"), h.get("spool_depth"))
                            for t, device, h in hub.health
                            if device == slot.device and process["started"] <= t <= (process["ended"] or t)]
            processes.append({"pid": process["pid"], "started_s": round(process["started"] - started, 1),
                              "ended_s": None if process["ended"] is None else round(process["ended"] - started, 1),
                              "how": process["how"], "exit_code": process["popen"].returncode,
                              "counters_from": source, "printed": len(process["printed"]),
                              "health_last": health_trail[-3:],
                              "events_spooled": stats.get("events_spooled"), "events_acked": stats.get("events_acked"),
                              "spool_drops": stats.get("spool_drops"), "spool_depth": stats.get("spool_depth"),
                              "stderr_tail": [line for line in process["err"].read_text(errors="replace")
                                              .splitlines() if " ERROR " in line or "Traceback" in line][-5:]})
        produced = set(slot.produced)
        missing = sorted(produced - set(delivered), key=lambda i: slot.produced[i])
        dropped = sum(drops.values())
        fate_unreported = [i for i in missing if i in unreported]
        if slot.spooled_ids is not None:  # the rows themselves: only undelivered ones excuse a missing id
            still_spooled = len(set(slot.spooled_ids) - set(delivered))
        lost = max(0, len(missing) - len(fate_unreported) - dropped - (still_spooled or 0))
        examples = []
        for event_id in sorted(missing, key=lambda i: (i in unreported, slot.produced[i]))[:20]:
            t = slot.produced[event_id] - started
            near = [f"{e['t_s']} s {e['action']}" for e in log if abs(e["t_s"] - t) <= 10]
            examples.append({"id": event_id, "printed_at_s": round(t, 1), "fate_unreported": event_id in unreported,
                             "faults_within_10s": near})
        rss = [(s["t_s"] / 60, s[name]["rss_mib"]) for s in samples if s[name]["rss_mib"] is not None]
        for entry, process in zip(processes, slot.processes):  # RSS of each process: 1 min in, peak, last
            own = [(s["t_s"] / 60, s[name]["rss_mib"]) for s in samples
                   if s[name]["pid"] == process["pid"] and s[name]["rss_mib"] is not None]
            settled = [(t, r) for t, r in own if t * 60 >= entry["started_s"] + 60]
            entry["rss_mib"] = {"at_1min": settled[0][1] if settled else None,
                                "max": max((r for _, r in own), default=None),
                                "last": own[-1][1] if own else None,
                                "minutes": round(own[-1][0] - own[0][0], 1) if own else 0,
                                "slope_after_1min_mib_per_min": linear_slope(settled)}
        runtimes[name] = {
            "device_id": slot.device, "produced": len(produced), "delivered_unique": len(set(delivered)),
            "delivered_total": sum(delivered.values()),
            "duplicated": sum(count - 1 for count in delivered.values()),
            "delivered_not_printed": len(set(delivered) - produced), "missing": len(missing),
            "missing_fate_unreported": len(fate_unreported),
            "counted_drops": dict(drops), "still_spooled": still_spooled, "lost": lost,
            "spool_rows_at_end": None if slot.spooled_ids is None else len(slot.spooled_ids),
            "missing_examples": examples, "processes": processes, "unparsed_lines": slot.unparsed,
            "rss_mib": {"min": min((r for _, r in rss), default=None), "max": max((r for _, r in rss), default=None)},
            "spool_bytes_max": max((s[name]["spool_bytes"] for s in samples), default=None),
        }
    return {
        "setup": {"minutes": args.minutes, "interval_s": args.interval, "disk_faults": disk_faults,
                  "tmpfs_mib": args.tmpfs_mib if disk_faults else None, "spool_max_kib_disk": args.spool_max_kib,
                  "code": str(args.code), "git": describe(args.code),
                  "events_spooled_counts_attempts": attempts_counted, "python": platform.python_version(),
                  "workdir": str(work), "notes": notes},
        "runtimes": runtimes, "faults": log, "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS / spool samples")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose `edge` the runtimes run")
    parser.add_argument("--face-models", type=Path, default=ROOT / "models" / "face")
    parser.add_argument("--voice-models", type=Path, default=ROOT / "models" / "voice")
    parser.add_argument("--tmpfs-mib", type=int, default=8)
    parser.add_argument("--spool-max-kib", type=int, default=2048, help="mqtt.spool_max_bytes of the tmpfs runtime")
    parser.add_argument("--label", default="")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    for path, kind in ((args.face_models, "face"), (args.voice_models, "voice")):
        if not path.is_dir():
            print(f"soak: error: no model directory {path}; build it with `emotion-export {kind} --out {path}` or "
                  f"pass --{kind}-models", file=sys.stderr)
            return 2
    args.code = args.code.resolve()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "soak" + (f"-{args.label}" if args.label else "") + ".json"
    temp = RESULTS / (name + ".tmp")
    temp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(temp, RESULTS / name)
    print(f"\n{'runtime':8} {'produced':>9} {'delivered':>9} {'dup':>6} {'drops':>6} {'spooled':>7} {'lost':>5} "
          f"{'RSS min-max MiB':>16} {'RSS MiB/min':>11} {'spool max KiB':>13}")
    print("(RSS MiB/min: the longest-lived process of each runtime, from 1 min after its start)")
    for name_, r in result["runtimes"].items():
        drops = sum(r["counted_drops"].values())
        longest = max(r["processes"], key=lambda p: p["rss_mib"]["minutes"])
        print(f"{name_:8} {r['produced']:9d} {r['delivered_unique']:9d} {r['duplicated']:6d} {drops:6d} "
              f"{r['still_spooled'] if r['still_spooled'] is not None else '-':>7} {r['lost']:5d} "
              f"{r['rss_mib']['min'] or 0:7.0f}-{r['rss_mib']['max'] or 0:<8.0f} "
              f"{longest['rss_mib']['slope_after_1min_mib_per_min'] or 0:+11.3f} "
              f"{(r['spool_bytes_max'] or 0) / 1024:13.0f}")
        if r["counted_drops"]:
            print(f"         drops by reason: {r['counted_drops']}")
        if r["missing_fate_unreported"]:
            print(f"         missing, printed by a SIGKILLed runtime after its last health report (dropped or "
                  f"lost, unknown): {r['missing_fate_unreported']}")
        if r["delivered_not_printed"]:
            print(f"         delivered but never printed: {r['delivered_not_printed']}")
        for example in r["missing_examples"][:5]:
            print(f"         missing {example['id']} printed at {example['printed_at_s']} s; "
                  f"faults within 10 s: {example['faults_within_10s']}")
    print(f"wrote {RESULTS / name}")
    return 0 if all(r["lost"] == 0 for r in result["runtimes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
