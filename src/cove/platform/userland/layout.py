"""Where the stub's own pages live in every stub process, and their formats.

[0, RESERVED_END) belongs to the stub. cove's North never maps guest memory
below ``cove.kernel.mm.MMAP_MIN`` (64 KiB, Linux's usual vm.mmap_min_addr),
so the stub's runtime page and mailbox can sit there without ever meeting a
guest mapping; the host must allow mappings that low (vm.mmap_min_addr <=
4096, or CAP_SYS_RAWIO), which ``userland_unavailable_reason`` checks.

    0x1000  runtime code (from stub.c), R X
            +0x00 inject: syscall; int3
            +0x10 batch:  r12 = entries, r13 = count
            +0x80 park:   int3; jmp park
            +0xc0 fault:  int3; ud2 (the SIGSEGV handler)
            +0x100 serve: the batch server (r15 = last request number)
    0x2000  mailbox: one frame of guest physical memory owned by the
            platform, mapped read-only: sock_fprog at +0, the SIGSEGV
            sigaction at +16, the altstack's stack_t at +48, the batch
            server's request number (u32) at +GO_OFF and entry count (u64)
            at +COUNT_OFF, the guest seccomp filter at +FILTER_OFF and batch
            entries (7 u64: nr, a0..a5) at +BATCH_OFF. The supervisor writes
            it through PhysMem; stub code only reads it.
    0x3000  reply page (RW): the batch server's answer, the request number
            done (u32) at +0, entries done at +8, the last result at +16.
    0x4000  altstack (2 frames, RW): where the host kernel writes the frame
            of a SIGSEGV the supervisor lets through, to learn the CPU's page
            fault error code (siginfo does not carry it). Its contents are
            only ever read as numbers.

The stub's fds: only the PhysMem memfd, at ``StubProcess.memfd`` =
``STUB_FD_TOP - 1`` (1024) when the host's hard RLIMIT_NOFILE allows, else
the highest fd it allows (stub.c). Every fd number below it is the guest's:
the native-I/O fast path (fastpath.py) installs the host pipe behind a guest
fd at that same number (SECCOMP_ADDFD_FLAG_SETFD), and only below the memfd,
so it never replaces a stub fd; guest fds at or above it take the North path.
"""

from __future__ import annotations

import struct

RT_ADDR = 0x1000
INJECT = RT_ADDR
BATCH = RT_ADDR + 0x10
PARK = RT_ADDR + 0x80
FAULT_HANDLER = RT_ADDR + 0xC0
SERVE = RT_ADDR + 0x100
MAILBOX = 0x2000
REPLY = 0x3000
ALTSTACK = 0x4000
ALTSTACK_SIZE = 0x2000
RESERVED_END = 0x10000
STUB_FD_TOP = 1025  # stub.c: the memfd sits at STUB_FD_TOP - 1 when RLIMIT_NOFILE allows
TASK_SIZE = 0x7FFF_FFFF_F000  # Linux x86-64 TASK_SIZE_MAX (4-level paging)

FPROG_OFF = 0
SIGACT_OFF = 16
STACK_T_OFF = 48
GO_OFF, COUNT_OFF = 0x60, 0x68  # stub.c MB_GO, MB_COUNT
REPLY_DONE, REPLY_NDONE, REPLY_RAX = 0, 8, 16  # stub.c RP_*
FILTER_OFF = 128
FILTER_MAX = (1024 - FILTER_OFF) // 8  # BPF instructions
BATCH_OFF = 1024
BATCH_ENTRY = struct.Struct("<7Q")
BATCH_MAX = (4096 - BATCH_OFF) // BATCH_ENTRY.size
# rt_sigframe: pretcode, then ucontext (uc_mcontext at +40: err, trapno, cr2
# at +152, +160, +176 of the sigcontext).
FRAME_ERR, FRAME_TRAPNO, FRAME_CR2 = 8 + 40 + 152, 8 + 40 + 160, 8 + 40 + 176
SA_SIGINFO, SA_ONSTACK, SA_RESTORER, SA_NODEFER = 0x4, 0x08000000, 0x04000000, 0x40000000

# What the stub reports in rbx at its first stop (stub.c OK_*).
OK_CLOSE_RANGE = 1 << 8
DEFENCES = {
    1 << 0: "no_new_privs", 1 << 1: "user namespace", 1 << 2: "mount namespace",
    1 << 3: "network namespace", 1 << 4: "ipc namespace", 1 << 5: "uts namespace",
    1 << 6: "empty root", 1 << 7: "rlimits", 1 << 8: "fds closed", 1 << 9: "cgroup namespace",
}  # fmt: skip
