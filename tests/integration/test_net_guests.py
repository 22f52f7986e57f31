"""End-to-end sockets: C guests (AF_UNIX echo across fork, SCM_RIGHTS, datagrams,
TCP/UDP/IPv6 on loopback, poll/select/epoll event loops) in cove, static and
static-pie, and natively to keep their expectations honest; Python's asyncio
over a socketpair and 127.0.0.1 in the sandbox. Every run is checked from
the host side too: the syscall trace shows what cove answered, and an audit
hook shows that the host's socket() was never called (cove answers guest
sockets with its own objects)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import GUESTS as GUEST_SOURCES
from tests.conftest import needs_kvm

GUESTS = ("net_unix", "net_inet", "net_poll")
ENETUNREACH = 101

_host_sockets: list[tuple[str, tuple]] = []
_watching = [False]


def _audit(event: str, args: tuple) -> None:
    if _watching[0] and event.startswith("socket."):
        _host_sockets.append((event, args))


sys.addaudithook(_audit)


@pytest.fixture
def host_socket_watch():
    """Records every socket operation of this (the host) process meanwhile."""
    _host_sockets.clear()
    before = _socket_fds()
    _watching[0] = True
    yield _host_sockets
    _watching[0] = False
    assert _socket_fds() <= before, "the host process gained socket fds"


def _socket_fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add(link)
    return out


def run_traced(guest_dir: Path, argv: list[str], trace: Path) -> object:
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    sb = Sandbox(config=SandboxConfig(memory="512M", timeout=100, trace=str(trace)),
                 mounts=(MountSpec(str(guest_dir), "/guests"),))
    stdin = os.open(os.devnull, os.O_RDONLY)
    try:
        return sb.run(argv, capture_output=True, stdin=stdin)
    finally:
        os.close(stdin)


def trace_calls(trace: Path, *names: str) -> list[dict]:
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    return [r for r in recs if r["syscall"] in names]


@needs_kvm
@pytest.mark.timeout(200)
@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
@pytest.mark.parametrize("guest", GUESTS)
def test_net_guest_in_cove(build_guest, guest_dir, tmp_path, host_socket_watch, guest, pie):
    exe = build_guest(guest, pie=pie)
    argv = [f"/guests/{exe.name}"] + (["--sandbox"] if guest == "net_inet" else [])
    trace = tmp_path / "trace.jsonl"
    r = run_traced(guest_dir, argv, trace)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"
    made = trace_calls(trace, "socket", "socketpair")
    assert any(rec["result"] >= 0 for rec in made)  # cove handed out its own sockets
    assert host_socket_watch == []
    if guest == "net_inet":
        # Every connect to the outside got ENETUNREACH from cove itself.
        unreachable = [rec for rec in trace_calls(trace, "connect")
                       if rec["result"] == -ENETUNREACH]
        assert len(unreachable) >= 11
        assert [rec for rec in trace_calls(trace, "sendto") if rec["result"] == -ENETUNREACH]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("guest", GUESTS)
def test_native_linux_agrees(build_guest, guest):
    """The guests' expectations hold on the host kernel itself (net_inet without
    --sandbox: the host has a real network)."""
    exe = build_guest(guest)
    r = subprocess.run([str(exe)], capture_output=True, timeout=100)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"


ASYNCIO_ECHO = textwrap.dedent("""
    import asyncio, socket

    async def main():
        # An echo over a socketpair (what the event loop itself also uses).
        a, b = socket.socketpair()
        r1, w1 = await asyncio.open_connection(sock=a)
        r2, w2 = await asyncio.open_connection(sock=b)
        w1.write(b"ping\\n")
        await w1.drain()
        w2.write((await r2.readline()).upper())
        await w2.drain()
        print("pair", (await r1.readline()).decode().strip())

        # A TCP echo server on 127.0.0.1 with several clients at once.
        async def handle(r, w):
            while line := await r.readline():
                w.write(b"echo:" + line)
                await w.drain()
            w.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        async def client(i):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            got = []
            for n in range(3):
                w.write(f"{i}-{n}\\n".encode())
                await w.drain()
                got.append((await r.readline()).decode().strip())
            w.close()
            await w.wait_closed()
            return got

        results = await asyncio.gather(*(client(i) for i in range(4)))
        print("tcp", results[2])
        srv.close()
        await srv.wait_closed()
        infos = socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
        print("localhost", sorted({ai[4][0] for ai in infos}))
        try:
            await asyncio.open_connection("8.8.8.8", 53)
        except OSError as e:
            print("outside", e.errno)

    asyncio.run(main())
""")


@needs_kvm
@pytest.mark.timeout(300)
def test_python_asyncio_echo_in_the_sandbox(guest_dir, tmp_path, host_socket_watch):
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("/usr/bin/python3 is not installed on this host")
    (guest_dir / "asyncio_echo.py").write_text(ASYNCIO_ECHO)
    trace = tmp_path / "trace.jsonl"
    r = run_traced(guest_dir, ["/usr/bin/python3", "/guests/asyncio_echo.py"], trace)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "pair PING"
    assert lines[1] == "tcp ['echo:2-0', 'echo:2-1', 'echo:2-2']"
    assert lines[2].startswith("localhost [") and "127.0.0.1" in lines[2]
    assert lines[3] == f"outside {ENETUNREACH}"
    assert trace_calls(trace, "socketpair") and trace_calls(trace, "accept4")
    assert host_socket_watch == []


@needs_kvm
@pytest.mark.timeout(300)
def test_python_socket_semantics_match_the_host(guest_dir, tmp_path, host_socket_watch):
    """tests/guests/net_semantics.py prints ~115 lines of socket behaviour
    (errnos, poll masks, names, options, FIN/RST, UDP, fd passing); cove must
    print exactly what the host kernel prints."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("/usr/bin/python3 is not installed on this host")
    script = guest_dir / "net_semantics.py"
    script.write_bytes((GUEST_SOURCES / "net_semantics.py").read_bytes())
    want = subprocess.run(["/usr/bin/python3", str(script)], capture_output=True, timeout=100)
    assert want.returncode == 0, want.stderr.decode()
    r = run_traced(guest_dir, ["/usr/bin/python3", "/guests/net_semantics.py"],
                   tmp_path / "trace.jsonl")
    assert r.returncode == 0, r.stderr.decode()
    got_lines = r.stdout.decode().splitlines()
    want_lines = want.stdout.decode().splitlines()
    assert len(want_lines) > 100 and want_lines[-1] == "done"
    for n, (w, g) in enumerate(zip(want_lines, got_lines, strict=False)):
        assert g == w, f"line {n + 1}: host {w!r}, cove {g!r}"
    assert len(got_lines) == len(want_lines)
    assert host_socket_watch == []
