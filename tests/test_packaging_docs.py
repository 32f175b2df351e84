"""The repository stands alone: every relative link in its Markdown files resolves, and no
code, gin file or document points at a file outside the repository (the paper's facts are in
docs/paper.md). Nothing outside tests/ imports from tests/."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {".venv", ".git", ".tools", "outputs", "runs", "data", "build", "node_modules", ".pytest_cache"}
# [text](target) links; images too. Targets with a scheme (https:, mailto:) are not files.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Notes that live beside the repository, never in it.
OUTSIDE_NOTES = re.compile(r"\b(?:PAPER|BENCHMARKS|STYLE|DESIGN|PERF|ECOSYSTEM)\.md\b|\.\./shared\b")


def _files(*suffixes: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0:
        paths = [ROOT / line for line in listed.stdout.splitlines()]
    else:  # not a git checkout (an unpacked source archive): walk, skipping what is not ours
        paths = [path for path in ROOT.rglob("*") if not NOT_OURS & set(path.relative_to(ROOT).parts)]
    return sorted(path for path in paths if path.suffix in suffixes and path.is_file())


def _links(markdown: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.DOTALL)   # code is not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_markdown_files_exist():
    assert {"README.md", "docs/paper.md", "docs/design.md"} <= {
        str(path.relative_to(ROOT)) for path in _files(".md")}


@pytest.mark.parametrize("markdown", _files(".md"), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(markdown):
    broken = []
    for target in _links(markdown):
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)):
            broken.append(target)
    assert not broken, f"{markdown.relative_to(ROOT)}: broken links {broken}"


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_nothing_outside_tests_imports_from_tests():
    importing = [str(path.relative_to(ROOT)) for path in _files(".py")
                 if path.relative_to(ROOT).parts[0] != "tests"
                 and re.search(r"^\s*(?:from|import)\s+tests\b", path.read_text(), flags=re.MULTILINE)]
    assert not importing, importing


def test_nothing_cites_a_file_outside_the_repository():
    citing = [f"{path.relative_to(ROOT)}:{number}"
              for path in _files(".py", ".md", ".gin", ".sh", ".toml", ".cjs")
              if path.name != Path(__file__).name
              for number, line in enumerate(path.read_text().splitlines(), start=1)
              if OUTSIDE_NOTES.search(line)]
    assert not citing, f"cite docs/paper.md or the paper instead: {citing}"


def test_every_docs_page_named_in_code_gin_or_docs_exists():
    named = re.compile(r"\bdocs/[\w./-]+?\.md\b")
    missing = sorted({f"{path.relative_to(ROOT)}: {page}"
                      for path in _files(".py", ".md", ".gin", ".sh", ".toml")
                      for page in named.findall(path.read_text()) if not (ROOT / page).is_file()})
    assert not missing, missing
