"""Snapshots: a whole sandbox (files, processes, guest memory) captured at a
quiescent point, restored into the same or new sandboxes, saved to a file.

A ``Snapshot`` holds
- ``meta``: layout (memory size, hostname), the CPU's XSAVE facts, the host
  functions the guest may call (name and signature), who made it; for a
  guest, where the VM's own frames are (``kvm``: kernel half, cpu areas,
  table pool, each address space's page tables) and which frames the guest
  can write without a fault (``writable``, for ``prefault``);
- ``refs``: every guest frame in use (the North's and the VM's) and its
  reference count;
- ``state``: the pickled North and VFS (``cove.snapstate``);
- the memory image: the frames in use, at their physical offsets, in a
  sealed memfd (``snapshot()``) or the saved file (``load``). Restoring maps
  the image copy-on-write (MAP_PRIVATE), so many sandboxes restored from one
  snapshot share its pages until they write them; the page tables come with
  it, so a restore writes none.

Where a restore runs: ``Sandbox.restore`` of a kvm guest reuses the guest's
VM and memory (the image is mapped over it, KVM's shadow state zapped);
``from_snapshot`` takes a ready VM from ``cove.platform.kvm.vmpool``.

The file format and its checks are in ``cove.snapfile``; a restore that
starts while the file is still being checked (``cove restore``) is readied
by ``cove.snapstage``.
"""

from __future__ import annotations

import array
import fcntl
import importlib
import mmap
import os
import sys
import threading
import time
import weakref

from cove import __version__
from cove.sandbox import CoveError, SandboxConfig, SandboxState, parse_memory
from cove.snapfile import FORMAT, HEADER, MAGIC, PAGE, Checksum, FileProblem, Reading, page_up
from cove.snapfile import runs as _runs
from cove.snapstage import Staged
from cove.snapstage import prefault as _prefault

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.guestproc import Live, Stdio
    from cove.hostfuncs import HostFunctions
    from cove.sandbox import Sandbox


class SnapshotError(CoveError):
    """A snapshot cannot be taken or restored; the message says why."""


class SnapshotFormatError(SnapshotError):
    """``Snapshot.load``: not a cove snapshot, another format version or cove
    version, truncated, or its contents do not match its checksum."""


class SnapshotNotSupported(SnapshotError):
    """Snapshotting or restoring a guest on a platform that cannot do it yet
    (only kvm can; files-only snapshots work everywhere). Names the platform."""


SNAPSHOT_PLATFORMS = ("kvm",)


class SnapshotLayoutConflict(SnapshotError):
    """``from_snapshot`` got a config that sets a layout field (memory,
    hostname) differently from the snapshot, which decides layout."""


class SnapshotHostFunctionMismatch(SnapshotError):
    """The host functions given to a restore lack one the snapshot's guest
    may call, or declare it with another signature. ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _release(fd: int, staged: list[Staged]) -> None:
    while staged:
        staged.pop().close()
    try:
        os.close(fd)
    except OSError:
        pass


class Snapshot:
    """A captured sandbox; see the module docstring. Immutable once made."""

    def __init__(self, meta: dict[str, Any], refs: dict[int, int], state: bytes,
                 image_fd: int | None, image_offset: int) -> None:
        self.meta = meta
        self.refs = refs
        self.state = state
        self.image_fd = image_fd  # owned; closed when the snapshot is collected
        self.image_offset = image_offset
        self._accounting: Any = None
        self.ints: dict[int, Any] = {}  # decoded state arrays, shared by restores
        # Memory readied for the first restore while the file was checked (cove restore).
        self._staged: list[Staged] = []
        self._finalizer = weakref.finalize(self, _release, image_fd, self._staged) \
            if image_fd is not None else None

    # --- what it holds --------------------------------------------------------
    @property
    def memory(self) -> int:
        return int(self.meta["memory"])

    @property
    def hostname(self) -> str:
        return str(self.meta["hostname"])

    @property
    def has_guest(self) -> bool:
        return bool(self.meta["has_guest"])

    @property
    def image_length(self) -> int:
        return int(self.meta["image_length"])

    @property
    def host_functions(self) -> dict[str, tuple[tuple[str, ...], str]]:
        """name -> (parameter types, result type) the guest may call."""
        return {n: (tuple(p), r) for n, (p, r) in self.meta["host_functions"].items()}

    def accounting(self) -> Any:
        """The guest frame allocator's state for a restore (computed once)."""
        acc = self._accounting
        if acc is None:
            from cove.kernel.physmem import PhysMem

            acc = self._accounting = PhysMem.accounting(self.refs)
        return acc

    def _take_staged(self) -> Any:
        """Memory readied for this snapshot's first restore, (PhysMem, a VM
        over it or None), or None."""
        while self._staged:
            got = self._staged.pop().take(self.memory, self.image_offset, self.image_length)
            if got is not None:
                return got
        return None

    def close(self) -> None:
        """Release the memory image now (restored sandboxes keep their own mapping)."""
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        guest = f"guest {self.meta.get('name', '?')}" if self.has_guest else "files only"
        return f"<Snapshot {guest}, {self.memory >> 20} MiB, {len(self.refs)} frames in use>"

    # --- files --------------------------------------------------------------
    def _refs_bytes(self) -> bytes:
        flat = array.array("I")
        for f in sorted(self.refs):
            flat.append(f)
            flat.append(self.refs[f])
        if sys.byteorder != "little":  # pragma: no cover
            flat.byteswap()
        return flat.tobytes()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the snapshot to ``path`` (atomically: a temporary file renamed)."""
        import json  # not at import: a restore reads the meta with cove.jsonread

        meta = json.dumps(self.meta, sort_keys=True).encode()
        refs = self._refs_bytes()
        image_offset = page_up(HEADER.size + len(meta) + len(refs) + len(self.state))
        length = self.image_length
        digest = Checksum()
        head = (MAGIC, FORMAT, 0, len(meta), len(refs), len(self.state), image_offset, length)
        digest.update(HEADER.pack(*head, bytes(32))[:-32])
        for part in (meta, refs, self.state):
            digest.update(part)
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, image_offset + length)
            os.pwrite(fd, meta + refs + self.state, HEADER.size)
            if length:
                assert self.image_fd is not None
                src = mmap.mmap(self.image_fd, length, mmap.MAP_SHARED, mmap.PROT_READ,
                                offset=self.image_offset)
                try:
                    view = memoryview(src)
                    for a, b in _runs(self.refs):
                        chunk = view[a * PAGE:b * PAGE]
                        digest.update(chunk)
                        _pwrite_all(fd, chunk, image_offset + a * PAGE)
                        chunk.release()
                    view.release()
                finally:
                    src.close()
            os.pwrite(fd, HEADER.pack(*head, digest.digest()), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Snapshot:
        """Read a saved snapshot. Raises SnapshotFormatError for anything that
        is not an intact snapshot of this format and cove version."""
        reading = Reading(path)
        if reading.problem is None and reading.image_length:
            # The image is hashed on a helper thread while this one readies a restore.
            _prepare_restore(reading)
        return cls.from_reading(reading)

    @classmethod
    def from_reading(cls, reading: Reading, staged: Staged | None = None) -> Snapshot:
        """The snapshot of a ``cove.snapfile.Reading`` once its checks pass
        (else SnapshotError/SnapshotFormatError, and ``staged`` is released).
        ``staged``: memory readied for the first restore (``cove.snapstage``)."""
        try:
            try:
                _meta_raw, refs, state, fd, image_offset = reading.finish()
            except FileProblem as e:
                raise (SnapshotError if e.kind == "open" else SnapshotFormatError)(
                    str(e)) from None
            meta = reading.meta_hint()  # of the bytes finish() just checked
            if meta is None:
                os.close(fd)
                raise SnapshotFormatError(f"{reading.name}: unreadable metadata")
            try:
                _check_origin(meta, reading.name)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            if staged is not None:
                staged.close()
            raise
        if not reading.image_length:
            os.close(fd)  # files only: no memory image to keep open
            if staged is not None:
                staged.close()
            return cls(meta, refs, state, None, image_offset)
        snap = cls(meta, refs, state, fd, image_offset)
        if staged is not None:
            snap._staged.append(staged)
        return snap


def _prepare_restore(reading: Reading) -> None:
    """Best effort, while a loaded image is checked: what a restore of a guest
    will need, done now (the syscall families imported, a VM in the pool)."""
    try:
        meta = reading.meta_hint()
        if meta is None or not meta.get("has_guest") or \
                meta.get("platform") not in SNAPSHOT_PLATFORMS:
            return
        _load_syscalls()
        from cove.platform.kvm import kvm_unavailable_reason, vmpool

        if kvm_unavailable_reason() is None:
            vmpool.prepare(1)
        _import_state_modules(reading.state)
    except Exception:  # the restore itself will say what is wrong
        pass


def _import_state_modules(state: bytes) -> None:
    """The modules the state's objects come from: cove's own only, and no
    private or __main__ module (the bytes may not be checked yet)."""
    import re

    for name in set(re.findall(rb"cove(?:\.[a-z][a-z0-9_]*)+", state)):
        try:
            importlib.import_module(name.decode())
        except Exception:  # a class or function name, not a module
            pass


def _check_origin(meta: dict[str, Any], name: str) -> None:
    if meta.get("cove") != __version__:
        raise SnapshotFormatError(f"{name}: made by cove {meta.get('cove')}; this is cove "
                                  f"{__version__}")
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if meta.get("python") != py:
        raise SnapshotFormatError(f"{name}: made under Python {meta.get('python')}; this is "
                                  f"Python {py}")


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


# --- capture ------------------------------------------------------------------------------
def capture(sb: Sandbox, live: Live | None) -> Snapshot:
    """Snapshot ``sb`` with ``live`` paused (or no guest)."""
    from cove import snapstate

    k = live.kernel if live is not None else None
    if k is not None and (k.init is None or not k.init.alive):
        k, live = None, None
    meta: dict[str, Any] = {
        "format": FORMAT, "cove": __version__,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "memory": sb.memory, "hostname": sb.hostname, "has_guest": k is not None,
        "rootfs": sb.rootfs, "cwd": sb.cwd, "user": list(sb.user), "env": sb.env,
        "host_functions": {}, "monotonic": time.monotonic(), "wall": time.time(),
        "image_length": 0,
    }
    refs: dict[int, int] = {}
    if k is not None:
        assert live is not None
        if k.platform.name not in SNAPSHOT_PLATFORMS:
            raise SnapshotNotSupported(
                f"snapshots of a running guest need the kvm platform; this sandbox runs on "
                f"{k.platform.name} (files-only snapshots work on any platform)")
        refs = snapstate.frame_refs(k)
        for f, n in refs.items():
            held = live.phys.refcount(f)
            if held != n:
                raise SnapshotError(f"guest memory accounting mismatch at frame {f:#x}: the "
                                    f"North holds {n} references, the allocator {held}")
        # The VM's own frames (kernel half, cpu areas, table pool, page tables)
        # travel in the image too, so a restore writes no page table.
        kvm = k.platform.export_image([mm.space for mm in snapstate.memory_maps(k)])
        for f in k.platform.image_frames(kvm):
            if f in refs or live.phys.refcount(f) != 1:
                raise SnapshotError(f"guest memory accounting mismatch at frame {f:#x}: the "
                                    "VM's own frame is shared")
            refs[f] = 1
        caps = k.platform.capabilities
        meta.update(name=live.name, platform=k.platform.name, xsave_size=caps.xsave_size,
                    xcr0=caps.xcr0, image_length=(max(refs, default=-1) + 1) * PAGE, kvm=kvm,
                    writable=[list(r) for r in _runs(dict.fromkeys(_writable_frames(k)))])
        if sb.host_functions is not None:
            meta["host_functions"] = {n: [list(p), r] for n, (p, r)
                                      in sb.host_functions.signatures().items()}
    try:
        state = snapstate.dump(snapstate.CaptureInfo(k, sb.vfs,
                                                     live.slots if live is not None else {}))
    except snapstate.StateError as e:
        raise SnapshotError(str(e)) from None
    image_fd = _write_image(live.phys, refs, meta["image_length"]) if k is not None else None
    return Snapshot(meta, refs, state, image_fd, 0)


def _writable_frames(k: Any) -> list[int]:
    """Frames the guest can write without a fault into the North (mapped
    writable, not copy-on-write): what ``prefault`` copies up front."""
    from bisect import bisect_left

    from cove import snapstate
    from cove.abi import flags as F

    out: list[int] = []
    for mm in snapstate.memory_maps(k):
        frames, cow = mm.frames, mm.cow
        vpns = sorted(frames)
        for v in mm.vmas:
            if v.prot & F.PROT_WRITE:
                lo = bisect_left(vpns, v.start >> 12)
                hi = bisect_left(vpns, v.end >> 12, lo)
                out += [frames[vpn] for vpn in vpns[lo:hi] if vpn not in cow]
    return out


def _write_image(phys: Any, refs: dict[int, int], length: int) -> int:
    """A sealed memfd with the frames in use at their physical offsets."""
    fd = os.memfd_create("cove-snapshot", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, length)
        mem = phys.mem
        for a, b in _runs(refs):
            chunk = mem[a * PAGE:b * PAGE]
            _pwrite_all(fd, chunk, a * PAGE)
            chunk.release()
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- restore ------------------------------------------------------------------------------
def check_host_functions(snap: Snapshot, hf: HostFunctions | None) -> None:
    """The restoring side must offer every function the snapshot records,
    with the same signature (extra functions are fine)."""
    from cove.hostfuncs import format_signature

    have = hf.signatures() if hf is not None else {}
    for name, sig in snap.host_functions.items():
        mine = have.get(name)
        if mine is None:
            raise SnapshotHostFunctionMismatch(
                name, f"host function {name!r} (recorded in the snapshot as "
                      f"{format_signature(name, sig)}) is missing")
        if mine != sig:
            raise SnapshotHostFunctionMismatch(
                name, f"host function {name!r} is {format_signature(name, mine)} here but "
                      f"{format_signature(name, sig)} in the snapshot")


def _materialize(snap: Snapshot, sb: Sandbox, stdio: Stdio, vm: tuple[Any, Any] | None = None,
                 *, prefault: bool = False) -> tuple[Any, Live | None]:
    """Build the snapshot's VFS and (if it has one) its live guest: in ``vm``
    (the (PhysMem, KvmPlatform) of a guest being replaced, reused in place),
    else in a VM from the pool. On failure ``vm`` is closed. ``prefault``:
    copy the image's pages now (``Sandbox.from_snapshot``)."""
    from cove import snapstate
    from cove.guestproc import Live
    from cove.kernel.hostio import HostStdio

    if not snap.has_guest:
        assert vm is None
        try:
            root = snapstate.load(snap.state, None, snap.ints)
        except snapstate.StateError as e:
            raise SnapshotError(str(e)) from None
        return root["vfs"], None
    _load_syscalls()
    if vm is None:
        platform_name = _resolve_platform(sb.config.platform)
        if platform_name not in SNAPSHOT_PLATFORMS:
            raise SnapshotNotSupported(f"restoring a guest needs the kvm platform, not "
                                       f"{platform_name}")
        from cove.kernel.physmem import PhysMem
        from cove.platform.kvm import vmpool

        # The image is mapped copy-on-write (MAP_PRIVATE), so every sandbox
        # restored from one snapshot shares its unchanged pages.
        phys = staged_vm = None
        staged = snap._take_staged()
        if staged is not None:
            phys, staged_vm = staged
            if not prefault:
                # Copied up front, so not shared: only for a prefault restore.
                if staged_vm is not None:
                    staged_vm.destroy()
                phys.close()
                phys = staged_vm = None
        if phys is not None:
            prefault = False  # done while the file was checked
        else:
            phys = PhysMem.from_image(snap.image_fd, snap.memory, snap.image_offset,
                                      snap.image_length)
        try:
            platform = staged_vm if staged_vm is not None else vmpool.take(phys)
        except BaseException:
            phys.close()
            raise
    else:
        phys, platform = vm
    live: Live | None = None
    faulter: threading.Thread | None = None
    try:
        if vm is not None:  # the same memory, in place: the old guest's pages go
            phys.replace(snap.image_fd, snap.image_offset, snap.image_length)
        if prefault:
            faulter = threading.Thread(target=_prefault, args=(phys, snap.meta["writable"]),
                                       name="cove-prefault")
            faulter.start()
        phys.adopt_accounting(snap.accounting())
        spaces = platform.adopt_image(snap.meta["kvm"], zap=vm is not None)
        caps = platform.capabilities
        if (caps.xsave_size, caps.xcr0) != (snap.meta["xsave_size"], snap.meta["xcr0"]):
            raise SnapshotError(
                f"the snapshot was taken on a CPU with XSAVE features {snap.meta['xcr0']:#x} "
                f"({snap.meta['xsave_size']} bytes); this one has {caps.xcr0:#x} "
                f"({caps.xsave_size} bytes)")
        hs = HostStdio.__new__(HostStdio)
        HostStdio.__init__(hs, None)  # type: ignore[arg-type]  # its kernel comes below
        pending: list[tuple[Any, int, int]] = []

        def make_hostfile(slot: int, flags: int) -> Any:
            from cove.kernel.hostfile import HostFile

            obj = HostFile.__new__(HostFile)
            pending.append((obj, slot, flags))
            return obj

        env = snapstate.RestoreEnv(platform, phys, make_hostfile, hs,
                                   aspaces=dict(enumerate(spaces)), ints=snap.ints)
        try:
            root = snapstate.load(snap.state, env)
        except snapstate.StateError as e:
            raise SnapshotError(str(e)) from None
        k = root["kernel"]
        k.platform, k.phys = platform, phys
        k.cpu = platform.cpu()
        k.cpu.set_timeslice(None)  # armed while it runs (guestproc.run_kernel)
        k.trace = None
        live = Live(k, phys, str(snap.meta.get("name", "guest")))
        if sb.config.trace:
            live.trace = k.trace = open(sb.config.trace, "w")
        snapstate.kernel_tables(root["side"], k)
        snapstate.rebase_monotonic(k, root["side"], time.monotonic() - snap.meta["monotonic"])
        k.boot_time = time.time() - (time.monotonic() - k.boot_monotonic)
        hs.kernel = k
        live.slots = _bind_stdio(hs, pending, stdio)
        _wake_host_waiters(k)
        if sb.host_functions is not None:
            sb.host_functions.attach(k)
        procfs = getattr(root["vfs"], "procfs", None)
        if procfs is not None:
            procfs.kernel = k
        live.stdio = stdio
        stdio.attached()
        if faulter is not None:
            faulter.join()
            faulter = None
        return root["vfs"], live
    except BaseException:
        if faulter is not None:
            faulter.join()
        if live is not None:
            live.stdio = None
            live.close()
        else:
            try:
                platform.close()
            except Exception:  # its frames may not match the half-restored memory
                platform.destroy()
            finally:
                phys.close()
        raise


_syscalls_loaded = False


def _load_syscalls() -> None:
    """What Kernel() does first: import every syscall family and its hooks
    (a restored kernel is never constructed)."""
    global _syscalls_loaded
    if not _syscalls_loaded:
        from cove.kernel.syscall import load_all

        load_all()
        _syscalls_loaded = True


def _resolve_platform(name: str) -> str:
    """What "auto" will pick (the image is mapped differently per platform)."""
    if name != "auto":
        return name
    from cove.platform.kvm import kvm_unavailable_reason

    return "kvm" if kvm_unavailable_reason() is None else "userland"


def _bind_stdio(hs: Any, pending: list[tuple[Any, int, int]], stdio: Stdio) -> dict[int, int]:
    """Turn each restored stdio file into a file over the restoring side's fd
    for its slot (the object keeps its identity: fd tables still hold it)."""
    from cove.fs.file import O_ACCMODE

    slots: dict[int, int] = {}
    for obj, slot, flags in pending:
        fd = stdio.fds[slot]
        real = hs.wrap(fd)
        if real is None:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                real = hs.wrap(null)
            finally:
                os.close(null)
        obj.__class__ = type(real)
        obj.__dict__.update(real.__dict__)
        obj.flags = (real.flags & O_ACCMODE) | (flags & ~O_ACCMODE)
        slots[real.fd] = slot
    return slots


def _wake_host_waiters(k: Any) -> None:
    """Threads that slept on a host fd re-run their call (on the new fds)."""
    for t in list(k.tasks.values()):
        b = t.blocked_on
        if b is not None and b.host_fd is not None and t.blocked_call is not None:
            k.sched.wake(t)


def restore_into(sb: Sandbox, snap: Snapshot, stdio: Stdio) -> None:
    """``Sandbox.restore``: checks first (nothing changes if they fail), then
    the old guest goes; a failure after that leaves the sandbox Unrecoverable."""
    try:
        check_host_functions(snap, sb.host_functions)
    except BaseException:
        stdio.close()
        raise
    # A guest on kvm with the snapshot's memory size is replaced in place: the
    # same VM and memory (the image mapped over it), no new VM.
    vm = sb._take_vm(snap.memory) if snap.has_guest else None
    if vm is None:
        sb._drop_live()
    try:
        vfs, live = _materialize(snap, sb, stdio, vm)
    except BaseException as e:
        stdio.close()
        sb._state = SandboxState.UNRECOVERABLE
        sb._why = f"restore failed: {e}"
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"restore failed: {e}") from e
    if live is None:
        stdio.close()
    _adopt(sb, snap, vfs, live)


def _adopt(sb: Sandbox, snap: Snapshot, vfs: Any, live: Live | None) -> None:
    sb.vfs = vfs
    sb._live = live
    sb.memory = snap.memory
    sb.hostname = snap.hostname
    meta = snap.meta
    sb.rootfs, sb.cwd = meta["rootfs"], meta["cwd"]
    sb.user = (int(meta["user"][0]), int(meta["user"][1]))
    sb.env = dict(meta["env"])
    sb._state = SandboxState.READY
    sb._why = ""


def sandbox_from(cls: type[Sandbox], snap: Snapshot, hf: HostFunctions | None,
                 config: SandboxConfig | None, stdio: Stdio, *, prefault: bool = False
                 ) -> Sandbox:
    """``Sandbox.from_snapshot``."""
    config = config if config is not None else SandboxConfig()
    try:
        if config.memory is not None and parse_memory(config.memory) != snap.memory:
            raise SnapshotLayoutConflict(
                f"memory {config.memory} conflicts with the snapshot's {snap.memory >> 20}M; "
                "the snapshot decides layout (leave memory unset)")
        if config.hostname is not None and config.hostname != snap.hostname:
            raise SnapshotLayoutConflict(
                f"hostname {config.hostname!r} conflicts with the snapshot's "
                f"{snap.hostname!r}; the snapshot decides layout (leave hostname unset)")
        check_host_functions(snap, hf)
    except BaseException:
        stdio.close()
        raise
    sb = cls.__new__(cls)
    sb.__init__(rootfs=snap.meta["rootfs"], config=config, host_functions=hf,  # type: ignore[misc]
                vfs=_PLACEHOLDER_VFS)
    try:
        vfs, live = _materialize(snap, sb, stdio, prefault=prefault)
    except BaseException as e:
        stdio.close()
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"from_snapshot failed: {e}") from e
    if live is None:
        stdio.close()
    _adopt(sb, snap, vfs, live)
    return sb


_PLACEHOLDER_VFS: Any = object()  # replaced by the snapshot's before the sandbox is used
