"""On-device emotion recognition runtime (no TensorFlow, no PyTorch)."""

__version__ = "0.1.0"
