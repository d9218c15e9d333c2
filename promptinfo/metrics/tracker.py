"""A streaming tracker of the information metrics and NC statistics of a classifier, for any training loop.

:class:`CollapseTracker` follows torchmetrics' shape: ``update`` per batch, ``compute`` at the end
of an epoch, ``reset`` before the next. It accumulates

* exact class moments (counts, means, within-class scatter; memory ``C*d + d*d``) for NC1-NC3 over
  every sample seen, merged batch by batch (Chan, Golub and LeVeque's pairwise update);
* a uniform random subsample of at most ``max_samples`` rows (reservoir sampling, Vitter's
  algorithm R) for the sample-level matrix entropies, MI, MIR, HDR, effective ranks and NC4. The
  reservoir draws one number per sample from a generator seeded with ``seed`` at every reset, so
  it picks the same stream positions every epoch, whatever the batch sizes.

The metrics themselves are the pure functions of :mod:`promptinfo.metrics` (Song et al., arXiv
2409.16767 and 2406.03999; Papyan, Han and Donoho 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor

from promptinfo.metrics.collapse import class_moments, collapse_statistics, collapse_values, nc4
from promptinfo.metrics.information import effective_rank, information_summary


class Reservoir:
    """A uniform sample without replacement of at most ``size`` rows of a stream (algorithm R)."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 2:
            raise ValueError(f"the reservoir needs room for at least 2 samples, got max_samples={size}")
        self.size, self.seed = int(size), int(seed)
        self.reset()

    def reset(self) -> None:
        self.seen = 0
        self.rows: Tensor | None = None  # [size, d] float64
        self.labels = torch.empty(self.size, dtype=torch.long)
        self.positions = torch.empty(self.size, dtype=torch.long)
        self._generator = torch.Generator().manual_seed(self.seed)

    def add(self, rows: Tensor, labels: Tensor) -> None:
        """Offer rows [b, d] (float64, CPU) and their labels [b] in stream order."""
        if self.rows is None:
            self.rows = rows.new_empty(self.size, rows.shape[1])
        draws = torch.rand(rows.shape[0], generator=self._generator, dtype=torch.float64)
        positions = torch.arange(self.seen, self.seen + rows.shape[0])
        slots = torch.where(positions < self.size, positions, (draws * (positions + 1)).long())
        for i in (slots < self.size).nonzero().flatten().tolist():  # in order: a later row wins a slot
            slot = int(slots[i])
            self.rows[slot], self.labels[slot], self.positions[slot] = rows[i], labels[i], positions[i]
        self.seen += rows.shape[0]

    def sample(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rows [k, d], labels [k], stream positions [k]) sorted by position; k = min(seen, size)."""
        k = min(self.seen, self.size)
        order = self.positions[:k].argsort()
        return self.rows[:k][order], self.labels[:k][order], self.positions[:k][order]


class CollapseTracker:
    """Per-epoch entropies, MI, MIR, HDR, effective ranks and NC1-NC4 of features against a linear head.

    Example::

        tracker = CollapseTracker(max_samples=1024, seed=0)
        for images, labels in loader:                      # e.g. an evaluation pass over the train set
            tracker.update(model.features(images), model.head.weight, labels, model.head.bias)
        row = tracker.compute()                            # floats, closed forms alongside
        tracker.reset()

    Args:
        max_samples: reservoir size for the sample-level metrics (memory ``max_samples * d``; their
            cost grows like ``max_samples^3`` when ``d^2 > max_samples``).
        seed: seed of the reservoir's draws (the same positions every epoch).
        center: subtract the global feature mean mu_G (over every sample seen) before the information
            metrics, as neural collapse describes centred features (Papyan et al.); the closed forms
            hold for centred features.
        center_weights: subtract the mean head row before the information metrics and NC2/NC3.
    """

    def __init__(self, max_samples: int = 1024, seed: int = 0, center: bool = True, center_weights: bool = False):
        self.center, self.center_weights = center, center_weights
        self.reservoir = Reservoir(max_samples, seed)
        self.reset()

    def reset(self) -> None:
        """Forget every sample (call at the start of each epoch)."""
        self.reservoir.reset()
        self.counts: Tensor | None = None  # [C]
        self.means: Tensor | None = None  # [C, d]
        self.scatter: Tensor | None = None  # [d, d]
        self.weights: Tensor | None = None  # [C, d], the latest head
        self.bias: Tensor | None = None

    @torch.no_grad()
    def update(self, features: Tensor, head_weights: Tensor, labels: Tensor, bias: Tensor | None = None) -> None:
        """Add a batch: features [b, d], the head's weights [C, d] (and bias [C]), labels [b] in [0, C).

        The head given last is the one :meth:`compute` uses.
        """
        _check_batch(features, head_weights, labels, bias, self.weights)
        h = features.detach().to("cpu", torch.float64)
        y = labels.detach().to("cpu", torch.long)
        self.weights = head_weights.detach().to("cpu", torch.float64).clone()
        self.bias = None if bias is None else bias.detach().to("cpu", torch.float64).clone()
        self._merge(*class_moments(h, y, self.weights.shape[0]))
        self.reservoir.add(h, y)

    def _merge(self, counts: Tensor, means: Tensor, scatter: Tensor) -> None:
        if self.counts is None:
            self.counts, self.means, self.scatter = counts, means, scatter
            return
        total = self.counts + counts
        delta = means - self.means  # [C, d]
        weight = torch.where(total > 0, self.counts * counts / total.clamp_min(1.0), 0.0)  # n_a n_b / (n_a + n_b)
        self.scatter = self.scatter + scatter + (delta * weight[:, None]).T @ delta
        self.means = self.means + delta * torch.where(total > 0, counts / total.clamp_min(1.0), 0.0)[:, None]
        self.counts = total

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        """Metrics of everything seen since the last reset, as floats.

        Returns:
            ``n_seen``, ``n_sample``; on the reservoir sample: ``entropy_features``, ``entropy_head``
            (of the labels' head rows W_y), ``entropy_joint``, ``mi``, ``mir``, ``hdr``,
            ``erank_features``, ``erank_head``, ``nc4``; on every sample: ``nc1``, ``nc2_*``, ``nc3``
            (see :func:`~promptinfo.metrics.neural_collapse`); and ``collapse_<key>`` for each closed
            form of :func:`~promptinfo.metrics.collapse_values` at this head's class count.
        """
        if self.counts is None:
            raise ValueError("CollapseTracker.compute() before any update(); add at least one batch")
        collapse = collapse_statistics(self.counts, self.means, self.scatter, self.weights, self.center_weights)
        rows, labels, _ = self.reservoir.sample()
        mu_g = (self.counts[:, None] * self.means).sum(0) / self.counts.sum()
        z = rows - mu_g if self.center else rows
        w = self.weights - self.weights.mean(0) if self.center_weights else self.weights
        info = information_summary(z, w[labels])
        out = {"n_seen": float(self.reservoir.seen), "n_sample": float(rows.shape[0])}
        out.update({
            "entropy_features": float(info["entropy_x"]), "entropy_head": float(info["entropy_y"]),
            "entropy_joint": float(info["entropy_joint"]), "mi": float(info["mi"]), "mir": float(info["mir"]),
            "hdr": float(info["hdr"]),
            "erank_features": float(effective_rank(z)), "erank_head": float(effective_rank(w[labels])),
        })
        out.update(collapse)
        out["nc4"] = nc4(rows, self.means, self.weights, self.bias)
        out.update({f"collapse_{k}": v for k, v in collapse_values(self.weights.shape[0]).items()})
        return out


def _check_batch(features: Tensor, weights: Tensor, labels: Tensor, bias: Tensor | None, previous: Tensor | None):
    if features.dim() != 2 or weights.dim() != 2 or features.shape[1] != weights.shape[1]:
        raise ValueError(
            f"features must be [b, d] and head_weights [C, d] with the same d, got {tuple(features.shape)} and "
            f"{tuple(weights.shape)}"
        )
    if previous is not None and previous.shape != weights.shape:
        raise ValueError(f"head_weights changed shape from {tuple(previous.shape)} to {tuple(weights.shape)} "
                         "within an epoch; call reset() between heads")
    if labels.shape != (features.shape[0],) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices [b={features.shape[0]}], got {tuple(labels.shape)} "
                         f"{labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= weights.shape[0]):
        raise ValueError(f"labels must lie in [0, {weights.shape[0]}) to index the head's rows")
    if bias is not None and bias.shape != (weights.shape[0],):
        raise ValueError(f"bias must have shape [C={weights.shape[0]}], got {tuple(bias.shape)}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or inf; the tracker needs finite features")

