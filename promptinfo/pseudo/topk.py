"""Class-balanced top-K pseudo-labels refreshed every few epochs (Menghini et al., NeurIPS 2023).

"Enhancing CLIP with CLIP" (BatsResearch/menghini-neurips23-code): each class keeps a leaderboard
of the K unlabelled images it is most confident about, an image going to its predicted class or,
when that board is full, to its next most probable class with room (`utils/clip_pseudolabels.py`,
`compute_pseudo_labels`). The first pool comes from zero-shot CLIP. Their strategies:
- FPL: K = 16 (`N_PSEUDOSHOTS` in `methods_config/textual_fpl_config.yml`), labels fixed;
- IFPL: K = 16, the pool rebuilt from the current model's predictions every round;
- GRIP: K grows each round by |U| / (rounds * classes) until the pool covers the unlabelled set
  (`STEP_QUANTILE: 10`, i.e. 10 rounds; `methods/*/pseudo_iterative.py`).
They retrain the prompts in every round; here one run continues through the rounds (its epochs
split evenly among them), and the pseudo-labelled images join each step as an unlabelled batch of
`mu * batch_size` images rather than one concatenated training set.

Their loss weighs the two sets so that the few labelled images outweigh the pseudo-labelled pool P
|P| / |L| times as a set: gamma * CE(L) + CE(P) with gamma = |P| / |L| in semi-supervised FPL
(`methods/semi_supervised_learning/textual_fpl.py`, `create_training_dataset`, `define_loss_function`),
CE(L) + (|L| / |P|) CE(P) in transductive zero-shot (`methods/transductive_zsl/textual_fpl.py`). Their
semi-supervised rounds of IFPL and GRIP set gamma = |L| / |P| (`update_training_set` in
`methods/semi_supervised_learning/training_strategies.py`: the transductive code's line, there paired
with a loss that scales CE(P)), which inverts the ratio; we keep the ratio of their FPL and
transductive code in every preset. `balance` applies it with the labelled term at weight 1, the
labelled-only run's gradient: the pseudo-label term weighs `weight * |L| / |P|`, recomputed whenever
the pool changes. (With K >= 10 they also hold a fifth of the pool out for validation; we train on
all of it.)
"""

from __future__ import annotations

import math

import torch

from promptinfo.pseudo.base import PseudoLabeler
from promptinfo.pseudo.configs import TopKConfig
from promptinfo.pseudo.registry import register_strategy

@register_strategy("topk")
class TopK(PseudoLabeler):
    Config = TopKConfig
    online = False
    uses_strong_view = False

    def __init__(self, config, n: int, candidates: torch.Tensor) -> None:
        super().__init__(config, n, candidates)
        self.labels = torch.full((n,), -1, dtype=torch.long)  # -1: not in the pool

    def round_length(self, epochs: int) -> int:
        """Epochs per round (at least 1)."""
        return max(1, math.ceil(epochs / self.config.rounds))

    def refresh_source(self, epoch: int, epochs: int) -> str | None:
        if epoch == 0:
            return "zeroshot"
        if epoch % self.round_length(epochs) == 0:
            return self.config.source
        return None

    def per_class_now(self, round_: int) -> int:
        """K of round `round_` (0-based), capped so that K * classes never exceeds the unlabelled set."""
        k = self.candidates.numel()
        cap = self.n // k
        if self.config.grow:
            return min(cap, max(1, (round_ + 1) * self.n // (self.config.rounds * k)))
        return min(cap, self.config.per_class)

    def refresh(self, probs: torch.Tensor, epoch: int, epochs: int) -> None:
        probs = probs.detach().cpu()[:, self.candidates]  # [n, k]
        per_class = self.per_class_now(epoch // self.round_length(epochs))
        assigned = balanced_top_k(probs, per_class)  # [n], -1 or a position among the candidates
        self.labels = torch.where(assigned >= 0, self.candidates[assigned.clamp_min(0)], -1)

    def pool(self) -> torch.Tensor:
        return (self.labels >= 0).nonzero().squeeze(1)

    def pseudo_weight(self, labelled: int) -> float:
        pool = self.pool().numel()
        if not self.config.balance or labelled == 0 or pool == 0:
            return self.config.weight
        return self.config.weight * labelled / pool

    def label(self, probs: torch.Tensor | None, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pseudo = self.labels[index.cpu()]
        return pseudo.clamp_min(0), pseudo >= 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"labels": self.labels}


def balanced_top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Assign at most `k` images to each class by confidence; returns each image's class `[n]` or -1.

    Each round, every unassigned image bids for the most probable class that still has room; each
    class accepts its most confident bidders up to its remaining room. An image turned away bids for
    its next class in the following round (the leaderboards of Menghini et al., computed in batches).
    """
    n, c = probs.shape
    assigned = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((c,), k, dtype=torch.long)
    while bool((room > 0).any()) and bool((assigned < 0).any()):
        open_scores = probs.masked_fill(room == 0, float("-inf")).masked_fill((assigned >= 0)[:, None], float("-inf"))
        score, bid = open_scores.max(dim=1)  # [n]
        bidding = torch.isfinite(score)
        if not bool(bidding.any()):
            break
        order = torch.argsort(score.masked_fill(~bidding, float("-inf")), descending=True, stable=True)
        order = order[bidding[order]]
        rank = _rank_within_class(bid[order], c)  # position of each bidder in its class's queue
        accepted = order[rank < room[bid[order]]]
        assigned[accepted] = bid[accepted]
        room -= torch.bincount(bid[accepted], minlength=c)
    return assigned


def _rank_within_class(classes: torch.Tensor, c: int) -> torch.Tensor:
    """For a sequence of class ids, each entry's count of earlier entries with the same class."""
    onehot = torch.nn.functional.one_hot(classes, c)  # [m, c]
    return (onehot.cumsum(dim=0) - onehot).gather(1, classes[:, None]).squeeze(1)
