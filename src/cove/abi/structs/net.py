"""Socket structs: sockaddr_un/in/in6, msghdr, cmsghdr, ucred.

Port, address and flowinfo fields are in network byte order, so they are
raw bytes here (``int.to_bytes(2, "big")``), never little-endian ints.
"""

from __future__ import annotations

from cove.abi.layout import Layout

SOCKADDR_UN = Layout("""
    struct sockaddr_un
    H sun_family
    108s sun_path
""")
UNIX_PATH_MAX = 108

SOCKADDR_IN = Layout("""
    struct sockaddr_in
    H sin_family
    2s sin_port
    4s sin_addr
    8x sin_zero
""")

SOCKADDR_IN6 = Layout("""
    struct sockaddr_in6
    H sin6_family
    2s sin6_port
    4s sin6_flowinfo
    16s sin6_addr
    I sin6_scope_id
""")

# sendmsg/recvmsg (the kernel's user_msghdr has the same layout).
MSGHDR = Layout("""
    struct msghdr
    Q msg_name
    I msg_namelen
    4x
    Q msg_iov
    Q msg_iovlen
    Q msg_control
    Q msg_controllen
    i msg_flags
    4x
""")

MMSGHDR = Layout("""
    struct mmsghdr
    Q msg_hdr.msg_name msg_name
    I msg_hdr.msg_namelen msg_namelen
    4x
    Q msg_hdr.msg_iov msg_iov
    Q msg_hdr.msg_iovlen msg_iovlen
    Q msg_hdr.msg_control msg_control
    Q msg_hdr.msg_controllen msg_controllen
    i msg_hdr.msg_flags msg_flags
    4x
    I msg_len
    4x
""")

CMSGHDR = Layout("""
    struct cmsghdr
    Q cmsg_len
    i cmsg_level
    i cmsg_type
""")

UCRED = Layout("""
    struct ucred
    i pid
    I uid
    I gid
""")


def cmsg_align(n: int) -> int:
    """CMSG_ALIGN: control messages are aligned to sizeof(long)."""
    return (n + 7) & ~7


def cmsg_len(n: int) -> int:
    """CMSG_LEN: cmsg_len for ``n`` bytes of data."""
    return cmsg_align(CMSGHDR.size) + n


def cmsg_space(n: int) -> int:
    """CMSG_SPACE: bytes one message with ``n`` bytes of data occupies."""
    return cmsg_align(CMSGHDR.size) + cmsg_align(n)
