"""The seccomp rules of native mode (cove.platform.userland.bpf): run the
BPF program on seccomp_data the way the host kernel does and check that a
rule lets through exactly its call (number, fd, buffer, at most its count,
all 64 bits of each) and nothing else, with the base filter's answer for
everything it does not allow."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from cove.abi.sysnums import NR
from cove.platform.userland import bpf
from cove.platform.userland._sys import (
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_TRACE,
    SECCOMP_RET_USER_NOTIF,
)

_LD_W_ABS, _JEQ_K, _JGT_K, _RET_K = 0x20, 0x15, 0x25, 0x06


def run_filter(prog: bytes, nr: int, args: tuple[int, ...], arch: int = AUDIT_ARCH_X86_64) -> int:
    """Classic BPF as seccomp runs it, for the instructions guest_filter uses."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = list(struct.iter_unpack("<HBBI", prog))
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == _LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == _JEQ_K:
            pc += jt if acc == k else jf
        elif code == _JGT_K:
            pc += jt if acc > k else jf
        elif code == _RET_K:
            return k
        else:
            raise AssertionError(f"unexpected BPF op {code:#x}")


READ, WRITE = int(NR["read"]), int(NR["write"])
u64 = st.integers(0, (1 << 64) - 1)
rules = st.lists(st.tuples(st.sampled_from([READ, WRITE]), st.integers(0, 1100), u64,
                           st.integers(0, (1 << 32) - 1)), max_size=4)


@given(rules, st.sampled_from([READ, WRITE, int(NR["readv"]), int(NR["getpid"])]),
       u64, u64, u64)
def test_a_rule_allows_exactly_its_call(rs, nr, fd, buf, count):
    prog = bpf.guest_filter(rules=tuple(rs))
    want = any(r[0] == nr and r[1] == fd and r[2] == buf and count <= r[3] for r in rs)
    # bpf.allows is the cpu's own copy of the test (_recv, _rule_call, _cut_short).
    assert any(bpf.allows(r, nr, fd, buf, count) for r in rs) == want
    got = run_filter(prog, nr, (fd, buf, count, 0, 0, 0))
    assert got == (SECCOMP_RET_ALLOW if want else SECCOMP_RET_USER_NOTIF)


@given(rules)
def test_the_rule_itself_and_its_near_misses(rs):
    prog = bpf.guest_filter(rules=tuple(rs))
    for nr, fd, buf, most in rs:
        assert run_filter(prog, nr, (fd, buf, most, 0, 0, 0)) == SECCOMP_RET_ALLOW
        assert run_filter(prog, nr, (fd, buf, 0, 0, 0, 0)) == SECCOMP_RET_ALLOW
        others = [r for r in rs if r[0] == nr]
        for args in ((fd + (1 << 32), buf, most), (fd, buf ^ (1 << 40), most),
                     (fd, buf ^ 1, most), (fd, buf, most + 1), (fd, buf, most | (1 << 32))):
            allowed = any(r[1] == args[0] and r[2] == args[1] and args[2] <= r[3]
                          for r in others)
            got = run_filter(prog, nr, (*args, 0, 0, 0))
            assert got == (SECCOMP_RET_ALLOW if allowed else SECCOMP_RET_USER_NOTIF)


def test_rules_never_change_what_is_traced_or_foreign():
    prog = bpf.guest_filter(rules=((READ, 3, 0x1000, 65536),))
    assert run_filter(prog, int(NR["execve"]), (3, 0x1000, 1, 0, 0, 0)) == SECCOMP_RET_TRACE
    assert run_filter(prog, READ, (3, 0x1000, 1, 0, 0, 0), arch=0x40000003) == \
        SECCOMP_RET_TRACE | bpf.TRACE_FOREIGN
    assert run_filter(prog, READ, (3, 0x1000, 1, 0, 0, 0)) == SECCOMP_RET_ALLOW


def test_a_thread_s_rule_fits_the_mailbox():
    from cove.platform.userland import layout as L

    prog = bpf.guest_filter(rules=((WRITE, 1023, (1 << 64) - 1, (1 << 32) - 1),))
    assert len(prog) // 8 <= L.FILTER_MAX
