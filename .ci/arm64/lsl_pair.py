"""Checks liblsl discovery and transport under qemu: a StreamOutlet in a child process, resolve_byprop + StreamInlet here.
Needs PYLSL_LIB. Usage: python lsl_pair.py [outlet NAME]"""

import os
import subprocess
import sys
import time

import pylsl


def outlet(name: str) -> None:
    out = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 4, 256, "float32", name))
    for i in range(256 * 60):  # at most a minute; the parent kills it sooner
        out.push_sample([float(i), 1.0, 2.0, 3.0])
        time.sleep(1 / 256)


def main() -> None:
    print("liblsl", pylsl.library_version(), flush=True)
    name = f"ci-arm64-{os.getpid()}"
    child = subprocess.Popen([sys.executable, __file__, "outlet", name])
    try:
        found = pylsl.resolve_byprop("name", name, 1, 60.0)
        if not found:
            sys.exit("lsl: stream not resolved in 60 s")
        inlet = pylsl.StreamInlet(found[0])
        got, deadline = [], time.monotonic() + 60
        while len(got) < 50 and time.monotonic() < deadline:
            sample, _ = inlet.pull_sample(timeout=5.0)
            if sample is not None:
                got.append(sample[0])
        inlet.close_stream()
        print(f"lsl: resolved {name}, received {len(got)} samples, counter {got[:1]}..{got[-1:]}")
        sys.exit(0 if len(got) >= 50 else 1)
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    outlet(sys.argv[2]) if sys.argv[1:2] == ["outlet"] else main()
