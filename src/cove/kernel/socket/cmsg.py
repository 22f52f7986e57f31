"""Control messages: SCM_RIGHTS and SCM_CREDENTIALS in, and back out.

Sending (``parse_control``, as __scm_send): every cmsghdr must fit the
buffer (EINVAL), SCM_RIGHTS names open fds (EBADF; at most SCM_MAX_FD in all,
EINVAL), SCM_CREDENTIALS must be the sender's own pid and one of its uids and
gids unless it is root (EPERM); another SOL_SOCKET type is EINVAL, other
levels are ignored. On an inet socket SCM_RIGHTS/SCM_CREDENTIALS are
ignored, as Linux does.

Receiving (``build_control``, as put_cmsg + scm_detach_fds): credentials
first, then the files, installed into the receiver's fd table as they fit;
what does not fit (the buffer, or RLIMIT_NOFILE) is closed and reported
with MSG_CTRUNC.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.net import CMSGHDR, UCRED, cmsg_align, cmsg_len, cmsg_space
from cove.kernel.socket.packet import Creds, drop_files

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.file import File
    from cove.kernel.socket.base import Received, Socket
    from cove.kernel.task import Task

SCM_TXTIME = 61
_INET_SOL_CMSGS = {F.SCM_RIGHTS, F.SCM_CREDENTIALS, F.SO_MARK, F.SO_PRIORITY,
                   F.SO_TIMESTAMPING_OLD, SCM_TXTIME}


def parse_control(t: Task, sock: Socket, raw: bytes) -> tuple[list[File] | None, Creds | None]:
    """The files and credentials a sendmsg control buffer carries."""
    unix = sock.family == F.AF_UNIX
    files: list[File] = []
    creds: Creds | None = None
    off, hdr = 0, CMSGHDR.size
    while off + hdr <= len(raw):
        clen, level, ctype = CMSGHDR.unpack_from(raw, off)
        if clen < hdr or clen > len(raw) - off:
            raise Errno(E.EINVAL)
        data = raw[off + hdr:off + clen]
        if level == F.SOL_SOCKET:
            if not unix:
                if ctype not in _INET_SOL_CMSGS:
                    raise Errno(E.EINVAL)
            elif ctype == F.SCM_RIGHTS:
                n = len(data) // 4
                if len(files) + n > F.SCM_MAX_FD:
                    raise Errno(E.EINVAL)
                files += [t.files.get(fd) for fd in struct.unpack(f"<{n}i", data[:4 * n])]
            elif ctype == F.SCM_CREDENTIALS:
                if clen != cmsg_len(UCRED.size):
                    raise Errno(E.EINVAL)
                creds = _check_creds(t, *UCRED.unpack_from(data))
            else:
                raise Errno(E.EINVAL)
        off += cmsg_align(clen)
    return files or None, creds


def _check_creds(t: Task, pid: int, uid: int, gid: int) -> Creds:
    c = t.proc.creds
    root = c.euid == 0
    if ((pid == t.proc.pid or root) and (uid in (c.ruid, c.euid, c.suid) or root)
            and (gid in (c.rgid, c.egid, c.sgid) or root)):
        return (pid, uid, gid)
    raise Errno(E.EPERM)


def build_control(t: Task, r: Received, room: int, cloexec: bool) -> tuple[bytes, int]:
    """The control bytes for a received message in ``room`` bytes, and the
    msg_flags it adds (MSG_CTRUNC). Files are installed here; the in-flight
    references are given back either way."""
    out = bytearray()
    flags = 0
    hdr = CMSGHDR.size
    if r.creds is not None:
        data = UCRED.pack(*r.creds)
        if room < hdr:
            flags |= F.MSG_CTRUNC
        else:
            cmlen = cmsg_len(len(data))
            if room < cmlen:
                flags |= F.MSG_CTRUNC
                cmlen = room
            out += (CMSGHDR.pack(cmlen, F.SOL_SOCKET, F.SCM_CREDENTIALS) + data)[:cmlen]
            step = min(cmsg_space(len(data)), room)
            out += bytes(step - cmlen)
            room -= step
    if r.files:
        fdmax = (room - hdr) // 4 if room > hdr else 0
        fds: list[int] = []
        for f in r.files[:fdmax]:
            try:
                fds.append(t.files.install(f, cloexec=cloexec))
            except Errno:
                break  # RLIMIT_NOFILE: the rest are lost, as Linux's MSG_CTRUNC says
        if fds:
            data = struct.pack(f"<{len(fds)}i", *fds)
            cmlen = cmsg_len(len(data))
            out += CMSGHDR.pack(cmlen, F.SOL_SOCKET, F.SCM_RIGHTS) + data
            out += bytes(min(cmsg_space(len(data)), room) - cmlen)
        if len(fds) < len(r.files):
            flags |= F.MSG_CTRUNC
        drop_files(r.files)
        r.files = None
    return bytes(out), flags
