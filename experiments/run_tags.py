"""Tags from the command line (``python run.py pretrain --tag ablation --tag seed-sweep`` or
``--tags=ablation,seed-sweep``) go into the run's ``meta.tags`` — and, in MongoDB, into
``omniboard.tags`` where Omniboard shows and filters them. Also masks credentials in the
captured output of every run, whatever the observer (``redact.py``)."""
from __future__ import annotations

from sacred.commandline_options import cli_option

from experiments.experiment import ex
from experiments.redact import redact_text

TAG_SEPARATOR = ","


def parse_tags(text: str) -> list[str]:
    tags = [tag.strip() for tag in str(text).split(TAG_SEPARATOR) if tag.strip()]
    return list(dict.fromkeys(tags))


@cli_option("-T", "--tags")
def tags_option(args, run):
    """Comma-separated tags for this run (run.py also accepts --tag TAG, repeatable)."""
    run.meta_info["tags"] = parse_tags(args)


def _redacting(previous):
    def captured_out_filter(text: str) -> str:
        return redact_text(previous(text) if previous else text)
    captured_out_filter.redacts = True
    return captured_out_filter


if tags_option not in ex.additional_cli_options:
    ex.additional_cli_options.append(tags_option)
    ex.all_cli_options.append(tags_option)
if not getattr(ex.captured_out_filter, "redacts", False):
    ex.captured_out_filter = _redacting(ex.captured_out_filter)
