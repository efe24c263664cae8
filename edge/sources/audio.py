"""Audio sources: a microphone (sounddevice / PortAudio) and WAV/FLAC files (soundfile).

Both write mono float32 samples at their own rate into one bounded ring buffer and hand out
overlapping windows (e.g. 2.5 s every 1.0 s) stamped with the capture time of their first
sample. Unlike video, audio windows are read in order: a consumer that falls more than the
buffer behind skips ahead to the newest complete window and the skipped windows are counted as
dropped. Resampling to the model's rate is the voice analyzer's job, not the source's.

Threads wake only when there is work: the reader is woken when a whole window is ready (not per
microphone block), a real-time file is read in one block per window, at the moment that window's
last sample would have been captured, and a fast file waits on the ring for room instead of polling.
A file that cannot be replayed (missing, not audio, no samples, an odd rate) and a missing PortAudio
library are one EdgeError line at construction, before any model loads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import EdgeError
from ..voice.features import MODEL_RATE
from ..voice.resample import check_rate
from .base import ENDED, RECONNECTING, RUNNING, STARTING, STOPPED, Source

log = logging.getLogger(__name__)


@dataclass
class AudioWindow:
    """One analysis window of mono float32 samples."""

    samples: np.ndarray
    rate: int
    start_index: int  # index of the first sample since the source started
    timestamp: float  # capture time of the first sample, epoch seconds
    received: float  # time.monotonic() when the last sample reached the buffer (for latency)
    source: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    @property
    def end_timestamp(self) -> float:
        return self.timestamp + self.duration


def _check_window(section: str, window_s: float, hop_s: float, buffer_s: float) -> None:
    if not 0.1 <= window_s <= 30:
        raise EdgeError(f"{section}.window_s = {window_s!r} must be between 0.1 and 30 seconds")
    if not 0 < hop_s <= window_s:
        raise EdgeError(f"{section}.hop_s = {hop_s!r} must be > 0 and at most window_s ({window_s})")
    if buffer_s < window_s + hop_s:
        raise EdgeError(f"{section}.buffer_s = {buffer_s!r} must be at least window_s + hop_s ({window_s + hop_s})")


@dataclass
class MicrophoneConfig:
    SECTION: ClassVar[str] = "microphone"

    # PortAudio input device: index, or a substring of its name; "" means the system default.
    device: str = ""
    # Capture rate in Hz; 16000, 44100 or 48000 are resampled to the model's 22050 by the pipeline.
    rate: int = 16000
    # Channels to open; more than one is downmixed to mono (or refused if strict_mono).
    channels: int = 1
    # Refuse multi-channel input instead of downmixing it.
    strict_mono: bool = False
    # Length of each analysis window in seconds.
    window_s: float = 2.5
    # Seconds between the starts of consecutive windows.
    hop_s: float = 1.0
    # Ring buffer length in seconds; a reader further behind than this loses windows.
    buffer_s: float = 10.0
    # Samples per PortAudio callback (0 lets PortAudio choose).
    blocksize: int = 1024
    # Seconds without audio after which the device is considered gone and reopened.
    stall_timeout_s: float = 2.0
    # First wait between reopen attempts of a lost device, in seconds (doubling after each failure).
    backoff_initial_s: float = 0.5
    # Largest wait between reopen attempts, in seconds.
    backoff_max_s: float = 10.0

    def validate(self) -> None:
        check_rate(self.rate, MODEL_RATE, key="microphone.rate")
        if not 1 <= self.channels <= 32:
            raise EdgeError(f"microphone.channels = {self.channels!r} must be between 1 and 32")
        _check_window(self.SECTION, self.window_s, self.hop_s, self.buffer_s)
        if self.blocksize < 0:
            raise EdgeError(f"microphone.blocksize = {self.blocksize!r} must be >= 0")
        if self.stall_timeout_s <= 0:
            raise EdgeError(f"microphone.stall_timeout_s = {self.stall_timeout_s!r} must be > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise EdgeError("microphone.backoff_initial_s must be > 0 and <= microphone.backoff_max_s")


@dataclass
class AudioFileConfig:
    SECTION: ClassVar[str] = "audio_file"

    # WAV or FLAC file to replay.
    path: str = ""
    # Replay at the file's own pace (True) or as fast as the reader consumes (False).
    realtime: bool = True
    # Start again at the end of the file instead of ending.
    loop: bool = False
    # Refuse multi-channel files instead of downmixing them.
    strict_mono: bool = False
    # Length of each analysis window in seconds.
    window_s: float = 2.5
    # Seconds between the starts of consecutive windows.
    hop_s: float = 1.0
    # Ring buffer length in seconds (fast replay waits for the reader instead of overwriting).
    buffer_s: float = 10.0
    # At the end of a file, a last partial window at least this long is still delivered.
    min_final_s: float = 1.0
    # Seconds read from the file per step when realtime is false (real-time replay reads one window hop per step).
    block_s: float = 0.1

    def validate(self) -> None:
        if not self.path:
            raise EdgeError("audio_file.path is empty; set it to a WAV or FLAC file")
        _check_window(self.SECTION, self.window_s, self.hop_s, self.buffer_s)
        if not 0 <= self.min_final_s <= self.window_s:
            raise EdgeError(f"audio_file.min_final_s = {self.min_final_s!r} must be between 0 and window_s")
        if not 0.005 <= self.block_s <= 1.0:
            raise EdgeError(f"audio_file.block_s = {self.block_s!r} must be between 0.005 and 1.0 seconds")


def to_mono(block: np.ndarray, strict: bool, what: str, notice: list[bool]) -> np.ndarray:
    """Mono float32: downmix channels by averaging (logged once), or refuse when strict."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    if strict:
        raise EdgeError(f"{what} has {block.shape[1]} channels but strict_mono is set; give a mono input "
                        f"or set strict_mono = false to downmix")
    if not notice[0]:
        log.info("%s has %d channels; downmixing to mono", what, block.shape[1])
        notice[0] = True
    return block.mean(axis=1)


class AudioRing:
    """Bounded ring of mono samples with capture times, read as overlapping windows in order."""

    def __init__(self, rate: int, window_s: float, hop_s: float, buffer_s: float, name: str):
        self.rate = int(rate)
        self.window = int(round(window_s * rate))
        self.hop = int(round(hop_s * rate))
        self.capacity = max(int(round(buffer_s * rate)), self.window + self.hop)
        self.name = name
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # samples ever written
        self._next = 0  # start index of the next window to hand out
        self._anchors: deque[tuple[int, float]] = deque()  # (first index of a block, its capture time)
        self._received = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.delivered = 0
        self.nonfinite = 0

    def write(self, samples: np.ndarray, capture_time: float) -> None:
        samples = np.asarray(samples, dtype=np.float32).ravel()
        if samples.size == 0:
            return
        bad = ~np.isfinite(samples)
        if bad.any():
            self.nonfinite += int(bad.sum())
        with self._cond:
            if samples.size > self.capacity:
                capture_time += (samples.size - self.capacity) / self.rate
                self._written += samples.size - self.capacity
                samples = samples[-self.capacity:]
            start = self._written % self.capacity
            first = min(samples.size, self.capacity - start)
            self._data[start:start + first] = samples[:first]
            self._data[:samples.size - first] = samples[first:]
            self._anchors.append((self._written, capture_time))
            self._written += samples.size
            self._received = time.monotonic()
            oldest = self._written - self.capacity
            while len(self._anchors) > 1 and self._anchors[1][0] <= oldest:
                self._anchors.popleft()
            if self._written - self._next >= self.window:
                self._cond.notify_all()

    def free(self) -> int:
        """Samples that can be written without overwriting a window not yet read."""
        with self._cond:
            return self.capacity - (self._written - self._next)

    def wait_free(self, samples: int, timeout: float) -> bool:
        """Wait (woken by read()) until `samples` can be written without overwriting unread audio."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.capacity - (self._written - self._next) >= samples or self._closed, timeout)

    def missing(self) -> int:
        """Samples to write until the next window of the hop grid is complete, whether read or not (1..hop)."""
        with self._cond:
            if self._written < self.window:
                return self.window - self._written
            return self.window + ((self._written - self.window) // self.hop + 1) * self.hop - self._written

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    def _time_of(self, index: int) -> float:
        anchor_index, anchor_time = self._anchors[0]
        for candidate in self._anchors:
            if candidate[0] > index:
                break
            anchor_index, anchor_time = candidate
        return anchor_time + (index - anchor_index) / self.rate

    def _take(self, start: int, length: int) -> AudioWindow:
        begin = start % self.capacity
        first = min(length, self.capacity - begin)
        samples = np.concatenate([self._data[begin:begin + first], self._data[:length - first]])
        self.delivered += 1
        return AudioWindow(samples, self.rate, start, self._time_of(start), self._received, self.name)

    def read(self, timeout: float | None = None, final_min: int | None = None) -> AudioWindow | None:
        """The next window, waiting up to `timeout`; None on timeout or once closed and drained.

        After close(), a last partial window of at least `final_min` samples is still handed out.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._written - self._next >= self.window or self._closed, timeout)
            oldest = self._written - self.capacity
            if self._next < oldest:
                skip = -(-(oldest - self._next) // self.hop)
                self.dropped += skip
                self._next += skip * self.hop
            if self._written - self._next >= self.window:
                window = self._take(self._next, self.window)
                self._next += self.hop
                self._cond.notify_all()  # a fast file source may be waiting for room
                return window
            if self._closed and final_min is not None:
                remaining = self._written - self._next
                covered = self._next > 0 and self._next - self.hop + self.window >= self._written
                if remaining >= max(1, final_min) and not covered:
                    window = self._take(self._next, remaining)
                    self._next = self._written
                    return window
            return None


class AudioFileSource(Source[AudioWindow]):
    """Replays a WAV/FLAC file, in real time or as fast as it is read, looping or ending."""

    def __init__(self, config: AudioFileConfig, name: str | None = None):
        config.validate()
        self.config = config
        self.path = Path(config.path)
        self.name = name or self.path.stem
        self.rate = 0
        self.channels = 0
        self.frames = 0
        self.ring: AudioRing | None = None
        handle = self._open()  # a file that cannot be replayed fails here, before any model loads
        self._check(handle)
        handle.close()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = STOPPED
        self._error: str | None = None
        self._loops = 0
        self._notice = [False]

    def _open(self):
        try:
            import soundfile
        except OSError as exc:  # the libsndfile library itself is missing
            raise EdgeError(f"cannot read audio file {self.path}: libsndfile is not available ({exc}); "
                            "apt-get install libsndfile1") from None
        if not self.path.is_file():
            raise EdgeError(f"audio file {self.path} does not exist; check audio_file.path")
        try:
            handle = soundfile.SoundFile(str(self.path))
        except Exception as exc:  # libsndfile raises its own error types for unreadable files
            problem = " ".join(str(exc).split())
            raise EdgeError(f"cannot read audio file {self.path} ({problem}); give a WAV or FLAC file") from None
        return handle

    def _check(self, handle) -> None:
        """Refuse a file that cannot be replayed (closing it); keep it open otherwise."""
        try:
            if handle.frames == 0:
                raise EdgeError(f"audio file {self.path} holds no samples; record or choose another file "
                                "(audio_file.path)")
            if handle.channels > 1 and self.config.strict_mono:
                raise EdgeError(f"audio file {self.path} has {handle.channels} channels but audio_file.strict_mono "
                                f"is set; convert it to mono or set strict_mono = false to downmix")
            check_rate(handle.samplerate, MODEL_RATE, key=f"sample rate of {self.path}")
        except EdgeError:
            handle.close()
            raise
        self.rate, self.channels, self.frames = handle.samplerate, handle.channels, handle.frames

    def start(self) -> None:
        if self._thread is not None:
            return
        handle = self._open()
        self._check(handle)
        self.ring = AudioRing(self.rate, self.config.window_s, self.config.hop_s, self.config.buffer_s, self.name)
        self._stop.clear()
        self._state = STARTING
        self._thread = threading.Thread(target=self._run, args=(handle,), name=f"audio-file-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self, handle) -> None:
        cfg = self.config
        block = max(1, int(cfg.block_s * self.rate))
        origin = time.time()
        clock = time.monotonic()
        position = 0  # samples delivered since start, across loops
        self._state = RUNNING
        try:
            while not self._stop.is_set():
                if cfg.realtime:  # exactly what completes the next window, written when it would have been heard
                    wanted = self.ring.missing()
                else:
                    wanted = block
                    while not self.ring.wait_free(block, 0.5):
                        if self._stop.is_set():
                            return
                data = handle.read(wanted, dtype="float32", always_2d=True)
                if len(data) == 0:
                    if not cfg.loop:
                        break
                    self._loops += 1
                    handle.seek(0)
                    continue
                mono = to_mono(data, cfg.strict_mono, f"audio file {self.path}", self._notice)
                if cfg.realtime:
                    due = clock + (position + len(mono)) / self.rate
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                self.ring.write(mono, origin + position / self.rate)
                position += len(mono)
        except Exception as exc:  # a file that turns unreadable mid-way ends this source, reported in stats
            self._error = f"{type(exc).__name__}: {exc}"
            log.error("audio file %s failed while reading: %s", self.path, self._error)
        finally:
            handle.close()
            self._state = ENDED if not self._stop.is_set() else STOPPED
            self.ring.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._state = STOPPED

    def read(self, timeout: float | None = None) -> AudioWindow | None:
        """The next window in order; None on timeout or after the end of a non-looping file."""
        if self.ring is None:
            raise EdgeError(f"audio file source {self.name} was not started")
        return self.ring.read(timeout, final_min=int(self.config.min_final_s * self.rate))

    @property
    def finished(self) -> bool:
        """True once a non-looping file has been read to its end."""
        return self._state == ENDED

    def stats(self) -> dict[str, Any]:
        ring = self.ring
        return {
            "state": self._state, "read": ring.delivered if ring else 0, "dropped": ring.dropped if ring else 0,
            "reconnects": 0, "loops": self._loops, "rate": self.rate, "channels": self.channels,
            "nonfinite_samples": ring.nonfinite if ring else 0, "error": self._error,
        }


def _sounddevice():
    """The sounddevice module, or one EdgeError line when it or the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing or unloadable
        raise EdgeError(f"the microphone needs the PortAudio library, which cannot be loaded ({exc}); "
                        "apt-get install libportaudio2, or set voice.source = \"file\"") from None
    except ImportError as exc:
        raise EdgeError(f"the microphone needs the sounddevice package ({exc}); pip install sounddevice, "
                        "or set voice.source = \"file\"") from None
    return sounddevice


class MicrophoneSource(Source[AudioWindow]):
    """Captures from a PortAudio input device; a device that vanishes is reopened with backoff."""

    def __init__(self, config: MicrophoneConfig, name: str = "microphone"):
        config.validate()
        _sounddevice()  # no PortAudio library: fail here, before any model loads
        self.config = config
        self.name = name
        self.rate = int(config.rate)
        self.ring = AudioRing(self.rate, config.window_s, config.hop_s, config.buffer_s, name)
        self._stream = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = STOPPED
        self._last_audio = 0.0
        self._reconnects = 0
        self._overflows = 0
        self._error: str | None = None
        self._notice = [False]

    def _device(self):
        text = str(self.config.device).strip()
        if text == "":
            return None
        return int(text) if text.isdigit() else text

    def _open_stream(self):
        sounddevice = _sounddevice()
        device = self._device()
        cfg = self.config
        try:
            sounddevice.check_input_settings(device=device, channels=cfg.channels, dtype="float32",
                                             samplerate=self.rate)
        except ValueError as exc:
            raise EdgeError(self._describe(sounddevice, device, str(exc))) from None
        except sounddevice.PortAudioError as exc:
            raise EdgeError(self._describe(sounddevice, device, str(exc))) from None
        try:
            stream = sounddevice.InputStream(device=device, channels=cfg.channels, samplerate=self.rate,
                                             dtype="float32", blocksize=cfg.blocksize, callback=self._callback)
            stream.start()
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise EdgeError(self._describe(sounddevice, device, str(exc))) from None
        return stream

    def _describe(self, sounddevice, device, problem: str) -> str:
        try:
            inputs = [f"{i}: {d['name']}" for i, d in enumerate(sounddevice.query_devices())
                      if d.get("max_input_channels", 0) > 0]
        except Exception:  # listing devices is best effort inside an error message
            inputs = []
        listing = "; ".join(inputs) if inputs else "none found"
        which = "the default input device" if device is None else f"input device {device!r}"
        return (f"cannot open {which} at {self.rate} Hz with {self.config.channels} channel(s): {problem}. "
                f"Available inputs: {listing}. Set microphone.device / microphone.rate to a supported pair")

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self._overflows += 1
        try:
            latency = max(0.0, float(time_info.currentTime - time_info.inputBufferAdcTime))
        except (AttributeError, TypeError):
            latency = 0.0
        if latency > 1.0:
            latency = 0.0
        try:
            mono = to_mono(indata, self.config.strict_mono, f"microphone {self.config.device or 'default'}",
                           self._notice)
        except EdgeError as exc:
            self._error = str(exc)
            return
        self.ring.write(mono.copy(), time.time() - latency - frames / self.rate)
        self._last_audio = time.monotonic()

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.config.channels > 1 and self.config.strict_mono:
            raise EdgeError("microphone.channels > 1 while microphone.strict_mono is set; use one channel "
                            "or allow downmixing")
        self._state = STARTING
        self._stream = self._open_stream()
        self._last_audio = time.monotonic()
        self._state = RUNNING
        self._stop.clear()
        self.ring.reopen()
        self._thread = threading.Thread(target=self._supervise, name=f"mic-{self.name}", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        """Reopen the stream when it stops delivering audio, waiting longer after each failure."""
        cfg = self.config
        backoff = cfg.backoff_initial_s
        while not self._stop.wait(0.2):
            stream = self._stream
            healthy = (stream is not None and stream.active
                       and time.monotonic() - self._last_audio < cfg.stall_timeout_s)
            if healthy:
                backoff = cfg.backoff_initial_s
                continue
            self._state = RECONNECTING
            self._close_stream()
            try:
                self._stream = self._open_stream()
                self._last_audio = time.monotonic()
                self._reconnects += 1
                self._state = RUNNING
                log.info("microphone %s reopened", cfg.device or "default")
            except EdgeError as exc:
                self._error = str(exc)
                log.warning("microphone %s unavailable, retrying in %.1f s: %s", cfg.device or "default",
                            backoff, exc)
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, cfg.backoff_max_s)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # a vanished device can fail on close; it is being dropped anyway
                log.debug("closing microphone stream failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_stream()
        self.ring.close()
        self._state = STOPPED

    def read(self, timeout: float | None = None) -> AudioWindow | None:
        """The next window in order, waiting up to `timeout`; None on timeout or after stop()."""
        return self.ring.read(timeout)

    def stats(self) -> dict[str, Any]:
        return {
            "state": self._state, "read": self.ring.delivered, "dropped": self.ring.dropped,
            "reconnects": self._reconnects, "overflows": self._overflows, "rate": self.rate,
            "nonfinite_samples": self.ring.nonfinite, "error": self._error,
        }
