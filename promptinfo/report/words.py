"""The nearest-words table of a prompt checkpoint (`promptinfo-inspect --checkpoint`)."""

from __future__ import annotations

import pandas as pd

from promptinfo.report.tables import Table


def words_table(rows, method_name: str, k: int) -> Table:
    """One row per learned text context vector: its `k` nearest tokens by Euclidean distance and by cosine.

    Args:
        rows: `promptinfo.methods.words.NearestWords` of one method.
        method_name: the method, for the title.
        k: tokens per vector shown in the Markdown/LaTeX cells (the CSV keeps every token with its score).
    """
    data = pd.DataFrame([
        {"tensor": r.tensor, "layer": r.layer, "position": r.position, "class": r.classname or "",
         "rank": rank + 1, "euclidean_token": e[0], "distance": e[1], "cosine_token": c[0], "cosine": c[1]}
        for r in rows for rank, (e, c) in enumerate(zip(r.euclidean, r.cosine))
    ])
    display = pd.DataFrame([
        {"tensor": r.tensor, "layer": r.layer, "position": r.position, "class": r.classname or "",
         "nearest (Euclidean)": ", ".join(f"{t} ({d:.2f})" for t, d in r.euclidean[:k]),
         "nearest (cosine)": ", ".join(f"{t} ({s:.2f})" for t, s in r.cosine[:k])}
        for r in rows
    ])
    caption = ("Vocabulary tokens nearest to each learned context vector, by Euclidean distance (as CoOp reads its "
               "contexts) and by cosine similarity; layer 0 vectors replace word embeddings, deeper ones replace "
               "hidden states, so their nearest words are only a hint.")
    return Table("words", f"Nearest words of the {method_name} prompt", data, display, caption, label_columns=4)
