"""Export pipeline: pinned pretrained models to TFLite (fp32/fp16/int8) and ONNX (fp32/int8 QDQ), with parity proof."""
