"""Cross-entropy companions: CMA and information-interplay terms (pure functions).

Every loss returns UNWEIGHTED scalar terms to minimise, named; weights are a separate
``{name: weight}`` dict and :func:`weighted_sum` forms the total (the engine's objective sums with it).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from promptinfo.losses.cma import cma_loss, cma_weights
from promptinfo.losses.interplay import InformationTerms, information_terms


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_k weights[k] * terms[k]``; every term needs a weight and every weight a term."""
    if not terms:
        raise ValueError("no loss terms to sum")
    if set(terms) != set(weights):
        raise ValueError(f"loss terms {sorted(terms)} and weights {sorted(weights)} must have the same names")
    total = None
    for name, term in terms.items():
        part = weights[name] * term
        total = part if total is None else total + part
    return total


__all__ = ["InformationTerms", "cma_loss", "cma_weights", "information_terms", "weighted_sum"]
