"""Write report tables as CSV (numbers), Markdown and LaTeX (formatted view)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from promptinfo.io import atomic_path
from promptinfo.report.tables import Table

FORMATS = {"csv": "csv", "md": "md", "tex": "tex"}
"""Accepted format names and the file extension each writes."""

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def parse_formats(text: str) -> list[str]:
    """``"csv,md"`` -> ``["csv", "md"]``; raises on an unknown name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown output format(s) {unknown or text!r}; choose a comma-separated subset of {list(FORMATS)}")
    return list(dict.fromkeys(names))


def to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: heading, pipe table (labels left, numbers right), italic caption."""
    header = [str(c) for c in table.display.columns]
    align = [":---" if i < table.label_columns else "---:" for i in range(len(header))]
    lines = [f"### {table.title}", "", _md_row(header), _md_row(align)]
    lines += [_md_row(str(v) for v in row) for row in table.display.itertuples(index=False)]
    return "\n".join([*lines, "", f"*{table.caption}*", ""])


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters; ``±`` becomes ``$\\pm$``."""
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$")


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    columns = [str(c) for c in table.display.columns]
    spec = "l" * table.label_columns + "r" * (len(columns) - table.label_columns)
    body = []
    for index, row in enumerate(table.display.itertuples(index=False)):
        if index == table.summary_start:
            body.append(r"    \midrule")
        body.append("    " + " & ".join(latex_escape(str(v)) for v in row) + r" \\")
    return "\n".join([
        "% requires \\usepackage{booktabs}",
        r"\begin{table}[t]",
        r"  \centering",
        rf"  \caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        rf"  \label{{tab:{table.name}}}",
        rf"  \begin{{tabular}}{{{spec}}}",
        r"    \toprule",
        "    " + " & ".join(latex_escape(c) for c in columns) + r" \\",
        r"    \midrule",
        *body,
        r"    \bottomrule",
        r"  \end{tabular}",
        r"\end{table}",
        "",
    ])


def write_table(table: Table, out_dir: str | os.PathLike, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write ``<out_dir>/<table.name>.<ext>`` for each format, atomically; returns the paths."""
    paths = []
    for fmt in parse_formats(",".join(formats)):
        path = Path(out_dir) / f"{table.name}.{FORMATS[fmt]}"
        with atomic_path(path) as tmp:
            if fmt == "csv":
                table.data.to_csv(tmp, index=False)
            else:
                tmp.write_text(to_markdown(table) if fmt == "md" else to_latex(table))
        paths.append(path)
    return paths
