"""JSON-lines log records (``LOG_FORMAT=json``), one object per line for log shippers.

``json.dumps`` escapes the C0 control characters (newline, NUL, ESC...) but, with
``ensure_ascii=False``, leaves every other unprintable character as it is: DEL, the C1
controls (U+0085 NEL, U+009B CSI), the Unicode line and paragraph separators, bidi overrides,
lone surrogates. Readers that split lines on them and terminals that obey them would see a
client's text break out of its record, and a lone surrogate cannot be written out at all.
Those are escaped too, so one record is always exactly one printable line of valid JSON,
while printable non-ASCII text stays readable.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


def _printable_json(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, process (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _printable_json(json.dumps(entry, ensure_ascii=False))
