"""Readiness and notification structs: pollfd, epoll_event, inotify_event."""

from __future__ import annotations

from cove.abi.layout import Layout

POLLFD = Layout("""
    struct pollfd
    i fd
    h events
    h revents
""")

# linux/eventpoll.h: packed on x86-64 (12 bytes, data at offset 4), unlike
# every other architecture. Arrays of it are packed too.
EPOLL_EVENT = Layout("""
    struct epoll_event
    I events
    Q data
""")

# linux/inotify.h: a 16-byte header followed by ``len`` bytes of
# NUL-padded name (len is a multiple of 16 in Linux's own output).
INOTIFY_EVENT = Layout("""
    struct inotify_event
    i wd
    I mask
    I cookie
    I len
""")
