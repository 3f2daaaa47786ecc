"""JSON a user hands us, read without letting its shape crash the reader.

Parsers recurse per nesting level: Python's `json` raises RecursionError (not ValueError) on a few thousand `[`, and
OpenTimelineIO's C++ reader overflows its stack on a few hundred thousand and kills the process (SIGSEGV), before
any `except` can run. Every place that reads JSON from a user's file (a `.otio`, a watch-folder or take sidecar, a
run record) measures its nesting first, without recursion, and refuses a file nested deeper than any real one is
with one line: `InvalidArgument`, exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from v2vz.api.errors import InvalidArgument

MAX_DEPTH = 512  # a timeline of compound clips ten deep nests about 60 levels; Python's json fails near 1000
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)  # strings (skipped whole) and brackets


def nesting_depth(text: str, stop_above: int = MAX_DEPTH) -> int:
    """The deepest nesting of `[` and `{` in `text` outside strings, counted without recursion; it stops counting
    once past `stop_above` (the answer is then `stop_above + 1`)."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    return deepest
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


def check_depth(text: str, what: str, limit: int = MAX_DEPTH) -> None:
    """InvalidArgument when `text` nests deeper than `limit` (`what` names the file in the message)."""
    if nesting_depth(text, limit) > limit:
        raise InvalidArgument(f"{what} is not valid: its JSON nests more than {limit} levels deep")


def loads(text: str, what: str, limit: int = MAX_DEPTH) -> Any:
    """`json.loads(text)` that refuses deep nesting and bad JSON with one line naming `what`."""
    check_depth(text, what, limit)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InvalidArgument(f"{what} is not valid JSON ({reason})") from None


def load_file(path: Path, what: str | None = None, limit: int = MAX_DEPTH) -> Any:
    """The JSON in the file at `path` (read as UTF-8), or InvalidArgument with one line; FileNotFoundError and
    other OSErrors pass through so the caller says what a missing file means."""
    name = what or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeError as error:
        raise InvalidArgument(f"{name} is not UTF-8 text ({error.reason})") from None
    return loads(text, name, limit)
