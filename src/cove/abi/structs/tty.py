"""Terminal structs as the kernel's ioctls see them (asm/termbits.h).

glibc's `struct termios` is different (NCCS 32, speed fields): tcgetattr
converts. The North only ever sees this 36-byte kernel struct (TCGETS/TCSETS*)
or termios2 (TCGETS2/TCSETS*2).
"""

from __future__ import annotations

from cove.abi.layout import Layout

TERMIOS = Layout("""
    struct termios
    I c_iflag
    I c_oflag
    I c_cflag
    I c_lflag
    B c_line
    19s c_cc
""")

TERMIOS2 = Layout("""
    struct termios2
    I c_iflag
    I c_oflag
    I c_cflag
    I c_lflag
    B c_line
    19s c_cc
    I c_ispeed
    I c_ospeed
""")

WINSIZE = Layout("""
    struct winsize
    H ws_row
    H ws_col
    H ws_xpixel
    H ws_ypixel
""")
