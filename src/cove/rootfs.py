"""Building a sandbox's filesystem tree from what the user declared.

The root is always an overlay: an in-memory writable layer over a read-only
lower (the host's ``/``, a host directory, a tar archive or an OCI image), so
nothing the guest does ever reaches the lower layer. cove's own ``/dev``,
``/proc`` and ``/tmp`` are mounted on top; ``--mount`` adds more.
"""

from __future__ import annotations

import os

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.fs.devfs import make_devfs, register_drivers
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_NODEV, MS_NOSUID, MS_RDONLY
from cove.fs.node import S_ISVTX, FileSystem
from cove.fs.overlay import OverlayFS
from cove.fs.vfs import VFS


class RootfsError(Exception):
    """The declared rootfs or a mount cannot be used (the user's input is wrong)."""


@dataclass(frozen=True)
class MountSpec:
    source: str  # host path
    target: str  # path in the sandbox
    writable: bool = False  # rw: writes land in an in-memory layer, never on the host

    @classmethod
    def parse(cls, text: str) -> MountSpec:
        """``SRC:DST[:ro|rw]``."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise RootfsError(f"--mount {text}: expected SRC:DST[:ro|rw]")
        mode = parts[2] if len(parts) == 3 else "ro"
        if mode not in ("ro", "rw"):
            raise RootfsError(f"--mount {text}: mode must be ro or rw, not {mode!r}")
        if not parts[1].startswith("/"):
            raise RootfsError(f"--mount {text}: the sandbox path must be absolute")
        return cls(parts[0], parts[1], mode == "rw")


def open_lower(rootfs: str) -> FileSystem:
    """The read-only lower layer named by ``--rootfs``."""
    if rootfs == "host":
        return HostFS("/")
    if os.path.isdir(rootfs):
        if os.path.isfile(os.path.join(rootfs, "oci-layout")):
            from cove.fs.oci import open_oci_image

            return open_oci_image(rootfs)
        return HostFS(rootfs)
    if not os.path.exists(rootfs):
        raise RootfsError(f"{rootfs}: no such file or directory")
    import tarfile  # only tar/OCI rootfs need it

    try:
        with tarfile.open(rootfs) as tf:
            names = set(tf.getnames()[:64])
    except (tarfile.TarError, OSError) as e:
        raise RootfsError(f"{rootfs}: not a directory, tar archive or OCI image ({e})") from e
    if "manifest.json" in names or "oci-layout" in names or "index.json" in names:
        from cove.fs.oci import open_oci_image

        return open_oci_image(rootfs)
    from cove.fs.tarfs import TarFS

    return TarFS(rootfs)


def _mkdir_p(vfs: VFS, path: str) -> None:
    ctx = vfs.context()
    cur = ""
    for part in [p for p in path.split("/") if p]:
        cur += "/" + part
        try:
            vfs.mkdir(ctx, None, cur, 0o755)
        except Errno as e:
            if e.errno != E.EEXIST:
                raise


def build_vfs(rootfs: str = "host", mounts: tuple[MountSpec, ...] = ()) -> VFS:
    lower = open_lower(rootfs)
    vfs = VFS(OverlayFS(MemFS(), [lower]), source=rootfs)
    register_drivers(vfs.device_openers)
    from cove.kernel.pipe import install_fifos

    install_fifos(vfs)  # FIFOs open as cove pipes
    for path in ("/dev", "/proc", "/tmp", "/sys"):
        _mkdir_p(vfs, path)
    vfs.mount("/dev", make_devfs(), flags=MS_NOSUID, source="devfs")
    vfs.mount("/tmp", MemFS(root_mode=0o777 | S_ISVTX), flags=MS_NOSUID | MS_NODEV,
              source="tmpfs")
    from cove.kernel.procfs import make_procfs

    vfs.procfs = make_procfs(vfs)  # type: ignore[attr-defined]
    vfs.mount("/proc", vfs.procfs, flags=MS_NOSUID | MS_NODEV, source="proc")  # type: ignore[attr-defined]
    for m in mounts:
        if not os.path.exists(m.source):
            raise RootfsError(f"--mount {m.source}: no such file or directory")
        if not os.path.isdir(m.source):
            raise RootfsError(f"--mount {m.source}: only directories can be mounted")
        fs: FileSystem = HostFS(m.source)
        if m.writable:
            fs = OverlayFS(MemFS(), [fs])
        _mkdir_p(vfs, m.target)
        vfs.mount(m.target, fs, flags=0 if m.writable else MS_RDONLY, source=m.source)
    return vfs
