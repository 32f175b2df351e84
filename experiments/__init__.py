"""Sacred experiment and its commands; every module of this package is imported so that each
command file (``pretrain.py``, ``finetune.py``, ...) registers itself with ``@ex.command``."""
import importlib
import pkgutil

from experiments.experiment import ex

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ex"]
