"""promptinfo's hydra configs, installed as the package `promptinfo_configs` (`pkg://promptinfo_configs`)."""
