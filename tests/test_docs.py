"""The documentation that is generated from code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from meshmsg.config import limits_table_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _between(text: str, begin: str, end: str) -> str:
    start = text.index(begin) + len(begin)
    return text[start : text.index(end, start)].strip()


def test_protocol_limits_table_matches_config() -> None:
    text = (DOCS / "protocol.md").read_text()
    table = _between(text, "<!-- limits:begin -->", "<!-- limits:end -->")
    assert table == limits_table_markdown().strip(), (
        "docs/protocol.md is stale: regenerate with `python -m meshmsg.config --update-docs`"
    )


def test_every_doc_linked_from_the_readme_exists() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for line in readme.splitlines():
        if "](docs/" in line:
            target = line.split("](", 1)[1].split(")", 1)[0].split("#", 1)[0]
            assert (DOCS.parent / target).is_file(), target
