"""Information-theoretic and classification metrics as pure functions.

Matrix entropy, mutual information, MIR, HDR and effective rank
(:mod:`~promptinfo.metrics.information`), their full-test-set variants
(:mod:`~promptinfo.metrics.inspection`), neural-collapse statistics
(:mod:`~promptinfo.metrics.collapse`), a streaming tracker of all of them for any training loop
(:mod:`~promptinfo.metrics.tracker`) and accuracy / harmonic mean
(:mod:`~promptinfo.metrics.classification`).
"""

from promptinfo.metrics.classification import AccuracyCount, accuracy, harmonic_mean
from promptinfo.metrics.collapse import collapse_values, neural_collapse
from promptinfo.metrics.information import (
    effective_rank,
    gram,
    hdr,
    information_summary,
    label_weights,
    matrix_entropy,
    mir,
    mutual_information,
)
from promptinfo.metrics.inspection import (
    class_information,
    class_means,
    sampled_information,
)
from promptinfo.metrics.tracker import CollapseTracker

__all__ = [
    "AccuracyCount",
    "CollapseTracker",
    "accuracy",
    "class_information",
    "class_means",
    "collapse_values",
    "effective_rank",
    "gram",
    "harmonic_mean",
    "hdr",
    "information_summary", "label_weights",
    "matrix_entropy",
    "mir",
    "mutual_information",
    "neural_collapse",
    "sampled_information",
]
