"""Test support: the oracles on this machine (tcpdump/libpcap, clang, the kernel's bpf(2)
and SO_ATTACH_FILTER).  Kept out of the product on purpose (DESIGN.md)."""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import socket
import struct
import subprocess

# --- availability ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def missing(name: str) -> str:
    """'' when oracle `name` is usable, else the reason it is not."""
    if name == "tcpdump":
        if not shutil.which("tcpdump"):
            return "tcpdump not on PATH (apt-get install -y tcpdump)"
        r = subprocess.run(["tcpdump", "-y", "EN10MB", "-d", "ip"], capture_output=True)
        return "" if r.returncode == 0 else f"tcpdump -d failed: {r.stderr.decode()[:200]}"
    if name == "clang":
        if not shutil.which("clang"):
            return "clang not on PATH (apt-get install -y clang llvm)"
        r = subprocess.run(["clang", "-print-targets"], capture_output=True, text=True)
        return "" if " bpf " in r.stdout else "clang has no BPF target"
    if name == "kernel":
        try:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError as e:
            return f"no AF_UNIX socketpair: {e}"
        try:
            attach_filter(a, [(0x06, 0, 0, 0xFFFFFFFF)])
        except OSError as e:
            return f"SO_ATTACH_FILTER refused: {e}"
        finally:
            a.close()
            b.close()
        return ""
    raise ValueError(name)


# --- tcpdump -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def tcpdump_compile(expr: str, dlt: str = "EN10MB", flag: str = "-d",
                    optimize: bool = True) -> tuple[int, str, str]:
    """Run `tcpdump -y DLT [-O] FLAG EXPR`; (returncode, stdout, stderr), cached per run."""
    args = ["tcpdump", "-y", dlt]
    if not optimize:
        args.append("-O")
    args += [flag, expr]
    r = subprocess.run(args, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


# --- kernel: SO_ATTACH_FILTER -----------------------------------------------

SO_ATTACH_FILTER = 26


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def attach_filter(sock: socket.socket, insns) -> None:
    """setsockopt(SOL_SOCKET, SO_ATTACH_FILTER) with a list of (code, jt, jf, k).
    Raises OSError (e.g. EINVAL) when the kernel's bpf_check_classic rejects it."""
    raw = b"".join(struct.pack("=HBBI", c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(insns), ctypes.cast(buf, ctypes.c_void_p).value)
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.setsockopt(sock.fileno(), socket.SOL_SOCKET, SO_ATTACH_FILTER,
                         ctypes.byref(prog), ctypes.sizeof(prog))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
