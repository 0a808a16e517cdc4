"""Docs, code and tests describe the software, not the history of its making.

A reader cannot follow "session 9", "the seventh run" or "issue #13": numbered work
periods and ticket tags stand in for a reason or a description. (Another project's
issue, named as such, is a source, not a tag: "the DiffIR repository's issue #11".)
"""

from __future__ import annotations

import re

import pytest

from helpers import REPO

FILES = sorted(
    [
        REPO / "README.md",
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "src").rglob("*.py"),
        *(REPO / "tests").glob("*.py"),
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "examples").glob("*.py"),
    ]
)
DIARY = [
    re.compile(r"\bsessions? \d|\bsession-\d", re.I),
    re.compile(r"(?<!repository's )(?<!repository's issues )\bissues? #\d+", re.I),
    re.compile(r"\b(fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth) run\b", re.I),
    re.compile(r"\bnew this session\b|\bthis session\b", re.I),
]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_no_development_diary(path):
    if path.name == "test_docs_no_diary.py":
        return
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for pattern in DIARY
        if pattern.search(line)
    ]
    assert not hits, "\n".join(hits)
