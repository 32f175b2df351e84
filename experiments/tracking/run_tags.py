"""Tags from the command line (``python run.py pretrain --tag ablation --tag seed-sweep`` or
``--tags=ablation,seed-sweep``) go into the run's ``meta.tags`` — and, in MongoDB, into
``omniboard.tags`` where Omniboard shows and filters them. Also filters the captured output of
every run, whatever the observer: credentials masked (``redact.py``), and bounded in size so
that the run document stays far below MongoDB's 16 MB limit."""
from __future__ import annotations

from sacred.commandline_options import cli_option

from lvmae.experiments.tracking.redact import redact_text

TAG_SEPARATOR = ","
# Captured output is stored inside the run document: keep its start and its latest part.
MAX_CAPTURED_CHARS = 2_000_000
CAPTURED_HEAD_CHARS = 200_000


def parse_tags(text: str) -> list[str]:
    tags = [tag.strip() for tag in str(text).split(TAG_SEPARATOR) if tag.strip()]
    return list(dict.fromkeys(tags))


@cli_option("-T", "--tags")
def tags_option(args, run):
    """Comma-separated tags for this run (run.py also accepts --tag TAG, repeatable)."""
    run.meta_info["tags"] = parse_tags(args)


def bounded(text: str) -> str:
    if len(text) <= MAX_CAPTURED_CHARS:
        return text
    tail = MAX_CAPTURED_CHARS - CAPTURED_HEAD_CHARS
    cut = len(text) - CAPTURED_HEAD_CHARS - tail
    return f"{text[:CAPTURED_HEAD_CHARS]}\n[... {cut} characters of output left out ...]\n{text[-tail:]}"


def _redacting(previous):
    def captured_out_filter(text: str) -> str:
        return bounded(redact_text(previous(text) if previous else text))
    captured_out_filter.redacts = True
    return captured_out_filter


def install(ex) -> None:
    """Adds the ``--tags`` option and the redacting, bounded output filter to experiment ``ex``."""
    if tags_option not in ex.additional_cli_options:
        ex.additional_cli_options.append(tags_option)
        ex.all_cli_options.append(tags_option)
    if not getattr(ex.captured_out_filter, "redacts", False):
        ex.captured_out_filter = _redacting(ex.captured_out_filter)
