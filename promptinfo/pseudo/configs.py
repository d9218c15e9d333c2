"""The options of every built-in pseudo-labelling strategy: one `Config` dataclass each, with its defaults.

Apart from the strategies (which import torch), as the methods' are (`promptinfo.methods.configs`): hydra
offers `pseudo=<key>` and composes its options without loading torch. Each strategy's module imports its
`Config` from here (`from promptinfo.pseudo.fixmatch import FixMatchConfig` keeps working) and registers its
class under the same key; each module's docstring describes the strategy and its sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptinfo.pseudo.registry import strategy_config

SOURCES = ("zeroshot", "model")
"""Where the top-K pool is rebuilt from after its first round (`TopKConfig.source`)."""


@dataclass
class StrategyConfig:
    """Options every strategy has; the defaults are FixMatch's (lambda_u = 1, mu = 7 in google-research/fixmatch
    `fixmatch.py`'s flags).

    Attributes:
        weight: weight of the cross-entropy on pseudo-labelled images (FixMatch's lambda_u).
        mu: unlabelled images per labelled image in a step (FixMatch's mu); the unlabelled batch
            holds `mu * trainer.batch_size` images.
    """

    weight: float = 1.0
    mu: int = 7

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"pseudo.weight={self.weight}; the pseudo-label loss weight must be non-negative.")
        if self.mu < 1:
            raise ValueError(f"pseudo.mu={self.mu}; give at least 1 unlabelled image per labelled one.")


@dataclass
class StrongViewConfig(StrategyConfig):
    """Options of strategies that train on a strongly augmented view.

    Attributes:
        randaugment_ops, randaugment_magnitude: torchvision RandAugment's `num_ops` and `magnitude`
            (FixMatch's RandAugment applies 2 random operations), after the training crop and flip.
    """

    randaugment_ops: int = 2
    randaugment_magnitude: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 30:
            raise ValueError(f"pseudo.randaugment_ops={self.randaugment_ops} and pseudo.randaugment_magnitude="
                             f"{self.randaugment_magnitude}; use ops >= 0 and a magnitude in [0, 30].")


@strategy_config("fixmatch")
@dataclass
class FixMatchConfig(StrongViewConfig):
    """Attributes:
        threshold: confidence a weak-view prediction needs to become a pseudo-label (tau; 0.95 in
            google-research/fixmatch `fixmatch.py`'s flags).
    """

    threshold: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"pseudo.threshold={self.threshold}; a confidence threshold lies in (0, 1].")


@strategy_config("freematch")
@dataclass
class FreeMatchConfig(StrongViewConfig):
    """Attributes:
        ema: momentum lambda of both moving averages (0.999 in FreeMatch).
    """

    ema: float = 0.999

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"pseudo.ema={self.ema}; a moving-average momentum lies in [0, 1).")


@strategy_config("topk")
@dataclass
class TopKConfig(StrategyConfig):
    """Attributes:
        per_class: K, pseudo-labels per class in every round (without `grow`); 16 as `N_PSEUDOSHOTS` in
            Menghini et al.'s `methods_config/textual_fpl_config.yml`.
        rounds: the run's epochs split into this many rounds, the pool rebuilt at the start of each
            (1: labelled once, before the first epoch: FPL; 10 in IFPL and GRIP).
        grow: K of round r (0-based) is `(r + 1) * n / (rounds * classes)`, so the last round labels the
            whole unlabelled set (GRIP); otherwise K = `per_class` in every round.
        source: predictions the pool is rebuilt from after the first round: the current model's
            ("model", IFPL and GRIP) or zero-shot CLIP's ("zeroshot"). The first round always uses
            zero-shot CLIP.
        balance: weigh the pseudo-label term `weight * |L| / |P|` (L: labelled images, P: the pool), so
            that the labelled set outweighs the pool |P| / |L| times, as in FPL (see `topk.py`); otherwise
            `weight`. Runs without labelled images use `weight`.
    """

    per_class: int = 16
    rounds: int = 1
    grow: bool = False
    source: str = "model"
    balance: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source not in SOURCES:
            raise ValueError(f"pseudo.source={self.source!r}; valid choices: {', '.join(SOURCES)}.")
        if self.per_class < 1 or self.rounds < 1:
            raise ValueError(f"pseudo.per_class={self.per_class} and pseudo.rounds={self.rounds}; both must be >= 1.")
