"""Socket addresses: decoding what a guest passes, encoding what it gets back.

AF_UNIX addresses stay the bytes Linux keeps (``struct unix_address``): the
family, then a path with its NUL, or a NUL and an abstract name of exactly
the length given. AF_INET/AF_INET6 endpoints are ``(ip16, port)`` with IPv4
held as v4-mapped IPv6 (``::ffff:a.b.c.d``), so one port table serves both
families and dual-stack sockets; a socket's family decides how an endpoint
is shown to it.

The sandbox's network is loopback only: 127.0.0.0/8 and ::1 (and the
wildcards, which connect() treats as the local host, as Linux does) are the
only addresses anything can reach; everything else is unreachable.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.net import SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_UN

SUN_PATH_OFFSET = 2  # offsetof(struct sockaddr_un, sun_path)
SOCKADDR_STORAGE = 128  # the most any call copies in (move_addr_to_kernel)
SIN6_LEN_RFC2133 = 24  # an IPv6 address without sin6_scope_id is accepted

_FAMILY = struct.Struct("<H")
V4_PREFIX = b"\0" * 10 + b"\xff\xff"
ANY6 = b"\0" * 16
ANY4 = V4_PREFIX + b"\0\0\0\0"
LOOP6 = b"\0" * 15 + b"\1"
LOOP4 = V4_PREFIX + b"\x7f\0\0\1"

Endpoint = tuple[bytes, int]  # (16-byte address, port)


def family_of(raw: bytes) -> int:
    """``sa_family`` of a raw address (AF_UNSPEC when too short to hold one)."""
    return _FAMILY.unpack_from(raw)[0] if len(raw) >= 2 else F.AF_UNSPEC


# --- AF_UNIX ---------------------------------------------------------------------------
UNNAMED = _FAMILY.pack(F.AF_UNIX)  # what getsockname shows for an unbound socket


def unix_parse(raw: bytes) -> tuple[str, bytes]:
    """``unix_validate_addr`` + ``unix_mkname``: ``("autobind", b"")``,
    ``("abstract", name)`` or ``("path", path)``; EINVAL for a bad length or family."""
    if len(raw) < SUN_PATH_OFFSET or len(raw) > SOCKADDR_UN.size or family_of(raw) != F.AF_UNIX:
        raise Errno(E.EINVAL)
    if len(raw) == SUN_PATH_OFFSET:
        return "autobind", b""
    if raw[SUN_PATH_OFFSET] == 0:
        return "abstract", raw[SUN_PATH_OFFSET + 1:]
    # A path ends at its first NUL or at addrlen (Linux terminates it there).
    return "path", raw[SUN_PATH_OFFSET:].split(b"\0", 1)[0]


def unix_path_addr(path: bytes) -> bytes:
    """The stored address of a path name: its length counts the NUL."""
    return UNNAMED + path + b"\0"


def unix_abstract_addr(name: bytes) -> bytes:
    return UNNAMED + b"\0" + name


# --- AF_INET / AF_INET6 ----------------------------------------------------------------
def is_v4(ip: bytes) -> bool:
    return ip[:12] == V4_PREFIX


def inet_parse(raw: bytes, family: int, *, unspec_ok: bool = False) -> Endpoint:
    """The endpoint in a sockaddr_in/sockaddr_in6 for a socket of ``family``.

    EINVAL when shorter than the family's sockaddr, EAFNOSUPPORT for another
    family (AF_UNSPEC passes where ``unspec_ok``: UDP sendto, and bind to
    INADDR_ANY, where Linux treats it as AF_INET).
    """
    fam = family_of(raw)
    if family == F.AF_INET:
        if len(raw) < SOCKADDR_IN.size:
            raise Errno(E.EINVAL)
        if fam != F.AF_INET and not (unspec_ok and fam == F.AF_UNSPEC):
            raise Errno(E.EAFNOSUPPORT)
        _, port, addr = SOCKADDR_IN.unpack_from(raw)
        return V4_PREFIX + addr, int.from_bytes(port, "big")
    if len(raw) < SIN6_LEN_RFC2133:
        raise Errno(E.EINVAL)
    if fam != F.AF_INET6:
        raise Errno(E.EAFNOSUPPORT)
    raw = raw.ljust(SOCKADDR_IN6.size, b"\0")
    _, port, _flow, addr, _scope = SOCKADDR_IN6.unpack_from(raw)
    return addr, int.from_bytes(port, "big")


def inet_pack(family: int, ep: Endpoint) -> bytes:
    """A sockaddr of ``family`` for ``ep``; a v4 endpoint shows v4-mapped to IPv6."""
    ip, port = ep
    p = port.to_bytes(2, "big")
    if family == F.AF_INET:
        return SOCKADDR_IN.pack(F.AF_INET, p, ip[12:] if is_v4(ip) else b"\0" * 4)
    return SOCKADDR_IN6.pack(F.AF_INET6, p, b"\0" * 4, ip, 0)


def is_loopback(ip: bytes) -> bool:
    """127.0.0.0/8 or ::1."""
    return ip == LOOP6 or (is_v4(ip) and ip[12] == 127)


def is_any(ip: bytes) -> bool:
    return ip in (ANY4, ANY6)


def route(ip: bytes) -> bytes:
    """Where a connection or datagram to ``ip`` goes: the address itself if it
    is on loopback, the local host for a wildcard (Linux's INADDR_ANY/::
    destination), else ENETUNREACH (the sandbox has no other network)."""
    if is_loopback(ip):
        return ip
    if ip == ANY4:
        return LOOP4
    if ip == ANY6:
        return LOOP6
    raise Errno(E.ENETUNREACH)


def source_for(dest: bytes) -> bytes:
    """The source address loopback routing picks for ``dest`` (127.0.0.1 for
    all of 127.0.0.0/8, as the ``local 127.0.0.0/8 ... src 127.0.0.1`` route)."""
    return LOOP4 if is_v4(dest) else LOOP6
