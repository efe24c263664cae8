"""Audio sources: real WAV/FLAC files through soundfile, real PortAudio (which has no input here)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile

from edge.errors import EdgeError
from edge.sources.audio import AudioFileConfig, AudioFileSource, MicrophoneConfig, MicrophoneSource

RATE = 16000


def write(path, samples, rate=RATE, subtype=None):
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return str(path)


def ramp(seconds: float, rate: int = RATE) -> np.ndarray:
    """Sample i holds i / n, so a window's content reveals where it came from."""
    n = int(seconds * rate)
    return (np.arange(n) / n).astype(np.float32)


def drain(source, timeout=5.0):
    out = []
    while True:
        window = source.read(timeout=timeout)
        if window is None:
            return out
        out.append(window)


def test_fast_file_delivers_every_window_in_order_with_timestamps(tmp_path):
    signal = ramp(6.0)
    path = write(tmp_path / "ramp.wav", signal, subtype="FLOAT")
    source = AudioFileSource(AudioFileConfig(path=path, realtime=False, window_s=2.5, hop_s=1.0))
    source.start()
    windows = drain(source)
    source.stop()
    # starts 0, 1, 2, 3 s fit fully in 6 s; the 2 s left after the 4 s window start are delivered as a tail.
    assert [w.start_index for w in windows] == [0, 16000, 32000, 48000, 64000]
    assert [len(w.samples) for w in windows] == [40000] * 4 + [32000]
    first = windows[0].timestamp
    for k, window in enumerate(windows):
        assert window.rate == RATE and window.samples.dtype == np.float32
        assert window.timestamp == pytest.approx(first + k * 1.0, abs=1e-6)
        np.testing.assert_array_equal(window.samples, signal[window.start_index:window.start_index + len(window.samples)])
    assert abs(first - time.time()) < 5
    stats = source.stats()
    assert stats["state"] == "stopped" and stats["read"] == 5 and stats["dropped"] == 0


def test_realtime_file_is_paced_like_a_microphone(tmp_path):
    path = write(tmp_path / "ramp.flac", ramp(3.0), subtype="PCM_16")
    source = AudioFileSource(AudioFileConfig(path=path, realtime=True, window_s=1.0, hop_s=0.5, buffer_s=3.0,
                                             min_final_s=1.0))
    began = time.time()
    source.start()
    arrivals, windows = [], []
    for window in iter(lambda: source.read(timeout=3.0), None):
        arrivals.append(time.time() - began)
        windows.append(window)
    source.stop()
    assert len(windows) == 5  # starts 0.0 .. 2.0 s
    for k, (window, arrived) in enumerate(zip(windows, arrivals)):
        due = 1.0 + 0.5 * k  # the window's last sample exists only then
        assert due - 0.05 <= arrived <= due + 0.5, (k, arrived)
        assert window.timestamp == pytest.approx(windows[0].timestamp + 0.5 * k, abs=1e-6)
        assert window.timestamp == pytest.approx(began + 0.5 * k, abs=0.3)


def test_loop_keeps_going_and_stop_ends_it(tmp_path):
    path = write(tmp_path / "short.wav", ramp(1.5))
    source = AudioFileSource(AudioFileConfig(path=path, realtime=False, loop=True, window_s=1.0, hop_s=1.0))
    source.start()
    windows = [source.read(timeout=5) for _ in range(6)]
    assert all(w is not None for w in windows)
    assert source.stats()["loops"] >= 3
    # Time keeps increasing across loops.
    assert np.all(np.diff([w.timestamp for w in windows]) > 0)
    source.stop()
    assert source.stats()["state"] == "stopped"


def test_stereo_is_downmixed_or_refused_when_strict(tmp_path, caplog):
    left, right = ramp(3.0), np.zeros(48000, dtype=np.float32)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    source = AudioFileSource(AudioFileConfig(path=path, realtime=False, window_s=1.0, hop_s=1.0))
    with caplog.at_level("INFO"):
        source.start()
        window = source.read(timeout=5)
    source.stop()
    np.testing.assert_allclose(window.samples, left[:RATE] / 2, atol=1e-7)
    assert any("downmixing" in r.message for r in caplog.records)
    with pytest.raises(EdgeError, match="strict_mono"):
        AudioFileSource(AudioFileConfig(path=path, strict_mono=True)).start()


def test_bad_files_are_clear_errors(tmp_path):
    empty = write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(EdgeError, match="no samples"):
        AudioFileSource(AudioFileConfig(path=empty)).start()
    with pytest.raises(EdgeError, match="does not exist"):
        AudioFileSource(AudioFileConfig(path=str(tmp_path / "missing.wav"))).start()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(EdgeError, match="cannot read audio file"):
        AudioFileSource(AudioFileConfig(path=str(junk))).start()
    odd = write(tmp_path / "odd_rate.wav", np.zeros(30000, dtype=np.float32), rate=22051)
    with pytest.raises(EdgeError, match="22051 Hz"):
        AudioFileSource(AudioFileConfig(path=odd)).start()
    with pytest.raises(EdgeError, match="audio_file.path"):
        AudioFileSource(AudioFileConfig())
    with pytest.raises(EdgeError, match="audio_file.hop_s"):
        AudioFileSource(AudioFileConfig(path=empty, hop_s=5.0))


def test_nonfinite_samples_are_counted(tmp_path):
    signal = ramp(2.0)
    signal[100:110] = np.nan
    signal[200] = np.inf
    path = write(tmp_path / "nan.wav", signal, subtype="FLOAT")
    source = AudioFileSource(AudioFileConfig(path=path, realtime=False, window_s=1.0, hop_s=1.0))
    source.start()
    window = source.read(timeout=5)
    drain(source)
    source.stop()
    assert not np.all(np.isfinite(window.samples))
    assert source.stats()["nonfinite_samples"] == 11


def test_missing_microphone_is_a_clear_error():
    for config in (MicrophoneConfig(device="no such microphone"), MicrophoneConfig(device="42"), MicrophoneConfig()):
        source = MicrophoneSource(config)
        with pytest.raises(EdgeError, match="cannot open .* Set microphone.device"):
            source.start()
        assert source.stats()["state"] != "running"
        source.stop()


def test_unsupported_microphone_rate_is_a_clear_error():
    with pytest.raises(EdgeError, match="microphone.rate"):
        MicrophoneSource(MicrophoneConfig(rate=22051))
    with pytest.raises(EdgeError, match="microphone.rate"):
        MicrophoneSource(MicrophoneConfig(rate=1000))
    with pytest.raises(EdgeError, match="microphone.buffer_s"):
        MicrophoneSource(MicrophoneConfig(buffer_s=2.0))


def test_unplayable_files_fail_at_construction_in_one_line_naming_the_file(tmp_path):
    """Before any model loads: a missing file, a file that is not audio, a WAV with no frames."""
    junk = tmp_path / "notes.wav"
    junk.write_text("not a RIFF header\nsecond line\n")
    cases = {
        str(tmp_path / "missing.wav"): "does not exist; check audio_file.path",
        str(junk): "cannot read audio file .*give a WAV or FLAC file",
        write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32)): "holds no samples; record or choose another",
    }
    for path, problem in cases.items():
        with pytest.raises(EdgeError, match=problem) as caught:
            AudioFileSource(AudioFileConfig(path=path))
        message = str(caught.value)
        assert path in message and "\n" not in message, message


def _portaudio_path() -> str | None:
    import subprocess

    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = [line.split("=>")[-1].strip() for line in listing.splitlines() if "libportaudio.so" in line]
    return paths[0] if paths else None


def test_missing_portaudio_library_is_one_line_naming_the_fix(tmp_path):
    """The real library made unloadable in a private mount namespace (an empty file bound over it)."""
    import shutil
    import subprocess
    import sys

    library = _portaudio_path()
    if library is None or shutil.which("unshare") is None:
        pytest.skip("needs libportaudio2 and unshare")
    script = ("from edge.errors import EdgeError\n"
              "from edge.sources.audio import MicrophoneConfig, MicrophoneSource\n"
              "try:\n    MicrophoneSource(MicrophoneConfig())\nexcept EdgeError as exc:\n    print('EDGE', exc)\n")
    command = f"mount --bind /dev/null {library} && exec {sys.executable} -c \"$0\""
    result = subprocess.run(["unshare", "--mount", "sh", "-c", command, script], capture_output=True, text=True,
                            timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    if "Operation not permitted" in result.stderr or "cannot" in result.stderr and "unshare" in result.stderr:
        pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("EDGE "), (result.stdout, result.stderr[-2000:])
    assert "PortAudio library" in lines[0] and "apt-get install libportaudio2" in lines[0]


def test_realtime_file_reads_one_hop_per_step_even_when_nobody_reads():
    """The file thread sleeps until the next window on the hop grid is complete, whatever the reader does."""
    from edge.sources.audio import AudioRing

    ring = AudioRing(RATE, window_s=2.5, hop_s=1.0, buffer_s=10.0, name="grid")
    assert ring.missing() == 40000
    ring.write(np.zeros(40000, np.float32), 0.0)
    assert ring.missing() == RATE
    ring.write(np.zeros(RATE * 3 + 100, np.float32), 2.5)  # three more windows, none read
    assert ring.missing() == RATE - 100
