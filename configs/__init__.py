"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`).

Importing it registers the resolvers the configs use and the configs stored from typed dataclasses (hydra
imports it when it loads them): hydra resolves `hydra.run.dir` before any task runs.
"""

from omegaconf import OmegaConf

OmegaConf.register_new_resolver("pi.or", lambda value, default: default if value in (None, "") else value, replace=True)
"""`${pi.or:a,b}`: a, unless it is null or empty, else b (the run folder's experiment and label parts)."""

from promptinfo.engine.pseudo_store import register_pseudo_configs  # noqa: E402  (after the resolver it may need)

register_pseudo_configs()
