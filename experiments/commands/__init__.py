"""The commands users type (``python run.py COMMAND``): the one Sacred experiment
(``experiment.py``) and one module per command, each registering itself with ``@ex.command``.
Commands build on the training engine (``experiments/engine``) and on tracking
(``experiments/tracking``); nothing below imports from here."""
import importlib
import pkgutil

from lvmae.experiments.commands.experiment import ex

_NOT_COMMANDS = {"experiment", "cli"}
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_COMMANDS:
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ex"]
