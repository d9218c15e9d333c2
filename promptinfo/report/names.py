"""How tables and figures name methods and metrics: the papers' spelling, in a fixed order."""

from __future__ import annotations

import re

import pandas as pd

METHOD_NAMES = {
    "zeroshot": "zero-shot", "coop": "CoOp", "cocoop": "CoCoOp", "kgcoop": "KgCoOp", "prograd": "ProGrad",
    "ivlp": "IVLP", "vpt": "VPT", "maple": "MaPLe", "promptsrc": "PromptSRC",
    "cma": "CMA", "interplay": "info terms",
}
"""Registry key (method, or loss in a label such as ``coop+cma``) -> its name in the papers. Tables list
methods in this order (zero-shot first, then by publication), a label after the method it extends."""

METRIC_NAMES = {
    "accuracy": "zero-shot accuracy (%)", "entropy_image": "H(Z): image features (nats)",
    "entropy_text": "H(W_y): label text weights (nats)", "entropy_classifier": "H(W): classifier weights (nats)",
    "mi": "MI(Z; W_y) (nats)", "mir": "MIR(Z; W_y)", "hdr": "HDR(Z; W_y)", "nc1": "NC1: within-class variability",
}
"""Column of an inspection frame -> its short name on a figure (``report.zeroshot_inspection.METRIC_DESCRIPTIONS``
says what each is)."""


def method_display_name(label: str) -> str:
    """``coop+cma`` -> ``CoOp + CMA``: each ``+``-joined part by its paper name; unknown parts as written."""
    return " + ".join(METHOD_NAMES.get(part, part) for part in re.split(r"\s*\+\s*", str(label)))


def method_order(labels: pd.Series) -> pd.Series:
    """A sort key (for ``sort_values(key=...)``): known methods in ``METHOD_NAMES`` order, then the rest by name."""
    ranks = {name: i for i, name in enumerate(METHOD_NAMES)}

    def key(label) -> str:
        first = re.split(r"\s*\+\s*", str(label))[0]
        return f"{ranks.get(first, len(ranks)):03d} {label}"

    return labels.map(key)
