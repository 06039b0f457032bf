"""Markdown text from untrusted strings (file names, error messages, dataset ids), for cards and tables.

Lives on the lowest floor so that ``mimcl_hub.data`` (dataset cards) and ``mimcl_hub.hub`` (model cards, the
leaderboard) can share it."""

from __future__ import annotations

from typing import Any

__all__ = ["md_cell", "md_code"]


def md_cell(text: Any) -> str:
    """``text`` for one markdown table cell or list line of a card or leaderboard: ``\\`` and ``|`` escaped, every
    line break (``\\n``, ``\\r``, Unicode line separators) a space, so a hostile name (a dataset id from a card,
    a folder name) can neither end its cell nor start a row."""
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").splitlines())


def md_code(text: Any) -> str:
    """``text`` as inline code on one line: fenced by one more backtick than the longest run of backticks inside
    it (CommonMark), so a name holding backticks cannot end the span early. For text outside tables (in a table
    cell use :func:`md_cell`)."""
    text = " ".join(str(text).splitlines())
    run = longest = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
