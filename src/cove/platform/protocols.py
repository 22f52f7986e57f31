"""The platform contract's interfaces: ``Platform``, ``Cpu``, ``AddressSpace``,
``Context`` and the ``NativeIo`` hand-shake, as ``typing.Protocol`` classes.

``cove.platform.base`` re-exports them (``from cove.platform.base import
Platform`` works as before) but defines them here, imported on first use:
a Protocol needs ``typing`` at run time (~2.5 ms of every start), and only
annotations (strings) and the contract tests' ``isinstance`` checks use them.
See ``cove.platform.base`` for the vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem
    from cove.platform.base import Capabilities, Exit, UserRegs


@runtime_checkable
class Context(Protocol):
    """One guest thread's user-mode CPU state. Created by ``Platform.create_context``.

    ``regs``, ``fs_base`` and ``gs_base`` are plain data: the North reads and
    writes them freely between runs and the next ``run`` loads them. The
    FPU/SSE/AVX state is kept lazily (it only moves when the cpu switches
    threads), so it is read and written through ``get_fpu``/``set_fpu``.

    Guest code can change its FS/GS base itself (``wrfsbase`` runs natively
    on some hypervisors even without CR4.FSGSBASE); ``regs`` are always
    current after ``run``, but the bases only after the context was switched
    out or ``sync()`` was called. Well-behaved programs use arch_prctl, which
    goes through the North anyway (don't advertise HWCAP2_FSGSBASE).
    """

    regs: UserRegs
    fs_base: int
    gs_base: int

    def get_fpu(self) -> bytes:
        """The XSAVE image (the platform's ``capabilities.xsave_size`` bytes,
        legacy FXSAVE region first), current even if the context is live on a cpu."""
        ...

    def set_fpu(self, image: bytes | bytearray | memoryview) -> None:
        """Replace the XSAVE image; the next ``run`` of this context loads it.
        Raises ValueError if the size is wrong."""
        ...

    def sync(self) -> None:
        """Pull ``fs_base``/``gs_base`` (and the FPU image) from the cpu this
        context is loaded on, if any. Costs host calls; needed only before
        reading the bases of a running thread (ARCH_GET_FS, fork, core dump)."""
        ...

    def copy(self) -> Context:
        """A new context with the same registers, bases and FPU state (fork, clone)."""
        ...


@runtime_checkable
class AddressSpace(Protocol):
    """One set of guest page tables. Addresses are user virtual addresses in
    ``[0, USER_ADDRESS_LIMIT)``, page aligned; lengths are multiples of 4 KiB.
    Passing anything else is a North bug and raises ValueError.

    Changes take effect for every cpu before the method returns (stale
    translations are shot down), so an unmapped frame may be freed at once.
    """

    def map(self, vaddr: int, frame: int, prot: int) -> None:
        """Map one page to ``frame`` with ``prot`` (PROT_* bits; PROT_NONE keeps
        the frame recorded but inaccessible), replacing any previous mapping.
        x86 cannot express write-only or exec-only: W implies R, X implies R.
        Raises Errno(ENOMEM) if a page-table frame cannot be allocated."""
        ...

    def map_range(self, vaddr: int, frames: list[int], prot: int) -> None:
        """``map`` for consecutive pages starting at ``vaddr``."""
        ...

    def unmap(self, vaddr: int, length: int) -> list[int]:
        """Remove mappings in the range (holes are fine); returns the frames that
        were mapped there, in address order, so the North can drop its references."""
        ...

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        """Change the protection of the mapped pages in the range (holes skipped)."""
        ...

    def lookup(self, vaddr: int) -> tuple[int, int] | None:
        """``(frame, prot)`` of the page containing ``vaddr``, or None if unmapped."""
        ...

    def translate(self, vaddr: int, write: bool = False) -> int | None:
        """The guest physical address backing ``vaddr``, or None if a user-mode
        access (a write if ``write``) would fault: the EFAULT test."""
        ...

    def flush(self) -> None:
        """Extra TLB flush before the next return to user mode. Never needed
        for correctness after the methods above; kept for callers that edit
        page tables by other means."""
        ...

    def destroy(self) -> None:
        """Free the page-table frames. The address space must not be running."""
        ...


@runtime_checkable
class Cpu(Protocol):
    """Runs contexts on the host thread that calls ``run``."""

    def run(self, ctx: Context, aspace: AddressSpace) -> Exit:
        """Load ``ctx`` into the cpu under ``aspace``, run user code until the
        next syscall, fault or preemption, store the new state into ``ctx`` and
        say why. Raises PlatformError if the host side failed."""
        ...

    def kick(self) -> None:
        """From any host thread: make the current (or the next) ``run`` return
        INTERRUPTED soon. Async-signal-safe enough to call from a signal handler."""
        ...

    def set_timeslice(self, seconds: float | None) -> None:
        """Preempt a run after about ``seconds`` of guest execution (None: never).
        The timer belongs to the host thread that calls ``run``."""
        ...

    def close(self) -> None: ...


class NativeGrant(Protocol):
    """The North's yes to one guest read/write running natively (``NativeIo``)."""

    key: object  # the host open file: equal keys are one host file description
    host_fd: int  # the supervisor's fd of it (the platform installs a copy in the guest)
    limit: int  # the most bytes the call can move (a read: what the pipe holds)

    def commit(self) -> None:
        """The platform let the call run: the North accounts for the bytes
        moving (wakes the other end's waiters)."""
        ...

    def hold(self) -> None:
        """The call may still be running in the host while the North runs
        (several guest threads at once): until ``release``, the North grants
        no other call on this host file and makes none itself that could
        leave this one without the bytes or room it was granted."""
        ...

    def release(self) -> None:
        """The held call has ended (its thread's next event): commit again
        (whoever slept meanwhile wakes) and let others in."""
        ...


@runtime_checkable
class NativeIo(Protocol):
    """The narrow interface through which a platform with
    ``Capabilities.native_pipes`` learns about guest fds, and nothing more.

    ``native_rw`` is called from inside ``Cpu.run`` while ``ctx`` waits in a
    read(2)/write(2)/readv(2)/writev(2) of ``count`` bytes on guest ``fd``
    (``write``: data goes from the guest to the fd). It answers with a grant
    only when the call, run by the host kernel on the grant's host file,
    cannot block and can change nothing the North keeps but the pipe's bytes;
    else None (the North then handles the call as usual). It has no effect
    until ``commit``. Guest memory is the platform's to check.
    """

    def native_rw(self, ctx: Context, fd: int, write: bool, count: int) -> NativeGrant | None:
        ...


@runtime_checkable
class Platform(Protocol):
    """One sandbox's machine: guest physical memory plus the means to run on it."""

    name: str
    physmem: PhysMem
    capabilities: Capabilities

    def create_address_space(self) -> AddressSpace: ...

    def create_context(self) -> Context:
        """A context with zeroed registers (rflags = 0x202) and the default FPU state."""
        ...

    def create_cpu(self) -> Cpu:
        """A new cpu. Raises PlatformError if the host refuses one."""
        ...

    def cpu(self) -> Cpu:
        """The calling host thread's cpu, created on first use."""
        ...

    def run(self, ctx: Context, aspace: AddressSpace) -> Exit:
        """``self.cpu().run(ctx, aspace)``."""
        ...

    def close(self) -> None:
        """Release the VM / stub processes. Guest physical memory stays (it is
        the caller's ``PhysMem`` if one was passed in)."""
        ...
