"""The userland platform's native pipe path (fastpath.py), driven directly
with a North stand-in that grants every call: the platform itself must still
refuse buffers outside the guest's mappings (the stub's own pages above all),
fd numbers at or above the stub's memfd, and must replace a stale host file
at a reused fd number. Small assembled guests, as in tests/platform."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from cove.kernel.physmem import PhysMem
from cove.platform.base import PROT_EXEC, PROT_READ, PROT_WRITE, ExitKind, select_platform

try:
    from cove.platform.userland import userland_unavailable_reason

    _REASON = userland_unavailable_reason()
except Exception as e:  # the import itself failing is a skip reason too
    _REASON = f"userland platform import failed: {e}"

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(_REASON is not None, reason=f"userland platform unusable: {_REASON}"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("as", "objcopy")),
                       reason="GNU as/objcopy are needed"),
]

CODE, DATA, RODATA, HOLE, STACK_TOP = 0x400000, 0x600000, 0x610000, 0x620000, 0x800000
RX, RW = PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE
NR_READ, NR_WRITE, NR_READV, NR_GETPID = 0, 1, 19, 39


@pytest.fixture
def platform():
    pm = PhysMem(64 << 20)
    p = select_platform("userland", physmem=pm)
    yield p
    p.close()
    pm.close()


class Grant:
    def __init__(self, host_fd: int, cap: int = 1 << 20) -> None:
        self.key = object()
        self.host_fd = host_fd
        self.cap = cap
        self.limit = 0
        self.commits = 0
        self.then: object = None  # called after a commit (to change the grants)

    def commit(self) -> None:
        self.commits += 1
        if callable(self.then):
            self.then()


class GrantAll:
    """A North that says yes to everything it was told about."""

    def __init__(self) -> None:
        self.grants: dict[tuple[int, bool], Grant] = {}
        self.asked: list[tuple[int, bool, int]] = []

    def native_rw(self, ctx: object, fd: int, write: bool, count: int) -> Grant | None:
        self.asked.append((fd, write, count))
        g = self.grants.get((fd, write))
        if g is not None:
            g.limit = min(count, g.cap)
        return g


def call(nr: int, a0: int, a1: int, a2: int) -> str:
    return (f"mov ${nr}, %eax\n mov ${a0}, %rdi\n mov ${a1}, %rsi\n mov ${a2}, %rdx\n syscall\n"
            " mov %rax, %rdi\n")


def program(*calls: str) -> str:
    return "".join(calls) + f" mov ${NR_GETPID}, %eax\n syscall\n"


class Guest:
    def __init__(self, platform, code: bytes) -> None:
        self.p = platform
        pm = platform.physmem
        self.aspace = platform.create_address_space()
        frames = []
        for off in range(0, len(code), 4096):
            f = pm.alloc()
            pm.write(f << 12, code[off:off + 4096])
            frames.append(f)
        self.aspace.map_range(CODE, frames, RX)
        self.aspace.map_range(STACK_TOP - 4 * 4096, [pm.alloc() for _ in range(4)], RW)
        self.data = pm.alloc()
        self.aspace.map(DATA, self.data, RW)
        self.rodata = pm.alloc()
        pm.write(self.rodata << 12, b"read-only bytes")
        self.aspace.map(RODATA, self.rodata, PROT_READ)
        self.ctx = platform.create_context()
        self.ctx.regs.rip = CODE
        self.ctx.regs.rsp = STACK_TOP

    def run(self):
        return self.p.run(self.ctx, self.aspace)

    def memory(self, frame: int, n: int) -> bytes:
        return bytes(self.p.physmem.mem[frame << 12:(frame << 12) + n])

    @property
    def stub(self):
        return self.aspace.proc


@pytest.fixture
def pipe():
    rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield rd, wr
    os.close(rd)
    os.close(wr)


def _fionread(fd: int) -> int:
    import fcntl
    import termios

    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_a_granted_read_runs_in_the_host_kernel(platform, assemble, pipe) -> None:
    rd, wr = pipe
    os.write(wr, b"hello, native")
    io = GrantAll()
    g = io.grants[(5, False)] = Grant(rd, cap=13)
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 64))))
    e = guest.run()
    # The read never reached "the North": the next exit is getpid, with the
    # read's result in rdi.
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
    assert guest.ctx.regs.rdi == 13 and guest.memory(guest.data, 13) == b"hello, native"
    assert g.commits == 1 and platform.fastpath.native_calls == 1
    fds = {int(n): os.readlink(f"/proc/{guest.stub.pid}/fd/{n}")
           for n in os.listdir(f"/proc/{guest.stub.pid}/fd")}
    assert set(fds) == {5, guest.stub.memfd} and "memfd:" in fds[guest.stub.memfd]


def test_a_granted_write_runs_in_the_host_kernel(platform, assemble, pipe) -> None:
    rd, wr = pipe
    io = GrantAll()
    io.grants[(7, True)] = Grant(wr)
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_WRITE, 7, RODATA, 15))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
    assert guest.ctx.regs.rdi == 15 and os.read(rd, 100) == b"read-only bytes"


# Buffers the platform must refuse whatever the North says: the stub's
# runtime page, mailbox, fault altstack and unused reserved space, page 0,
# a hole, a read-only page (for a read), past the user address limit.
BAD_READ_BUFFERS = [0x1000, 0x2000, 0x4000, 0x5000, 0x8000, 0xFFF0, 0x0, HOLE, RODATA,
                    0x7FFF_FFFF_F000, 0x8000_0000_0000, 0xFFFF_8000_0000_0000]


@pytest.mark.parametrize("buf", BAD_READ_BUFFERS, ids=hex)
def test_a_read_into_memory_the_guest_lacks_is_left_to_the_north(platform, assemble, pipe,
                                                                 buf) -> None:
    rd, wr = pipe
    os.write(wr, b"x" * 64)
    io = GrantAll()
    g = io.grants[(5, False)] = Grant(rd)
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, buf, 64))))
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ  # handed to the North
    assert g.commits == 0 and platform.fastpath.native_calls == 0
    assert _fionread(rd) == 64, "nothing was read"
    altstack = [guest.memory(f, 4096) for f in guest.stub.altstack]
    assert all(b"x" * 16 not in page for page in altstack)
    assert guest.memory(guest.stub.mailbox, 4096).count(b"x" * 16) == 0
    assert not [n for n in os.listdir(f"/proc/{guest.stub.pid}/fd") if n == "5"]


def test_a_write_from_the_stub_pages_is_left_to_the_north(platform, assemble, pipe) -> None:
    rd, wr = pipe
    io = GrantAll()
    io.grants[(7, True)] = Grant(wr)
    platform.set_native_io(io)
    for buf in (0x1000, 0x2000, 0x4000, HOLE):
        guest = Guest(platform, assemble(program(call(NR_WRITE, 7, buf, 64))))
        assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_WRITE
    assert _fionread(rd) == 0


def test_iovecs_in_the_stub_pages_are_left_to_the_north(platform, assemble, pipe) -> None:
    rd, wr = pipe
    os.write(wr, b"y" * 32)
    io = GrantAll()
    io.grants[(5, False)] = Grant(rd)
    platform.set_native_io(io)
    # The array in the mailbox; then a good array naming the altstack.
    guest = Guest(platform, assemble(program(call(NR_READV, 5, 0x2000, 1))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READV
    guest = Guest(platform, assemble(program(call(NR_READV, 5, DATA, 2))))
    platform.physmem.write(guest.data << 12, struct.pack("<QQQQ", DATA + 64, 8, 0x4000, 8))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READV
    assert _fionread(rd) == 32
    # A good array over good memory runs natively.
    guest = Guest(platform, assemble(program(call(NR_READV, 5, DATA, 2))))
    platform.physmem.write(guest.data << 12, struct.pack("<QQQQ", DATA + 64, 8, DATA + 128, 8))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
    assert guest.ctx.regs.rdi == 16 and _fionread(rd) == 16


@pytest.mark.parametrize("offset", [0, 1, 5])
def test_the_stub_memfd_number_is_never_replaced(platform, assemble, pipe, offset) -> None:
    rd, wr = pipe
    os.write(wr, b"z" * 8)
    io = GrantAll()
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_GETPID, 0, 0, 0))))
    guest.run()  # starts the stub: its memfd number is known from here on
    fd = guest.stub.memfd + offset
    io.grants[(fd, False)] = Grant(rd)
    guest = Guest(platform, assemble(program(call(NR_READ, fd, DATA, 8))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    assert _fionread(rd) == 8
    link = os.readlink(f"/proc/{guest.stub.pid}/fd/{guest.stub.memfd}")
    assert "memfd:" in link


def test_a_stale_host_file_at_a_reused_number_is_replaced(platform, assemble) -> None:
    a = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    b = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(a[1], b"AAAA")
        os.write(b[1], b"BBBB")
        io = GrantAll()
        first = io.grants[(5, False)] = Grant(a[0])
        second = Grant(b[0])

        def swap() -> None:  # the guest's fd 5 now names another pipe
            io.grants[(5, False)] = second

        first.then = swap
        guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 2),
                                                 call(NR_READ, 5, DATA + 2, 2))))
        platform.set_native_io(io)
        assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
        assert guest.memory(guest.data, 4) == b"AABB"
        assert first.commits == 1 and second.commits == 1
    finally:
        for fd in (*a, *b):
            os.close(fd)


def test_without_a_north_answer_nothing_runs_natively(platform, assemble, pipe) -> None:
    _, wr = pipe
    os.write(wr, b"q")
    platform.set_native_io(None)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 1))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    assert platform.capabilities.native_pipes


def test_kvm_does_not_ask_for_host_pipes() -> None:
    from cove.platform.base import Capabilities

    assert Capabilities("x", "y", 512, 3).native_pipes is False


# --- calls the North hands back unanswered (UserlandCpu.retry_native) -------------
def test_a_handed_back_call_is_offered_to_the_native_path_again(platform, assemble,
                                                                pipe) -> None:
    """A read the North first kept (no grant: as if it slept) and then handed
    back unanswered runs in the host when the cpu next runs the context."""
    rd, wr = pipe
    io = GrantAll()
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 64))))
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    os.write(wr, b"now there is data")
    g = io.grants[(5, False)] = Grant(rd, cap=17)
    assert platform.cpu().retry_native(guest.ctx)
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
    assert guest.ctx.regs.rdi == 17 and guest.memory(guest.data, 17) == b"now there is data"
    assert g.commits == 1 and io.asked[-1] == (5, False, 64)


def test_a_handed_back_call_declined_again_returns_unanswered(platform, assemble,
                                                              pipe) -> None:
    """Declined on the second offer, the call comes back as the same SYSCALL
    exit (registers untouched); the North's answer then resumes the guest."""
    io = GrantAll()
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 64))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    assert platform.cpu().retry_native(guest.ctx)
    e = guest.run()
    regs = guest.ctx.regs
    assert e.kind == ExitKind.SYSCALL and regs.rax == NR_READ
    assert (regs.rdi, regs.rsi, regs.rdx) == (5, DATA, 64) and len(io.asked) == 2
    regs.rax = 42  # the North's answer
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and regs.rax == NR_GETPID and regs.rdi == 42


def test_a_kick_never_answers_a_handed_back_call(platform, assemble, pipe) -> None:
    """A kick (preemption, a pause) that meets a handed-back call returns the
    call to the North unanswered; the kick is taken at the next run."""
    io = GrantAll()
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 64))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    cpu = platform.cpu()
    assert cpu.retry_native(guest.ctx)
    cpu.kick()
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    guest.ctx.regs.rax = 7
    assert guest.run().kind == ExitKind.INTERRUPTED
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_GETPID
    assert guest.ctx.regs.rdi == 7


def test_a_handed_back_call_whose_notification_is_gone_goes_to_the_north(
        platform, assemble, pipe) -> None:
    """If the thread left its notification wait after the hand-back (here: a
    full register fetch, which stops it), the call cannot run natively any
    more; the cpu returns it unanswered rather than resume the guest with the
    syscall number in rax as if that were the result."""
    rd, wr = pipe
    io = GrantAll()
    platform.set_native_io(io)
    guest = Guest(platform, assemble(program(call(NR_READ, 5, DATA, 64))))
    assert guest.run().kind == ExitKind.SYSCALL and guest.ctx.regs.rax == NR_READ
    os.write(wr, b"data")
    io.grants[(5, False)] = Grant(rd)
    assert platform.cpu().retry_native(guest.ctx)
    platform.fetch_regs(guest.ctx)  # stops the thread: its notification is abandoned
    e = guest.run()
    regs = guest.ctx.regs
    assert e.kind == ExitKind.SYSCALL and regs.rax == NR_READ
    assert (regs.rdi, regs.rsi, regs.rdx) == (5, DATA, 64)
    regs.rax = 3  # the North's answer
    e = guest.run()
    assert e.kind == ExitKind.SYSCALL and regs.rax == NR_GETPID and regs.rdi == 3


def test_nothing_is_handed_back_without_a_notification(platform, assemble) -> None:
    guest = Guest(platform, assemble(program(call(NR_GETPID, 0, 0, 0))))
    assert not platform.cpu().retry_native(guest.ctx)  # never ran: no pending call
    platform.set_native_io(GrantAll())
    assert not platform.cpu().retry_native(guest.ctx)


def test_with_several_threads_at_once_a_shared_iovec_array_is_left_to_the_north() -> None:
    """Once guest threads run at once (FastPath.offers), a readv/writev whose
    iovec array another process could rewrite between the check and the
    host's own read of it (a frame with another reference: MAP_SHARED, a
    shared memory object) is the North's; a private array may still run."""
    from types import SimpleNamespace

    from cove.platform.userland.fastpath import FastPath

    refs = {10: 1, 11: 1, 12: 2}
    aspace = SimpleNamespace(pages={0x600: (10, RW), 0x601: (11, RW), 0x602: (12, RW)},
                             _platform=SimpleNamespace(physmem=SimpleNamespace(
                                 refcount=refs.__getitem__)))
    private = FastPath._private
    assert private(aspace, 0x600FF0, 16)  # one private page
    assert private(aspace, 0x600FF8, 16)  # across two private pages
    assert not private(aspace, 0x601FF8, 16)  # into the shared frame
    assert not private(aspace, 0x602000, 16)  # the shared frame itself
    assert not private(aspace, 0x603000, 16)  # not mapped
    assert not private(aspace, 0x600000, 0)  # no array at all
