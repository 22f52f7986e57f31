"""Extended attributes. cove's filesystems store none, so every file has an
empty attribute list (what tmpfs without ACLs answers): get → ENODATA, list →
nothing, set → EOPNOTSUPP. Paths are still resolved, so ENOENT and friends are
Linux's."""

from __future__ import annotations

from cove.abi.errno import E, Errno
from cove.kernel.syscall import FD, INT, PATH, PTR, ULONG, syscall
from cove.kernel.syscalls.fs_at import fd_location

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_CREATE, XATTR_REPLACE = 1, 2


def _name(t: Task, ptr: int) -> str:
    name = t.mm.read_cstring(ptr, XATTR_NAME_MAX + 1)
    if not name or len(name) > XATTR_NAME_MAX:
        raise Errno(E.ERANGE)
    if b"." not in name:
        raise Errno(E.EOPNOTSUPP)  # no namespace prefix (user., trusted., ...)
    return name.decode("utf-8", "surrogateescape")


def _resolve(t: Task, path: str, follow: bool) -> None:
    t.kernel.vfs.resolve(t.fs, None, path, follow=follow)


def _get(t: Task, name_ptr: int, size: int) -> int:
    _name(t, name_ptr)
    raise Errno(E.ENODATA)


def _set(t: Task, name_ptr: int, size: int, flags: int) -> int:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise Errno(E.EINVAL)
    _name(t, name_ptr)
    if size > XATTR_SIZE_MAX:
        raise Errno(E.E2BIG)
    raise Errno(E.EOPNOTSUPP)


@syscall("getxattr", PATH, PTR, PTR, ULONG)
def getxattr(t: Task, path: str, name: int, value: int, size: int) -> int:
    _resolve(t, path, True)
    return _get(t, name, size)


@syscall("lgetxattr", PATH, PTR, PTR, ULONG)
def lgetxattr(t: Task, path: str, name: int, value: int, size: int) -> int:
    _resolve(t, path, False)
    return _get(t, name, size)


@syscall("fgetxattr", FD, PTR, PTR, ULONG)
def fgetxattr(t: Task, fd: int, name: int, value: int, size: int) -> int:
    t.files.get(fd)
    return _get(t, name, size)


@syscall("listxattr", PATH, PTR, ULONG)
def listxattr(t: Task, path: str, out: int, size: int) -> int:
    _resolve(t, path, True)
    return 0


@syscall("llistxattr", PATH, PTR, ULONG)
def llistxattr(t: Task, path: str, out: int, size: int) -> int:
    _resolve(t, path, False)
    return 0


@syscall("flistxattr", FD, PTR, ULONG)
def flistxattr(t: Task, fd: int, out: int, size: int) -> int:
    t.files.get(fd)
    return 0


@syscall("setxattr", PATH, PTR, PTR, ULONG, INT)
def setxattr(t: Task, path: str, name: int, value: int, size: int, flags: int) -> int:
    _resolve(t, path, True)
    return _set(t, name, size, flags)


@syscall("lsetxattr", PATH, PTR, PTR, ULONG, INT)
def lsetxattr(t: Task, path: str, name: int, value: int, size: int, flags: int) -> int:
    _resolve(t, path, False)
    return _set(t, name, size, flags)


@syscall("fsetxattr", FD, PTR, PTR, ULONG, INT)
def fsetxattr(t: Task, fd: int, name: int, value: int, size: int, flags: int) -> int:
    fd_location(t, fd)
    return _set(t, name, size, flags)


@syscall("removexattr", PATH, PTR)
def removexattr(t: Task, path: str, name: int) -> int:
    _resolve(t, path, True)
    _name(t, name)
    raise Errno(E.ENODATA)


@syscall("lremovexattr", PATH, PTR)
def lremovexattr(t: Task, path: str, name: int) -> int:
    _resolve(t, path, False)
    _name(t, name)
    raise Errno(E.ENODATA)


@syscall("fremovexattr", FD, PTR)
def fremovexattr(t: Task, fd: int, name: int) -> int:
    t.files.get(fd)
    _name(t, name)
    raise Errno(E.ENODATA)
