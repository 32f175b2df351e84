"""The one Sacred experiment. gin files and bindings are Sacred config entries; a config hook
parses them before the run starts (so a bad binding fails early with a non-zero exit) and adds
the resolved bindings to the run's config as a nested dict under ``gin``.
"""
from __future__ import annotations

import os
import tempfile

from sacred import SETTINGS, Experiment
from sacred.utils import apply_backspaces_and_linefeeds

from lvmae.experiments import program
from lvmae.experiments.engine import gin_config
from lvmae.experiments.tracking import provenance, run_name, run_tags

SETTINGS.CAPTURE_MODE = "sys"         # fd-level tee breaks progress bars and subprocesses
SETTINGS.CONFIG.READ_ONLY_CONFIG = False



def _has_git_head() -> bool:
    """Sacred records git state only when there is a commit to record (a fresh ``git init``
    or an unpacked archive has none, and Sacred would crash on it)."""
    try:
        import git
        return git.Repo(os.path.dirname(os.path.abspath(__file__)),
                        search_parent_directories=True).head.is_valid()
    except Exception:  # noqa: BLE001  (no git, no repository)
        return False


class LvmaeExperiment(Experiment):
    """Sacred's Experiment with each repository listed once in the run's experiment info, and
    its usage under the name the user typed (``lvmae`` or ``python run.py``, not a path)."""

    def get_usage(self, program_name=None):
        placeholder = "LVMAE_PROGRAM_NAME"      # Sacred quotes a name with a space in it
        short, usage, internal = super().get_usage(os.path.join(self.base_dir, placeholder))
        typed = program_name or program.name()
        return short.replace(placeholder, typed), usage.replace(placeholder, typed), internal

    def _create_run(self, *args, **kwargs):
        run = super()._create_run(*args, **kwargs)
        run_name.name_run(run)          # "pretrain · lvmae_cpu" in the run list, not "lvmae"
        return run

    def get_experiment_info(self):
        info = super().get_experiment_info()
        info["repositories"] = provenance.unique_repositories(info.get("repositories") or [])
        return info


ex = LvmaeExperiment("lvmae", save_git_info=_has_git_head())
ex.captured_out_filter = apply_backspaces_and_linefeeds   # keeps tqdm's \r frames out of runs
run_tags.install(ex)


@ex.config
def _config():
    # Sacred turns each name assigned here into a config entry and its comment into the entry's
    # doc in print_config (pyproject.toml exempts this file from ruff's unused-variable rule).
    gin_files = []        # gin files, applied in order (-g FILE)
    gin_bindings = []     # gin bindings, applied after the files (-b BINDING)


@ex.config_hook
def _parse_gin(config, command_name, logger):
    files = config.get("gin_files") or []
    bindings = config.get("gin_bindings") or []
    files = [files] if isinstance(files, str) else list(files)
    bindings = [bindings] if isinstance(bindings, str) else list(bindings)
    gin_config.parse(files, bindings)
    return {"gin": {"files": files, **gin_config.resolved_bindings()}}


@ex.pre_run_hook
def _record_environment(_run):
    """Versions, the repository (its diff when dirty) and plugin sources of a recorded run."""
    if _run.observers:
        provenance.record(_run)


def attach_operative_config(run) -> None:
    """Stores the operative gin config as the artifact ``operative_config.gin``, headed by an
    ``import`` line per plugin module so that it re-parses where the plugins are installed."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "operative_config.gin")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(provenance.plugin_imports() + gin_config.operative_config())
        run.add_artifact(path, "operative_config.gin")


