"""Mounts and locations: where an inode sits in the sandbox's one tree."""

from __future__ import annotations

import itertools

from cove.dataclass import dataclass
from cove.fs.node import FileSystem, Inode

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8

_mount_ids = itertools.count(1)


class Mount:
    """A filesystem grafted onto a directory (``mountpoint``) of its parent mount."""

    __slots__ = ("flags", "fs", "id", "mountpoint", "parent", "root", "source")

    def __init__(self, fs: FileSystem, parent: Mount | None, mountpoint: Location | None,
                 flags: int = 0, source: str = "none") -> None:
        self.id = next(_mount_ids)
        self.fs = fs
        self.root: Inode = fs.root
        self.parent = parent
        self.mountpoint = mountpoint
        self.flags = flags | (MS_RDONLY if fs.readonly else 0)
        self.source = source

    @property
    def readonly(self) -> bool:
        return bool(self.flags & MS_RDONLY)

    def __repr__(self) -> str:
        return f"<Mount {self.id} {self.fs.name} ro={self.readonly}>"


@dataclass(frozen=True, slots=True)
class Location:
    """An inode as reached through a mount (Linux's ``struct path``)."""

    mount: Mount
    inode: Inode

    def same(self, other: Location) -> bool:
        return self.mount is other.mount and self.inode.key == other.inode.key

    @property
    def is_mount_root(self) -> bool:
        return self.inode.key == self.mount.root.key

    def parent_location(self) -> Location:
        """``..`` ignoring any chroot: crosses mount roots upwards."""
        loc = self
        while loc.is_mount_root and loc.mount.mountpoint is not None:
            loc = loc.mount.mountpoint
        return Location(loc.mount, loc.inode.parent())
