"""Muse-like EEG over LSL without a headband: synthetic signal with known properties, or a replay.

The synthetic signal per channel (TP9, AF7, AF8, TP10 + Right AUX, microvolts, 256 Hz, 12-sample
chunks like a Muse) is the sum of
- background activity with a roughly 1/f spectrum (parallel first-order low-passes of white noise),
- an alpha rhythm (8-12 Hz, waxing and waning narrow-band noise, partly shared between channels);
  AF8/AF7 alpha power ratio = exp(asymmetry), so ln(alpha AF8) - ln(alpha AF7) ~= asymmetry
  (positive asymmetry = more right alpha = the "positive valence" side of the index),
- beta activity (13-30 Hz) whose level stands for arousal,
- optional frontal gamma activity (30-45 Hz, AF7/AF8 only),
- blinks (300 ms positive deflections, strong on AF7/AF8), optional jaw clenches (bursts of
  >25 Hz muscle noise, strong on TP9/TP10), a little mains hum and a DC offset.
A schedule of segments changes asymmetry, beta and gamma over time (e.g. neutral baseline, then asymmetric).
Labelled segments (`--conditions`) give each condition of a calibration session its own band powers
(`CONDITIONS`) and send a `label:<condition>` marker at its start on an LSL Markers stream (`--markers`), or
write the whole session as a recording (`--out`), so `emotion-edge calibrate` has a real class difference
to learn; `--effect 0` keeps the markers but removes the difference (the control).
Run as `python -m edge.eeg.simulator --help`.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.eeg import MUSE_AUX_CHANNEL, MUSE_CHANNELS
from edge.eeg.filters import SosFilter, biquad_bandpass, biquad_highpass
from edge.errors import EdgeError

log = logging.getLogger(__name__)

LABELS = MUSE_CHANNELS + (MUSE_AUX_CHANNEL,)


@dataclass
class Segment:
    """A stretch of simulated state."""

    duration_s: float
    asymmetry: float = 0.0  # ln(alpha AF8) - ln(alpha AF7)
    beta_uv: float = 3.0  # RMS of beta activity (arousal)
    gamma_uv: float = 0.0  # RMS of frontal (AF7/AF8) 30-45 Hz activity
    label: str = ""  # condition name: a "label:<label>" marker starts the segment; "" = unlabelled (rest)


# Band power per condition of a simulated calibration session. Not physiology: the sizes are chosen so one
# 1-s window carries some evidence and the classes differ in more than one band (asymmetry, beta, gamma).
CONDITIONS: dict[str, Segment] = {
    "neutral": Segment(0.0, asymmetry=0.0, beta_uv=3.0, gamma_uv=1.0, label="neutral"),
    "positive": Segment(0.0, asymmetry=1.0, beta_uv=3.0, gamma_uv=4.0, label="positive"),
    "negative": Segment(0.0, asymmetry=-1.0, beta_uv=6.0, gamma_uv=1.0, label="negative"),
}


def condition_segments(order: Sequence[str], block_s: float, rest_s: float = 0.0, effect: float = 1.0,
                       conditions: dict[str, Segment] = CONDITIONS) -> list[Segment]:
    """Labelled blocks in `order`, each followed by `rest_s` of unlabelled neutral signal.

    `effect` scales every condition's difference from neutral: 1 = `conditions` as given, 0 = no
    difference at all (the markers still name the conditions).
    """
    unknown = [c for c in order if c not in conditions]
    if unknown:
        raise EdgeError(f"unknown simulated condition(s) {unknown}; use {sorted(conditions)}")
    if not block_s > 0 or rest_s < 0:
        raise EdgeError(f"simulated blocks need block seconds > 0 and rest seconds >= 0, not {block_s}, {rest_s}")
    base = conditions["neutral"]
    segments = []
    for name in order:
        c = conditions[name]
        segments.append(Segment(block_s, base.asymmetry + effect * (c.asymmetry - base.asymmetry),
                                base.beta_uv + effect * (c.beta_uv - base.beta_uv),
                                base.gamma_uv + effect * (c.gamma_uv - base.gamma_uv), name))
        if rest_s:
            segments.append(replace(base, duration_s=rest_s, label=""))
    return segments


def segment_markers(plan: Sequence[Segment]) -> list[tuple[float, str]]:
    """(seconds from the start, marker) for a plan: "label:<x>" where a labelled segment starts, "end" where
    one is followed by an unlabelled segment, and after the last labelled one."""
    markers, elapsed, open_label = [], 0.0, False
    for segment in plan:
        if segment.label:
            markers.append((elapsed, f"label:{segment.label}"))
        elif open_label:
            markers.append((elapsed, "end"))
        open_label = bool(segment.label)
        elapsed += segment.duration_s
    if open_label:
        markers.append((elapsed, "end"))
    return markers


@dataclass
class SimulatorConfig:
    """Synthetic Muse stream settings (section `simulator`)."""

    # LSL stream name and source_id (keep the source_id stable so inlets can find a restarted sender).
    name: str = "Muse-Sim"
    source_id: str = "muse-sim-0001"
    # Sampling rate (Hz) and samples per pushed chunk (Muse: 256 Hz, 12 samples).
    rate: float = 256.0
    chunk: int = 12
    # Frontal alpha asymmetry ln(alpha AF8) - ln(alpha AF7); > 0 reads as positive valence.
    asymmetry: float = 0.0
    # RMS amplitudes (uV) of the alpha rhythm, beta activity and 1/f background.
    alpha_uv: float = 10.0
    beta_uv: float = 3.0
    background_uv: float = 8.0
    # Blinks per minute and their peak amplitude on AF7/AF8 (uV); 0 disables.
    blinks_per_min: float = 10.0
    blink_uv: float = 150.0
    # Jaw clenches per minute and their RMS on TP9/TP10 (uV); 0 disables.
    jaw_per_min: float = 0.0
    jaw_uv: float = 50.0
    # Mains hum frequency (Hz) and amplitude (uV).
    mains_hz: float = 50.0
    mains_uv: float = 2.0
    # Channels held at a constant value (a lifted electrode), e.g. ["TP10"].
    flat_channels: tuple[str, ...] = ()
    # Random seed (same seed, same signal).
    seed: int = 0
    # Playback speed: 1 = real time; 10 = ten times faster (timestamps stay in signal time).
    speed: float = 1.0
    # Stop after this many seconds of signal; 0 runs until stopped.
    duration_s: float = 0.0
    # Replay this recording (CSV from edge.eeg.recorder) instead of synthesising; "" = synthesise.
    replay: str = ""
    # Start the replay again when it ends.
    loop: bool = False
    # Seconds to wait for an inlet before sending (so a consumer gets the first samples); 0 = no wait.
    wait_for_consumer_s: float = 0.0
    # Seconds to keep the stream open after the last sample (liblsl drops what an inlet has not
    # fetched when the sender closes).
    linger_s: float = 1.0
    # Also publish a "Markers" stream (named "<name>-markers") with a "label:<condition>" marker where each
    # labelled segment starts and "end" where it stops, stamped in signal time.
    markers: bool = False

    def validate(self) -> SimulatorConfig:
        """Raise EdgeError naming `simulator.<key>` for the first bad value; returns self."""
        self.flat_channels = tuple(self.flat_channels)
        if not self.name:
            _bad("name", self.name, "a non-empty stream name")
        if not self.rate > 0:
            _bad("rate", self.rate, "a positive rate in Hz")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            _bad("chunk", self.chunk, "a whole number of samples >= 1 (Muse: 12)")
        for key in ("alpha_uv", "beta_uv", "background_uv", "blinks_per_min", "blink_uv", "jaw_per_min",
                    "jaw_uv", "mains_uv", "duration_s", "wait_for_consumer_s", "linger_s"):
            if not getattr(self, key) >= 0:
                _bad(key, getattr(self, key), "a number >= 0")
        if not -3 <= self.asymmetry <= 3:
            _bad("asymmetry", self.asymmetry, "a log power ratio between -3 and 3 (typical |FAA| < 0.5)")
        if self.mains_hz and not 0 < self.mains_hz < self.rate / 2:
            _bad("mains_hz", self.mains_hz, "50 or 60, below Nyquist")
        unknown = [c for c in self.flat_channels if c not in LABELS]
        if unknown:
            _bad("flat_channels", self.flat_channels, f"labels among {list(LABELS)}")
        if not self.speed > 0:
            _bad("speed", self.speed, "a positive factor (1 = real time)")
        return self


def _bad(key: str, value, expected: str) -> None:
    raise EdgeError(f"simulator.{key} = {value!r} is not valid: expected {expected}")


class MuseSignal:
    """Stateful generator of the synthetic 5-channel signal, `next(n)` samples at a time."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.fs = config.rate
        self.asymmetry = config.asymmetry
        self.beta_uv = config.beta_uv
        self.gamma_uv = 0.0
        self.rng = np.random.default_rng(config.seed)
        self._gamma: SosFilter | None = None  # built on first use (see _gamma_noise)
        self._n = 0
        c = len(LABELS)
        poles_hz = (0.3, 3.0, 30.0)
        self._pink = [SosFilter(self._one_pole(f), c) for f in poles_hz]
        self._alpha_shared = SosFilter(np.vstack([biquad_bandpass(self.fs, 10.0, 3.0)] * 2), 1)
        self._alpha_own = SosFilter(np.vstack([biquad_bandpass(self.fs, 10.0, 3.0)] * 2), c)
        self._beta = SosFilter(np.vstack([biquad_bandpass(self.fs, 20.0, 1.2)] * 2), c)
        self._gain = {}
        self._calibrate()
        self._carry = np.zeros((0, c))
        self._offset = self.rng.uniform(-30, 30, size=c)

    def apply(self, segment: Segment) -> None:
        """Switch to a segment's state (asymmetry, beta, gamma)."""
        self.asymmetry, self.beta_uv, self.gamma_uv = segment.asymmetry, segment.beta_uv, segment.gamma_uv

    def _gamma_noise(self, n: int) -> np.ndarray:
        """Unit-RMS 30-45 Hz noise for AF7/AF8, from its own generator: signals without gamma stay as before."""
        if self._gamma is None:
            self._gamma_rng = np.random.default_rng([self.config.seed, 7])
            self._gamma = SosFilter(np.vstack([biquad_bandpass(self.fs, 37.0, 2.5)] * 2), 2)
            preroll = self._gamma.process(self._gamma_rng.standard_normal((int(20 * self.fs), 2)))
            self._gamma_gain = 1.0 / np.std(preroll[len(preroll) // 4:])
        return self._gamma.process(self._gamma_rng.standard_normal((n, 2))) * self._gamma_gain

    def _one_pole(self, cutoff_hz: float) -> np.ndarray:
        a = math.exp(-2 * math.pi * cutoff_hz / self.fs)
        return np.array([[1 - a, 0.0, 0.0, 1.0, -a, 0.0]])

    def _calibrate(self) -> None:
        """Unit-RMS gains for each shaped noise, measured on 20 s of preroll."""
        n = int(20 * self.fs)
        c = len(LABELS)
        pink = sum(f.process(self.rng.standard_normal((n, c))) for f in self._pink)
        self._gain["pink"] = 1.0 / np.std(pink[n // 4:])
        self._gain["alpha_shared"] = 1.0 / np.std(self._alpha_shared.process(self.rng.standard_normal((n, 1)))[n // 4:])
        self._gain["alpha_own"] = 1.0 / np.std(self._alpha_own.process(self.rng.standard_normal((n, c)))[n // 4:])
        self._gain["beta"] = 1.0 / np.std(self._beta.process(self.rng.standard_normal((n, c)))[n // 4:])

    def next(self, n: int) -> np.ndarray:
        cfg, c, rng = self.config, len(LABELS), self.rng
        pink = sum(f.process(rng.standard_normal((n, c))) for f in self._pink) * self._gain["pink"]
        shared = self._alpha_shared.process(rng.standard_normal((n, 1))) * self._gain["alpha_shared"]
        own = self._alpha_own.process(rng.standard_normal((n, c))) * self._gain["alpha_own"]
        alpha = 0.8 * shared + 0.6 * own  # unit RMS, 64% of the power shared between channels
        half = self.asymmetry / 4.0  # amplitude factor exp(+-a/4) -> power ratio exp(a)
        alpha_gain = np.array([1.2, math.exp(-half), math.exp(half), 1.2, 0.3]) * cfg.alpha_uv
        beta = self._beta.process(rng.standard_normal((n, c))) * self._gain["beta"] * self.beta_uv
        beta[:, 4] *= 0.3
        t = (self._n + np.arange(n)) / self.fs
        mains = cfg.mains_uv * np.sin(2 * math.pi * cfg.mains_hz * t)[:, None] if cfg.mains_hz else 0.0
        x = pink * cfg.background_uv + alpha * alpha_gain + beta + mains + self._offset
        if self.gamma_uv > 0:
            x[:, 1:3] += self._gamma_noise(n) * self.gamma_uv  # AF7, AF8
        x += self._artifacts(n)
        for name in cfg.flat_channels:
            x[:, LABELS.index(name)] = 0.0
        self._n += n
        return x

    def _artifacts(self, n: int) -> np.ndarray:
        """Blinks and jaw clenches starting in these n samples; their tails carry into later chunks."""
        cfg, fs, c = self.config, self.fs, len(LABELS)
        longest = int(fs)
        out = np.zeros((n + longest, c))
        out[: len(self._carry)] += self._carry
        if cfg.blinks_per_min > 0:
            length = int(0.3 * fs)
            shape = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
            weights = np.array([0.1, 1.0, 1.0, 0.1, 0.0]) * cfg.blink_uv
            for start in np.flatnonzero(self.rng.random(n) < cfg.blinks_per_min / 60.0 / fs):
                out[start:start + length] += shape[:, None] * weights
        if cfg.jaw_per_min > 0:
            length = int(0.8 * fs)
            weights = np.array([1.0, 0.4, 0.4, 1.0, 0.1]) * cfg.jaw_uv
            for start in np.flatnonzero(self.rng.random(n) < cfg.jaw_per_min / 60.0 / fs):
                emg = SosFilter(np.vstack([biquad_highpass(fs, 25.0, 0.7071)] * 2), c)
                burst = emg.process(self.rng.standard_normal((length, c)))
                burst /= np.std(burst)
                envelope = np.sin(np.pi * np.arange(length) / length)[:, None]
                out[start:start + length] += burst * envelope * weights
        self._carry = out[n:]
        return out[:n]


def make_outlet(name: str, source_id: str, rate: float, labels: Sequence[str], chunk: int,
                stream_type: str = "EEG", manufacturer: str = "Muse-like simulator (emotion-edge)"):
    """LSL outlet with Muse-style metadata: channel labels, microvolts, manufacturer."""
    from edge.sources.lsl import load_pylsl

    pylsl = load_pylsl()
    info = pylsl.StreamInfo(name, stream_type, len(labels), rate, pylsl.cf_float32, source_id)
    info.desc().append_child_value("manufacturer", manufacturer)
    channels = info.desc().append_child("channels")
    for label in labels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "AUX" if "AUX" in label else "EEG")
    return pylsl.StreamOutlet(info, chunk, 360)


def run_simulator(config: SimulatorConfig | None = None, stop: threading.Event | None = None,
                  segments: Sequence[Segment] | None = None,
                  on_ready: Callable[[], None] | None = None) -> dict:
    """Publish until `stop` is set, `duration_s` (or the segments) run out; safe to run in a thread.

    Returns what was sent: {"samples": n, "seconds": signal seconds}.
    """
    from edge.sources.lsl import load_pylsl

    config = (config or SimulatorConfig()).validate()
    pylsl = load_pylsl()
    stop = stop or threading.Event()
    if config.replay:
        from edge.eeg.recorder import load_recording

        recording = load_recording(config.replay)
        labels, rate = recording.channels, recording.rate
        source = _replayer(recording.data, config.loop)
    else:
        labels, rate = LABELS, config.rate
        signal = MuseSignal(config)
        source = signal.next
    outlet = make_outlet(config.name, config.source_id, rate, labels, config.chunk)
    marker_outlet = None
    plan = list(segments or [])
    markers = segment_markers(plan) if plan and not config.replay else []
    if config.markers:
        marker_outlet = make_marker_outlet(f"{config.name}-markers", f"{config.source_id}-markers")
    if plan and not config.replay:
        signal.apply(plan[0])
    limit = sum(s.duration_s for s in plan) if plan else config.duration_s
    if config.wait_for_consumer_s:
        outlet.wait_for_consumers(config.wait_for_consumer_s)
        if marker_outlet is not None:
            marker_outlet.wait_for_consumers(config.wait_for_consumer_s)
    if on_ready:
        on_ready()
    sent = 0
    t0 = pylsl.local_clock()
    log.info("simulating %r (%s) at %g Hz, speed %gx", config.name, config.source_id, rate, config.speed)
    try:
        while not stop.is_set():
            elapsed = sent / rate
            if limit and elapsed >= limit:
                break
            if plan and not config.replay:
                signal.apply(_segment_at(plan, elapsed))
            block = source(config.chunk)
            if block is None:
                break
            sent += len(block)
            due = t0 + sent / (rate * config.speed)
            delay = due - pylsl.local_clock()
            if delay > 0:
                stop.wait(delay)
            outlet.push_chunk(np.ascontiguousarray(block, dtype=np.float32), t0 + (sent - 1) / rate)
            while markers and markers[0][0] < sent / rate:
                at, text = markers.pop(0)
                if marker_outlet is not None:
                    marker_outlet.push_sample([text], t0 + at)
        if marker_outlet is not None:
            for at, text in markers:  # an "end" exactly at the last sample
                marker_outlet.push_sample([text], t0 + at)
        if config.linger_s:
            stop.wait(config.linger_s)
    finally:
        del outlet, marker_outlet
    return {"samples": sent, "seconds": sent / rate}


def make_marker_outlet(name: str, source_id: str):
    """An LSL string marker stream (type "Markers"), as PsychoPy or `emotion-edge calibrate` sends."""
    from edge.sources.lsl import load_pylsl

    pylsl = load_pylsl()
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id)
    return pylsl.StreamOutlet(info)


def simulate_session(stem: str | Path, segments: Sequence[Segment], config: SimulatorConfig | None = None,
                     start_lsl_time: float = 1000.0) -> Path:
    """Write a schedule of segments straight to a recording (as `emotion-edge record` writes one), chunk by
    chunk exactly as `run_simulator` would send it, markers included; returns the CSV path."""
    from edge.eeg.recorder import write_recording

    config = (config or SimulatorConfig()).validate()
    if config.replay:
        raise EdgeError("simulator.replay cannot be combined with writing a simulated session")
    plan = list(segments)
    if not plan:
        raise EdgeError("a simulated session needs segments, e.g. from --conditions")
    signal = MuseSignal(config)
    total = sum(s.duration_s for s in plan)
    blocks, sent = [], 0
    while sent / config.rate < total:
        signal.apply(_segment_at(plan, sent / config.rate))
        blocks.append(signal.next(config.chunk))
        sent += config.chunk
    data = np.concatenate(blocks)
    times = start_lsl_time + np.arange(len(data)) / config.rate
    offset = time.time() - times[-1]
    markers = [(start_lsl_time + at, text) for at, text in segment_markers(plan)]
    return write_recording(stem, times, times + offset, data, LABELS, config.rate, markers,
                           stream={"name": config.name, "source_id": config.source_id, "simulated": True})


def _segment_at(plan: Sequence[Segment], elapsed: float) -> Segment:
    for segment in plan:
        if elapsed < segment.duration_s:
            return segment
        elapsed -= segment.duration_s
    return plan[-1]


def _replayer(data: np.ndarray, loop: bool) -> Callable[[int], np.ndarray | None]:
    position = [0]

    def take(n: int) -> np.ndarray | None:
        start = position[0]
        if start >= len(data):
            if not loop or not len(data):
                return None
            start = 0
        block = data[start:start + n]
        position[0] = start + len(block)
        return block

    return take


def parse_segments(text: str) -> list[Segment]:
    """"30:0:3,20:0.6:3" -> segments of (seconds, asymmetry, beta uV)."""
    segments = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        fields = part.split(":")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if not 1 <= len(values) <= 3 or values[0] <= 0:
            raise EdgeError(f"segment {part!r} must be SECONDS[:ASYMMETRY[:BETA_UV]], e.g. 30:0.5:3")
        segments.append(Segment(*values))
    return segments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-edge simulate-muse", description=__doc__.split("\n")[0])
    d = SimulatorConfig()
    p.add_argument("--name", default=d.name, help="LSL stream name")
    p.add_argument("--source-id", default=d.source_id, help="LSL source_id")
    p.add_argument("--asymmetry", type=float, default=d.asymmetry, help="ln(alpha AF8) - ln(alpha AF7)")
    p.add_argument("--alpha", type=float, default=d.alpha_uv, help="alpha RMS, uV")
    p.add_argument("--beta", type=float, default=d.beta_uv, help="beta RMS, uV (arousal)")
    p.add_argument("--blinks", type=float, default=d.blinks_per_min, help="blinks per minute")
    p.add_argument("--jaw", type=float, default=d.jaw_per_min, help="jaw clenches per minute")
    p.add_argument("--mains", type=float, default=d.mains_hz, help="mains hum frequency, Hz (0 = none)")
    p.add_argument("--flat", default="", help="comma-separated channels to hold flat, e.g. TP10")
    p.add_argument("--segments", default="", help="schedule SECONDS:ASYM:BETA,..., e.g. 60:0:3,30:0.6:3")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1 = real time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", default="", help="recording CSV to replay instead of synthesising")
    p.add_argument("--loop", action="store_true", help="loop the replay")
    p.add_argument("--conditions", default="",
                   help=f"calibration session: comma-separated conditions among {sorted(CONDITIONS)}, each a block "
                        "with its own band powers, repeated --repeats times in rotating order (replaces --segments)")
    p.add_argument("--block", type=float, default=20.0, help="seconds per condition block")
    p.add_argument("--rest", type=float, default=0.0, help="unlabelled neutral seconds after each block")
    p.add_argument("--repeats", type=int, default=3, help="times each condition block occurs")
    p.add_argument("--effect", type=float, default=1.0,
                   help="scale of the condition differences (0 = markers only, no real difference: a control)")
    p.add_argument("--markers", action="store_true",
                   help="also send the blocks' label:<condition> / end markers on an LSL Markers stream")
    p.add_argument("--out", default="", help="write the session to OUT.csv + OUT.json (as `record` does) at once, "
                                             "instead of streaming it")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        name=args.name, source_id=args.source_id, asymmetry=args.asymmetry, alpha_uv=args.alpha,
        beta_uv=args.beta, blinks_per_min=args.blinks, jaw_per_min=args.jaw, mains_hz=args.mains,
        flat_channels=tuple(filter(None, args.flat.split(","))), duration_s=args.duration, speed=args.speed,
        seed=args.seed, replay=args.replay, loop=args.loop, markers=args.markers)
    try:
        segments = parse_segments(args.segments)
        if args.conditions:
            from edge.eeg.calibration import block_order

            order = block_order([c.strip() for c in args.conditions.split(",") if c.strip()], args.repeats)
            segments = condition_segments(order, args.block, args.rest, args.effect)
        if args.out:
            log.info("wrote %s", simulate_session(args.out, segments, config))
            return 0
        result = run_simulator(config, segments=segments)
    except EdgeError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 0
    log.info("sent %d samples (%.1f s of signal)", result["samples"], result["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
