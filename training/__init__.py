"""Offline training module: data, transforms, engine, metrics and the train/evaluate/synth CLIs."""
