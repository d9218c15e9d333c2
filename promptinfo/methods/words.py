"""Learned prompts read as words: the vocabulary tokens nearest to each text-side context vector.

CoOp (Zhou et al., IJCV 2022, Sec. 4.5 "Interpretability") reads a learned context by searching the
vocabulary for the word embedding closest to each vector in Euclidean distance; we report that and the
cosine ranking. Deep text prompts (MaPLe's `compound_prompts_text`, IVLP/PromptSRC's `deep_text`) replace
hidden states of later layers rather than word embeddings, so their nearest tokens are only a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_TEXT_PROMPT = re.compile(r"^(?P<name>ctx|compound_prompts_text|deep_text)(?:\.(?P<index>\d+))?$")


@dataclass(frozen=True)
class NearestWords:
    """The nearest tokens of one context vector.

    Attributes:
        tensor: the prompt tensor's name in `method.prompt` (`ctx`, `deep_text.0`, ...).
        layer: text-encoder layer whose input the vector replaces (0: the word embeddings).
        position: the vector's position in its context.
        classname: the class of a class-specific context (CoOp `csc`), else None.
        euclidean: `(token, distance)` pairs, nearest first.
        cosine: `(token, cosine similarity)` pairs, most similar first.
    """

    tensor: str
    layer: int
    position: int
    classname: str | None
    euclidean: list[tuple[str, float]]
    cosine: list[tuple[str, float]]


def text_context_vectors(method) -> dict[str, tuple[int, torch.Tensor]]:
    """`{tensor name: (layer, vectors [n_ctx, w] or [n_classes, n_ctx, w])}` of a method's learned text prompts."""
    found = {}
    for name, value in method.prompt.state_dict().items():
        match = _TEXT_PROMPT.match(name)
        if match:
            layer = 0 if match["index"] is None else int(match["index"]) + 1
            found[name] = (layer, value.detach().float())
    return found


@torch.no_grad()
def nearest_words(method, k: int = 5) -> list[NearestWords]:
    """The `k` vocabulary tokens nearest to every learned text context vector of `method`.

    Raises:
        ValueError: the method learns no text-side context (zero-shot, VPT), or `k` < 1.
    """
    if k < 1:
        raise ValueError(f"k={k}; ask for at least one nearest token.")
    vectors = text_context_vectors(method)
    if not vectors:
        raise ValueError(f"{method.registry_name} learns no text context vectors; there are no prompts to read as words.")
    vocab, texts = method.backbone.vocabulary()
    vocab = vocab.float().to("cpu")
    rows = []
    for name, (layer, value) in vectors.items():
        per_class = value.dim() == 3
        blocks = value if per_class else value.unsqueeze(0)  # [classes or 1, n_ctx, w]
        for c, block in enumerate(blocks.cpu()):
            euclid = _top(torch.cdist(block, vocab, compute_mode="donot_use_mm_for_euclid_dist"), k, largest=False, texts=texts)  # [n_ctx, vocab]
            cosine = _top(F.normalize(block, dim=-1) @ F.normalize(vocab, dim=-1).t(), k, largest=True, texts=texts)
            classname = method.classnames[c] if per_class else None
            rows += [NearestWords(name, layer, p, classname, euclid[p], cosine[p]) for p in range(block.shape[0])]
    return rows


def _top(scores: torch.Tensor, k: int, largest: bool, texts: list[str]) -> list[list[tuple[str, float]]]:
    values, index = scores.topk(min(k, scores.shape[1]), dim=1, largest=largest)
    return [[(texts[i], float(v)) for v, i in zip(vrow.tolist(), irow.tolist())] for vrow, irow in zip(values, index)]
