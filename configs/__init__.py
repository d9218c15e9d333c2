"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`).

The YAML files hold only what differs from the typed defaults; importing this package (hydra does, before
composing) stores those defaults, every method, pseudo-labelling strategy and benchmark in hydra's ConfigStore.
"""

from promptinfo.engine.config_store import register_configs

register_configs()
