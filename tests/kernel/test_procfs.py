"""/proc over a harness kernel, read through the real syscalls (openat, read,
readlink) so ``self``, access checks and owners see the calling task. Formats
were compared with Linux 6.18's /proc on the project machine."""

from __future__ import annotations

import os
import re
import struct
from types import SimpleNamespace

import pytest

from cove.abi import flags as F
from cove.abi.errno import E, errno_name
from cove.abi.flags import AUXV
from cove.kernel.procfs import make_procfs
from cove.kernel.procfs_pid import fd_size
from cove.kernel.procfs_sys import RELEASE
from cove.kernel.syscalls.proc_info import RELEASE as UNAME_RELEASE
from cove.kernel.task import Creds, State

from .harness import SCRATCH, FakeContext
from .sysfs_helpers import AT_FDCWD, Guest

pytestmark = pytest.mark.timeout(60)

BUF = 1 << 16


class ProcGuest(Guest):
    """A Guest with /proc mounted and helpers that go through the syscalls."""

    def __init__(self, k=None, t=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(k, t)
        self.buf = self.alloc(BUF)

    def rd(self, path: str) -> bytes:
        fd = self.open(path)
        assert fd >= 0, f"open {path}: {errno_name(-fd)}"
        out = b""
        while True:
            n = self.call("read", fd, self.buf, BUF)
            assert n >= 0, n
            if n == 0:
                break
            out += self.read(self.buf, n)
        assert self.call("close", fd) == 0
        return out

    def txt(self, path: str) -> str:
        return self.rd(path).decode()

    def err(self, path: str, flags: int = F.O_RDONLY) -> int:
        fd = self.open(path, flags)
        if fd >= 0:
            self.call("close", fd)
            return 0
        return -fd

    def readlink(self, path: str) -> str | int:
        n = self.call("readlinkat", AT_FDCWD, self.s(path), self.buf, 4096)
        return self.read(self.buf, n).decode() if n >= 0 else n

    def wr(self, path: str, data: bytes, flags: int = F.O_WRONLY) -> int:
        fd = self.open(path, flags)
        if fd < 0:
            return fd
        r = self.call("write", fd, self.data(data), len(data))
        self.call("close", fd)
        return r

    def ls(self, path: str) -> list[str]:
        fd = self.open(path, F.O_RDONLY | F.O_DIRECTORY)
        assert fd >= 0, fd
        names = []
        while True:
            n = self.call("getdents64", fd, self.buf, BUF)
            assert n >= 0
            if n == 0:
                break
            data = self.read(self.buf, n)
            off = 0
            while off < n:
                reclen = struct.unpack_from("<H", data, off + 16)[0]
                names.append(data[off + 19:off + reclen].split(b"\0", 1)[0].decode())
                off += reclen
        self.call("close", fd)
        return sorted(set(names) - {".", ".."})

    def status(self, pid: int | str = "self") -> dict[str, str]:
        out = {}
        for line in self.txt(f"/proc/{pid}/status").splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def stat_fields(self, path: str) -> list[str]:
        text = self.txt(path)
        head, _, rest = text.rpartition(")")
        pid, _, comm = head.partition(" (")
        return [pid, comm, *rest.split()]

    def child(self, creds: Creds | None = None) -> ProcGuest:
        g = self.fork_process()
        if creds is not None:
            g.t.proc.creds = creds
            g.t.fs.cred.uid, g.t.fs.cred.gid = creds.fsuid, creds.fsgid
        return ProcGuest(g.k, g.t)


def user(uid: int) -> Creds:
    return Creds(uid, uid, uid, uid, uid, uid, uid, uid)


@pytest.fixture
def g() -> ProcGuest:
    guest = ProcGuest()
    vfs = guest.vfs
    vfs.mkdir(vfs.context(), None, "/proc", 0o555)
    proc = make_procfs(vfs)
    vfs.mount("/proc", proc, source="proc")
    proc.kernel = guest.k
    return guest


def image(g: ProcGuest, argv: list[bytes], envp: list[bytes], at: int = 0x8000) -> None:
    """Give the process an exec image whose argv/env strings sit in scratch memory."""
    args = b"".join(a + b"\0" for a in argv)
    env = b"".join(e + b"\0" for e in envp)
    base = SCRATCH + at
    g.t.mm.write(base, args + env)
    g.t.proc.image = SimpleNamespace(
        arg_start=base, arg_end=base + len(args), env_start=base + len(args),
        env_end=base + len(args) + len(env), auxv=((AUXV.AT_PAGESZ, 4096), (AUXV.AT_NULL, 0)),
        start_code=0x400000, end_code=0x401234, start_data=0x600000, end_data=0x601000,
        start_brk=0x602000, stack_pointer=0x7FFFFFFFE000, file=None)


# --- self, listing, pids -------------------------------------------------------------------
def test_self_and_thread_self_follow_the_caller(g):
    pid = g.t.pid
    assert g.readlink("/proc/self") == str(pid)
    assert g.readlink("/proc/thread-self") == f"{pid}/task/{pid}"
    c = g.child()
    assert c.readlink("/proc/self") == str(c.t.pid) != str(pid)
    assert c.status()["Pid"] == str(c.t.pid)
    assert g.status()["Pid"] == str(pid)
    th = g.k.new_task(g.t.proc, FakeContext(), g.t.files, g.t.fs, tid=g.k.alloc_id())
    tg = ProcGuest(g.k, th)
    assert tg.readlink("/proc/thread-self") == f"{pid}/task/{th.tid}"
    assert tg.txt("/proc/thread-self/stat").split()[0] == str(th.tid)


def test_listing_has_processes_not_threads_and_no_host_pid(g):
    c = g.child()
    th = g.k.new_task(g.t.proc, FakeContext(), g.t.files, g.t.fs, tid=g.k.alloc_id())
    names = g.ls("/proc")
    assert str(g.t.pid) in names and str(c.t.pid) in names
    assert str(th.tid) not in names
    # ... but a thread id can be looked up, as on Linux
    assert g.status(th.tid)["Tgid"] == str(g.t.pid)
    assert g.status(th.tid)["Pid"] == str(th.tid)
    assert {"self", "thread-self", "cpuinfo", "meminfo", "stat", "uptime", "loadavg",
            "version", "mounts", "filesystems", "sys"} <= set(names)
    host = os.getpid()
    if host not in g.k.tasks:
        assert str(host) not in names
        assert g.err(f"/proc/{host}/status") == E.ENOENT
    assert sorted(g.ls("/proc/self/task")) == sorted([str(g.t.pid), str(th.tid)])


# --- status, stat, statm ----------------------------------------------------------------
def test_status_fields(g):
    p = g.t.proc
    g.t.fs.umask = 0o027
    g.t.sigmask = 1 << (F.SIGUSR1 - 1)
    p.sighand.actions[F.SIGINT].handler = F.SIG_IGN
    p.sighand.actions[F.SIGTERM].handler = 0x401000
    p.shared_pending.mask = 1 << (F.SIGHUP - 1)
    p.comm = g.t.comm = "my\nprog"
    g.t.nvcsw, g.t.nivcsw = 7, 3
    c = g.child(Creds(1000, 1001, 1002, 1003, 2000, 2001, 2002, 2003, (5, 6)))
    s = g.status()
    assert s["Name"] == "my\\nprog"  # escaped, as Linux does
    assert s["Umask"] == "0027"
    assert s["State"] == "R (running)"
    assert s["Tgid"] == s["Pid"] == str(p.pid) and s["PPid"] == "0"
    assert s["TracerPid"] == "0"
    assert s["Threads"] == "1"
    assert s["SigBlk"] == f"{1 << (F.SIGUSR1 - 1):016x}"
    assert s["SigIgn"] == f"{1 << (F.SIGINT - 1):016x}"
    assert s["SigCgt"] == f"{1 << (F.SIGTERM - 1):016x}"
    assert s["ShdPnd"] == f"{1 << (F.SIGHUP - 1):016x}"
    assert s["SigPnd"] == "0" * 16
    assert s["CapEff"] == s["CapPrm"] == "000001ffffffffff"
    assert s["voluntary_ctxt_switches"] == "7" and s["nonvoluntary_ctxt_switches"] == "3"
    assert s["VmRSS"] == f"{p.mm.resident_pages() * 4} kB"
    size = sum(v.end - v.start for v in p.mm.vmas)
    assert s["VmSize"] == f"{size >> 10} kB"
    assert s["FDSize"] == "64"
    cs = g.status(c.t.pid)
    assert cs["PPid"] == str(p.pid)
    assert cs["Uid"] == "1000\t1001\t1002\t1003" and cs["Gid"] == "2000\t2001\t2002\t2003"
    assert cs["Groups"] == "5 6"
    assert cs["CapEff"] == "0" * 16 and cs["CapPrm"] == "0" * 16
    raw = g.txt("/proc/self/status")
    assert "\nVmRSS:\t" in raw and raw.endswith("\n")
    assert re.search(r"^VmPeak:\t +\d+ kB$", raw, re.M)


def test_status_thread_count_and_fdsize(g):
    for _ in range(2):
        g.k.new_task(g.t.proc, FakeContext(), g.t.files, g.t.fs, tid=g.k.alloc_id())
    fd = g.ok_open("/proc/version")
    assert g.call("dup2", fd, 300) == 300
    s = g.status()
    assert s["Threads"] == "3"
    assert s["FDSize"] == "512"  # Linux grows the table to 128 * 2^k slots (as on 6.18)
    assert fd_size(63) == 64 and fd_size(64) == 128 and fd_size(251) == 256


def test_stat_has_52_fields_in_linux_order(g):
    p = g.t.proc
    image(g, [b"prog"], [b"A=1"])
    p.comm = "a b) c"
    p.user_time, p.sys_time = 1.5, 0.25
    p.child_user_time, p.child_sys_time = 0.5, 0.03
    p.nice = 5
    c = g.child()
    f = g.stat_fields("/proc/self/stat")
    assert len(f) == 52
    assert f[0] == str(p.pid) and f[1] == "a b) c" and f[2] == "R"
    assert f[3] == "0" and f[4] == str(p.pgid) and f[5] == str(p.sid)
    assert f[13:17] == ["150", "25", "50", "3"]  # utime stime cutime cstime in ticks
    assert f[17] == "25" and f[18] == "5"  # priority 20 + nice, nice
    assert f[19] == "1"  # num_threads
    start = int((p.start_time - g.k.boot_monotonic) * 100)
    assert f[21] == str(start)
    assert f[22] == str(sum(v.end - v.start for v in p.mm.vmas))  # vsize, bytes
    assert f[23] == str(p.mm.resident_pages())  # rss, pages
    assert f[24] == str(F.RLIM_INFINITY)
    assert f[25:28] == [str(0x400000), str(0x401234), str(0x7FFFFFFFE000)]
    assert f[37] == "17"  # exit_signal
    img = p.image
    assert f[44:51] == [str(x) for x in (img.start_data, img.end_data, img.start_brk,
                                           img.arg_start, img.arg_end, img.env_start,
                                           img.env_end)]
    assert f[51] == "0"
    cf = g.stat_fields(f"/proc/{c.t.pid}/stat")
    assert cf[3] == str(p.pid)
    # Another user sees no addresses (Linux: startcode/endcode 1, the rest 0).
    other = g.child(user(1000))
    of = other.stat_fields(f"/proc/{p.pid}/stat")
    assert of[25:28] == ["1", "1", "0"] and of[44:51] == ["0"] * 7


def test_statm_in_pages(g):
    p = g.t.proc
    size = sum(v.end - v.start for v in p.mm.vmas) >> 12
    fields = g.txt("/proc/self/statm").split()
    assert len(fields) == 7
    assert fields[0] == str(size) and fields[1] == str(p.mm.resident_pages())


# --- memory maps ------------------------------------------------------------------------
def test_maps_format_heap_stack_and_files(g):
    g.write_file("/lib.so", b"x" * 8192)
    fd = g.ok_open("/lib.so")
    addr = g.call("mmap", 0, 8192, F.PROT_READ | F.PROT_EXEC, F.MAP_PRIVATE, fd, 4096)
    assert addr > 0
    brk0 = g.call("brk", 0)
    assert g.call("brk", brk0 + 0x3000) == brk0 + 0x3000
    g.t.mm.mmap(0x7FFFFF000000, 0x10000, F.PROT_READ | F.PROT_WRITE,
                F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED, name="[stack]")
    lines = g.txt("/proc/self/maps").splitlines()
    assert len(lines) == len(g.t.mm.vmas)
    pat = re.compile(r"^([0-9a-f]{8,})-([0-9a-f]{8,}) ([r-][w-][x-][ps]) ([0-9a-f]{8}) "
                     r"([0-9a-f]{2}):([0-9a-f]{2}) (\d+) ?(.*)$")
    by_name = {}
    for line in lines:
        m = pat.match(line)
        assert m, line
        if m.group(8).strip():
            assert line.index(m.group(8).strip()) == 73  # the name column
        by_name[m.group(8).strip()] = m
    lib = by_name["/lib.so"]
    assert int(lib.group(1), 16) == addr and lib.group(3) == "r-xp"
    assert lib.group(4) == "00001000"
    st = g.stat("/lib.so")
    assert int(lib.group(7)) == st.st_ino
    assert (int(lib.group(5), 16), int(lib.group(6), 16)) == (os.major(st.st_dev),
                                                              os.minor(st.st_dev))
    assert by_name["[heap]"].group(3) == "rw-p" and int(by_name["[heap]"].group(2), 16) \
        == brk0 + 0x3000
    assert by_name["[stack]"].group(4) == "00000000" and by_name["[stack]"].group(7) == "0"
    # An unlinked file still mapped says so.
    assert g.call("unlink", g.s("/lib.so")) == 0
    assert "/lib.so (deleted)" in g.txt("/proc/self/maps")


def test_smaps_rss_and_pss_after_fork(g):
    addr = g.call("mmap", 0, 4 * 4096, F.PROT_READ | F.PROT_WRITE,
                  F.MAP_PRIVATE | F.MAP_ANONYMOUS, -1, 0)
    g.t.mm.write(addr, b"x" * (4 * 4096))

    def entry(guest: ProcGuest) -> dict[str, str]:
        text = guest.txt("/proc/self/smaps")
        block = text[text.index(f"{addr:08x}-"):]
        block = block[:block.index("VmFlags:") + 40]
        return {k: v.strip() for k, _, v in (ln.partition(":") for ln in block.splitlines()[1:])}

    e = entry(g)
    assert e["Size"] == "16 kB" and e["Rss"] == "16 kB" and e["Pss"] == "16 kB"
    assert e["Private_Dirty"] == "16 kB" and e["Anonymous"] == "16 kB"
    assert e["VmFlags"].split() == ["rd", "wr", "mr", "mw", "me", "ac"]
    pid = g.call("fork")
    assert pid > 0
    e = entry(g)
    assert e["Rss"] == "16 kB" and e["Pss"] == "8 kB"  # shared copy-on-write with the child
    assert e["Shared_Dirty"] == "16 kB" and e["Private_Dirty"] == "0 kB"
    text = g.txt("/proc/self/smaps")
    assert re.search(r"^Size: {11} +\d+ kB$", text, re.M)


# --- guest memory: cmdline, environ, auxv -------------------------------------------------
def test_cmdline_environ_auxv_from_guest_memory(g):
    image(g, [b"prog", b"-x", b"arg two"], [b"A=1", b"B=2"])
    assert g.rd("/proc/self/cmdline") == b"prog\0-x\0arg two\0"
    assert g.rd("/proc/self/environ") == b"A=1\0B=2\0"
    assert g.rd("/proc/self/auxv") == struct.pack("<4Q", AUXV.AT_PAGESZ, 4096, AUXV.AT_NULL, 0)
    img = g.t.proc.image
    # A program that rewrites its argv in place shows the new text ...
    g.t.mm.write(img.arg_start, b"PROG")
    assert g.rd("/proc/self/cmdline") == b"PROG\0-x\0arg two\0"
    # ... and one that overwrites the final NUL (setproctitle) shows one string,
    # running on into the environment up to the first NUL.
    title = b"title: long one "
    assert len(title) == img.arg_end - img.arg_start
    g.t.mm.write(img.arg_start, title)
    assert g.rd("/proc/self/cmdline") == b"title: long one A=1\0"
    c = g.child()
    assert c.rd(f"/proc/{g.t.pid}/cmdline").startswith(b"title:")


def test_no_image_and_zombies_read_empty(g):
    assert g.rd("/proc/self/cmdline") == b""
    c = g.child()
    image(c, [b"child"], [])
    cpid = c.t.pid
    g.k.exit_group(c.t.proc, 3 << 8)
    s = g.status(cpid)
    assert s["State"] == "Z (zombie)" and "VmRSS" not in s
    f = g.stat_fields(f"/proc/{cpid}/stat")
    assert f[2] == "Z" and f[51] == str(3 << 8)
    assert g.rd(f"/proc/{cpid}/cmdline") == b""
    assert g.rd(f"/proc/{cpid}/maps") == b""
    assert g.readlink(f"/proc/{cpid}/exe") == -E.ENOENT
    assert g.ls(f"/proc/{cpid}/fd") == []
    g.k.reap(c.t.proc)
    assert g.err(f"/proc/{cpid}/status") == E.ENOENT


# --- permissions ------------------------------------------------------------------------
def test_another_users_private_files_are_refused(g):
    image(g, [b"root-prog"], [b"SECRET=1"])
    g.write_file("/f", b"data")
    g.ok_open("/f")
    other = g.child(user(1000))
    pid = g.t.pid
    for name in ("environ", "maps", "smaps", "auxv", "fdinfo/0"):
        assert other.err(f"/proc/{pid}/{name}") == E.EACCES, name
    assert other.err(f"/proc/{pid}/fd", F.O_RDONLY | F.O_DIRECTORY) == E.EACCES
    for link in ("exe", "cwd", "root", "fd/3"):
        assert other.readlink(f"/proc/{pid}/{link}") == -E.EACCES, link
    # What anyone may read.
    assert other.rd(f"/proc/{pid}/cmdline") == b"root-prog\0"
    assert other.status(pid)["Name"] == g.t.proc.comm
    # Its own files, and root reading anyone's.
    image(other, [b"mine"], [b"MINE=1"])
    assert other.rd("/proc/self/environ") == b"MINE=1\0"
    assert other.ls("/proc/self/fd") == ["0"]  # the directory being read
    assert g.rd(f"/proc/{other.t.pid}/environ") == b"MINE=1\0"
    st = g.stat(f"/proc/{other.t.pid}")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert g.stat(f"/proc/{other.t.pid}/environ").st_mode & 0o777 == 0o400
    assert g.stat(f"/proc/{other.t.pid}/fd").st_mode & 0o777 == 0o500


def test_same_user_but_not_dumpable(g):
    a = g.child(user(1000))
    b = g.child(user(1000))
    image(a, [b"a"], [b"K=v"])
    assert b.rd(f"/proc/{a.t.pid}/environ") == b"K=v\0"
    a.t.proc.dumpable = 0
    assert b.err(f"/proc/{a.t.pid}/environ") == E.EACCES
    assert b.err(f"/proc/{a.t.pid}/maps") == E.EACCES
    assert b.stat(f"/proc/{a.t.pid}").st_uid == 0  # a non-dumpable process's files are root's


# --- links and fds ----------------------------------------------------------------------
def test_exe_cwd_root_links(g):
    g.t.proc.exe = "/bin/prog"
    g.mkdir("/work")
    assert g.call("chdir", g.s("/work")) == 0
    assert g.readlink("/proc/self/exe") == "/bin/prog"
    assert g.readlink("/proc/self/cwd") == "/work"
    assert g.readlink("/proc/self/root") == "/"
    # following the cwd link reaches the directory
    assert g.stat("/proc/self/cwd").st_ino == g.stat("/work").st_ino


def test_fd_links_name_every_kind_of_file(g):
    g.write_file("/data", b"hello")
    g.mkdir("/dir")
    rd = g.ok_open("/data")
    wr = g.ok_open("/data", F.O_WRONLY)
    rw = g.ok_open("/data", F.O_RDWR)
    d = g.ok_open("/dir", F.O_RDONLY | F.O_DIRECTORY)
    pipe = g.alloc(8)
    assert g.call("pipe2", pipe, 0) == 0
    pr, pw = struct.unpack("<ii", g.read(pipe, 8))
    ev = g.call("eventfd2", 0, 0)
    mfd = g.call("memfd_create", g.s("blob"), 0)
    assert min(ev, mfd) >= 0
    assert g.readlink(f"/proc/self/fd/{rd}") == "/data"
    assert g.readlink(f"/proc/self/fd/{d}") == "/dir"
    ino = g.t.files.get(pr).pipe.ino  # type: ignore[attr-defined]
    assert g.readlink(f"/proc/self/fd/{pr}") == f"pipe:[{ino}]"
    assert g.readlink(f"/proc/self/fd/{pw}") == f"pipe:[{ino}]"
    assert g.readlink(f"/proc/self/fd/{ev}") == "anon_inode:[eventfd]"
    assert g.readlink(f"/proc/self/fd/{mfd}") == "/memfd:blob (deleted)"
    modes = {fd: g.stat(f"/proc/self/fd/{fd}", F.AT_SYMLINK_NOFOLLOW) for fd in (rd, wr, rw)}
    assert modes[rd].st_mode == F.S_IFLNK | 0o500
    assert modes[wr].st_mode == F.S_IFLNK | 0o300
    assert modes[rw].st_mode == F.S_IFLNK | 0o700
    assert modes[rd].st_size == 64
    listed = g.ls("/proc/self/fd")
    assert {str(x) for x in (rd, wr, rw, d, pr, pw, ev, mfd)} <= set(listed)
    assert g.call("unlink", g.s("/data")) == 0
    assert g.readlink(f"/proc/self/fd/{rd}") == "/data (deleted)"
    assert g.call("dup2", rw, 50) == 50
    assert "50" in g.ls("/proc/self/fd")
    assert g.call("close", 50) == 0
    assert g.readlink("/proc/self/fd/50") == -E.ENOENT
    assert "50" not in g.ls("/proc/self/fd")


def test_fd_link_follows_a_reused_number(g):
    g.write_file("/a", b"a")
    g.write_file("/b", b"b")
    fd = g.ok_open("/a")
    assert g.readlink(f"/proc/self/fd/{fd}") == "/a"
    g.call("close", fd)
    assert g.ok_open("/b") == fd
    assert g.readlink(f"/proc/self/fd/{fd}") == "/b"
    # and following the link opens the file by its path
    assert g.rd(f"/proc/self/fd/{fd}") == b"b"


def test_fdinfo(g):
    g.write_file("/f", b"0123456789")
    fd = g.ok_open("/f", F.O_RDWR | F.O_APPEND | F.O_CLOEXEC)
    assert g.call("lseek", fd, 4, 0) == 4
    info = dict(line.split(":\t") for line in g.txt(f"/proc/self/fdinfo/{fd}").splitlines())
    assert info["pos"] == "4"
    flags = int(info["flags"], 8)
    assert info["flags"].startswith("0")
    assert flags == F.O_RDWR | F.O_APPEND | F.O_CLOEXEC | F.O_LARGEFILE
    assert int(info["mnt_id"]) == g.t.files.get(fd).location.mount.id
    assert int(info["ino"]) == g.stat("/f").st_ino
    pipe = g.alloc(8)
    assert g.call("pipe2", pipe, 0) == 0
    _, pw = struct.unpack("<ii", g.read(pipe, 8))
    assert "flags:\t01\n" in g.txt(f"/proc/self/fdinfo/{pw}")
    ev = g.call("eventfd2", 5, 0)
    assert re.search(r"eventfd-count: +5\n", g.txt(f"/proc/self/fdinfo/{ev}"))
    assert g.err(f"/proc/self/fdinfo/{fd + 100}") == E.ENOENT


# --- writable files -----------------------------------------------------------------------
def test_comm_is_writable_by_the_process_itself(g):
    assert g.wr("/proc/self/comm", b"renamed\n", F.O_WRONLY | F.O_TRUNC) == 8
    assert g.rd("/proc/self/comm") == b"renamed\n\n"  # Linux keeps the newline
    assert g.t.comm == g.t.proc.comm == "renamed\n"
    assert g.wr("/proc/self/comm", b"a-very-long-process-name") == 24
    assert g.t.comm == "a-very-long-pro"  # 15 bytes
    name = g.alloc(16)
    assert g.call("prctl", F.PR_GET_NAME, name) == 0
    assert g.read(name, 16).split(b"\0")[0] == b"a-very-long-pro"
    c = g.child()
    assert c.wr(f"/proc/{g.t.pid}/comm", b"evil") == -E.EINVAL
    assert g.t.comm == "a-very-long-pro"
    th = g.k.new_task(g.t.proc, FakeContext(), g.t.files, g.t.fs, tid=g.k.alloc_id())
    assert g.wr(f"/proc/self/task/{th.tid}/comm", b"worker") == 6
    assert th.comm == "worker" and g.t.comm == "a-very-long-pro"
    assert g.rd(f"/proc/self/task/{th.tid}/comm") == b"worker\n"
    fd = g.ok_open("/proc/self/comm")
    assert g.call("write", fd, g.data(b"x"), 1) == -E.EBADF


def test_oom_score_adj(g):
    assert g.txt("/proc/self/oom_score_adj") == "0\n"
    assert g.wr("/proc/self/oom_score_adj", b"500\n") == 4
    assert g.txt("/proc/self/oom_score_adj") == "500\n"
    for bad in (b"abc", b"2000", b"-1001", b""):
        assert g.wr("/proc/self/oom_score_adj", bad) == -E.EINVAL, bad
    assert g.wr("/proc/self/oom_score_adj", b"0x10") == 4
    assert g.txt("/proc/self/oom_score_adj") == "16\n"
    pid = g.call("fork")
    assert g.rd(f"/proc/{pid}/oom_score_adj") == b"16\n"  # inherited
    c = g.child(user(1000))
    assert c.wr("/proc/self/oom_score_adj", b"300") == 3
    assert c.wr("/proc/self/oom_score_adj", b"100") == 3  # lowering to >= its minimum
    assert c.wr("/proc/self/oom_score_adj", b"-5") == -E.EACCES
    assert c.wr(f"/proc/{g.t.pid}/oom_score_adj", b"1") == -E.EACCES  # not its file
    assert g.wr(f"/proc/{c.t.pid}/oom_score_adj", b"-1000") == 5
    assert g.txt(f"/proc/{c.t.pid}/oom_score") == "0\n"
    assert g.txt("/proc/1/oom_score") == "0\n"  # init is never chosen


def test_hostname_write_and_proc_refuses_other_changes(g):
    assert g.wr("/proc/sys/kernel/hostname", b"box\n") == 4
    assert g.k.hostname == "box"
    assert g.txt("/proc/sys/kernel/hostname") == "box\n"
    c = g.child(user(1000))
    assert c.wr("/proc/sys/kernel/hostname", b"x") == -E.EACCES
    assert g.wr("/proc/uptime", b"1") == -E.EIO  # root may open it, nothing takes the write
    assert c.err("/proc/uptime", F.O_WRONLY) == E.EACCES
    assert g.call("mkdir", g.s("/proc/new"), 0o755) == -E.ENOENT
    assert g.open("/proc/new", F.O_CREAT | F.O_WRONLY) == -E.ENOENT
    assert g.call("unlink", g.s("/proc/uptime")) == -E.EPERM
    assert g.call("chmod", g.s("/proc/self/comm"), 0o666) == -E.EPERM


# --- system-wide files ----------------------------------------------------------------------
def test_meminfo_is_the_sandbox_memory(g):
    rows = {}
    for line in g.txt("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        rows[key] = value.split()
    phys = g.k.phys
    assert rows["MemTotal"] == [str(phys.size >> 10), "kB"]
    free = int(rows["MemFree"][0])
    assert abs(free - phys.frames_free * 4) <= 64
    assert rows["SwapTotal"][0] == "0"
    assert re.search(r"^MemTotal: +\d+ kB$", g.txt("/proc/meminfo"), re.M)


def test_stat_uptime_loadavg_version(g):
    lines = g.txt("/proc/stat").splitlines()
    cpus = [ln for ln in lines if ln.startswith("cpu")]
    assert len(cpus) == 2 and cpus[0].startswith("cpu  ") and cpus[1].startswith("cpu0 ")
    assert len(cpus[0].split()) == 11
    rows = dict(ln.split(" ", 1) for ln in lines)
    assert rows["btime"] == str(int(g.k.boot_time))
    assert int(rows["processes"]) >= 1
    assert rows["procs_running"] == "1"
    g.t.proc.user_time = 3.0
    assert g.txt("/proc/stat").split()[1] == "300"
    up, idle = map(float, g.txt("/proc/uptime").split())
    assert 0 <= up < 60 and 0 <= idle <= up
    la = g.txt("/proc/loadavg").split()
    assert len(la) == 5 and la[3] == f"1/{len(g.k.tasks)}"
    assert int(la[4]) >= g.t.pid
    assert RELEASE == UNAME_RELEASE
    assert g.txt("/proc/version").startswith(f"Linux version {RELEASE} ")
    assert g.txt("/proc/sys/kernel/osrelease") == RELEASE + "\n"
    assert g.txt("/proc/sys/kernel/ostype") == "Linux\n"
    assert g.txt("/proc/sys/kernel/pid_max") == "4194304\n"
    assert g.txt("/proc/sys/vm/overcommit_memory") == "0\n"


def test_cpuinfo_is_one_cpu(g):
    text = g.txt("/proc/cpuinfo")
    assert re.findall(r"^processor\s*:\s*(\d+)$", text, re.M) == ["0"]
    assert "microcode" not in text and "serial" not in text.lower()
    assert re.search(r"^siblings\s*: 1$", text, re.M)
    assert re.search(r"^model name\s*: .+$", text, re.M)


def test_boot_id_and_uuid(g):
    a = g.txt("/proc/sys/kernel/random/boot_id")
    assert a == g.txt("/proc/sys/kernel/random/boot_id")
    assert re.fullmatch(r"[0-9a-f-]{36}\n", a)
    assert g.txt("/proc/sys/kernel/random/uuid") != g.txt("/proc/sys/kernel/random/uuid")


def test_mounts_and_mountinfo(g):
    assert g.readlink("/proc/mounts") == "self/mounts"
    lines = g.txt("/proc/mounts").splitlines()
    assert lines[0].split()[1] == "/"
    assert "proc /proc proc rw 0 0" in lines
    info = g.txt("/proc/self/mountinfo").splitlines()
    assert len(info) == len(lines)
    fields = info[1].split()
    assert fields[4] == "/proc" and fields[6] == "-" and fields[7] == "proc"
    assert fields[1] == info[0].split()[0]  # its parent is the root mount


def test_limits_follow_setrlimit(g):
    rl = g.alloc(16)
    g.t.mm.write(rl, struct.pack("<QQ", 100, 200))
    assert g.call("setrlimit", F.RLIMIT_NOFILE, rl) == 0
    text = g.txt("/proc/self/limits")
    assert text.splitlines()[0].split() == ["Limit", "Soft", "Limit", "Hard", "Limit",
                                           "Units"]
    assert re.search(r"^Max open files {12}100 {18}200 {18}files {5}$", text, re.M)
    assert re.search(r"^Max cpu time +unlimited +unlimited +seconds", text, re.M)


def test_reading_a_gone_process_through_a_held_directory(g):
    c = g.child()
    dfd = g.ok_open(f"/proc/{c.t.pid}", F.O_RDONLY | F.O_DIRECTORY)
    g.k.exit_group(c.t.proc, 0)
    g.k.reap(c.t.proc)
    r = g.call("openat", dfd, g.s("status"), F.O_RDONLY, 0)
    assert r == -E.ESRCH


def test_task_states(g):
    c = g.child()
    c.t.state = State.BLOCKED
    assert g.status(c.t.pid)["State"] == "S (sleeping)"
    assert g.stat_fields(f"/proc/{c.t.pid}/stat")[34] == "1"  # wchan: sleeping
    c.t.proc.state = State.STOPPED
    assert g.stat_fields(f"/proc/{c.t.pid}/stat")[2] == "T"


def test_the_fixed_entries_are_made_on_first_use(g):
    """Nothing under /proc is made (or imported) until something looks inside:
    a sandbox that never does snapshots none of it."""
    fs = make_procfs(g.vfs)
    root = fs.root
    assert not root.built and root.children == {} and root.listing is None
    root.stat()
    assert not root.built
    assert "uptime" in {e.name for e in root.readdir()} and root.built
    fresh = make_procfs(g.vfs).root
    assert fresh.lookup("sys").lookup("kernel").lookup("ostype").render() == b"Linux\n"


def test_lookups_do_not_rebuild_the_process_listing(g):
    """ps over many processes: each /proc/<pid> lookup goes to the process
    table, not through a fresh listing of every process."""
    from .sysutil import spawn

    kids = [spawn(g.k, g.t) for _ in range(300)]
    root = g.vfs.resolve(g.vfs.context(), None, "/proc").inode
    calls = []
    root.lookup("self")  # the fixed entries and the listing are made on first use
    listing = root.listing
    root.listing = lambda: calls.append(1) or listing()
    for kid in kids:
        assert g.stat_fields(f"/proc/{kid.pid}/stat")[0] == str(kid.pid)
    assert g.readlink("/proc/self") == str(g.t.pid)
    assert calls == []
    assert len(g.ls("/proc")) >= 301 and calls == [1]
    assert g.err("/proc/0123/stat") == E.ENOENT  # only canonical numbers name a pid


def test_fd_links_of_devices_and_fifos_show_their_paths(g):
    from cove.fs.devfs import DEV_NULL, register_drivers
    from cove.kernel.pipe import install_fifos

    register_drivers(g.vfs.device_openers)
    install_fifos(g.vfs)
    assert g.call("mknod", g.s("/null"), F.S_IFCHR | 0o666, DEV_NULL) == 0
    assert g.call("mknod", g.s("/fifo"), F.S_IFIFO | 0o666, 0) == 0
    dev = g.ok_open("/null", F.O_WRONLY)
    fifo = g.ok_open("/fifo", F.O_RDWR)
    assert g.readlink(f"/proc/self/fd/{dev}") == "/null"
    assert g.readlink(f"/proc/self/fd/{fifo}") == "/fifo"
