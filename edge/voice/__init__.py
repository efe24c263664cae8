"""Voice modality: numpy features matching librosa, resampling, voice activity, prosody, the analyzer
(`edge.voice.analyzer`), its settings (`edge.voice.config`) and its runtime spec (`edge.voice.modality`)."""
