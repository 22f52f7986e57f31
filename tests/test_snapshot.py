"""Snapshots: what a snapshot carries (processes, threads in futex waits, open
files, pipes with buffered bytes, sleeps, memory, files), restore/from_snapshot,
host-function and layout checks, Poisoned healed by restore, saved files that
are truncated, tampered with or from another version."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import time
import weakref

import pytest

from tests.conftest import TEST_PLATFORM, needs_kvm


def _kvm_reason() -> str | None:
    if TEST_PLATFORM not in ("", "kvm"):
        return f"COVE_TEST_PLATFORM={TEST_PLATFORM}: guest snapshots need kvm"
    from cove.platform.kvm import kvm_unavailable_reason

    return kvm_unavailable_reason()


# Snapshots of a running guest need the kvm platform itself (elsewhere they are
# refused by name: test_userland_guest_snapshots_are_refused_by_name).
needs_kvm_snapshots = pytest.mark.skipif(_kvm_reason() is not None,
                                         reason=f"needs kvm: {_kvm_reason()}")

pytestmark = pytest.mark.timeout(180)

BUSYBOX = "/bin/busybox"
PY_WARM = ["python3", "-c", "import json, sqlite3, decimal; import sys; exec(sys.stdin.read())"]


def _config(**kw):
    from cove import SandboxConfig

    return SandboxConfig(**{"memory": "256M", "timeout": 60, **kw})


@pytest.fixture
def state_guest(build_guest, guest_dir):
    """A sandbox paused in snap_state's stdin read, and its snapshot."""
    from cove import PIPE, Sandbox
    from cove.rootfs import MountSpec

    exe = build_guest("snap_state")
    sb = Sandbox(config=_config(), mounts=(MountSpec(str(guest_dir), "/guests"),))
    assert sb.warm_up([f"/guests/{exe.name}"], stdout=PIPE) is None
    yield sb
    sb.close()


def _kinds(sb):
    """The calls the guest's threads are in (restored host-fd readers are
    runnable: they re-block on the restoring side's fds)."""
    k = sb._live.kernel
    return sorted(t.blocked_call[0].name for t in k.tasks.values()
                  if t.blocked_call is not None)


def _ok(r, word=b"go"):
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    assert lines[-2] == b"ok " + word, r.stdout
    return lines[-1]  # the getrandom bytes read after the restore


@needs_kvm_snapshots
def test_processes_threads_files_and_pipes_round_trip(state_guest):
    from cove import Sandbox

    sb = state_guest
    # The scenario is really there: init and the child in reads, three
    # threads in futex waits, one in a sleep.
    assert _kinds(sb) == ["clock_nanosleep", "futex", "futex", "futex", "read", "read"]
    snap = sb.snapshot()
    assert snap.has_guest and len(snap.refs) > 0
    first = sb.resume(input=b"go\n", capture_output=True)
    assert first.stdout.startswith(b"ready\n")
    rand = {_ok(first)}
    clones = [Sandbox.from_snapshot(snap, config=_config(memory=None)) for _ in range(2)]
    for c in clones:
        assert _kinds(c) == ["clock_nanosleep", "futex", "futex", "futex", "read", "read"]
        rand.add(_ok(c.resume(input=b"go\n", capture_output=True)))
        c.close()
    sb.restore(snap)  # roll the same sandbox back, twice
    rand.add(_ok(sb.resume(input=b"again\n", capture_output=True), b"again"))
    sb.restore(snap)
    rand.add(_ok(sb.resume(input=b"go\n", capture_output=True)))
    assert len(rand) == 5  # fresh getrandom entropy in every restored guest


@needs_kvm_snapshots
def test_saved_file_round_trip(state_guest, tmp_path):
    from cove import Sandbox, Snapshot

    snap = state_guest.snapshot()
    path = tmp_path / "s.snap"
    snap.save(path)
    loaded = Snapshot.load(path)
    assert loaded.meta == snap.meta and loaded.refs == snap.refs
    with Sandbox.from_snapshot(loaded) as c:
        _ok(c.resume(input=b"go\n", capture_output=True))
    with Sandbox.from_snapshot(loaded) as c:  # the loaded image is shared, not consumed
        _ok(c.resume(input=b"go\n", capture_output=True))


@needs_kvm_snapshots
def test_spawned_python_snapshot_and_restore():
    from cove import Sandbox

    with Sandbox(config=_config()) as sb:
        p = sb.spawn(["python3", "-i", "-q"])
        p.stdin.write(b"x = 40\nprint('set')\n")
        assert p.stdout.readline() == b"set\n"
        snap = sb.snapshot()
        # The spawned guest keeps running after the snapshot.
        p.stdin.write(b"x += 1\nprint(x)\n")
        assert p.stdout.readline() == b"41\n"
        sb.restore(snap)  # the running guest gives way to the snapshot's
        assert p.wait(30) == 128 + 9
        r = sb.resume(input=b"print(x + 2)\nimport time; print(time.time())\n",
                      capture_output=True)
        out = r.stdout.splitlines()
        assert out[0] == b"42"
        assert abs(float(out[1]) - time.time()) < 10  # the clock is not frozen
        # attach(): the restored guest on a background thread with streams.
        sb.restore(snap)
        p2 = sb.attach()
        p2.stdin.write(b"print(x * 2)\n")
        assert p2.stdout.readline() == b"80\n"
        p2.stdin.close()
        assert p2.wait(30) == 0


@needs_kvm_snapshots
def test_snapshot_pauses_a_guest_running_user_code():
    from cove import Sandbox

    with Sandbox(config=_config()) as sb:
        p = sb.spawn([BUSYBOX, "sh", "-c", "while :; do :; done"])
        time.sleep(0.3)
        start = time.monotonic()
        snap = sb.snapshot()
        assert time.monotonic() - start < 5
        assert snap.has_guest
        p.kill()
        p.wait(30)


@needs_kvm_snapshots
def test_clones_are_independent_and_share_memory():
    from cove import Sandbox

    with Sandbox(config=_config()) as sb:
        sb.run([BUSYBOX, "sh", "-c", "echo base > /tmp/f"])
        assert sb.warm_up(PY_WARM) is None
        snap = sb.snapshot()
    image = len(snap.refs) * 4096

    def pss() -> int:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))

    before = pss()
    clones = [Sandbox.from_snapshot(snap) for _ in range(5)]
    grown = pss() - before
    # Copied images would cost 5 x image; shared ones little more than one.
    assert grown < 2.5 * image, (grown, image)
    outs, rands = [], set()
    for i, c in enumerate(clones):
        r = c.resume(input=f"open('/tmp/f', 'a').write('{i}')\nprint(open('/tmp/f').read())\n"
                           "print(open('/dev/urandom', 'rb').read(16).hex())".encode(),
                     capture_output=True)
        *text, rand = r.stdout.splitlines()
        outs.append(b"\n".join(text))
        rands.add(rand)
        c.close()
    assert outs == [f"base\n{i}".encode() for i in range(5)]
    assert len(rands) == 5  # /dev/urandom is fresh in every clone


@needs_kvm_snapshots
def test_restore_replaces_the_guest_in_place():
    """restore() keeps the sandbox's VM and guest memory (the image is mapped
    over it): what the guest wrote or allocated after the snapshot is gone,
    again and again, and a snapshot from another sandbox of the same memory
    size goes in place too."""
    from cove import Sandbox

    py = ["python3", "-u", "-c", "import sys\nx = 40\n"
          "while line := sys.stdin.readline(): exec(line)"]
    with Sandbox(config=_config()) as sb:
        assert sb.warm_up(py) is None
        snap = sb.snapshot()
        platform, phys = sb._live.kernel.platform, sb._live.phys
        in_use = phys.frames_in_use
        for _ in range(3):
            sb.restore(snap)
            p = sb.attach()
            p.stdin.write(b"x += 1; big = bytearray(64 << 20); big[::4096] = b'x' * (16 << 10)\n"
                          b"print(x, len(big))\n")
            assert p.stdout.readline() == b"41 67108864\n"  # x is 40 again each time
            assert sb._live.kernel.platform is platform and sb._live.phys is phys
            assert phys.frames_in_use > in_use + (60 << 20) // 4096
        sb.restore(snap)
        assert phys.frames_in_use == in_use  # the grown heap is gone with its frames
        with Sandbox(config=_config()) as other:
            assert other.warm_up([BUSYBOX, "cat"]) is None
            cat = other.snapshot()
        sb.restore(cat)
        assert sb._live.kernel.platform is platform
        assert sb.resume(input=b"meow", capture_output=True).stdout == b"meow"


@needs_kvm_snapshots
def test_restores_take_pooled_vms_and_work_without_the_pool(tmp_path):
    from cove import Sandbox, Snapshot
    from cove.platform.kvm import vmpool

    old = vmpool.set_limit(2)
    try:
        vmpool.clear()
        with Sandbox(config=_config()) as sb:
            assert sb.warm_up([BUSYBOX, "cat"]) is None
            snap = sb.snapshot()
            platform = sb._live.kernel.platform
        _released()
        assert vmpool.idle() == 1  # the closed sandbox gave its VM back
        with Sandbox.from_snapshot(snap) as c:
            assert c._live.kernel.platform is platform and vmpool.idle() == 0
            assert c.resume(input=b"one", capture_output=True).stdout == b"one"
        snap.save(tmp_path / "s.snap")
        vmpool.clear()
        loaded = Snapshot.load(tmp_path / "s.snap")
        assert vmpool.idle() == 1  # load readied one while it checked the file
        vmpool.set_limit(0)
        assert vmpool.idle() == 0
        for s in (snap, loaded):
            with Sandbox.from_snapshot(s) as c:  # a new VM each time
                assert c.resume(input=b"two", capture_output=True).stdout == b"two"
        _released()
        assert vmpool.idle() == 0
    finally:
        vmpool.set_limit(old)


def _released() -> None:
    import threading

    for th in threading.enumerate():
        if th.name == "cove-release":
            th.join()


@needs_kvm_snapshots
def test_prefault_copies_the_writable_pages_up_front(state_guest):
    from cove import Sandbox

    snap = state_guest.snapshot()
    writable = sum(b - a for a, b in snap.meta["writable"])
    assert 0 < writable < len(snap.refs)

    def own_pages(c) -> int:
        addr = c._live.phys.address
        inside = False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(" ", 1)[0]
                if "-" in head and ":" not in head:
                    inside = int(head.split("-")[0], 16) == addr
                elif inside and line.startswith("Private_Dirty:"):
                    return int(line.split()[1]) // 4
        raise AssertionError("guest memory not found in smaps")

    with Sandbox.from_snapshot(snap) as shared, \
            Sandbox.from_snapshot(snap, prefault=True) as copied:
        assert own_pages(copied) >= writable > 4 * own_pages(shared)
        _ok(copied.resume(input=b"go\n", capture_output=True))
        _ok(shared.resume(input=b"go\n", capture_output=True))


def _own_pages(c) -> int:
    """Pages of a sandbox's guest memory that are its own: written since the
    restore (resident anonymous pages; the image's pages are the snapshot's)."""
    phys = c._live.phys
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        raw = os.pread(fd, 8 * phys.nframes, phys.address // 4096 * 8)
    finally:
        os.close(fd)
    # bit 63: present; bit 61: a file page or shared memory
    return sum(1 for e in memoryview(raw).cast("Q") if e >> 61 == 0b100)


@needs_kvm_snapshots
def test_a_restore_writes_none_of_the_image(state_guest):
    """Nothing cove does when it restores writes to the image's pages (the VM's
    page tables are made with their accessed and dirty bits set, so the CPU
    does not write them either): all of them stay shared until the guest
    itself writes, in a new sandbox and in place."""
    from cove import Sandbox

    snap = state_guest.snapshot()
    with Sandbox.from_snapshot(snap) as c:
        assert _own_pages(c) == 0
        _ok(c.resume(input=b"go\n", capture_output=True))
    state_guest.restore(snap)
    assert _own_pages(state_guest) == 0
    _ok(state_guest.resume(input=b"go\n", capture_output=True))


@needs_kvm_snapshots
def test_memory_staged_while_the_file_is_checked(state_guest, tmp_path):
    """cove restore's path: the guest memory of the first restore is mapped
    (and its writable pages copied) while the file is still being hashed. It
    is used once, by a prefault restore, and released if the file is bad."""
    from cove import Sandbox, Snapshot, SnapshotFormatError
    from cove.snapfile import Reading
    from cove.snapstage import Staged

    snap = state_guest.snapshot()
    path = tmp_path / "s.snap"
    snap.save(path)
    writable = sum(b - a for a, b in snap.meta["writable"])
    reading = Reading(path)
    staged = Staged(reading, prefault=True)
    phys = staged.phys
    assert phys is not None
    staged._join()
    vm = staged.vm  # made and given the memory on the helper thread (main thread here)
    assert vm is not None and vm.physmem is phys
    loaded = Snapshot.from_reading(reading, staged)
    with Sandbox.from_snapshot(loaded, prefault=True) as c:
        assert c._live.phys is phys and _own_pages(c) >= writable
        assert c._live.kernel.platform is vm
        _ok(c.resume(input=b"go\n", capture_output=True))
    assert loaded._staged == []
    with Sandbox.from_snapshot(loaded) as c:  # later restores map the image anew
        assert c._live.phys is not phys and _own_pages(c) == 0
        _ok(c.resume(input=b"go\n", capture_output=True))
    # Not a prefault restore: the staged copy is not shared, so it is not used.
    reading = Reading(path)
    staged = Staged(reading, prefault=True)
    phys = staged.phys
    with Sandbox.from_snapshot(Snapshot.from_reading(reading, staged)) as c:
        assert c._live.phys is not phys and staged.phys is None
    # A damaged image: refused, and what was staged from it goes.
    from cove.snapfile import HEADER

    data = bytearray(path.read_bytes())
    image_offset = HEADER.unpack_from(data)[6]
    data[image_offset + sorted(snap.refs)[len(snap.refs) // 2] * 4096 + 7] ^= 0x10
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    reading = Reading(bad)
    staged = Staged(reading, prefault=True)
    assert staged.phys is not None
    staged._join()
    vm = staged.vm
    with pytest.raises(SnapshotFormatError, match="checksum mismatch"):
        Snapshot.from_reading(reading, staged)
    assert staged.phys is None and staged.vm is None and reading.fd == -1
    assert vm is None or vm.vm_fd == -1  # the VM over the bad memory is gone


@needs_kvm
def test_a_snapshot_before_any_guest_has_files_only_and_accepts_any_functions(tmp_path):
    from cove import HostFunctions, Sandbox, Snapshot

    with Sandbox(config=_config(), host_functions=HostFunctions.default()) as sb:
        sb.run([BUSYBOX, "sh", "-c", "echo kept > /tmp/f"])
        snap = sb.snapshot()
    assert not snap.has_guest and snap.host_functions == {}
    snap.save(tmp_path / "files.snap")
    for s in (snap, Snapshot.load(tmp_path / "files.snap")):
        with Sandbox.from_snapshot(s, host_functions=None) as c:
            assert not c.has_guest
            assert c.run([BUSYBOX, "cat", "/tmp/f"], capture_output=True).stdout == b"kept\n"


def _hf(params=(str,), returns=bytes, extra=False):
    from cove import HostFunctions

    hf = HostFunctions()
    hf.register("lookup", params=params, returns=returns)(lambda k: b"v")
    if extra:
        hf.register("other", params=(), returns=None)(lambda: None)
    return hf


@needs_kvm_snapshots
def test_host_function_mismatch_names_the_function():
    from cove import Sandbox, SandboxState, SnapshotHostFunctionMismatch

    with Sandbox(config=_config(), host_functions=_hf()) as sb:
        assert sb.warm_up([BUSYBOX, "cat"]) is None
        snap = sb.snapshot()
        assert snap.host_functions == {"lookup": (("str",), "bytes")}
        for bad in (None, _hf(params=(bytes,)), _hf(returns=str), _hf(params=(str, str))):
            with pytest.raises(SnapshotHostFunctionMismatch) as e:
                Sandbox.from_snapshot(snap, host_functions=bad)
            assert e.value.name == "lookup" and "lookup" in str(e.value)
        # restore() refuses too, before touching anything.
        other = Sandbox(config=_config(), host_functions=_hf(returns=str))
        with pytest.raises(SnapshotHostFunctionMismatch):
            other.restore(snap)
        assert other.state is SandboxState.READY
        other.close()
        # A superset with identical signatures is fine.
        with Sandbox.from_snapshot(snap, host_functions=_hf(extra=True)) as c:
            r = c.resume(input=b"meow", capture_output=True)
            assert r.stdout == b"meow"


@needs_kvm_snapshots
def test_layout_comes_from_the_snapshot():
    from cove import Sandbox, SnapshotLayoutConflict

    with Sandbox(config=_config()) as sb:
        assert sb.warm_up([BUSYBOX, "cat"]) is None
        snap = sb.snapshot()
    with pytest.raises(SnapshotLayoutConflict, match="memory 512M conflicts"):
        Sandbox.from_snapshot(snap, config=_config(memory="512M"))
    with pytest.raises(SnapshotLayoutConflict, match="hostname"):
        Sandbox.from_snapshot(snap, config=_config(memory=None, hostname="other"))
    with Sandbox.from_snapshot(snap, config=_config(memory="256M", timeout=5)) as c:
        assert c.memory == 256 << 20 and c.config.timeout == 5
        r = c.resume(input=b"x", capture_output=True)
        assert r.stdout == b"x"


@needs_kvm
def test_poisoned_sandbox_is_healed_by_restore():
    from cove import Sandbox, SandboxState, SandboxTimeout

    with Sandbox(config=_config(timeout=1.0)) as sb:
        sb.run([BUSYBOX, "sh", "-c", "echo before > /tmp/f"])
        snap = sb.snapshot()
        sb.run([BUSYBOX, "sh", "-c", "echo after > /tmp/f; kill -SEGV $$"])
        assert sb.state is SandboxState.POISONED
        sb.restore(snap)
        assert sb.state is SandboxState.READY
        assert sb.run([BUSYBOX, "cat", "/tmp/f"], capture_output=True).stdout == b"before\n"
        with pytest.raises(SandboxTimeout):
            sb.run([BUSYBOX, "sleep", "30"])
        assert sb.state is SandboxState.POISONED
        sb.restore(snap)
        assert sb.state is SandboxState.READY
        assert sb.run([BUSYBOX, "true"]).returncode == 0


@needs_kvm
def test_a_failed_restore_leaves_the_sandbox_unrecoverable(tmp_path):
    from cove import Sandbox, SandboxState, SandboxStateError, SnapshotError
    from cove.rootfs import MountSpec

    shared = tmp_path / "shared"
    shared.mkdir()
    with Sandbox(config=_config(), mounts=(MountSpec(str(shared), "/m"),)) as sb:
        snap = sb.snapshot()
        shared.rmdir()
        shared.mkdir()  # same path, another directory
        with pytest.raises(SnapshotError, match="not the one the snapshot saw"):
            sb.restore(snap)
        assert sb.state is SandboxState.UNRECOVERABLE
        with pytest.raises(SandboxStateError, match="only close"):
            sb.restore(snap)
        with pytest.raises(SandboxStateError, match="Unrecoverable"):
            sb.run([BUSYBOX, "true"])


@needs_kvm_snapshots
def test_an_in_place_restore_failing_half_way_is_unrecoverable(tmp_path):
    """The guest's memory was already replaced when the state turns out not to
    restore: the sandbox is Unrecoverable, its VM and memory are released."""
    from cove import Sandbox, SandboxState, SnapshotError
    from cove.rootfs import MountSpec

    shared = tmp_path / "shared"
    shared.mkdir()
    with Sandbox(config=_config(), mounts=(MountSpec(str(shared), "/m"),)) as sb:
        assert sb.warm_up([BUSYBOX, "cat"]) is None
        snap = sb.snapshot()
        phys = sb._live.phys
        shared.rmdir()
        shared.mkdir()
        with pytest.raises(SnapshotError, match="not the one the snapshot saw"):
            sb.restore(snap)
        assert sb.state is SandboxState.UNRECOVERABLE and sb._live is None
        assert phys.mm.closed  # the memory was released, not left half-restored


@needs_kvm_snapshots
def test_damaged_snapshot_files_are_refused(state_guest, tmp_path):
    import json
    import struct

    from cove import Snapshot, SnapshotError, SnapshotFormatError

    snap = state_guest.snapshot()
    good = tmp_path / "good.snap"
    snap.save(good)
    data = good.read_bytes()
    head = struct.Struct("<8sIIQQQQQ32s")
    _m, _f, _fl, meta_len, refs_len, state_len, image_off, _len, _d = head.unpack_from(data)
    first_frame = min(snap.refs)

    def variant(name: str, blob: bytes) -> os.PathLike:
        p = tmp_path / name
        p.write_bytes(blob)
        return p

    def flip(pos: int) -> bytes:
        b = bytearray(data)
        b[pos] ^= 0x40
        return bytes(b)

    cases = {
        "truncated": (data[:len(data) - 5000], "truncated"),
        "cut header": (data[:20], "not a cove snapshot"),
        "not a snapshot": (b"hello world" * 100, "not a cove snapshot"),
        "meta": (flip(head.size + 3), "checksum mismatch"),
        "state": (flip(head.size + meta_len + refs_len + state_len // 2), "checksum mismatch"),
        "frame table": (flip(head.size + meta_len + 1), "checksum mismatch|frame table"),
        "memory": (flip(image_off + first_frame * 4096 + 100), "checksum mismatch"),
        "format": (data[:8] + struct.pack("<I", 99) + data[12:], "format 99"),
    }
    for name, (blob, why) in cases.items():
        with pytest.raises(SnapshotFormatError, match=why):
            Snapshot.load(variant(name.replace(" ", "_"), blob))
    snap.meta = {**snap.meta, "cove": "0.0.1"}
    snap.save(tmp_path / "old.snap")
    with pytest.raises(SnapshotFormatError, match=r"made by cove 0\.0\.1"):
        Snapshot.load(tmp_path / "old.snap")
    with pytest.raises(SnapshotError, match="No such file"):
        Snapshot.load(tmp_path / "missing.snap")
    assert json.loads(data[head.size:head.size + meta_len])["has_guest"] is True


def test_every_per_sandbox_side_table_is_known():
    """A module-level weak table keyed by kernel objects is state a snapshot
    must carry: each one is either captured (SIDE_TABLES) or rebuilt on
    demand (DERIVED_TABLES). A new one fails here until it is classified."""
    import cove
    from cove.snapstate import DERIVED_TABLES, HOST_TABLES, SIDE_TABLES

    known = {(m, a) for m, a, _ in SIDE_TABLES} | set(DERIVED_TABLES) | set(HOST_TABLES)
    found = set()
    for info in pkgutil.walk_packages(cove.__path__, "cove."):
        if info.name.startswith(("cove.platform", "cove.guest.cove_guest")):
            continue
        try:
            mod = importlib.import_module(info.name)
        except Exception:  # pragma: no cover - optional modules
            continue
        for attr, value in vars(mod).items():
            if isinstance(value, (weakref.WeakKeyDictionary, weakref.WeakSet)) or (
                    attr == "_mm_users"):
                found.add((info.name, attr))
    assert found - known == set(), "classify these in cove.snapstate"
    assert known - found == set(), "stale entries in cove.snapstate"


# --- the command line -----------------------------------------------------------------
def _cove(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cove.cli", *args], input=stdin,
                          capture_output=True, timeout=120)


@needs_kvm_snapshots
def test_cli_warm_start_demo(tmp_path):
    snap = str(tmp_path / "py.snap")
    r = _cove("snapshot", "--out", snap, "--", *PY_WARM)
    assert r.returncode == 0, r.stderr
    # A fresh process: nothing is loaded but what the restore itself loads.
    r = _cove("restore", snap, stdin=b'print(json.dumps({"ok": 1}))\n')
    assert (r.returncode, r.stdout, r.stderr) == (0, b'{"ok": 1}\n', b"")
    r = _cove("restore", snap, stdin=b"raise SystemExit(sqlite3.sqlite_version_info[0])\n")
    assert r.returncode == 3, r.stderr


@needs_kvm_snapshots
def test_cli_restore_imports_only_what_it_needs(tmp_path):
    """cove restore imports no logging (nothing is logged), no argparse, no
    typing, re or json (tests/test_startup.py), pickle's and hashlib's C
    modules without their Python wrappers, no selectors or heapq.py (the
    scheduler has its own epoll set), no terminal code for stdio that is not
    a terminal, and not every struct layout for the one the core needs."""
    snap = str(tmp_path / "cat.snap")
    r = _cove("snapshot", "--out", snap, "--", BUSYBOX, "cat")
    assert r.returncode == 0, r.stderr
    watched = ("logging", "traceback", "argparse", "pickle", "hashlib", "typing", "re", "json",
               "selectors", "heapq", "cove.kernel.hosttty", "cove.abi.structs.net")
    code = ("import sys\n"
            f"for m in {watched!r}: sys.modules.pop(m, None)  # some site files import them\n"
            "before = set(sys.modules)\n"
            "from cove.cli import main\n"
            "rc = main(['restore', sys.argv[1]])\n"
            f"print(rc, sorted(m for m in {watched!r} if m in sys.modules and m not in before))\n")
    r = subprocess.run([sys.executable, "-c", code, snap], input=b"meow", capture_output=True,
                       timeout=120)
    assert (r.stdout, r.stderr) == (b"meow0 []\n", b"")


@needs_kvm_snapshots
def test_proc_is_made_on_first_use_even_after_a_restore(tmp_path):
    """A guest that never looked inside /proc snapshots none of its entries, and
    restoring it imports none of their modules; the guest's first look after
    the restore finds the whole tree."""
    snap = str(tmp_path / "py.snap")
    r = _cove("snapshot", "--out", snap, "--", "python3", "-c",
              "import sys; exec(sys.stdin.read())")
    assert r.returncode == 0, r.stderr
    code = ("import sys\n"
            "from cove.cli import main\n"
            "rc = main(['restore', sys.argv[1]])\n"
            "print(rc, sorted(m for m in sys.modules if m.startswith('cove.kernel.procfs_')))\n")
    look = (b"import os\nprint(sorted(os.listdir('/proc/sys/kernel'))[:2], "
            b"open('/proc/self/comm').read().strip(), "
            b"os.readlink('/proc/self') == str(os.getpid()))\n")
    runs = [subprocess.run([sys.executable, "-c", code, snap], input=stdin, capture_output=True,
                           timeout=120) for stdin in (b"print('hi')\n", look)]
    assert (runs[0].stdout, runs[0].stderr) == (b"hi\n0 []\n", b"")
    assert runs[1].stdout.splitlines()[0] == b"['cap_last_cap', 'domainname'] python3 True", \
        runs[1].stderr


@needs_kvm_snapshots
def test_cli_snapshot_and_restore_errors(tmp_path):
    snap = str(tmp_path / "s.snap")
    r = _cove("snapshot", "--out", snap, "--", BUSYBOX, "true")
    assert r.returncode == 1 and b"before it read its stdin" in r.stderr
    assert not os.path.exists(snap)
    r = _cove("snapshot", "--out", snap, "--", BUSYBOX, "sh", "-c", "read x; sleep 30")
    assert r.returncode == 0, r.stderr
    r = _cove("restore", "--timeout", "1", snap, stdin=b"line\n")
    assert r.returncode == 124 and b"timeout" in r.stderr
    good = open(snap, "rb").read()
    for where in (200, len(good) - 4096 + 100):  # the state; the image (staged meanwhile)
        with open(snap, "r+b") as f:
            f.seek(where)
            f.write(bytes(b ^ 0xFF for b in good[where:where + 2]))
        r = _cove("restore", snap, stdin=b"line\n")
        assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"checksum" in r.stderr
        assert r.stdout == b""
        with open(snap, "wb") as f:
            f.write(good)


def _userland_reason() -> str | None:
    try:
        from cove.platform.userland import userland_unavailable_reason
    except Exception as e:  # pragma: no cover
        return str(e)
    return userland_unavailable_reason()


@pytest.mark.skipif(_userland_reason() is not None, reason=f"userland: {_userland_reason()}")
def test_userland_guest_snapshots_are_refused_by_name():
    from cove import Sandbox, SnapshotNotSupported

    with Sandbox(config=_config(platform="userland")) as sb:
        sb.run([BUSYBOX, "sh", "-c", "echo kept > /tmp/f"])
        files_only = sb.snapshot()  # no guest: works on any platform
        assert sb.warm_up([BUSYBOX, "cat"]) is None
        with pytest.raises(SnapshotNotSupported, match="userland"):
            sb.snapshot()
    with Sandbox.from_snapshot(files_only, config=_config(memory=None, platform="userland")) as c:
        assert c.run([BUSYBOX, "cat", "/tmp/f"], capture_output=True).stdout == b"kept\n"


@needs_kvm_snapshots
def test_exiting_with_a_paused_guest_is_clean():
    code = ("from cove import Sandbox, SandboxConfig\n"
            "sb = Sandbox(config=SandboxConfig(memory='64M'))\n"
            "assert sb.warm_up(['/bin/busybox', 'cat']) is None\n"
            "snap = sb.snapshot()\n"
            "c = Sandbox.from_snapshot(snap)\n"
            "import time; time.sleep(0.3)\n"
            "print('bye')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"bye\n"), r.stderr


@needs_kvm_snapshots
def test_tar_rootfs_round_trip_and_compressed_refusal(tmp_path):
    import shutil
    import tarfile

    from cove import Sandbox, SandboxConfig, Snapshot, SnapshotError

    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for name in ("sh", "cat"):
        (root / "bin" / name).symlink_to("busybox")
    for suffix, mode in ((".tar", "w"), (".tgz", "w:gz")):
        with tarfile.open(tmp_path / f"root{suffix}", mode) as tf:
            tf.add(root, arcname=".")
    with Sandbox(rootfs=str(tmp_path / "root.tar"), config=SandboxConfig(memory="64M")) as sb:
        sb.run(["/bin/sh", "-c", "echo kept > /tmp/f"])
        assert sb.warm_up(["/bin/cat"]) is None
        sb.snapshot().save(tmp_path / "t.snap")
    with Sandbox.from_snapshot(Snapshot.load(tmp_path / "t.snap")) as c:
        assert c.resume(input=b"hi", capture_output=True).stdout == b"hi"
        assert c.run(["/bin/cat", "/tmp/f"], capture_output=True).stdout == b"kept\n"
    with Sandbox(rootfs=str(tmp_path / "root.tgz"), config=SandboxConfig(memory="64M")) as sb:
        with pytest.raises(SnapshotError, match="compressed archive"):
            sb.snapshot()


@needs_kvm_snapshots
def test_clones_share_page_maps_and_a_clone_snapshots_and_forks():
    """Clones read through to the snapshot's page maps (BaseDict/BaseSet, the
    shared base never written); a clone that wrote memory and forked is
    snapshotted (its maps flattened) and cloned again, with its memory intact."""
    from cove import Sandbox
    from cove.bench_snapshot import PY_LINES
    from cove.kernel.basemap import BaseDict, BaseSet
    from cove.kernel.pagecache import cache_for

    with Sandbox(config=_config()) as sb:
        assert sb.warm_up(PY_LINES) is None
        snap = sb.snapshot()
    fork = (b"import os; x = bytearray(b'a' * 300000); x[-1] = 66; pid = os.fork(); "
            b"exec(\"if pid == 0:\\n x[0] = 98\\n os._exit(x[0] + x[-1] - 164)\"); "
            b"print(os.waitpid(pid, 0)[1] >> 8, x[0], x[-1])\n")
    a, b = Sandbox.from_snapshot(snap), Sandbox.from_snapshot(snap)
    try:
        mms = [mm for c in (a, b) for mm in {id(p.mm): p.mm for p in
                                             c._live.kernel.processes.values()}.values()]
        big = [mm for mm in mms if len(mm.frames) >= 32]
        assert big and all(type(mm.frames) is BaseDict for mm in big)
        assert all(type(mm.cow) in (BaseSet, set) for mm in mms)
        bases = {id(mm.frames._base) for mm in big}
        assert len(bases) == len(big) // 2  # one base per map, shared by both clones
        base = dict(big[0].frames._base)
        assert type(cache_for(a._live.phys)._by_frame) is BaseDict
        pa = a.attach()
        pa.stdin.write(fork)
        pa.stdin.flush()
        assert pa.stdout.readline() == b"0 97 66\n"
        assert dict(big[0].frames._base) == base  # the shared base is unchanged
        snap2 = a.snapshot()
        c = Sandbox.from_snapshot(snap2)
        try:
            pc = c.attach()
            pc.stdin.write(b"x[1] = 67\n" + fork.split(b"; ", 1)[1]
                           .replace(b"x = bytearray(b'a' * 300000); x[-1] = 66; ", b""))
            pc.stdin.write(b"print(x[1], len(x))\n")
            pc.stdin.flush()
            assert pc.stdout.readline() == b"0 97 66\n"
            assert pc.stdout.readline() == b"67 300000\n"
            pc.stdin.close()
            assert pc.wait() == 0
        finally:
            c.close()
        pb = b.attach()  # the sibling clone saw none of it
        pb.stdin.write(b"print('x' in globals())\n")
        pb.stdin.flush()
        assert pb.stdout.readline() == b"False\n"
        for p in (pa, pb):
            p.stdin.close()
            assert p.wait() == 0
    finally:
        a.close()
        b.close()
