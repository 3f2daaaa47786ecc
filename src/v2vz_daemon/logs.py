"""The daemon's log: a line per job transition in `daemon.log` of the state folder (and on stderr with `v2vz serve`),
every message on one line whatever it quotes."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from v2vz.api.text import printable

log = logging.getLogger("v2vz.daemon")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class OneLineFormatter(logging.Formatter):
    """A log record's message on one line whatever it quotes: a source path, a prompt or a client's name with a
    newline or a terminal escape in it can neither split a line of daemon.log nor forge one. (A traceback, which
    only an unexpected error logs, still follows on lines of its own.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))


def open_log(path: Path) -> logging.Handler:
    """The daemon's rotating log file (private, like the rest of the state folder), attached to its logger."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 * 1024**2, backupCount=3, encoding="utf-8")
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    return handler
