"""Package list for setuptools (everything else is in pyproject.toml).

`configs/` stays at the repository root, as hydra projects keep it, and is installed as the package
`promptinfo_configs`; pyproject.toml alone cannot add a package whose folder has another name to the
ones `packages.find` discovers.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["promptinfo", "promptinfo.*"]) + ["promptinfo_configs"],
    package_dir={"promptinfo_configs": "configs"},
)
