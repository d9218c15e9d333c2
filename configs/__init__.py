"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`)."""

from promptinfo.engine.pseudo_store import register_pseudo_configs

register_pseudo_configs()
