"""The initial process stack exec builds: strings, auxv, envp, argv, argc.

Byte-for-byte Linux's layout (fs/exec.c copy_strings, fs/binfmt_elf.c
create_elf_tables), from high to low addresses::

    stack_top - 8 ..  8 zero bytes (bprm->p starts one pointer below the top)
    execfn string     (AT_EXECFN points here)
    envp strings      envp[0] lowest ... envp[n-1] just below execfn
    argv strings      argv[0] lowest: arg_start; arg_end == env_start
    -- aligned down to 16 (after an optional random pad: ASLR's arch_align_stack)
    "x86_64\\0"        AT_PLATFORM
    16 random bytes   AT_RANDOM
    -- padding so that the final sp is 16-byte aligned
    auxv pairs, AT_NULL last
    envp pointers, NULL
    argv pointers, NULL
    argc              <- sp
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cove.abi.errno import E, Errno
from cove.abi.flags import AUXV
from cove.dataclass import dataclass

PAGE_SIZE = 4096
MAX_ARG_STRLEN = 32 * PAGE_SIZE  # one string, NUL included
MAX_ARG_STRINGS = 0x7FFFFFFF
ARG_MAX = 32 * PAGE_SIZE  # the floor of the strings budget
STK_LIM = 8 << 20  # _STK_LIM: the default stack rlimit
_Q = struct.Struct("<Q")


def strings_budget(argc: int, envc: int, stack_rlimit: int = STK_LIM) -> int:
    """Bytes the argv/envp/execfn strings may take (bprm_stack_limits).

    A quarter of the stack rlimit, capped at 3/4 of _STK_LIM, at least ARG_MAX,
    minus the pointer arrays. Raises E2BIG when the pointers alone do not fit.
    """
    limit = max(min(STK_LIM // 4 * 3, stack_rlimit // 4), ARG_MAX)
    ptr_size = (max(argc, 1) + envc) * 8
    if limit <= ptr_size:
        raise Errno(E.E2BIG)
    return limit - ptr_size


def check_args(argv: Sequence[bytes], envp: Sequence[bytes], execfn: bytes,
               stack_rlimit: int = STK_LIM) -> None:
    """E2BIG exactly when Linux's execve would give it for these strings."""
    if len(argv) > MAX_ARG_STRINGS or len(envp) > MAX_ARG_STRINGS:
        raise Errno(E.E2BIG)
    budget = strings_budget(len(argv), len(envp), stack_rlimit)
    total = 0
    for s in (execfn, *envp, *argv):
        n = len(s) + 1
        if n > MAX_ARG_STRLEN:
            raise Errno(E.E2BIG)
        total += n
    if not argv:
        total += 1  # the "" Linux supplies as argv[0]
    if total > budget:
        raise Errno(E.E2BIG)


@dataclass(frozen=True, slots=True)
class StackInfo:
    """Where exec put things on the new stack (for the task and /proc)."""

    sp: int  # initial rsp: points at argc, 16-byte aligned
    argc: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    execfn: int  # AT_EXECFN
    platform: int  # AT_PLATFORM (0 when none)
    random: int  # AT_RANDOM
    auxv: tuple[tuple[int, int], ...]  # as written, AT_NULL included


# auxv entries whose value is an address on the stack this module chooses.
STACK_ADDRESSED = (AUXV.AT_RANDOM, AUXV.AT_EXECFN, AUXV.AT_PLATFORM)


def build_stack(top: int, argv: Sequence[bytes], envp: Sequence[bytes], execfn: bytes,
                auxv: Sequence[tuple[int, int]], *, platform: bytes, random: bytes,
                pad: int = 0) -> tuple[int, bytes, StackInfo]:
    """Lay out the initial stack below ``top``; returns ``(base, image, info)``.

    ``image`` is to be written at ``base`` (it ends at ``top``). ``auxv`` is
    in the order to write, without AT_NULL; the values of AT_RANDOM,
    AT_EXECFN and AT_PLATFORM are filled in here. ``pad`` is the random
    offset ASLR subtracts before aligning (0 without ASLR). Strings are not
    checked here: call ``check_args`` first.
    """
    if not argv:
        argv = [b""]  # Linux 5.18+: never start a program with argc == 0
    p = top - 8
    p -= len(execfn) + 1
    execfn_addr = p
    env_end = p
    env_addrs = []
    for s in reversed(envp):
        p -= len(s) + 1
        env_addrs.append(p)
    env_addrs.reverse()
    env_start = arg_end = p
    arg_addrs = []
    for s in reversed(argv):
        p -= len(s) + 1
        arg_addrs.append(p)
    arg_addrs.reverse()
    arg_start = p

    p = (p - pad) & ~15
    platform_addr = 0
    if platform:
        p -= len(platform) + 1
        platform_addr = p
    p -= len(random)
    random_addr = p

    filled = {AUXV.AT_RANDOM: random_addr, AUXV.AT_EXECFN: execfn_addr,
              AUXV.AT_PLATFORM: platform_addr}
    aux = [(int(t), filled.get(t, v)) for t, v in auxv] + [(int(AUXV.AT_NULL), 0)]
    words = [len(argv), *arg_addrs, 0, *env_addrs, 0]
    for t, v in aux:
        words += (t, v)
    sp = (p - len(words) * 8) & ~15

    base = sp
    img = bytearray(top - base)
    for i, w in enumerate(words):
        _Q.pack_into(img, i * 8, w)
    img[random_addr - base:random_addr - base + len(random)] = random
    if platform:
        img[platform_addr - base:platform_addr - base + len(platform)] = platform
    for addr, s in zip(arg_addrs, argv, strict=True):
        img[addr - base:addr - base + len(s)] = s
    for addr, s in zip(env_addrs, envp, strict=True):
        img[addr - base:addr - base + len(s)] = s
    img[execfn_addr - base:execfn_addr - base + len(execfn)] = execfn
    info = StackInfo(sp, len(argv), arg_start, arg_end, env_start, env_end, execfn_addr,
                     platform_addr, random_addr, tuple(aux))
    return base, bytes(img), info
