"""`emotion-edge`: run the on-device runtime, check a config, print the documented defaults."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys

# numpy's OpenBLAS hands larger products to worker threads that busy-wait between calls: on the runtime's
# small matrices that tripled the voice modality's CPU (docs/benchmarks.md). One thread, unless told otherwise;
# set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from collections import Counter
from pathlib import Path

from .errors import EdgeError

log = logging.getLogger("edge.cli")

MODELS_ENV = "EMOTION_EDGE_MODELS"
DEVICE_MODELS = Path("/opt/emotion-edge/models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-edge",
        description="On-device emotion recognition: camera faces (and, as configured, voice and EEG) to emotion "
                    "events over MQTT, for Home Assistant and lab software. Frames and audio never leave the device.",
        epilog="Start with `emotion-edge run --demo` (no hardware needed), then `emotion-edge defaults > my.toml`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the runtime with a config file, or the built-in demo",
                              description="Run until stopped (SIGTERM/Ctrl-C), or until a finite input ends.")
    mode = run.add_mutually_exclusive_group(required=True)
    mode.add_argument("--config", type=Path, help="TOML config file (see `emotion-edge defaults`)")
    mode.add_argument("--demo", action="store_true",
                      help="built-in input: a video made from real face photos, played once; events are printed")
    run.add_argument("--models", type=Path,
                     help="face model directory (overrides face.models; without either: $EMOTION_EDGE_MODELS/face, "
                          "then /opt/emotion-edge/models/face, then ./models/face)")
    run.add_argument("--mqtt-host", help="broker host (overrides mqtt.host)")
    run.add_argument("--mqtt-port", type=int, help="broker port (overrides mqtt.port)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--print-events", action="store_true", help="also print each event as a JSON line")
    run.add_argument("--pretty", action="store_true", help="print events and a closing summary for people to read")
    check = commands.add_parser("check-config", help="validate a config file and print the effective settings")
    check.add_argument("config", type=Path)
    check.add_argument("--no-model-check", action="store_true",
                       help="skip checking that the model directories exist (an install staged under another root, "
                            "where absolute model paths point elsewhere)")
    commands.add_parser("defaults", help="print every option with its default and documentation (valid TOML)")
    commands.add_parser("simulate-muse", add_help=False,
                        help="publish a synthetic Muse EEG stream over LSL (see `simulate-muse --help`)")
    commands.add_parser("record", add_help=False,
                        help="record an EEG stream plus LSL markers to CSV + JSON (see `record --help`)")
    calibrate = commands.add_parser(
        "calibrate", help="calibrate EEG for one wearer: a guided recording (or an existing one) -> a per-wearer model",
        description="Announces relax / pleasant / unpleasant blocks while recording the EEG stream with markers, "
                    "trains a per-wearer classifier on DE band features, reports its accuracy on held-out blocks "
                    "and installs it as <device.data_dir>/eeg/calibration.json, which `run` then uses.")
    calibrate.add_argument("--config", type=Path, help="TOML config file ([device], [eeg], [lsl]); default: defaults")
    calibrate.add_argument("--from-recording", metavar="FILE",
                           help="calibrate from a recording (`record` or `simulate-muse --out`) instead of recording")
    calibrate.add_argument("--out", help="where to install the calibration (default <device.data_dir>/eeg/"
                                         "calibration.json, which eeg.calibration = \"auto\" uses)")
    calibrate.add_argument("--recording", help="stem of the new recording (default <device.data_dir>/eeg/"
                                               "calibration-<time>)")
    calibrate.add_argument("--classes", default="neutral,positive,negative",
                           help="comma-separated classes, each a block type (neutral = relax, positive = pleasant, "
                                "negative = unpleasant)")
    calibrate.add_argument("--repeats", type=int, default=3, help="blocks per class (>= 2: one is held out)")
    calibrate.add_argument("--block", type=float, default=30.0, help="seconds per block")
    calibrate.add_argument("--rest", type=float, default=10.0, help="seconds of rest after each block")
    calibrate.add_argument("--settle", type=float, default=2.0, help="seconds skipped at each block's start")
    calibrate.add_argument("--l2", type=float, default=0.01, help="L2 penalty of the logistic regression")
    calibrate.add_argument("--min-margin", type=float, default=0.10,
                           help="held-out accuracy must beat chance by this to install the model")
    calibrate.add_argument("--force", action="store_true", help="install even when it does not beat chance")
    video = commands.add_parser("demo-video", help="write the built-in demo video (MJPG .avi) to a path")
    video.add_argument("path", type=Path, help="the .avi file to write (replaced if it exists)")
    video.add_argument("--lossless", action="store_true",
                       help="FFV1 instead of MJPG: decodes to exactly the demo's pixels on every platform "
                            "(about 19 MB instead of 4 MB)")
    return parser


def resolve_models(config, face_models: Path | None = None) -> None:
    """Point face.models and voice.models (when enabled) at existing directories, so a device finds its models
    wherever it runs from. An explicit directory (--models for faces, else a config value other than the
    default) must exist; a default one is searched for in $EMOTION_EDGE_MODELS/<modality>, then
    /opt/emotion-edge/models/<modality> (where device installs put them), then ./models/<modality> (where
    `emotion-export` writes on a workstation). EdgeError names every place looked at and the fix."""
    for modality, section, override in (("face", config.face, face_models), ("voice", config.voice, None)):
        if not section.enabled:
            continue
        default = type(section)().models
        where = "--models" if override else f"{modality}.models"
        given = override or (section.models if section.models != default else None)
        if given:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise EdgeError(f"{where} {str(path)!r} is not a directory; run `emotion-export {modality} --out "
                                f"models/{modality}` on a workstation and copy that directory here, or point {where} "
                                f"at an exported model directory")
        else:
            env = os.environ.get(MODELS_ENV, "")
            places = [(Path(env).expanduser() / modality, f" (${MODELS_ENV})")] if env else []
            places += [(DEVICE_MODELS / modality, ""), (Path.cwd() / default, "")]
            path = next((place for place, _ in places if place.is_dir()), None)
            if path is None:
                looked = ", ".join(f"{place}{note}" for place, note in places)
                looked += "" if env else f"; ${MODELS_ENV} unset"
                flag = "pass --models DIR or set face.models" if modality == "face" else "set voice.models"
                raise EdgeError(f"no {modality} models found (looked in {looked}); run `emotion-export {modality} "
                                f"--out models/{modality}` on a workstation and copy models/{modality} to "
                                f"{DEVICE_MODELS / modality} (a device bundle installs it there), or {flag}, or set "
                                f"${MODELS_ENV} to the directory holding {modality}/")
        section.models = str(path)
        log.info("%s models: %s", modality, path)


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM raises SystemExit until the runtime installs its own handler, so a service stopped while the demo
    video is written or models load still removes its temporaries (the default action kills outright)."""
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


SECRET_FIELDS = ("password",)


def masked(section) -> str:
    """A config section as check-config prints it: secrets shown only as set or not, never their value."""
    values = [(f.name, getattr(section, f.name)) for f in dataclasses.fields(section)]
    shown = ", ".join(f"{name}={'<set>' if name in SECRET_FIELDS and value else value!r}" for name, value in values)
    return f"{type(section).__name__}({shown})"


def pretty_event(event) -> str:
    """One line per event for people: values only where there are some, and why there are none yet."""
    head = f"{event.timestamp}  {event.modality:<5} {event.kind:<11} {event.track_id:<9}"
    if event.kind != "emotion":
        return head
    if event.extra.get("warming_up"):
        return (f"{head} -         learning this wearer's baseline "
                f"({event.extra.get('warmup_progress', 0.0):.0%} of eeg.warmup_s of clean signal)")
    def number(value, form):
        return "-" if value is None else format(value, form)

    return (f"{head} {event.label or '-':<9} conf={number(event.confidence, '.2f')} "
            f"valence={number(event.valence, '+.2f')} arousal={number(event.arousal, '+.2f')}")


def _run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_unwinds())
        return _run_in(args, stack)


def _run_in(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from .config import build_config, load_config
    from .runtime import Runtime

    if args.demo:
        config = build_config({"camera": {"on_end": "stop", "realtime": True},
                               "device": {"id": "demo", "health_interval_s": 2.0},
                               "mqtt": {"demo": True}})  # named a demo in Home Assistant, removed when it ends
        args.print_events = not args.pretty
    else:
        config = load_config(args.config)
    resolve_models(config, args.models)
    if args.demo:
        from .demo import demo_workspace

        video, data = stack.enter_context(demo_workspace())
        config.camera.source, config.device.data_dir = str(video), str(data)
    if args.mqtt_host:
        config.mqtt.host = args.mqtt_host
    if args.mqtt_port:
        config.mqtt.port = args.mqtt_port
    logging.getLogger().setLevel(config.device.log_level.upper())

    def show(event):
        if args.print_events:
            print(event.to_json(), flush=True)
        elif args.pretty:
            print(pretty_event(event), flush=True)

    runtime = Runtime(config, on_event=show)
    code = runtime.run(duration=args.duration)
    if runtime.failure:
        print(f"emotion-edge: error: {runtime.failure}", file=sys.stderr)
    labels = Counter()
    for (modality, kind, label), count in runtime.counts.items():
        labels[f"{modality}:{kind}" + (f":{label}" if label else "")] += count
    summary = {"events": dict(sorted(labels.items())), "health": runtime.health(),
               "mqtt": runtime.publisher.stats()}
    if args.pretty:
        print("\nevents: " + ", ".join(f"{name} x{count}" for name, count in sorted(labels.items())))
        for modality, health in summary["health"].items():
            stages = ", ".join(f"{stage} {times['median_ms']} ms" for stage, times in health.get("stages", {}).items())
            unit = next((key for key in ("frames", "windows", "chunks") if key in health), "frames")
            note = " (detect/classify on frames where the models ran)" if modality == "face" else ""
            print(f"{modality}: {health.get(unit, 0)} {unit}, median ms per stage run{note}: {stages}")
        mqtt = summary["mqtt"]
        print(f"mqtt: {mqtt.get('events_acked', 0)} events acknowledged by the broker, "
              f"{mqtt.get('spool_depth', 0)} still spooled")
    else:
        print(json.dumps({"summary": summary}, indent=2, default=str),
              file=sys.stderr if args.print_events else sys.stdout)
    return code


def _calibrate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .eeg.calibration import CalibrationSettings, calibrate_command

    settings = CalibrationSettings(settle_s=args.settle, l2=args.l2, min_margin=args.min_margin)
    return calibrate_command(load_config(args.config), from_recording=args.from_recording, out=args.out,
                             recording=args.recording, classes=args.classes.split(","), repeats=args.repeats,
                             block_s=args.block, rest_s=args.rest, settings=settings, force=args.force,
                             announce=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("simulate-muse", "record"):
        try:
            if argv[0] == "simulate-muse":
                from .eeg.simulator import main as simulator_main

                return simulator_main(argv[1:]) or 0
            from .eeg.recorder import main as recorder_main

            return recorder_main(argv[1:]) or 0
        except EdgeError as exc:
            print(f"emotion-edge: error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "check-config":
            from .config import load_config

            config = load_config(args.config)
            if not args.no_model_check:
                resolve_models(config)  # the model directories `run` would use must exist
            for name, section in config.sections.items():
                print(f"[{name}] {masked(section)}")
            print(f"{args.config}: OK")
            return 0
        if args.command == "defaults":
            from .config import defaults_toml

            print(defaults_toml())
            return 0
        if args.command == "calibrate":
            return _calibrate(args)
        if args.command == "demo-video":
            from .demo import write_demo_video

            with _sigterm_unwinds():
                print(write_demo_video(args.path, lossless=args.lossless))
            return 0
    except EdgeError as exc:
        print(f"emotion-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the runtime started: temporaries are already removed
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
