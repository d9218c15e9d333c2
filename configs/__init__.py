"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`).

Importing it registers the resolvers the configs use and the configs stored from typed dataclasses (hydra
imports it when it loads them, and resolves `hydra.run.dir` before any task runs).
"""

import promptinfo.engine.resolvers  # noqa: F401  (pi.or)
from promptinfo.engine.pseudo_store import register_pseudo_configs

register_pseudo_configs()
