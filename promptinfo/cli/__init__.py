"""Thin hydra entry points: `promptinfo-train`, `promptinfo-eval`, `promptinfo-report`, `promptinfo-inspect`."""
