#!/usr/bin/env python
"""lvmae's one entry point: ``python run.py COMMAND [-g FILE]... [-b BINDING]... [with ...]``.

Short options, repeatable and translated to Sacred config before Sacred parses the line:
  -g FILE,    --gin FILE        add a gin file        (config entry gin_files)
  -b BINDING, --bind BINDING    add a gin binding     (config entry gin_bindings)
Sacred's own heartbeat option stays available as ``--beat-interval``.
Everything else is Sacred's command line, e.g.
  python run.py pretrain -g gin/experiments/tiny_cpu.gin -b 'pretrain.steps=20'
  python run.py print_config with gin_files='["gin/experiments/tiny_cpu.gin"]'
"""
from __future__ import annotations

import ast
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

_SHORT = {"-g": "gin_files", "--gin": "gin_files", "-b": "gin_bindings", "--bind": "gin_bindings"}
# Commands that never record a run.
_UNOBSERVED = {"list", "print_config", "print_dependencies", "save_config", "print_named_configs"}


def _as_list(text: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text]
    return list(value) if isinstance(value, (list, tuple)) else [text]


def translate_argv(argv: list[str]) -> list[str]:
    """Moves -g/-b options into ``with gin_files=[...] gin_bindings=[...]``, appending to any
    lists already given after ``with``."""
    extra: dict[str, list[str]] = {"gin_files": [], "gin_bindings": []}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key = next((k for k in _SHORT if arg == k or arg.startswith(k + "=")), None)
        if key is None:
            rest.append(arg)
            i += 1
            continue
        if arg == key:
            if i + 1 >= len(argv):
                raise SystemExit(f"run.py: option {key} needs a value")
            extra[_SHORT[key]].append(argv[i + 1])
            i += 2
        else:
            extra[_SHORT[key]].append(arg.split("=", 1)[1])
            i += 1
    if not any(extra.values()):
        return rest
    if "with" not in rest:
        rest.append("with")
    start = rest.index("with") + 1
    for name, values in extra.items():
        if not values:
            continue
        given = [j for j in range(start, len(rest)) if rest[j].startswith(name + "=")]
        merged = (_as_list(rest[given[-1]].split("=", 1)[1]) if given else []) + values
        for j in reversed(given):
            del rest[j]
        rest.append(f"{name}={merged!r}")
    return rest


def main(argv: list[str]) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from experiments import ex
    from experiments.observers import default_observer

    argv = translate_argv(argv)
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    # Under torchrun only rank 0 records the run (one run, one set of metrics).
    is_main_process = int(os.environ.get("RANK", "0")) == 0
    if (command not in _UNOBSERVED and "-u" not in argv and "--unobserved" not in argv
            and is_main_process):
        ex.observers.append(default_observer())
    ex.run_commandline(argv)


if __name__ == "__main__":
    main(sys.argv)
