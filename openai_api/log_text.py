"""Client-controlled text made safe to put in a log line.

A model name, a ``user`` field, a URL path (``%0A`` decodes to a newline) or a database error
quoting one of them could otherwise end the line and forge the next one, or send terminal
escape sequences to whoever reads the log. :func:`log_safe` gives one token that stays on its
line, whatever it is given.
"""

from __future__ import annotations

LIMIT = 200
_ELLIPSIS = "..."
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def log_safe(value: str | None, limit: int = LIMIT) -> str:
    """``value`` as one printable token of at most about ``limit`` characters.

    Control, format and separator characters (newline, NUL, ESC, U+2028, bidi overrides...)
    become ``\\n``, ``\\xNN`` or ``\\uNNNN`` escapes, and a backslash or double quote is
    escaped too, so the result reads back unambiguously. A value that is empty or contains a
    space is double-quoted, so it cannot pass for further ``key=value`` fields. Longer results
    are cut (never inside an escape) and end in ``...``. None gives ``-``.
    """
    if value is None:
        return "-"
    pieces: list[str] = []
    size = 0
    for char in value:
        piece = _escaped(char)
        if size + len(piece) > limit:
            pieces.append(_ELLIPSIS)
            break
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces)
    if not value or " " in value:
        return f'"{text}"'
    return text
