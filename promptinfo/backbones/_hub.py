"""Fail fast when pretrained weights cannot be fetched: no retry loop against an unreachable hub."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

_log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
"""How long the reachability probe (name lookup and TCP connect) may take before the host counts as unreachable."""


def weights_host(tag_cfg: dict) -> str | None:
    """The host open_clip downloads a tag's weights from: the Hugging Face hub when the tag has a hub entry
    (open_clip prefers it), else the host of its URL; None for a local file."""
    if tag_cfg.get("file"):
        return None
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname
    return urlparse(tag_cfg.get("url", "")).hostname


def reachable(host: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host`:443 opens within `timeout` seconds (the name lookup included,
    which has no timeout of its own, so the probe runs in a daemon thread)."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


@contextmanager
def offline_unless_reachable(tag_cfg: dict) -> Iterator[None]:
    """Within the block, the Hugging Face hub client reads its local cache only when the weights' host does
    not answer (or HF_HUB_OFFLINE is set): a missing file then fails at once, not after a minute of
    retries, and a cached one loads."""
    from huggingface_hub import constants

    host = weights_host(tag_cfg)
    if host is None or not tag_cfg.get("hf_hub") or constants.HF_HUB_OFFLINE or reachable(host):
        yield
        return
    _log.warning("%s is unreachable: looking for the weights in the local cache only", host)
    constants.HF_HUB_OFFLINE = True  # read at each call by the hub client (constants.is_offline_mode)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False
