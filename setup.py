"""Maps the repository's top-level folders (registry/, components/, experiments/, gin/) under
the ``lvmae`` namespace, so the installed distribution puts nothing generic into
site-packages; everything else lives in pyproject.toml."""
from pathlib import Path

from setuptools import find_packages, setup

CODE = find_packages(include=["registry", "registry.*", "components", "components.*",
                              "experiments", "experiments.*"])
GIN = sorted({str(p.parent).replace("/", ".") for p in Path("gin").rglob("*.gin")})

setup(
    packages=[f"lvmae.{name}" for name in CODE + GIN],
    package_dir={f"lvmae.{name}": name.replace(".", "/") for name in CODE + GIN},
    package_data={"lvmae.experiments.tracking": ["*.cjs"], **{f"lvmae.{name}": ["*.gin"] for name in GIN}},
)
