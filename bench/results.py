"""bench/RESULTS.md, section by section: every benchmark writes its own ``## Title`` section in place (or
appends it), leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def _bounds(text: str, title: str) -> tuple[int, int]:
    """Where the section ``## title`` starts and ends in ``text`` ((-1, -1) when absent)."""
    start = text.find(f"## {title}")
    if start < 0:
        return -1, -1
    end = text.find("\n## ", start + 5)
    return start, end if end >= 0 else len(text)


def current_section(title: str) -> str:
    """The section ``## title`` as it stands ("" when there is none)."""
    text = RESULTS.read_text() if RESULTS.is_file() else ""
    start, end = _bounds(text, title)
    return text[start:end] if start >= 0 else ""


def replace_section(lines: list[str]) -> None:
    """Write a section (``lines[0]`` is its ``## Title``) in place of the old one, or at the end of the file."""
    title = lines[0].removeprefix("## ").strip()
    text = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    section = "\n".join(lines).rstrip() + "\n"
    start, end = _bounds(text, title)
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        rest = text[end:]
        text = text[:start] + section + (rest if rest.startswith("\n") or not rest else "\n" + rest)
    RESULTS.write_text(text)
