"""The running Linux kernel as an optional participant of ``bpfkit compare``.

Three ways in, each through ctypes (no compiled extension):

- ``ClassicSocket``: a classic program attached with setsockopt(SOL_SOCKET,
  SO_ATTACH_FILTER) to the receiving end of an AF_UNIX SOCK_DGRAM socketpair.
  unix_dgram_sendmsg runs the receiver's filter (sk_filter_trim_cap(sk, skb, 1)):
  return value 0 drops the datagram, otherwise it is trimmed to the return value,
  so the received length tells the program's answer.
- ``KernelProgram``: eBPF bytes loaded with bpf(BPF_PROG_LOAD) as SOCKET_FILTER or
  XDP (with a verifier log when the kernel refuses), run on one packet with
  bpf(BPF_PROG_TEST_RUN).
- ``available()``: whether all of the above works here (Linux x86-64, and the
  kernel lets this process use bpf(2) -- normally root).

Every failure is a ``KernelError`` (a BpfError) carrying the errno.  Nothing here
keeps state between calls; each object owns its file descriptors and closes them in
``close()`` / on leaving a ``with`` block.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import os
import platform
import socket
import struct
import sys

from .errors import BpfError

__all__ = ["KernelError", "UnavailableError", "LoadError", "AttachError", "TestRunError", "available",
           "KernelProgram", "ClassicSocket", "pinned_cpu",
           "BPF_PROG_TYPE_SOCKET_FILTER", "BPF_PROG_TYPE_XDP"]

_NR_BPF_X86_64 = 321
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_XDP = 6
SO_ATTACH_FILTER = 26
# union bpf_attr is larger; 144 bytes cover every field written here (the kernel
# requires the bytes past the fields it knows for the command to be zero).
_ATTR_SIZE = 144
_LOG_SIZE = 1 << 20


class KernelError(BpfError):
    """The kernel refused a request; ``errno`` is the positive error number."""

    def __init__(self, message: str, errno: int = 0):
        self.errno = errno
        super().__init__(message)


class UnavailableError(KernelError):
    """The kernel cannot take part here; the message is available()'s reason."""


class LoadError(KernelError):
    """BPF_PROG_LOAD refused the program; ``log`` is the verifier log."""

    def __init__(self, errno: int, log: str):
        self.log = log
        # the reason is the last line before the verifier's statistics
        lines = [ln for ln in log.strip().splitlines()
                 if not ln.startswith(("processed ", "verification time"))]
        last = lines[-1] if lines else ""
        super().__init__(f"BPF_PROG_LOAD: {_errname(errno)}" + (f": {last}" if last else ""),
                         errno)


class AttachError(KernelError):
    """SO_ATTACH_FILTER refused the classic program (bpf_check_classic: EINVAL)."""


class TestRunError(KernelError):
    """BPF_PROG_TEST_RUN refused the input (e.g. EINVAL for a frame it will not build
    an skb from), or a datagram could not be sent."""

    __test__ = False    # not a pytest class despite the name


def _errname(err: int) -> str:
    return f"{_errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def _libc():
    # CDLL(None) is the already-loaded C library; dlopen hands back the same handle,
    # so calling this per request costs little and keeps no module state.
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    """syscall(__NR_bpf, cmd, attr, size): the result, or -errno."""
    rc = _libc().syscall(ctypes.c_long(_NR_BPF_X86_64), ctypes.c_long(cmd), attr,
                         ctypes.c_long(len(attr)))
    return -ctypes.get_errno() if rc < 0 else rc


def available() -> str | None:
    """None when the kernel can take part (BPF_PROG_LOAD of a one-instruction socket
    filter and SO_ATTACH_FILTER both work), else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if platform.machine() not in ("x86_64", "AMD64"):
        # the bpf(2) syscall number used here is x86-64's
        return f"bpf(2) via syscall {_NR_BPF_X86_64} is x86-64 only (this is {platform.machine()})"
    # r0 = 0; exit
    raw = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    try:
        with KernelProgram(raw, BPF_PROG_TYPE_SOCKET_FILTER):
            pass
        with ClassicSocket([(0x06, 0, 0, 0xFFFFFFFF)]):
            pass
    except KernelError as e:
        return str(e)
    except OSError as e:        # socketpair itself failing
        return f"AF_UNIX socketpair: {e}"
    return None


class KernelProgram:
    """An eBPF program loaded into the kernel.  Use as a context manager (or call
    close()).  Raises LoadError with the verifier log when the kernel refuses it."""

    def __init__(self, raw: bytes, prog_type: int, license: str = "GPL"):
        if len(raw) % 8 or not raw:
            raise KernelError(f"eBPF program of {len(raw)} bytes: not a whole number of "
                              "8-byte instructions", _errno.EINVAL)
        self.prog_type = prog_type
        fd = self._load(raw, prog_type, license, 0)
        if fd < 0:
            # again with a log for the reason (without one first: a long log overflows
            # the buffer, ENOSPC, for programs the verifier accepts)
            log = ctypes.create_string_buffer(_LOG_SIZE)
            fd = self._load(raw, prog_type, license, 1, log)
            if fd < 0:
                raise LoadError(-fd, log.value.decode(errors="replace"))
        self.fd = fd

    @staticmethod
    def _load(raw, prog_type, license, level, log=None) -> int:
        insns = ctypes.create_string_buffer(raw, len(raw))
        lic = ctypes.create_string_buffer(license.encode())
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license,
        # log_level, log_size, log_buf
        struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(raw) // 8,
                         ctypes.addressof(insns), ctypes.addressof(lic), level,
                         len(log) if log is not None else 0,
                         ctypes.addressof(log) if log is not None else 0)
        return _bpf(BPF_PROG_LOAD, attr)

    def test_run(self, data: bytes) -> int:
        """BPF_PROG_TEST_RUN once on `data` (for XDP the frame; for SOCKET_FILTER an
        Ethernet frame, whose header bpf_prog_test_run_skb pulls with eth_type_trans).
        Returns the program's u32 return value; TestRunError when the kernel refuses
        the input."""
        if self.fd < 0:
            raise KernelError("program is closed", _errno.EBADF)
        data = bytes(data)
        out_size = len(data) + 512
        din = ctypes.create_string_buffer(data, max(1, len(data)))
        dout = ctypes.create_string_buffer(out_size)
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        # BPF_PROG_TEST_RUN: prog_fd, retval, data_size_in, data_size_out, data_in,
        # data_out, repeat
        struct.pack_into("=IIIIQQI", attr, 0, self.fd, 0, len(data), out_size,
                         ctypes.addressof(din), ctypes.addressof(dout), 1)
        rc = _bpf(BPF_PROG_TEST_RUN, attr)
        if rc < 0:
            # no size in the message: compare counts skipped packets per reason
            raise TestRunError(f"BPF_PROG_TEST_RUN: {_errname(-rc)}", -rc)
        return struct.unpack_from("=I", attr, 4)[0]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _SockFprog(ctypes.Structure):
    # struct sock_fprog: unsigned short len; struct sock_filter *filter
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class ClassicSocket:
    """A classic program on an AF_UNIX datagram socketpair.  The skb the filter sees
    (sock_alloc_send_pskb, no device): protocol 0, no mac header, network header at
    the data, pkt_type/mark/hash/queue 0, no VLAN -- bpfkit.cbpf.interp.SkbMeta()'s
    defaults.  AttachError when bpf_check_classic refuses the program."""

    def __init__(self, insns):
        insns = [tuple(i) if not hasattr(i, "code") else (i.code, i.jt, i.jf, i.k)
                 for i in insns]
        self.tx, self.rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.rx.setblocking(False)
            for s, opt in ((self.tx, socket.SO_SNDBUF), (self.rx, socket.SO_RCVBUF)):
                s.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
            self._attach(insns)
        except BaseException:
            self.close()
            raise

    def _attach(self, insns) -> None:
        raw = b"".join(struct.pack("=HBBI", c, jt, jf, k & 0xFFFFFFFF)
                       for c, jt, jf, k in insns)
        buf = ctypes.create_string_buffer(raw, max(1, len(raw)))
        prog = _SockFprog(len(insns), ctypes.addressof(buf))
        rc = _libc().setsockopt(self.rx.fileno(), socket.SOL_SOCKET, SO_ATTACH_FILTER,
                                ctypes.byref(prog), ctypes.sizeof(prog))
        if rc != 0:
            err = ctypes.get_errno()
            raise AttachError(f"SO_ATTACH_FILTER: {_errname(err)}", err)

    def deliver(self, packet: bytes) -> int | None:
        """Send `packet` as one datagram: the length the receiver gets, or None when
        the filter dropped it.  TestRunError when the datagram cannot be sent."""
        try:
            self.tx.send(bytes(packet))
        except OSError as e:
            raise TestRunError(f"AF_UNIX datagram send: {_errname(e.errno or 0)}",
                               e.errno or 0) from None
        try:
            return len(self.rx.recv(len(packet) + 1))
        except BlockingIOError:
            return None

    def close(self) -> None:
        self.tx.close()
        self.rx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def pinned_cpu():
    """Run the body on one CPU (the calling thread's lowest allowed one) and yield
    its number: the classic filter runs in the sender's context and a test run on
    the caller's CPU, so SKF_AD_CPU / bpf_get_smp_processor_id are predictable."""
    old = os.sched_getaffinity(0)
    cpu = min(old)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, old)
