"""Face modality: BlazeFace detection, crops, tracking and expression classification."""
