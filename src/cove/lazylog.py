"""Loggers that import ``logging`` when something is first logged.

``import logging`` costs ~3-4 ms of every start (it imports traceback,
linecache, tokenize, textwrap, string), and a run that goes well logs
nothing: ``cove restore`` imports it only if a message is logged.

    log = getLogger("cove.kernel")   # instead of logging.getLogger(...)
    log.warning("...")               # the real logger from here on

``configure`` is ``logging.basicConfig``, applied now if logging is imported
already, else just before the first message of a logger from here.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

_pending: dict[str, Any] | None = None


def configure(*, now: bool = False, **kwargs: Any) -> None:
    """``logging.basicConfig(**kwargs)``, now (if logging is imported already,
    or ``now``) or else before the first message of a logger from here."""
    global _pending
    logging = sys.modules.get("logging")
    if logging is None and now:
        import logging
    if logging is not None:
        _pending = None
        logging.basicConfig(**kwargs)
    else:
        _pending = kwargs


def _logging() -> Any:
    global _pending
    import logging

    if _pending is not None:
        kwargs, _pending = _pending, None
        logging.basicConfig(**kwargs)
    return logging


def _dropped(level: int) -> bool:
    """A message at ``level`` goes nowhere: logging is not imported (so nothing
    set a level below the default WARNING) and no pending configuration does."""
    if "logging" in sys.modules:
        return False
    pending = _pending.get("level", _WARNING) if _pending is not None else _WARNING
    return _LEVELS.get(pending, pending) > level  # type: ignore[call-overload, operator]


_WARNING = 30
_LEVELS = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20, "DEBUG": 10}


class Logger:
    """Stands for ``logging.getLogger(name)``; every attribute is the real one's.
    ``debug`` and ``info`` with logging not imported are dropped without it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(_logging().getLogger(self.name), attr)

    def debug(self, *args: Any, **kwargs: Any) -> None:
        if not _dropped(10):
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the caller's line
            _logging().getLogger(self.name).debug(*args, **kwargs)

    def info(self, *args: Any, **kwargs: Any) -> None:
        if not _dropped(20):
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the caller's line
            _logging().getLogger(self.name).info(*args, **kwargs)


def getLogger(name: str) -> Logger:
    return Logger(name)
