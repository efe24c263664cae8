"""Runtime CPU per modality, before and after the runtime redesign (issue 17).

Runs `python -m edge.cli run --config F` as a device runs it: real-time inputs (the demo video at 15
fps, looping espeak-ng speech, a simulated Muse over LSL), a real mosquitto, default settings. After
`--warmup` seconds it reads the process's CPU time (utime + stime of /proc/PID/stat) and each
thread's (/proc/PID/task/*/stat), again `--seconds` later, and reports CPU seconds per real second as
percent of one core. Wall time is only the denominator: the runtime is paced by its inputs.

"before" is the runtime at --before-commit (c40f03b, the last commit before the redesign) in a git
worktree; "after" is this working tree. Both use the same venv, inputs and models, and each run is
checked to import `edge` from its own tree. `--before-env NAME=VALUE` adds a third variant,
"before_env": the before code with that environment (the after CLI sets OPENBLAS_NUM_THREADS=1
itself, the before one did not, so this splits the redesign from the BLAS setting). By default the
runs are interleaved (scenario by scenario, repeat by repeat, each variant in turn), so a change in
the machine's load falls on all variants alike; `--order rounds` interleaves scenarios too. Results of one variant are kept when another is
re-run, so `--code after` alone compares against the stored "before".

Threads are named for /proc by a sitecustomize on the runtime's PYTHONPATH (prctl PR_SET_NAME with
the Python thread name, at most 15 characters). A native thread inherits the name of the thread that
started it; those the main thread started (before it has a name) show as "native(main)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mqtt_broker import Broker  # noqa: E402  (a real mosquitto on a free loopback port)

RESULTS = ROOT / "benchmarks" / "results"
BEFORE_COMMIT = "c40f03b"
TICK = os.sysconf("SC_CLK_TCK")
MODALITIES = ("face", "voice", "eeg")
# scenario -> modalities it runs; "fusion" is added to the config only when the code has a [fusion] section.
# "all3" is each code's defaults: after the redesign fusion is on whenever two or more modalities are, so there it
# fuses too; "all3+fusion" turns it on explicitly and "all3-nofusion" off (both only where [fusion] exists).
SCENARIOS = {"face": ("face",), "voice": ("voice",), "eeg": ("eeg",), "all3": MODALITIES,
             "all3+fusion": (*MODALITIES, "fusion"), "all3-nofusion": (*MODALITIES, "no-fusion")}
VARIANTS = ("before", "before_env", "after")
# The issue's measurement on this machine before the redesign (percent of one core).
ISSUE_BEFORE = {"face": 7.3, "voice": 13.6, "eeg": 4.9, "all3": 25.0}
GOALS = {"voice": 2.0, "all3+fusion": 12.0}
SPEECH = ("Good morning. The weather is lovely today, and I am looking forward to the weekend. "
          "Could you please turn the music up a little?")
SITECUSTOMIZE = '''\
import ctypes, threading
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    _inner = threading.Thread._bootstrap_inner
    def _named(self):
        try:
            _prctl(15, self.name.encode("utf-8", "replace")[:15], 0, 0, 0)  # PR_SET_NAME
        except Exception:
            pass
        _inner(self)
    threading.Thread._bootstrap_inner = _named
except Exception:
    pass
'''
LSL_CONFIG = "[ports]\nIPv6 = disable\n\n[multicast]\nResolveScope = machine\n"


class Setup(Exception):
    """A missing prerequisite: one line saying what and how to fix it."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---- the code under test -------------------------------------------------------------------------------------------

def before_tree(path: Path, commit: str) -> Path:
    """A git worktree of `commit` at `path`, created on first use and checked on every later one."""
    full = run(["git", "-C", str(ROOT), "rev-parse", f"{commit}^{{commit}}"]).stdout.strip()
    if not full:
        raise Setup(f"commit {commit} is not in {ROOT}; pass --before-commit")
    if not path.exists():
        made = run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), full])
        if made.returncode:
            raise Setup(f"git worktree add {path} {commit} failed: {made.stderr.strip()}")
    head = run(["git", "-C", str(path), "rev-parse", "HEAD"]).stdout.strip()
    if head != full:
        raise Setup(f"{path} is at {head[:10] or 'no commit'}, not {commit}; remove it "
                    f"(git worktree remove --force {path}) or pass another --worktree")
    return path


def code_env(root: Path, site: Path, lsl_cfg: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{root}", PYTHONUNBUFFERED="1", LSLAPICFG=str(lsl_cfg),
               TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONSTARTUP", None)
    return env


def check_import(root: Path, env: dict[str, str]) -> None:
    found = run([sys.executable, "-c", "import edge; print(edge.__file__)"], env=env, cwd=root).stdout.strip()
    if not found.startswith(str(root.resolve()) + os.sep):
        raise Setup(f"`import edge` from {root} loaded {found or 'nothing'}; the comparison would be wrong")


def defaults(root: Path, env: dict[str, str]) -> tuple[dict, str | None]:
    """The code's config sections from `emotion-edge defaults`, or ({}, why not)."""
    out = run([sys.executable, "-m", "edge.cli", "defaults"], env=env, cwd=root, timeout=120)
    try:
        return tomllib.loads(out.stdout), None
    except tomllib.TOMLDecodeError as exc:
        return {}, f"`emotion-edge defaults` gave no TOML (exit {out.returncode}: {exc}; {out.stderr.strip()[-200:]})"


# ---- inputs and models ---------------------------------------------------------------------------------------------

def inputs(directory: Path) -> tuple[Path, Path]:
    """The demo video (15 fps, real faces) and an espeak-ng speech file, made once and reused by every run."""
    directory.mkdir(parents=True, exist_ok=True)
    video, speech = directory / "demo.avi", directory / "speech.wav"
    if not video.is_file():
        made = run([sys.executable, "-m", "edge.cli", "demo-video", str(video)], cwd=ROOT)
        if made.returncode:
            raise Setup(f"emotion-edge demo-video failed: {made.stderr.strip()[-300:]}")
    if not speech.is_file():
        try:
            run(["espeak-ng", "-s", "150", "-w", str(speech), SPEECH], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Setup(f"espeak-ng could not write the speech file ({exc}); apt-get install espeak-ng") from None
    return video, speech


def models(directory: Path) -> Path:
    """`<directory>/face` and `<directory>/voice`, built with `emotion-export` when missing."""
    for kind, marker in (("face", "emotion.int8.tflite"), ("voice", "voice.int8.tflite")):
        out = directory / kind
        if (out / marker).is_file():
            continue
        print(f"building {out} with `emotion-export {kind}` (once) ...", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.setdefault("EMOTION_EDGE_CACHE", str(ROOT / ".cache"))
        made = run([sys.executable, "-m", "export.cli", kind, "--out", str(out)], env=env, cwd=ROOT, timeout=1800)
        if made.returncode:
            raise Setup(f"emotion-export {kind} --out {out} failed: {made.stderr.strip()[-300:]}")
    return directory


# ---- measuring -----------------------------------------------------------------------------------------------------

def stat_ticks(path: Path) -> tuple[int, int] | None:
    """(utime, stime) in clock ticks from a /proc stat file, or None if the process/thread is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def snapshot(pid: int) -> dict:
    threads = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        ticks = stat_ticks(task / "stat")
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        if ticks:
            if int(task.name) == pid:
                name = "main"
            elif name == "python":  # not a Python thread: a native one the main thread started (inference pools)
                name = "native(main)"
            threads[int(task.name)] = (name, ticks)
    return {"time": time.monotonic(), "process": stat_ticks(Path(f"/proc/{pid}/stat")), "threads": threads}


def machine_load() -> dict:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return {"loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
            "jiffies": [int(v) for v in fields]}


def steal_share(start: dict, end: dict) -> float | None:
    delta = [b - a for a, b in zip(start["jiffies"], end["jiffies"])]
    return round(delta[7] / sum(delta), 4) if len(delta) > 7 and sum(delta) else None


class Counter:
    """Messages the broker delivers under emotion_edge/<device>/<part>/..., counted per part."""

    def __init__(self, port: int, device: str):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cpu-bench-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"emotion_edge/{device}/#", qos=0)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client, userdata, message):
        part = message.topic.split("/")[2] if message.topic.count("/") >= 2 else message.topic
        with self.lock:
            self.counts[part] = self.counts.get(part, 0) + 1

    def read(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def toml_text(config: dict) -> str:
    lines = []
    for section, table in config.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
    return "\n".join(lines) + "\n"


def scenario_config(parts: tuple[str, ...], work: Path, device: str, port: int, video: Path, speech: Path,
                    model_dir: Path, lsl_name: str, fusion: dict | None) -> dict:
    """Default settings except the inputs: each modality on only when the scenario runs it."""
    config = {"device": {"id": device, "data_dir": str(work / "data")},
              "mqtt": {"host": "127.0.0.1", "port": port},
              "camera": {"source": str(video), "on_end": "loop", "realtime": True},
              "face": {"enabled": "face" in parts, "models": str(model_dir / "face")},
              "voice": {"enabled": "voice" in parts, "source": "file", "models": str(model_dir / "voice")},
              "eeg": {"enabled": "eeg" in parts},
              "lsl": {"name": lsl_name, "source_id": lsl_name}}
    if "voice" in parts:
        config["audio_file"] = {"path": str(speech), "loop": True, "realtime": True}
    if fusion is not None and ("fusion" in parts or "no-fusion" in parts):
        config["fusion"] = {**fusion, "enabled": "fusion" in parts}
    return config


def measure(name: str, parts: tuple[str, ...], root: Path, env: dict[str, str], work: Path, port: int,
            video: Path, speech: Path, model_dir: Path, fusion: dict | None, warmup: float, seconds: float) -> dict:
    device = f"cpu{uuid.uuid4().hex[:6]}"
    lsl_name = f"cpu-bench-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.toml"
    path.write_text(toml_text(scenario_config(parts, work, device, port, video, speech, model_dir, lsl_name,
                                              fusion)))
    counter = Counter(port, device)
    simulator = None
    if "eeg" in parts:
        # The simulator always comes from this tree: it is the input, not the code under test.
        simulator = subprocess.Popen([sys.executable, "-m", "edge.cli", "simulate-muse", "--name", lsl_name,
                                      "--source-id", lsl_name], cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)),
                                     stdout=subprocess.DEVNULL, stderr=open(work / "simulator.err", "w"))
    err = open(work / "runtime.err", "w")
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path)], cwd=root, env=env,
                               stdout=subprocess.DEVNULL, stderr=err)
    result: dict = {"modalities": list(parts), "config": str(path)}
    try:
        deadline = time.monotonic() + warmup
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        load0, start, messages0 = machine_load(), snapshot(process.pid), counter.read()
        while time.monotonic() < start["time"] + seconds and process.poll() is None:
            time.sleep(0.2)
        end, load1, messages1 = snapshot(process.pid), machine_load(), counter.read()
        if process.poll() is not None or start["process"] is None or end["process"] is None:
            tail = (work / "runtime.err").read_text(errors="replace").strip().splitlines()[-3:]
            return {**result, "status": "error", "note": f"runtime exited with {process.returncode}: "
                                                         + " | ".join(tail)}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if simulator is not None:
            simulator.terminate()
            try:
                simulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()
        counter.close()
        err.close()
    wall = end["time"] - start["time"]
    user = (end["process"][0] - start["process"][0]) / TICK
    system = (end["process"][1] - start["process"][1]) / TICK
    threads = []
    for tid, (thread_name, ticks) in end["threads"].items():
        before = start["threads"].get(tid, (thread_name, (0, 0)))[1]
        cpu = (sum(ticks) - sum(before)) / TICK
        threads.append({"tid": tid, "name": thread_name, "cpu_s": round(cpu, 2),
                        "percent": round(100 * cpu / wall, 2), "new": tid not in start["threads"]})
    threads.sort(key=lambda t: -t["cpu_s"])
    messages = {k: messages1.get(k, 0) - messages0.get(k, 0) for k in messages1}
    # fusion publishes under <prefix>/<device>/fused/... (issue 17)
    silent = [m for m in parts if m != "no-fusion" and not messages.get("fused" if m == "fusion" else m)]
    return {**result, "status": "ok" if not silent else "suspect",
            "note": f"no MQTT messages from {silent} during the window" if silent else None,
            "wall_s": round(wall, 2), "cpu_s": round(user + system, 2), "user_s": round(user, 2),
            "system_s": round(system, 2), "percent_of_core": round(100 * (user + system) / wall, 2),
            # start-up (imports, model loading, LSL resolve) plus the warm-up: not in percent_of_core
            "cpu_s_before_window": round(sum(start["process"]) / TICK, 2),
            "fused_published": bool(messages.get("fused")), "threads": threads, "mqtt_messages": messages,
            "loadavg_1m": [load0["loadavg_1m"], load1["loadavg_1m"]],
            "cpu_steal": steal_share(load0, load1)}


def prepare(label: str, root: Path, extra_env: dict[str, str], work: Path) -> dict:
    """One variant (code + environment): its env, its [fusion] section and the report header."""
    site, lsl_cfg = work / "site", work / "lsl_api.cfg"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    lsl_cfg.write_text(LSL_CONFIG)
    env = {**code_env(root, site, lsl_cfg), **extra_env}
    check_import(root, env)
    sections, why = defaults(root, env)
    fusion = None
    if "fusion" in sections:
        fusion = {"enabled": True} if "enabled" in sections["fusion"] else {}
    commit = run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = bool(run(["git", "-C", str(root), "status", "--porcelain", "--", "edge"]).stdout.strip())
    report = {"root": str(root), "commit": commit, "edge_uncommitted_changes": dirty, "extra_env": extra_env,
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "fusion_config": fusion, "fusion_default_enabled": (sections.get("fusion") or {}).get("enabled"),
              "scenarios": {}}
    return {"label": label, "root": root, "env": env, "fusion": fusion, "why": why, "work": work, "report": report,
            "repeats": {}}


def summarise(parts: tuple[str, ...], repeats: list[dict]) -> dict:
    measured = [r for r in repeats if "percent_of_core" in r]
    if not measured:
        return repeats[0]
    median = statistics.median(r["percent_of_core"] for r in measured)
    chosen = min(measured, key=lambda r: abs(r["percent_of_core"] - median))
    loads = [v for r in measured for v in r["loadavg_1m"]]
    return {**chosen, "percent_of_core": round(median, 2), "repeats": [r["percent_of_core"] for r in measured],
            "loadavg_1m_range": [min(loads), max(loads)]}


def run_all(variants: list[dict], args, port: int, video: Path, speech: Path, model_dir: Path,
            save) -> None:
    """Every scenario x repeat x variant, in the order --order names (the innermost loop last)."""
    if args.order == "interleaved":
        plan = [(v, name, k) for name in args.scenarios for k in range(args.repeats) for v in variants]
    elif args.order == "rounds":
        plan = [(v, name, k) for k in range(args.repeats) for name in args.scenarios for v in variants]
    else:
        plan = [(v, name, k) for v in variants for name in args.scenarios for k in range(args.repeats)]
    for variant, name, k in plan:
        parts, label, report = SCENARIOS[name], variant["label"], variant["report"]
        if any(p in ("fusion", "no-fusion") for p in parts) and variant["fusion"] is None:
            report["scenarios"][name] = {"modalities": list(parts), "status": "skipped",
                                         "note": variant["why"] or "this code has no [fusion] config section "
                                                                   "(fusion came with the redesign)"}
            if k == 0:
                print(f"  {label:10} {name:13} skipped: no [fusion] section", flush=True)
            continue
        outcome = measure(name, parts, variant["root"], variant["env"], variant["work"] / f"{name}-{k}", port,
                          video, speech, model_dir, variant["fusion"], args.warmup, args.seconds)
        variant["repeats"].setdefault(name, []).append(outcome)
        shown = f"{outcome['percent_of_core']:.1f}% of a core" if "percent_of_core" in outcome else ""
        load = f"load {outcome['loadavg_1m'][0]:.1f}" if "loadavg_1m" in outcome else ""
        print(f"  {label:10} {name:13} run {k + 1}/{args.repeats}: {outcome['status']} {shown} {load} "
              f"{outcome.get('note') or ''}", flush=True)
        report["scenarios"][name] = summarise(parts, variant["repeats"][name])
        save()


# ---- output --------------------------------------------------------------------------------------------------------

def cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "percent_of_core" not in entry:
        return entry["status"]
    return f"{entry['percent_of_core']:.1f}%" + ("" if entry["status"] == "ok" else " (?)")


def top_threads(entry: dict | None) -> str:
    if not entry or "threads" not in entry:
        return ""
    return ", ".join(f"{t['name']} {t['percent']:.1f}" for t in entry["threads"][:3])


def table(results: dict) -> str:
    runs = results["runs"]
    shown = [v for v in VARIANTS if v in runs]
    lines = [f"{'scenario':14}{'issue':>7}" + "".join(f"{v:>12}" for v in shown) + "   top 3 threads (% of a core)",
             "-" * 110]
    for name in SCENARIOS:
        entries = {v: runs[v].get("scenarios", {}).get(name) for v in shown}
        issue = f"{ISSUE_BEFORE[name]:.1f}%" if name in ISSUE_BEFORE else "-"
        lines.append(f"{name:14}{issue:>7}" + "".join(f"{cell(entries[v]):>12}" for v in shown) + "   "
                     + " | ".join(f"{v}: {top_threads(e)}" for v, e in entries.items() if top_threads(e)))
    notes = [f"before_env = before with {runs['before_env'].get('extra_env')}"] if "before_env" in runs else []
    after = runs.get("after", {}).get("scenarios", {})
    for name, goal in GOALS.items():
        entry = after.get(name)
        if entry and "percent_of_core" in entry:
            verdict = "met" if entry["percent_of_core"] < goal else "NOT met"
            notes.append(f"goal {name} < {goal:g}% of a core (after): {verdict}")
    for reference in ("before", "before_env"):
        before = runs.get(reference, {}).get("scenarios", {})
        for name in MODALITIES:
            b, a = before.get(name), after.get(name)
            if b and a and "percent_of_core" in b and "percent_of_core" in a:
                slower = a["percent_of_core"] > b["percent_of_core"]
                # overlapping repeats: the difference is within this machine's run-to-run spread
                overlap = min(a.get("repeats", [a["percent_of_core"]])) <= max(b.get("repeats",
                                                                                    [b["percent_of_core"]]))
                notes.append(f"{name}: after {'SLOWER than' if slower else 'not slower than'} {reference} "
                             f"({a['percent_of_core']:.1f}% vs {b['percent_of_core']:.1f}%"
                             f"{', within the repeats spread' if slower and overlap else ''})")
    for code, report in runs.items():
        for name, entry in report.get("scenarios", {}).items():
            if entry.get("note"):
                notes.append(f"{code} {name}: {entry['status']}: {entry['note']}")
    return "\n".join(lines + notes)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", choices=("before", "after", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per scenario (>= 25)")
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds after start before measuring")
    parser.add_argument("--repeats", type=int, default=1, help="runs per scenario; the median is reported")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    parser.add_argument("--before-commit", default=BEFORE_COMMIT)
    parser.add_argument("--worktree", type=Path, default=Path("/tmp/before"),
                        help="where the before code is checked out")
    parser.add_argument("--models", type=Path, default=RESULTS / "runtime_cpu_models",
                        help="directory with face/ and voice/ model dirs (built with emotion-export when missing)")
    parser.add_argument("--inputs", type=Path, default=RESULTS / "runtime_cpu_inputs")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_cpu.json")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every variant's runtime (an experiment; recorded in the JSON)")
    parser.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE",
                        help="also run the before code with this environment, as variant before_env")
    parser.add_argument("--order", choices=("interleaved", "rounds", "sequential"), default="interleaved",
                        help="interleaved: per scenario and repeat, each variant in turn; rounds: per repeat, every "
                             "scenario and variant in turn (to compare scenarios); sequential: variant by variant")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env + args.before_env):
        parser.error("--env and --before-env take NAME=VALUE")
    args.env = dict(item.split("=", 1) for item in args.env)
    args.before_env = dict(item.split("=", 1) for item in args.before_env)
    if args.before_env and args.code == "after":
        parser.error("--before-env needs --code before or both")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or args.seconds < 25 or args.repeats < 1:
        parser.error(f"unknown scenarios {unknown}" if unknown else "--seconds must be >= 25 and --repeats >= 1")
    try:
        codes = {"before": lambda: before_tree(args.worktree, args.before_commit), "after": lambda: ROOT}
        chosen = ("before", "after") if args.code == "both" else (args.code,)
        roots = {code: codes[code]() for code in chosen}
        plan = [(code, roots[code], args.env) for code in chosen]
        if args.before_env:
            plan.insert(1, ("before_env", roots["before"], {**args.env, **args.before_env}))
        video, speech = inputs(args.inputs)
        model_dir = models(args.models)
    except Setup as exc:
        print(f"runtime_cpu: {exc}", file=sys.stderr)
        return 2
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.setdefault("runs", {})
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    results["method"] = {"seconds": args.seconds, "warmup_s": args.warmup, "repeats": args.repeats,
                         "order": args.order,
                         "inputs": {"video": str(video), "speech": str(speech), "eeg": "edge.cli simulate-muse, "
                                    "real time, LSL resolve scope machine"}, "models": str(model_dir)}
    with tempfile.TemporaryDirectory(prefix="runtime-cpu-") as tmp:
        broker = Broker(Path(tmp)).start()
        try:
            try:
                variants = [prepare(label, root, env, Path(tmp) / label) for label, root, env in plan]
            except Setup as exc:
                print(f"runtime_cpu: {exc}", file=sys.stderr)
                return 2
            for variant in variants:
                print(f"{variant['label']}: {variant['root']} {variant['report']['extra_env'] or ''}", flush=True)
                results["runs"][variant["label"]] = variant["report"]
            run_all(variants, args, broker.port, video, speech, model_dir, lambda: write_json(args.out, results))
        finally:
            broker.stop()
    print()
    print(table(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
