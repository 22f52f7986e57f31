"""Every constant in cove.abi equals the C headers' value (kernel uapi first)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform

import pytest

from cove.abi import flags
from tests.abi import catalog

pytestmark = pytest.mark.timeout(300)

CONSTANTS = catalog.python_constants()


def _c_value(key: str, kernel_probe, glibc_probe) -> tuple[str, tuple[int, int]] | None:
    for program, probe in (("kernel", kernel_probe), ("glibc", glibc_probe)):
        got = probe[0].get(key)
        if got is not None:
            return program, got
    return None


@pytest.mark.parametrize("key", sorted(CONSTANTS))
def test_constant_matches_headers(key: str, kernel_probe, glibc_probe) -> None:
    found = _c_value(key, kernel_probe, glibc_probe)
    if found is None:
        assert key in catalog.RUNTIME_CHECKED, f"{key} is in no header and has no run-time check"
        return
    program, (signed, unsigned) = found
    value = CONSTANTS[key]
    assert value in (signed, unsigned), f"{key}: cove {value:#x}, {program} headers {signed:#x}"


def test_catalog_is_not_vacuous(kernel_probe, glibc_probe) -> None:
    # Guards the machinery: a probe that found nothing would pass every test above.
    assert len(CONSTANTS) > 500
    found = [k for k in CONSTANTS if _c_value(k, kernel_probe, glibc_probe) is not None]
    assert len(found) == len(CONSTANTS) - len(catalog.RUNTIME_CHECKED)
    assert kernel_probe[0]["O_LARGEFILE"] == (0o100000, 0o100000)  # the kernel's, not glibc's 0
    assert glibc_probe[0]["SIGRTMIN_GLIBC"] == (34, 34)


def test_auxv_names_do_not_shadow_path_flags() -> None:
    assert not hasattr(flags, "AT_PHDR")
    assert flags.AUXV.AT_PHDR == 3 and flags.AT_FDCWD == -100


def test_memfd_exec_flags() -> None:
    """MFD_NOEXEC_SEAL / MFD_EXEC / F_SEAL_EXEC (Linux 6.3) on the running kernel."""
    if tuple(int(x) for x in platform.release().split(".")[:2]) < (6, 3):
        pytest.skip("kernel older than 6.3")
    fd = os.memfd_create("cove-abi", flags.MFD_NOEXEC_SEAL)
    try:
        seals = fcntl.fcntl(fd, flags.F_GET_SEALS)
        # NOEXEC_SEAL implies sealing allowed, mode 0666 and the exec seal set.
        assert seals & flags.F_SEAL_EXEC
        assert seals & ~(flags.F_SEAL_EXEC | flags.F_SEAL_SEAL) == 0
        assert os.fstat(fd).st_mode & 0o777 == 0o666
    finally:
        os.close(fd)
    fd = os.memfd_create("cove-abi", flags.MFD_EXEC)
    try:
        assert os.fstat(fd).st_mode & 0o111
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        os.memfd_create("cove-abi", flags.MFD_EXEC | flags.MFD_NOEXEC_SEAL)
    assert e.value.errno == 22


def test_task_comm_len() -> None:
    """PR_SET_NAME keeps TASK_COMM_LEN - 1 bytes (checked on a throwaway thread)."""
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    result: list[bytes] = []

    def body() -> None:
        libc.prctl(flags.PR_SET_NAME, b"x" * 40, 0, 0, 0)
        buf = ctypes.create_string_buffer(64)
        assert libc.prctl(flags.PR_GET_NAME, buf, 0, 0, 0) == 0
        result.append(buf.value)

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert result == [b"x" * (flags.TASK_COMM_LEN - 1)]


def test_socket_limits() -> None:
    """SCM_MAX_FD, SOCK_TYPE_MASK, UNIX_MAX_DGRAM_QLEN and the pidfd socket options,
    which no uapi header of this host has, checked on the running kernel."""
    import errno
    import os
    import socket

    a, b = socket.socketpair()
    try:
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(flags.SCM_MAX_FD + 1)]
        try:
            socket.send_fds(a, [b"x"], fds[: flags.SCM_MAX_FD])
            _, got, _, _ = socket.recv_fds(b, 1, flags.SCM_MAX_FD)
            for fd in got:
                os.close(fd)
            try:
                socket.send_fds(a, [b"x"], fds)
            except OSError as e:
                assert e.errno == errno.EINVAL
            else:
                raise AssertionError("one fd past SCM_MAX_FD was accepted")
        finally:
            for fd in fds:
                os.close(fd)
        # SO_PEERPIDFD gives a pidfd for the peer (Linux >= 6.5).
        pidfd = a.getsockopt(socket.SOL_SOCKET, flags.SO_PEERPIDFD)
        assert pidfd >= 0
        os.close(pidfd)
        a.setsockopt(socket.SOL_SOCKET, flags.SO_PASSPIDFD, 1)
        assert a.getsockopt(socket.SOL_SOCKET, flags.SO_PASSPIDFD) == 1
    finally:
        a.close()
        b.close()
    # The type field is the low SOCK_TYPE_MASK bits: a type bit just above it
    # (and not a SOCK_* flag) is EINVAL.
    assert flags.SOCK_TYPE_MASK == 0xF
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | (flags.SOCK_TYPE_MASK + 1))
    except OSError as e:
        assert e.errno == errno.EINVAL
    else:
        raise AssertionError("a type bit above SOCK_TYPE_MASK was accepted")
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        assert int(f.read()) == flags.UNIX_MAX_DGRAM_QLEN
