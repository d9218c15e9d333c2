"""How long a new user waits: `--help` of every console command, and the message for unreachable weights.

Targets (issue #18): `--help` under 2 s on a quiet 2-core machine; the weights message within 5 s when the
hub cannot be reached (no network, or HF_HUB_OFFLINE=1). Timings swing with the machine's load, so compare
two installs in one run (`--bin` twice: e.g. a checkout of main before a change and this one), round by
round, and read the ratios.

    python tools/cli_latency.py                                  # this environment's console scripts
    python tools/cli_latency.py --bin /old/.venv/bin --bin .venv/bin --rounds 3 --json latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = tuple(re.findall(r'^(promptinfo-[\w-]+) = "', (Path(__file__).parents[1] / "pyproject.toml").read_text(), re.M))
"""Every console script of the package."""
WEIGHTS_CASES = {
    "HF_HUB_OFFLINE=1": {"HF_HUB_OFFLINE": "1"},
    "no network": {},  # this machine resolves no outside host: the hub cannot be reached
}
"""Unreachable-weights cases: name -> environment added to the command's."""


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int, str]:
    """Wall seconds, exit status and output of one command."""
    start = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - start, done.returncode, done.stdout + done.stderr


def weights_command(bin_dir: Path, work: str) -> list[str]:
    """promptinfo-inspect on weights that are not in the (empty) cache: it must stop with the weights message."""
    return [str(bin_dir / "promptinfo-inspect"), "--model", "ViT-B-32", "--pretrained", "openai", "--datasets",
            "procedural", "--data-root", str(Path(work) / "data"), "--out", str(Path(work) / "out")]


def measure(bin_dir: Path, work: str) -> dict[str, float]:
    """One round: every command's --help, then each unreachable-weights case (seconds)."""
    row = {}
    for command in COMMANDS:
        seconds, status, output = timed([str(bin_dir / command), "--help"], {}, work)
        assert status == 0 and ("usage" in output.lower() or "powered by Hydra" in output), output[-2000:]
        row[f"{command} --help"] = seconds
    for case, env in WEIGHTS_CASES.items():
        cache = {"HF_HOME": str(Path(work) / "hf"), "XDG_CACHE_HOME": str(Path(work) / "xdg")}
        seconds, status, output = timed(weights_command(bin_dir, work), {**env, **cache}, work)
        assert status != 0 and "Could not fetch the ViT-B-32 weights" in output, output[-2000:]
        row[f"weights message, {case}"] = seconds
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, action="append", default=None,
                        help="folder holding the console scripts (repeat to compare installs; default: this python's)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each measures every install once, alternating")
    parser.add_argument("--json", type=Path, default=None, help="write the medians (and ratios) here")
    args = parser.parse_args(argv)
    bins = args.bin or [Path(sys.executable).parent]
    rounds: dict[str, list[dict[str, float]]] = {str(b): [] for b in bins}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.rounds):
            for b in bins:
                rounds[str(b)].append(measure(b, work))
    medians = {b: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for b, rows in rounds.items()}
    report = {"medians_s": medians}
    if len(bins) == 2:
        first, second = (rounds[str(b)] for b in bins)
        report["ratio_first_over_second"] = {k: statistics.median(a[k] / b[k] for a, b in zip(first, second))
                                             for k in first[0]}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
