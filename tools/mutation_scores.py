"""Per-module mutation scores from a finished mutmut run, as the table in docs/testing.md shows them.

Reads mutmut's result files (`mutants/promptinfo/**/*.py.meta`, written by `python -m mutmut run`) and prints
one Markdown row per mutated module and the total. Score = (killed + timed out) / (killed + timed out +
survived); "no tests" mutants are in code that no selected test reaches while mutants are switched on.

    python tools/mutation_scores.py            # after `python -m mutmut run` in the repository root
    python tools/mutation_scores.py path/to/mutants
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def module_counts(meta: Path) -> Counter:
    """Mutant statuses of one module ("killed", "survived", "no tests", "not checked", ...)."""
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return Counter(status_by_exit_code[code] for code in codes.values())


def row(name: str, counts: Counter) -> str:
    killed = counts["killed"] + counts["timeout"]
    tested = killed + counts["survived"]
    score = f"{100 * killed / tested:.1f}%" if tested else "-"
    unchecked = f" ({counts['not checked']} not checked)" if counts["not checked"] else ""
    return (f"| `{name}` | {sum(counts.values()):,} | {killed:,} | {counts['survived']:,} | {counts['no tests']:,} "
            f"| {score}{unchecked} |")


def main(root: Path) -> None:
    total = Counter()
    print("| module | mutants | killed (+ timed out) | survived | no tests | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for meta in sorted(root.glob("promptinfo/**/*.py.meta")):
        counts = module_counts(meta)
        if counts:
            total += counts
            print(row(str(meta.relative_to(root / "promptinfo"))[: -len(".meta")], counts))
    print(row("total", total).replace("`total`", "**total**"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "mutants"))
