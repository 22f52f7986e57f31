"""Time structs: timespec, timeval, timezone, itimerspec, itimerval, tms.

x86-64 has no separate 64-bit-time variants: ``struct __kernel_timespec`` and
the old ``struct timespec`` are the same 16 bytes here.
"""

from __future__ import annotations

from cove.abi.layout import Layout

TIMESPEC = Layout("""
    struct timespec
    q tv_sec
    q tv_nsec
""")

TIMEVAL = Layout("""
    struct timeval
    q tv_sec
    q tv_usec
""")

TIMEZONE = Layout("""
    struct timezone
    i tz_minuteswest
    i tz_dsttime
""")

# timer_settime/timerfd_settime: interval first, then value.
ITIMERSPEC = Layout("""
    struct itimerspec
    q it_interval.tv_sec
    q it_interval.tv_nsec
    q it_value.tv_sec
    q it_value.tv_nsec
""")

ITIMERVAL = Layout("""
    struct itimerval
    q it_interval.tv_sec
    q it_interval.tv_usec
    q it_value.tv_sec
    q it_value.tv_usec
""")

# linux/times.h: times(2), in clock ticks (USER_HZ = 100 on x86-64).
TMS = Layout("""
    struct tms
    q tms_utime
    q tms_stime
    q tms_cutime
    q tms_cstime
""")
USER_HZ = 100
