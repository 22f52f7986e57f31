"""Errors that also signal the caller: EPIPE comes with SIGPIPE.

Linux's pipe_write (and a socket send without MSG_NOSIGNAL, and a write to a
hung-up terminal) sends SIGPIPE to the writing thread as it fails with EPIPE.
A ``File.write`` here has no task to signal, so it raises ``SignalingErrno``;
the dispatcher (``Kernel._invoke``) sends ``signo`` to the calling thread
when it turns the error into ``-errno``.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno


class SignalingErrno(Errno):
    """An ``Errno`` whose syscall also sends ``signo`` to the calling thread."""

    __slots__ = ("signo",)

    def __init__(self, errno: int, signo: int, detail: str = "") -> None:
        super().__init__(errno, detail)
        self.signo = signo


def epipe() -> SignalingErrno:
    """EPIPE + SIGPIPE: a write with nobody left to read it."""
    return SignalingErrno(E.EPIPE, F.SIGPIPE)
