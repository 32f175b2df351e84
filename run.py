#!/usr/bin/env python
"""``python run.py COMMAND ...`` from a checkout: the same as the ``lvmae`` console script
(``lvmae --help`` lists the commands). Works before installation too: the repository's
folders are then mapped under the ``lvmae`` namespace here."""
import importlib.util
import os
import sys
import types

if importlib.util.find_spec("lvmae") is None:   # a plain checkout, nothing installed
    _package = types.ModuleType("lvmae")
    _package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules["lvmae"] = _package

from lvmae.experiments.commands.cli import main

if __name__ == "__main__":
    main(sys.argv)
