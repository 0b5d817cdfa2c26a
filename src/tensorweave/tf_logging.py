"""``tw.logging``: TF1's ``tf.logging`` (``set_verbosity``, ``info``, ``warning``, ...), on
Python's ``logging`` under the ``tensorweave`` logger (the one the training hooks write to).
Like TF1, the default verbosity is WARN: ``tw.logging.set_verbosity(tw.logging.INFO)`` shows
the hooks' progress lines.

Example::

    tw.logging.set_verbosity(tw.logging.INFO)
    tw.logging.info("step %d, loss %.3f", step, loss)
"""

from __future__ import annotations

import logging as _logging
import sys

DEBUG, INFO, WARN, ERROR, FATAL = (_logging.DEBUG, _logging.INFO, _logging.WARN,
                                   _logging.ERROR, _logging.FATAL)
WARNING = WARN

_logger = _logging.getLogger("tensorweave")
_counts: dict = {}


def _ensure_handler():
    """One stderr handler (TF1 prints ``INFO:tensorflow:...``-style lines), added once, only
    when the application configured no logging of its own."""
    if not _logger.handlers and not _logging.getLogger().handlers:
        h = _logging.StreamHandler(sys.stderr)
        h.setFormatter(_logging.Formatter("%(levelname)s:tensorweave:%(message)s"))
        _logger.addHandler(h)


def set_verbosity(v):
    """Shows messages at level ``v`` and above (``DEBUG``, ``INFO``, ``WARN``, ``ERROR``)."""
    _ensure_handler()
    _logger.setLevel(v)


def get_verbosity():
    return _logger.getEffectiveLevel()


def log(level, msg, *args, **kwargs):
    _ensure_handler()
    _logger.log(level, msg, *args, **kwargs)


def debug(msg, *args, **kwargs):
    log(DEBUG, msg, *args, **kwargs)


def info(msg, *args, **kwargs):
    log(INFO, msg, *args, **kwargs)


def warning(msg, *args, **kwargs):
    log(WARN, msg, *args, **kwargs)


warn = warning


def error(msg, *args, **kwargs):
    log(ERROR, msg, *args, **kwargs)


def fatal(msg, *args, **kwargs):
    log(FATAL, msg, *args, **kwargs)


def vlog(level, msg, *args, **kwargs):
    log(level, msg, *args, **kwargs)


def _caller_key():
    f = sys._getframe(2)
    return f.f_code.co_filename, f.f_lineno


def log_every_n(level, msg, n, *args):
    """Logs the 1st, (n+1)th, (2n+1)th... call from this line."""
    key = _caller_key()
    count = _counts.get(key, 0)
    _counts[key] = count + 1
    if count % n == 0:
        log(level, msg, *args)


def log_first_n(level, msg, n, *args):
    """Logs the first ``n`` calls from this line."""
    key = _caller_key()
    count = _counts.get(key, 0)
    _counts[key] = count + 1
    if count < n:
        log(level, msg, *args)


def log_if(level, msg, condition, *args):
    if condition:
        log(level, msg, *args)


__all__ = ["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "set_verbosity",
           "get_verbosity", "log", "debug", "info", "warning", "warn", "error", "fatal", "vlog",
           "log_every_n", "log_first_n", "log_if"]
