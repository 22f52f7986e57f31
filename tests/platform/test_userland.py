"""The userland platform's own mechanisms, driven directly: the batch server
that applies mapping changes, stray signals to its traced threads, stub
threads freed with their contexts, a killed stub. Stub isolation is in
test_userland_stub.py; what both platforms promise in test_contract_*.py."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

from cove.platform.base import ExitKind
from tests.platform.guest import (
    CODE,
    MAILBOX,
    REPLY,
    RO,
    STACK_TOP,
    Guest,
    only_on,
    platform_fixture,
)

pytestmark = only_on("userland")


platform = platform_fixture("userland")


def test_batch_server_ignores_what_a_guest_writes_to_its_reply_page(platform, assemble) -> None:
    # The reply page is writable by guest code (it shares the stub's address
    # space): a guest faking "request n+1 done, 1 entry, result 0" (it can
    # read n in the mailbox) before each call must not make a mapping change
    # look applied before it is. Each round maps a new page the guest reads.
    g = Guest(platform, assemble(f"""
        mov $0x1000, %r12
    1:  mov ${REPLY}, %rcx
        mov {MAILBOX + 0x60}, %eax
        inc %eax
        movq $1, 8(%rcx)
        movq $0, 16(%rcx)
        movl %eax, 0(%rcx)
        mov $1, %eax
        syscall
        mov %r12, %rcx
        shl $12, %rcx
        add $0x10000000, %rcx
        mov (%rcx), %rdi
        mov $2, %eax
        syscall
        inc %r12
        jmp 1b
    """))
    for i in range(40):
        assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 1
        va = 0x10000000 + ((0x1000 + i) << 12)
        g.map_data(va, struct.pack("<Q", 0xA000 + i), RO)
        e = g.run()
        assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xA000 + i, e
    assert g.aspace.proc.serving, "the batches ran on the server"  # type: ignore[attr-defined]


def test_stray_signal_to_a_serving_injector_is_dropped(platform, assemble) -> None:
    # A signal from outside stops the injector (it is traced) while it waits
    # for work; the next batch finds it stopped, lets it go on (the signal
    # suppressed) and is applied; nothing hangs and the stub lives.
    import ctypes
    import signal

    g = Guest(platform, assemble("""
        mov $0x30000000, %rbx
    1:  mov $1, %eax
        syscall
        mov (%rbx), %rdi
        add $4096, %rbx
        jmp 1b
    """))
    assert g.run().kind == ExitKind.SYSCALL
    proc = g.aspace.proc  # type: ignore[attr-defined]
    assert proc.serving
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(234, proc.pid, proc.pid, signal.SIGUSR1) == 0  # tgkill the injector
    time.sleep(0.05)
    for i in range(3):
        g.map_data(0x30000000 + i * 4096, struct.pack("<Q", 0x70 + i), RO)
        t = time.monotonic()
        assert g.run().kind == ExitKind.SYSCALL
        assert time.monotonic() - t < 5
        assert g.ctx.regs.rdi == 0x70 + i
    assert proc.alive and Path(f"/proc/{proc.pid}").exists()


def test_dropped_contexts_free_their_threads(platform, assemble) -> None:
    import gc

    g = Guest(platform, assemble("mov $1, %eax\n syscall\n ud2"))
    for _ in range(5):
        c = platform.create_context()
        c.regs.rip, c.regs.rsp = CODE, STACK_TOP
        assert platform.run(c, g.aspace).kind == ExitKind.SYSCALL
        del c
        gc.collect()
    assert len(g.aspace.proc.threads) <= 2  # type: ignore[attr-defined]


def test_killed_stub_is_a_halt_not_a_hang(platform, assemble) -> None:
    g = Guest(platform, assemble("1: pause\n jmp 1b"))
    cpu = platform.cpu()

    def kill_stub() -> None:  # the stub exists once the run has started it
        os.kill(g.aspace.proc.pid, 9)  # type: ignore[attr-defined]

    timer = threading.Timer(0.2, kill_stub)
    timer.start()
    e = cpu.run(g.ctx, g.aspace)
    timer.join()
    assert e.kind == ExitKind.HALT, e
    g.aspace.destroy()
    follow = Guest(platform, assemble("mov $5, %eax\n syscall"))
    assert follow.run().kind == ExitKind.SYSCALL
