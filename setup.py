"""Maps the repository's top-level folders (registry/, components/, experiments/, gin/) under
the ``lvmae`` namespace, so the installed distribution puts nothing generic into
site-packages; everything else lives in pyproject.toml."""
from pathlib import Path

from setuptools import find_packages, setup

CODE = find_packages(include=["registry", "registry.*", "components", "components.*",
                              "experiments", "experiments.*"])
#: gin files and the study definitions beside them (gin/studies/*.yaml) ship as package data.
GIN_DATA = ["*.gin", "*.yaml"]
GIN = sorted({str(p.parent).replace("/", ".") for pattern in GIN_DATA for p in Path("gin").rglob(pattern)})

setup(
    packages=[f"lvmae.{name}" for name in CODE + GIN],
    package_dir={f"lvmae.{name}": name.replace(".", "/") for name in CODE + GIN},
    package_data={"lvmae.experiments.tracking": ["*.cjs"], **{f"lvmae.{name}": GIN_DATA for name in GIN}},
)
