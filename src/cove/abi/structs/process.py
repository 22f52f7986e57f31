"""Process and thread structs: utsname, sysinfo, rusage, rlimit, sched_param,
robust_list_head, clone_args (clone3), rseq."""

from __future__ import annotations

from cove.abi.layout import Layout

# linux/utsname.h `struct new_utsname`: uname(2). Six NUL-padded 65-byte fields.
UTSNAME = Layout("""
    struct new_utsname
    65s sysname
    65s nodename
    65s release
    65s version
    65s machine
    65s domainname
""")

# linux/sysinfo.h: sysinfo(2). Sizes are in units of mem_unit bytes.
SYSINFO = Layout("""
    struct sysinfo
    q uptime
    Q loads[0] loads0
    Q loads[1] loads1
    Q loads[2] loads2
    Q totalram
    Q freeram
    Q sharedram
    Q bufferram
    Q totalswap
    Q freeswap
    H procs
    2x pad
    4x
    Q totalhigh
    Q freehigh
    I mem_unit
    4x
""")
SI_LOAD_SHIFT = 16  # loads[] are fixed point with this many fraction bits

# linux/resource.h: getrusage/wait4. The two times are struct timeval.
RUSAGE = Layout("""
    struct rusage
    q ru_utime.tv_sec
    q ru_utime.tv_usec
    q ru_stime.tv_sec
    q ru_stime.tv_usec
    q ru_maxrss
    q ru_ixrss
    q ru_idrss
    q ru_isrss
    q ru_minflt
    q ru_majflt
    q ru_nswap
    q ru_inblock
    q ru_oublock
    q ru_msgsnd
    q ru_msgrcv
    q ru_nsignals
    q ru_nvcsw
    q ru_nivcsw
""")

# getrlimit/setrlimit/prlimit64 (RLIM_INFINITY = all ones).
RLIMIT = Layout("""
    struct rlimit
    Q rlim_cur
    Q rlim_max
""")

SCHED_PARAM = Layout("""
    struct sched_param
    i sched_priority
""")

# linux/futex.h: set_robust_list's head (the list links point at
# list.next fields; futex_offset locates the futex word from each entry).
ROBUST_LIST_HEAD = Layout("""
    struct robust_list_head
    Q list.next list_next
    q futex_offset
    Q list_op_pending
""")

# linux/sched.h: clone3(2). Guests pass the size they know: VER0 (64 bytes),
# VER1 (+set_tid), VER2 (+cgroup); larger sizes must be zero past what we know.
CLONE_ARGS = Layout("""
    struct clone_args
    Q flags
    Q pidfd
    Q child_tid
    Q parent_tid
    Q exit_signal
    Q stack
    Q stack_size
    Q tls
    Q set_tid
    Q set_tid_size
    Q cgroup
""")

# linux/rseq.h: the per-thread area registered with rseq(2), 32-byte aligned.
# Linux 6.3+ adds node_id (24) and mm_cid (28) in what is padding here; a guest
# learns which it may use from AT_RSEQ_FEATURE_SIZE.
RSEQ = Layout("""
    struct rseq
    I cpu_id_start
    I cpu_id
    Q rseq_cs
    I flags
    12x
""")
RSEQ_ORIG_SIZE = 32

RSEQ_CS = Layout("""
    struct rseq_cs
    I version
    I flags
    Q start_ip
    Q post_commit_offset
    Q abort_ip
""")
