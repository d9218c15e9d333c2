"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`).

Importing it registers the resolvers the configs use (hydra imports it when it loads them), so a config
resolves without the engine (and torch) being loaded: hydra resolves `hydra.run.dir` before any task runs.
"""

from omegaconf import OmegaConf

OmegaConf.register_new_resolver("pi.or", lambda value, default: default if value in (None, "") else value, replace=True)
"""`${pi.or:a,b}`: a, unless it is null or empty, else b (the run folder's experiment and label parts)."""
