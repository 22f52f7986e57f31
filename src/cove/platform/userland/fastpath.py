"""The native-I/O fast path: a guest read(2), write(2), readv(2) or writev(2)
on a host pipe the North owns, or on cove's /dev/null or /dev/zero (the
host's own device stands in), runs in the host kernel, on the stub thread
itself, instead of being copied through Python.

How: the call arrives as a seccomp user notification like every other. If
the North grants it (``cove.platform.base.NativeIo.native_rw``, see
``cove.kernel.hostpipe`` for when) and the buffers pass the checks below,
the platform makes sure the stub has that host pipe end installed at the
guest's fd number (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SETFD,
which replaces whatever the stub had there) and replies
SECCOMP_USER_NOTIF_FLAG_CONTINUE: the host kernel runs the call as the guest
made it. The cpu then goes on waiting for the thread's next event; the
North never sees the call, except through the grant's ``commit``.

What is checked, and why each answer still holds when the host runs the
call (seccomp_unotify(2) warns that CONTINUE is a time-of-check/time-of-use
race whenever the target's state can change after the check):

- The registers (fd, buffer, count, iovec pointer and count): they are the
  trapped thread's own saved registers; only ptrace (cove) could change
  them, and CONTINUE runs the call with exactly these.
- The fd number: below the stub's memfd (``StubProcess.memfd``, the top of
  the stub's fd range), so ADDFD never replaces a stub fd and a native call
  can only ever name a host pipe end cove installed. Which host file sits at
  which fd is tracked per stub process (``_installed``; a stub forked from
  the template has none, and a reused one starts afresh: its ``scrub``
  closed them all and counted a new ``generation``); a stale entry (a
  closed pipe, another pipe or device now at that number, another fd table
  sharing the stub after vfork) is replaced before the call, and a guest fd
  that is not a host pipe or one of those devices is never granted, so a
  reused number always reaches the file the North has there.
- Guest memory: every page of the bytes the call can touch (a read: the
  grant's limit, what the pipe holds; a write: all of it; and the iovec
  array itself) is in the address space's record with the needed
  protection, and the record has no change pending (``_dirty``), so the
  stub maps exactly that. Pages the North has not populated, copy-on-write
  pages (mapped read-only) and anything in the stub's reserved range
  (never in the record) fail the check: the North handles such calls, with
  EFAULT where Linux gives it, and a native call can never write the stub's
  pages. The iovec array is read here and again by the host kernel; it
  cannot change in between, as long as no other guest thread runs: once
  several run at once (``offers``), only while no other process can write
  the array's pages (each frame's only reference is this address space's:
  ``_private``; threads of one address space take turns); else the North
  answers.
- Nothing else runs meanwhile: the cpu asks from inside ``Cpu.run`` (no
  North code runs), and no other guest thread runs (one cpu; every other
  stub thread is stopped or waiting in a notification), so no one else can
  remap the buffer, close or replace the fd, or move bytes in or out of the
  host pipe before the call ends. The North's grant makes the call unable to
  block (data is buffered; a write fits at once), so it ends before the
  thread's next stop. With several guest threads at once (``offers``) the
  call may end later: its grant is held until the thread's next event
  (``NativeGrant.hold``), so that nobody else moves that end's bytes
  meanwhile; another process can still rewrite shared memory, hence no
  readv/writev then (above).

The same checks run for a call the North hands back unanswered (a woken
pipe read/write, or one preempted at its entry: ``UserlandCpu.retry_native``):
the cpu offers it here again, with its notification's registers, right
before the thread would have been resumed; declined, it returns to the North
as a new call.

A failure of ADDFD other than a vanished notification leaves the call to the
North (and an unsupported ioctl turns the path off: kernels before 5.14).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
import weakref

from cove.platform.base import PROT_READ, PROT_WRITE
from cove.platform.userland import _sys as S
from cove.platform.userland import layout as L

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.platform.base import NativeGrant, NativeIo
    from cove.platform.userland.aspace import UserlandAddressSpace
    from cove.platform.userland.context import UserlandContext
    from cove.platform.userland.stub import StubProcess, StubThread

NR_READ, NR_WRITE, NR_READV, NR_WRITEV = 0, 1, 19, 20
NATIVE_NRS = frozenset((NR_READ, NR_WRITE, NR_READV, NR_WRITEV))
DECLINED, CONTINUED, GONE = 0, 1, -1

SECCOMP_IOCTL_NOTIF_ADDFD = 0x40182103  # _IOW('!', 3, struct seccomp_notif_addfd)
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
O_CLOEXEC = 0o2000000
_ADDFD = struct.Struct("<QIIII")  # id, flags, srcfd, newfd, newfd_flags
_IOVEC = struct.Struct("<QQ")
IOV_MAX = 1024
MAX_RW_COUNT = 0x7FFFF000
RULE_MAX_COUNT = 0xFFFFFFFF  # a native rule compares the count's low word (bpf.py)
SSIZE_MAX = (1 << 63) - 1
_NOT_SUPPORTED = (_errno.EINVAL, _errno.ENOTTY, _errno.EOPNOTSUPP)


class FastPath:
    """One platform's native-I/O path (see module doc)."""

    def __init__(self, mem: memoryview) -> None:
        self.io: NativeIo | None = None  # set by the North (Platform.set_native_io)
        self._mem = mem
        # stub -> (its generation, {fd: the key of the host file installed there})
        self._installed: weakref.WeakKeyDictionary[StubProcess, tuple[int, dict[int, object]]] \
            = weakref.WeakKeyDictionary()
        self._addfd = ctypes.create_string_buffer(_ADDFD.size)
        self._addfd_addr = ctypes.addressof(self._addfd)
        self._resp = ctypes.create_string_buffer(S.NOTIF_RESP.size)
        self._resp_addr = ctypes.addressof(self._resp)
        self.native_calls = 0  # calls run natively so far (tests, tuning)
        self.last_grant: NativeGrant | None = None  # of the last call run natively
        # Several guest threads run at once (the cpu's launch): a pipe may go
        # into native mode, so calls that could run with no stop are offered.
        self.offers = False

    def try_native(self, ctx: UserlandContext, th: StubThread, aspace: UserlandAddressSpace,
                   nid: int, nr: int, a0: int, a1: int, a2: int) -> int:
        """Run the notified call natively if it may: CONTINUED, DECLINED (the
        North answers it as usual) or GONE (the notification vanished: the
        thread was killed)."""
        io = self.io
        proc = th.proc
        if io is None or aspace._dirty or aspace.proc is not proc:
            return DECLINED
        fd = a0 & 0xFFFFFFFF  # the host reads an unsigned int, as Linux does
        if fd >= proc.memfd:
            return DECLINED
        pages = aspace.pages
        if nr <= NR_WRITE:
            if not 0 < a2 <= MAX_RW_COUNT or a1 + a2 > L.TASK_SIZE:
                return DECLINED
            segs: list[tuple[int, int]] | None = [(a1, a2)]
            total = a2
        elif self.offers and not self._private(aspace, a1, a2 * _IOVEC.size):
            # Other guest threads may be running (the concurrent loop): another
            # process sharing the iovec array's page could rewrite it between
            # the check here and the host's own read of it. The North copies it once.
            return DECLINED
        else:
            segs = self._iovecs(pages, a1, a2)
            if not segs:
                return DECLINED
            total = sum(n for _, n in segs)
            if not 0 < total <= MAX_RW_COUNT:
                return DECLINED
        write = nr == NR_WRITE or nr == NR_WRITEV
        grant = io.native_rw(ctx, fd, write, total)
        if grant is None:
            return DECLINED
        prot = PROT_READ if write else PROT_WRITE  # what the call does to guest memory
        if not mapped(pages, segs, grant.limit, prot):
            return DECLINED
        installed = self._installed_in(proc)
        key = grant.key
        if installed.get(fd) is not key:
            installed.pop(fd, None)  # whatever is there now is unknown until ADDFD says
            r = self._install(th, nid, grant.host_fd, fd)
            if r != CONTINUED:
                return r
            installed[fd] = key
        S.NOTIF_RESP.pack_into(self._resp, 0, nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        if S.raw_ioctl(th.lfd, S.SECCOMP_IOCTL_NOTIF_SEND, self._resp_addr) < 0:
            return GONE
        grant.commit()
        self.last_grant = grant
        self.native_calls += 1
        if self.offers and nr <= NR_WRITE and a2 <= RULE_MAX_COUNT and not proc.rules_full and \
                hasattr(grant, "blocking_fd") and (  # the whole buffer, if not checked above
                    grant.limit >= a2 or mapped(pages, segs, a2, prot)):
            offer = getattr(io, "offer", None)
            if offer is not None:
                # The whole buffer is mapped as the call needs: the same call
                # could run with no stop at all (cove.kernel.nativemode).
                offer(ctx, fd, write, a1, a2)
        return CONTINUED

    def install_blocking(self, th: StubThread, nid: int, fd: int, end: object) -> int:
        """Install the blocking copy of the host pipe ``end`` at ``fd`` of the
        stub (a thread is about to run calls on it with no stop: native mode),
        through the notification ``nid`` of ``th``; CONTINUED once done."""
        proc = th.proc
        installed = self._installed_in(proc)
        key = ("blocking", end)
        if installed.get(fd) == key:
            return CONTINUED
        if fd >= proc.memfd:
            return DECLINED
        installed.pop(fd, None)
        blocking = getattr(end, "blocking_fd", None)
        if blocking is None:
            return DECLINED
        try:
            src = blocking()
        except OSError:
            return DECLINED
        r = self._install(th, nid, src, fd)
        if r == CONTINUED:
            installed[fd] = key
        return r

    def _installed_in(self, proc: StubProcess) -> dict[int, object]:
        """fd -> the key of the host file the fast path installed there, for
        ``proc``'s current guest (a reused stub starts afresh: ``scrub``)."""
        gen = getattr(proc, "generation", 0)
        entry = self._installed.get(proc)
        if entry is None or entry[0] != gen:
            entry = self._installed[proc] = (gen, {})
        return entry[1]

    def _install(self, th: StubThread, nid: int, src: int, fd: int) -> int:
        _ADDFD.pack_into(self._addfd, 0, nid, SECCOMP_ADDFD_FLAG_SETFD, src, fd, O_CLOEXEC)
        if S.raw_ioctl(th.lfd, SECCOMP_IOCTL_NOTIF_ADDFD, self._addfd_addr) == fd:
            return CONTINUED
        e = S.errno()
        if e == _errno.ENOENT:
            return GONE
        if e in _NOT_SUPPORTED:
            self.io = None  # this kernel has no ADDFD with SETFD: the North does it all
        return DECLINED

    @staticmethod
    def _private(aspace: UserlandAddressSpace, addr: int, length: int) -> bool:
        """Every page of ``[addr, addr + length)`` is mapped here and in no
        other address space or shared object (its frame's only reference), so
        no other process can write it; threads of one address space take
        turns. False for anything else (and for a length that is no array)."""
        if not 0 < length <= IOV_MAX * _IOVEC.size:
            return False
        pages, refcount = aspace.pages, aspace._platform.physmem.refcount
        for vpn in range(addr >> 12, ((addr + length - 1) >> 12) + 1):
            e = pages.get(vpn)
            if e is None or refcount(e[0]) != 1:
                return False
        return True

    def _iovecs(self, pages: dict[int, tuple[int, int]], addr: int,
                cnt: int) -> list[tuple[int, int]] | None:
        """The iovec array at ``addr`` as the host will read it, or None when
        the North should answer (bad count, unreadable array, a segment the
        host would refuse, more than MAX_RW_COUNT in all)."""
        if not 0 < cnt <= IOV_MAX:
            return None
        n = cnt * _IOVEC.size
        if addr + n > L.TASK_SIZE:
            return None
        raw = bytearray()
        mem = self._mem
        while n:
            e = pages.get(addr >> 12)
            if e is None or not e[1] & PROT_READ:
                return None
            off = addr & 0xFFF
            step = min(n, 4096 - off)
            pa = (e[0] << 12) + off
            raw += mem[pa:pa + step]
            addr += step
            n -= step
        segs = list(_IOVEC.iter_unpack(raw))
        for base, length in segs:
            if length > SSIZE_MAX or base + length > L.TASK_SIZE:
                return None
        return segs


def mapped(pages: dict[int, tuple[int, int]], segs: list[tuple[int, int]], limit: int,
            need: int) -> bool:
    """Whether the first ``limit`` bytes of ``segs`` lie in pages mapped with ``need``."""
    left = limit
    for addr, length in segs:
        if left <= 0:
            break
        n = min(length, left)
        if n <= 0:
            continue
        for vpn in range(addr >> 12, ((addr + n - 1) >> 12) + 1):
            e = pages.get(vpn)
            if e is None or not e[1] & need:
                return False
        left -= n
    return True
