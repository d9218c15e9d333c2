"""Thin entry points: `promptinfo-train` and `promptinfo-eval` (hydra), `promptinfo-report`, `promptinfo-inspect`
and `promptinfo-demo` (argparse)."""
