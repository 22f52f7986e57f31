"""File and file-system structs: stat, statx, statfs, flock, open_how, iovec,
and the variable-length linux_dirent64 records of getdents64."""

from __future__ import annotations

from cove.abi.layout import Layout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

# asm/stat.h: the x86-64 `struct stat` of stat/fstat/lstat/newfstatat.
STAT = Layout("""
    struct stat
    Q st_dev
    Q st_ino
    Q st_nlink
    I st_mode
    I st_uid
    I st_gid
    4x __pad0
    Q st_rdev
    q st_size
    q st_blksize
    q st_blocks
    q st_atime
    Q st_atime_nsec
    q st_mtime
    Q st_mtime_nsec
    q st_ctime
    Q st_ctime_nsec
    24x __unused
""")

# linux/stat.h. Linux 6.8+ fills fields past stx_dio_offset_align (stx_subvol,
# atomic-write limits) only when asked by mask bits cove does not set; they stay 0.
STATX = Layout("""
    struct statx
    I stx_mask
    I stx_blksize
    Q stx_attributes
    I stx_nlink
    I stx_uid
    I stx_gid
    H stx_mode
    2x __spare0
    Q stx_ino
    Q stx_size
    Q stx_blocks
    Q stx_attributes_mask
    q stx_atime.tv_sec
    I stx_atime.tv_nsec
    4x stx_atime.__reserved
    q stx_btime.tv_sec
    I stx_btime.tv_nsec
    4x stx_btime.__reserved
    q stx_ctime.tv_sec
    I stx_ctime.tv_nsec
    4x stx_ctime.__reserved
    q stx_mtime.tv_sec
    I stx_mtime.tv_nsec
    4x stx_mtime.__reserved
    I stx_rdev_major
    I stx_rdev_minor
    I stx_dev_major
    I stx_dev_minor
    Q stx_mnt_id
    I stx_dio_mem_align
    I stx_dio_offset_align
    96x __spare3
""")

# asm-generic/statfs.h with 64-bit words: statfs/fstatfs.
STATFS = Layout("""
    struct statfs
    q f_type
    q f_bsize
    q f_blocks
    q f_bfree
    q f_bavail
    q f_files
    q f_ffree
    i f_fsid.val[0] f_fsid0
    i f_fsid.val[1] f_fsid1
    q f_namelen
    q f_frsize
    q f_flags
    32x f_spare
""")

# asm-generic/fcntl.h: F_GETLK/F_SETLK/F_OFD_* (no flock64 on x86-64: same thing).
FLOCK = Layout("""
    struct flock
    h l_type
    h l_whence
    4x
    q l_start
    q l_len
    i l_pid
    4x
""")

# linux/openat2.h: openat2(2); the guest passes its size, so accept larger
# (zero-tailed) versions as the kernel does (copy_struct_from_user).
OPEN_HOW = Layout("""
    struct open_how
    Q flags
    Q mode
    Q resolve
""")

# linux/uio.h: readv/writev/preadv/process_vm_*; UIO_MAXIOV entries at most.
IOVEC = Layout("""
    struct iovec
    Q iov_base
    Q iov_len
""")
UIO_MAXIOV = 1024

# linux_dirent64 (fs/readdir.c; glibc's struct dirent64 has the same header):
# a fixed 19-byte header, the NUL-terminated name, zero padding to 8 bytes.
DIRENT64 = Layout("""
    struct dirent64
    Q d_ino
    q d_off
    H d_reclen
    B d_type
""")
_DIRENT64_PACK = DIRENT64.struct.pack_into


def dirent64_reclen(namelen: int) -> int:
    """Record length for a name of ``namelen`` bytes (header + name + NUL, 8-aligned)."""
    return (DIRENT64.size + namelen + 1 + 7) & ~7


def pack_dirent64(buf: Any, offset: int, ino: int, off: int, d_type: int, name: bytes) -> int:
    """Write one linux_dirent64 record at ``offset``; returns its d_reclen.

    ``off`` is the d_off cookie a later lseek/getdents resumes from. The
    caller checks that the record fits (getdents64 returns EINVAL if even the
    first one does not).
    """
    reclen = dirent64_reclen(len(name))
    _DIRENT64_PACK(buf, offset, ino, off, reclen, d_type)
    start = offset + DIRENT64.size
    end = offset + reclen
    buf[start : start + len(name)] = name
    buf[start + len(name) : end] = bytes(end - start - len(name))
    return reclen
