"""The OmegaConf resolvers promptinfo's configs use, registered on import (light: omegaconf only).

Imported by the configs package (hydra resolves `hydra.run.dir`, which uses them, before any task runs)
and by config validation.
"""

from omegaconf import OmegaConf

OmegaConf.register_new_resolver("pi.or", lambda value, default: default if value in (None, "") else value, replace=True)
"""`${pi.or:a,b}`: a, unless it is null or empty, else b (the run folder's experiment and label parts)."""
