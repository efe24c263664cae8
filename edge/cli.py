"""`emotion-edge`: run the on-device runtime, check a config, print the documented defaults."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from .errors import EdgeError


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
    run.add_argument("--models", type=Path, help="face model directory (overrides face.models)")
    run.add_argument("--mqtt-host", help="broker host (overrides mqtt.host)")
    run.add_argument("--mqtt-port", type=int, help="broker port (overrides mqtt.port)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--print-events", action="store_true", help="also print each event as a JSON line")
    run.add_argument("--pretty", action="store_true", help="print events and a closing summary for people to read")
    check = commands.add_parser("check-config", help="validate a config file and print the effective settings")
    check.add_argument("config", type=Path)
    commands.add_parser("defaults", help="print every option with its default and documentation (valid TOML)")
    commands.add_parser("simulate-muse", add_help=False,
                        help="publish a synthetic Muse EEG stream over LSL (see `simulate-muse --help`)")
    commands.add_parser("record", add_help=False,
                        help="record an EEG stream plus LSL markers to CSV + JSON (see `record --help`)")
    video = commands.add_parser("demo-video", help="write the built-in demo video (MJPG .avi) to a path")
    video.add_argument("path", type=Path)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .config import build_config, load_config
    from .runtime import Runtime

    if args.demo:
        from .demo import build_demo_video, default_demo_path

        video = build_demo_video(default_demo_path())
        config = build_config({"camera": {"source": str(video), "on_end": "stop", "realtime": True},
                               "device": {"id": "demo", "health_interval_s": 2.0}})
        args.print_events = not args.pretty
    else:
        config = load_config(args.config)
    if args.models:
        config.face.models = str(args.models)
    if args.mqtt_host:
        config.mqtt.host = args.mqtt_host
    if args.mqtt_port:
        config.mqtt.port = args.mqtt_port
    logging.getLogger().setLevel(config.device.log_level.upper())

    def show(event):
        if args.print_events:
            print(event.to_json(), flush=True)
        elif args.pretty:
            print(f"{event.timestamp}  {event.modality:<5} {event.kind:<11} {event.track_id:<4} "
                  f"{event.label or '-':<9} conf={event.confidence:.2f} valence={event.valence:+.2f} "
                  f"arousal={event.arousal:+.2f}", flush=True)

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
            print(f"{modality}: {health.get('frames', 0)} frames, median ms per stage run "
                  f"(detect/classify on frames where the models ran): {stages}")
        mqtt = summary["mqtt"]
        print(f"mqtt: {mqtt.get('events_acked', 0)} events acknowledged by the broker, "
              f"{mqtt.get('spool_depth', 0)} still spooled")
    else:
        print(json.dumps({"summary": summary}, indent=2, default=str),
              file=sys.stderr if args.print_events else sys.stdout)
    return code


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
            for name, section in config.sections.items():
                print(f"[{name}] {section}")
            print(f"{args.config}: OK")
            return 0
        if args.command == "defaults":
            from .config import defaults_toml

            print(defaults_toml())
            return 0
        if args.command == "demo-video":
            from .demo import build_demo_video

            print(build_demo_video(args.path))
            return 0
    except EdgeError as exc:
        print(f"emotion-edge: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
