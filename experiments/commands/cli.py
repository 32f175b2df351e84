#!/usr/bin/env python
"""lvmae's command line (``python run.py`` or the ``lvmae`` console script): ``COMMAND [-g FILE]... [-b BINDING]... [with ...]``.

``lvmae --help`` (``python run.py --help``) lists every command with one line; usage lines and
messages name the program the user typed (``program.py``). Short options, repeatable and
translated to Sacred config before Sacred parses the line:
  -g FILE,    --gin FILE        add a gin file        (config entry gin_files)
  -b BINDING, --bind BINDING    add a gin binding     (config entry gin_bindings)
  --tag TAG                     tag the run (repeatable; Sacred's --tags=a,b also works)
  --resume-run ID               resume run ID: its checkpoint folder and its database record
Sacred's own heartbeat option stays available as ``--beat-interval``.
Before Sacred records a run, the configuration goes through preflight
(``experiments/engine/preflight.py``): a bad binding, macro, path or component prints one
paragraph and exits with status 2, leaving no run behind; so does every other refused input
(an unknown command or option, ``--resume-run`` of a run that does not exist).
Tracking tools with their own options (not Sacred runs; ``--help`` on each):
  python run.py db [start|stop|status|replay FILE]   the local SecantusDB server
  python run.py board                               Omniboard on 127.0.0.1
  python run.py report --tag T --by BINDING          final metrics over seeds
  python run.py sweep COMMAND --grid B=[...] --seeds N --tag T   one run per grid point and seed
Everything else is Sacred's command line, e.g.
  python run.py pretrain -g gin/experiments/tiny_cpu.gin -b 'pretrain_loop.steps=20'
  python run.py print_config with gin_files='["gin/experiments/tiny_cpu.gin"]'
"""
from __future__ import annotations

import ast
import difflib
import os
import sys
import warnings

from lvmae.experiments import program

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

_SHORT = {"-g": "gin_files", "--gin": "gin_files", "-b": "gin_bindings", "--bind": "gin_bindings"}
# Commands that never record a run.
_UNOBSERVED = {"list", "print_config", "print_dependencies", "save_config", "print_named_configs", "help", None}
# Tracking tools: argparse programs in experiments/<name>.py, dispatched before Sacred.
_TOOLS = {"db": "lvmae.experiments.tracking.db", "board": "lvmae.experiments.tracking.board",
          "report": "lvmae.experiments.reporting.report", "plan": "lvmae.experiments.commands.plan",
          "new": "lvmae.experiments.commands.new", "sweep": "lvmae.experiments.commands.sweep",
          "resume": "lvmae.experiments.commands.resume", "export": "lvmae.experiments.commands.export",
          "study": "lvmae.experiments.reporting.study"}
_TOOL_SUMMARIES = {
    "db": "the local SecantusDB server: start | stop | status | replay FILE",
    "board": "Omniboard on 127.0.0.1 (--port)",
    "report": "final metrics of runs by --tag / --by BINDING, mean ± std over seeds",
    "plan": "frames and batch that fit a GPU's memory (-g FILE --gpu-memory 80GiB)",
    "new": "KIND NAME: write a plugin module, its gin file and a contract test (docs/plugins.md)",
    "resume": "RUN_ID: continue a stopped run with the command line it was started with",
    "export": "RUN_OR_CHECKPOINT --to DIR: transformers VideoMAE folder + lvmae safetensors + model card",
    "study": "run a study file (gin/studies/*.yaml) or report it: paired tests with 95% intervals, Holm, saturation flags, docs/results.md",
    "sweep": "one command over a grid of bindings × seeds, each member its own run (--grid, --seeds, --tag)",
}
_SACRED_COMMANDS = {
    "print_config": "prints the run's configuration (gin files, bindings, resolved gin)",
    "print_dependencies": "prints the source files and packages Sacred records",
    "save_config": "writes the configuration to a file",
    "print_named_configs": "lists Sacred named configs",
}
_OPTIONS = (
    ("-g FILE, --gin FILE", "add a gin file (repeatable; config entry gin_files)"),
    ("-b BINDING, --bind BINDING", "add a gin binding, e.g. -b 'pretrain_loop.steps=20' (repeatable)"),
    ("--tag TAG", "tag the run (repeatable; Sacred's --tags=a,b also works)"),
    ("--resume-run ID", "write into the existing run ID"),
    ("-u, --unobserved", "do not record the run"),
    ("-d, --debug", "full tracebacks (a preflight error prints one paragraph otherwise)"),
    ("-h, --help", "this list"),
)
# Commands that need no gin (their module alone is imported).
_GINLESS = {"list"}
# Commands whose output is their result: Sacred's INFO lines (Running command, Completed after)
# stay out of it (a run's log keeps them).
_RESULT_COMMANDS = {"list", "print_config", "print_dependencies", "print_named_configs", "save_config"}
_LOGLEVEL_OPTIONS = ("-l", "--loglevel")
_DEBUG_FLAGS = {"-d", "--debug"}
PREFLIGHT_STATUS = program.REFUSED_STATUS


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
                program.refuse(f"{program.name()}: option {key} needs a value")
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


def pop_tracking_options(argv: list[str]) -> tuple[list[str], list[str], int | None]:
    """Removes ``--tag TAG`` (repeatable) and ``--resume-run ID``; returns (argv, tags, run id)."""
    rest, tags, resume_run = [], [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        if name in ("--tag", "--resume-run"):
            if not inline and i + 1 >= len(argv):
                program.refuse(f"{program.name()}: option {name} needs a value")
            value = inline or argv[i + 1]
            i += 1 if inline else 2
            if name == "--tag":
                tags.append(value)
            elif not value.isdigit():
                program.refuse(f"{program.name()}: --resume-run needs a run id (an integer), got {value!r}")
            else:
                resume_run = int(value)
            continue
        rest.append(arg)
        i += 1
    if tags:
        given = [j for j, a in enumerate(rest) if a.startswith("--tags=") or a == "--tags"]
        for j in reversed(given):   # merge with --tags=a,b given directly
            if rest[j] == "--tags" and j + 1 < len(rest):
                tags = rest[j + 1].split(",") + tags
                del rest[j:j + 2]
            else:
                tags = rest[j].split("=", 1)[1].split(",") + tags
                del rest[j]
        rest.append("--tags=" + ",".join(tags))
    return rest, tags, resume_run


def _tool(name: str):
    """The tool's module alone (no command module, no torch): a tool answers in a fraction
    of a second."""
    import importlib
    return importlib.import_module(_TOOLS[name])


def help_text() -> str:
    """``--help``: every command with one line, the tools and the options, under the name the
    user typed (``lvmae`` or ``python run.py``)."""
    from lvmae.experiments.commands import command_index
    rows = [(name, info.summary) for name, info in sorted(command_index().items())]
    rows += [(name, summary) for name, summary in _SACRED_COMMANDS.items()]
    tools = [(name, summary) for name, summary in _TOOL_SUMMARIES.items()]
    width = max(len(name) for name, _ in rows + tools) + 2
    prog = program.name()
    lines = [f"usage: {prog} COMMAND [-g FILE]... [-b BINDING]... [--tag TAG]... [with KEY=VALUE ...]",
             "", "Commands (Sacred runs, recorded unless -u):"]
    lines += [f"  {name:<{width}}{summary}" for name, summary in rows]
    lines += ["", f"Tracking tools (their own options: {prog} TOOL --help):"]
    lines += [f"  {name:<{width}}{summary}" for name, summary in tools]
    lines += ["", "Options:"]
    lines += [f"  {flags:<{width + 10}}{summary}" for flags, summary in _OPTIONS]
    lines += ["", "Examples:",
              f"  {prog} pretrain -g gin/experiments/tiny_cpu.gin -b 'pretrain_loop.steps=20' --tag smoke",
              f"  {prog} print_config -g gin/experiments/tiny_cpu.gin",
              f"  {prog} report --tag smoke"]
    return "\n".join(lines)


def command_help(command: str) -> str:
    """``COMMAND --help`` / ``help COMMAND``: its usage line, its docstring and the options."""
    import importlib
    import inspect

    from lvmae.experiments.commands import command_index
    prog = program.name()
    info = command_index().get(command)
    if info is not None:
        text = inspect.getdoc(getattr(importlib.import_module(info.module), command)) or info.summary
    else:
        text = _SACRED_COMMANDS[command][0].upper() + _SACRED_COMMANDS[command][1:] + "."
    width = max(len(flags) for flags, _ in _OPTIONS) + 2
    lines = [f"usage: {prog} {command} [-g FILE]... [-b BINDING]... [--tag TAG]... [with KEY=VALUE ...]",
             "", text, "", "Options:"]
    lines += [f"  {flags:<{width}}{summary}" for flags, summary in _OPTIONS]
    lines += ["", f"Every other command: {prog} --help"]
    return "\n".join(lines)


def _sacred_updates(argv: list[str]) -> dict:
    """The config updates of a translated command line's ``with`` part."""
    from sacred.arg_parser import get_config_updates
    if "with" not in argv:
        return {}
    updates, _ = get_config_updates(argv[argv.index("with") + 1:])
    return updates


# The Sacred config entries a command line may set after ``with`` (experiment.py's config).
_CONFIG_ENTRIES = ("gin_files", "gin_bindings", "seed")


def _strings(value) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def check_updates(ex, argv: list[str], command: str) -> None:
    """The ``with`` part sets only known config entries, with values of their types; anything
    else is refused in one paragraph before Sacred (which would print a traceback). The line is
    split as Sacred splits it (its docopt usage), so options after ``with`` stay options."""
    from docopt import docopt
    from sacred.arg_parser import get_config_updates
    if "with" not in argv:
        return
    prog = f"{program.name()} {command}"
    try:
        words = docopt(ex.get_usage()[2], [str(a) for a in argv[1:]], default_help=False)["UPDATE"]
    except SystemExit:          # docopt's way of saying the line does not match the usage
        program.refuse(f"{prog}: cannot read the command line (an unknown option?); "
                       f"{prog} --help lists the options.")
    try:
        updates, named = get_config_updates(words)
    except Exception as error:  # noqa: BLE001  (Sacred's parser raises several types)
        program.refuse(f"{prog}: cannot read the `with` part: {error}")
    entries = ", ".join(_CONFIG_ENTRIES)
    if named:
        program.refuse(f"{prog}: with {' '.join(named)}: there are no named configs; `with` takes KEY=VALUE "
                       f"for {entries}.")
    for key, value in updates.items():
        if key not in _CONFIG_ENTRIES:
            close = difflib.get_close_matches(key, _CONFIG_ENTRIES, n=1)
            program.refuse(f"{prog}: with {key}=...: unknown config entry {key!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else "")
                           + f"; `with` sets {entries}; gin parameters go in -b BINDING.")
        if key == "seed" and (not isinstance(value, int) or isinstance(value, bool)):
            program.refuse(f"{prog}: with seed={value!r}: the seed must be an integer.")
        if key != "seed" and not _strings(value):
            program.refuse(f"{prog}: with {key}={value!r}: {key} must be a string or a list of strings.")


def _sacred_config(argv: list[str]) -> tuple[list[str], list[str]]:
    """gin_files and gin_bindings of a translated command line's ``with`` part."""
    updates = _sacred_updates(argv)
    listed = lambda value: [value] if isinstance(value, str) else list(value or [])
    return listed(updates.get("gin_files")), listed(updates.get("gin_bindings"))


def _resume_request(command: str, argv: list[str], resume_run: int | None):
    """``--resume-run``'s run, the command line's seed and the command's stage folder (its
    module's ``STAGE``; None for a command that keeps no checkpoint)."""
    import importlib

    from lvmae.experiments.commands import command_index
    from lvmae.experiments.engine.preflight import ResumeRequest
    stage = getattr(importlib.import_module(command_index()[command].module), "STAGE", None)
    if resume_run is None or stage is None:
        return None
    seed = _sacred_updates(argv).get("seed")
    return ResumeRequest(resume_run, None if seed is None else int(seed), stage)


def run_preflight(command: str, argv: list[str], resume_run: int | None = None) -> None:
    """Checks the configuration before Sacred records a run (and, with ``--resume-run``, that
    the run's checkpoint accepts it); on a problem prints one paragraph and exits with status 2
    (the traceback only with -d/--debug)."""
    from lvmae.experiments.commands import command_index
    from lvmae.experiments.engine.gin_config import GinConfigError
    from lvmae.experiments.engine.preflight import PreflightError, preflight
    files, bindings = _sacred_config(argv)
    try:
        preflight(command, files, bindings, module=command_index()[command].module,
                  resume=_resume_request(command, argv, resume_run))
    except (PreflightError, GinConfigError) as error:
        if _DEBUG_FLAGS.intersection(argv):
            raise
        program.refuse(f"{program.name()} {command}: {error}\nNothing was recorded (-d/--debug shows the traceback).")


def _known_commands() -> list[str]:
    from lvmae.experiments.commands import command_index
    return sorted([*command_index(), *_SACRED_COMMANDS, *_TOOLS, "help"])


def _command_of(argv: list[str]) -> str | None:
    """The command of a translated command line: the first known word before ``with`` (a value
    of a Sacred option such as ``-l LEVEL`` may come first), else the first word."""
    words = [a for a in argv[1:argv.index("with") if "with" in argv else len(argv)] if not a.startswith("-")]
    known = _known_commands()
    return next((word for word in words if word in known), words[0] if words else
                ("with" if "with" in argv else None))


def check_command(command: str | None) -> None:
    """An unknown (or missing) command is refused with the closest names, before Sacred."""
    known = _known_commands()
    if command in known:
        return
    prog = program.name()
    if command in (None, "with"):
        program.refuse(f"{prog}: name a command first, e.g. {prog} pretrain -g FILE; {prog} --help lists them.")
    close = difflib.get_close_matches(command, known, n=3)
    program.refuse(f"{prog}: unknown command {command!r}." + (f" Did you mean: {', '.join(close)}?" if close else "")
                   + f" {prog} --help lists them.")


def check_resume_run(command: str, resume_run: int) -> str | None:
    """``--resume-run N`` continues a run that exists in the store runs are recorded in;
    any other N is refused before anything is built or recorded. Returns the run folder the
    run recorded (None when it recorded none)."""
    from lvmae.experiments.commands.resume import RunNotFound, stored_run
    try:
        run = stored_run(resume_run)
    except RunNotFound as error:
        program.refuse(f"{program.name()} {command}: --resume-run {resume_run}: cannot resume run {resume_run}: "
                       f"{error}. Nothing was recorded.")
    return (run.get("info") or {}).get("run_folder")


def _quiet_sacred(argv: list[str], command: str) -> list[str]:
    """``argv`` with Sacred's log level at WARNING for a command that prints a result, unless
    the command line sets one."""
    if command not in _RESULT_COMMANDS or any(a.split("=")[0] in _LOGLEVEL_OPTIONS for a in argv):
        return argv
    at = argv.index(command) + 1
    return [*argv[:at], "--loglevel=WARNING", *argv[at:]]


def main(argv: list[str]) -> None:
    program.remember(argv[0])
    if len(argv) > 1 and argv[1] in _TOOLS:
        raise SystemExit(_tool(argv[1]).main(argv[2:]))
    if len(argv) == 1 or argv[1] in ("-h", "--help", "help"):
        if len(argv) > 2 and argv[1] == "help" and not argv[2].startswith("-"):
            check_command(argv[2])
            print(command_help(argv[2]) if argv[2] not in _TOOLS else help_text())
        else:
            print(help_text())
        return
    from lvmae.experiments import commands

    argv, _, resume_run = pop_tracking_options(translate_argv(argv))
    command = _command_of(argv)
    asks_help = any(a in ("-h", "--help") for a in argv[1:])
    check_command(command)
    if asks_help:
        print(command_help(command))
        return
    recorded = (command not in _UNOBSERVED and "-u" not in argv and "--unobserved" not in argv
                and int(os.environ.get("RANK", "0")) == 0)
    folder = check_resume_run(command, resume_run) if resume_run is not None and recorded else None
    if resume_run is not None:      # the engine continues that run's folder (and only then)
        from lvmae.experiments.engine.run_folder import request_resume
        request_resume(resume_run, folder)
    # Only `list` runs without gin: every other command parses gin files, which bind the
    # configurables of all commands, so all command modules are registered.
    ex = commands.load(command) if command in _GINLESS else commands.load_all()
    check_updates(ex, argv, command)
    from lvmae.experiments.tracking.observers import default_observer

    if command in commands.command_index() and command not in _GINLESS and not asks_help:
        run_preflight(command, argv, resume_run)
    if recorded:     # under torchrun only rank 0 records the run (one run, one set of metrics)
        ex.observers.append(default_observer(resume_run=resume_run))
    ex.run_commandline(_quiet_sacred(argv, command))


def console_main() -> None:
    """The ``lvmae`` console script: the same as ``python run.py`` (messages say ``lvmae``)."""
    main(["lvmae"] + sys.argv[1:])


if __name__ == "__main__":
    main(sys.argv)
