"""User-given text made safe to show on one line: the CLI's output and the daemon's log both go through it, so a
prompt or a path can never split a line, forge one, move the cursor or reverse the text around it."""

from __future__ import annotations

import unicodedata

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """`text` with its control characters written as escapes (`\\n`, `\\x1b`, `\\u202e`), everything else as it is."""
    text = str(text)
    if text.isprintable():
        return text
    pieces = []
    for char in text:
        if char in _NAMED_ESCAPES:
            pieces.append(_NAMED_ESCAPES[char])
        elif char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            code = ord(char)
            pieces.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            pieces.append(char)
    return "".join(pieces)
