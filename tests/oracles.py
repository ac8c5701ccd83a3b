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


# =====================================================================================
# eBPF oracles (appended by the eBPF-core helper): llvm-mc/llvm-objdump for the
# disassembler, bpf(2) BPF_PROG_LOAD / BPF_PROG_TEST_RUN for the interpreter.
# =====================================================================================

import tempfile  # noqa: E402


def llvm_objdump_raw(raw: bytes, alu32: bool = False) -> list[str]:
    """Disassemble raw little-endian eBPF bytes with llvm-objdump: the bytes are placed
    in .text with `.quad` directives (llvm-mc), so any encoding can be shown.  Returns
    one string per instruction (the text after 'N:\\t'; lddw yields one line), with the
    trailing '<.text+0x..>' annotation removed."""
    if len(raw) % 8:
        raise ValueError("raw length must be a multiple of 8")
    quads = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    src = "".join(f".quad 0x{q:016x}\n" for q in quads)
    with tempfile.TemporaryDirectory() as td:
        s = os.path.join(td, "a.s")
        o = os.path.join(td, "a.o")
        with open(s, "w") as f:
            f.write(src)
        subprocess.run(["llvm-mc", "-triple", "bpf", "-filetype=obj", s, "-o", o],
                       check=True, capture_output=True)
        args = ["llvm-objdump", "-d", "--no-show-raw-insn"]
        if alu32:
            args.append("--mattr=+alu32")
        out = subprocess.run(args + [o], check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        m = __import__("re").match(r"\s*\d+:\t(.*)$", line)
        if m:
            lines.append(__import__("re").sub(r"\s*<[^<>]*>$", "", m.group(1)).strip())
    return lines

# =============================================================================
# --- kernel: bpf(2) maps (BPF_MAP_CREATE and the element commands) -----------
# Used by tests/test_ebpf_maps*.py to run the same operations on a kernel map
# and on bpfkit.ebpf.maps.  Every call returns 0 / -errno like the syscall
# (never raises for a kernel refusal), so return codes can be compared as-is.
# =============================================================================

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
_NR_BPF = 321  # x86-64


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def bpf_syscall(cmd: int, attr: bytes | ctypes.Array) -> int:
    """syscall(321, cmd, attr, sizeof attr): the result, or -errno."""
    if isinstance(attr, (bytes, bytearray)):
        attr = ctypes.create_string_buffer(bytes(attr), len(attr))
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(_NR_BPF), ctypes.c_long(cmd), attr,
                      ctypes.c_long(ctypes.sizeof(attr)))
    return -ctypes.get_errno() if rc < 0 else rc


def possible_cpus() -> int:
    """num_possible_cpus(): the kernel sizes per-CPU syscall values by it."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += (int(hi) if hi else int(lo)) - int(lo) + 1
    return n


def kmap_create(map_type: int, key_size: int, value_size: int, max_entries: int,
                map_flags: int = 0, inner_map_fd: int = 0, map_extra: int = 0,
                name: bytes = b"") -> int:
    """BPF_MAP_CREATE: a new map fd, or -errno.  attr layout of union bpf_attr
    (include/uapi/linux/bpf.h): 7 u32, 16-byte name, 5 u32, u64 map_extra."""
    attr = struct.pack("=7I16s5IQ", map_type, key_size, value_size, max_entries,
                       map_flags, inner_map_fd, 0, name[:15], 0, 0, 0, 0, 0, map_extra)
    attr += bytes(80 - len(attr))
    return bpf_syscall(BPF_MAP_CREATE, attr)


class KernelMap:
    """One kernel map, closed by close().  Methods mirror the element commands:
    each returns rc (0 or -errno), and lookups return (rc, value bytes or None)."""

    def __init__(self, fd: int, key_size: int, value_size: int, percpu: bool = False):
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        # Per-CPU values cross the syscall as round_up(value_size, 8) per possible CPU.
        self.value_buf_size = (((value_size + 7) // 8) * 8 * possible_cpus()
                               if percpu else value_size)

    @classmethod
    def create(cls, map_type, key_size, value_size, max_entries, map_flags=0,
               inner_map_fd=0, map_extra=0, percpu=False):
        fd = kmap_create(map_type, key_size, value_size, max_entries, map_flags,
                         inner_map_fd, map_extra)
        if fd < 0:
            raise OSError(-fd, os.strerror(-fd))
        return cls(fd, key_size, value_size, percpu)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _elem(self, cmd, key, value_buf, flags):
        kbuf = None if key is None else ctypes.create_string_buffer(bytes(key), max(len(key), 1))
        attr = struct.pack("=IIQQQ", self.fd, 0,
                           0 if kbuf is None else ctypes.addressof(kbuf),
                           0 if value_buf is None else ctypes.addressof(value_buf), flags)
        return bpf_syscall(cmd, attr)

    def lookup(self, key, flags=0):
        buf = ctypes.create_string_buffer(max(self.value_buf_size, 1))
        rc = self._elem(BPF_MAP_LOOKUP_ELEM, key, buf, flags)
        return rc, (buf.raw[:self.value_buf_size] if rc == 0 else None)

    def lookup_value(self, value, flags=0):
        """LOOKUP_ELEM with NULL key and an input value (bloom filter membership)."""
        buf = ctypes.create_string_buffer(bytes(value), max(len(value), 1))
        return self._elem(BPF_MAP_LOOKUP_ELEM, None, buf, flags)

    def update(self, key, value, flags=0):
        buf = ctypes.create_string_buffer(bytes(value), max(len(value), 1))
        return self._elem(BPF_MAP_UPDATE_ELEM, key, buf, flags)

    def delete(self, key):
        return self._elem(BPF_MAP_DELETE_ELEM, key, None, 0)

    def next_key(self, key):
        buf = ctypes.create_string_buffer(max(self.key_size, 1))
        rc = self._elem(BPF_MAP_GET_NEXT_KEY, key, buf, 0)
        return rc, (buf.raw[:self.key_size] if rc == 0 else None)

    def lookup_and_delete(self, key, flags=0):
        buf = ctypes.create_string_buffer(max(self.value_buf_size, 1))
        rc = self._elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, buf, flags)
        return rc, (buf.raw[:self.value_buf_size] if rc == 0 else None)

    def keys(self):
        """Walk with GET_NEXT_KEY from NULL; the list of keys in kernel order."""
        out, key = [], None
        while True:
            rc, nxt = self.next_key(key)
            if rc != 0:
                return out
            out.append(nxt)
            key = nxt
            if len(out) > 1 << 22:
                raise RuntimeError("next_key walk does not end")

# =============================================================================
# --- libpcap 1.10.3 itself: bpf_filter() / bpf_validate() through ctypes -----
# (appended by the cBPF validate/interp helper).  The installed libpcap's own
# userland interpreter and validator: the exact oracle for filter mode.  Only pass
# programs bpf_validate accepts to libpcap_filter, and no program that reaches an
# opcode bpf_filter has no case for (1.10.3 abort()s) or loops (it never returns).
# =============================================================================


@functools.lru_cache(maxsize=None)
def _libpcap_bpf():
    lib = ctypes.CDLL("libpcap.so.0.8")
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    lib.bpf_validate.restype = ctypes.c_int
    lib.bpf_validate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _bpf_insns(insns):
    raw = b"".join(struct.pack("=HBBI", c, jt, jf, k & 0xFFFFFFFF)
                   for c, jt, jf, k in (tuple(i) if not hasattr(i, "code")
                                        else (i.code, i.jt, i.jf, i.k) for i in insns))
    return ctypes.create_string_buffer(raw, max(len(raw), 1))


def libpcap_validate(insns) -> bool:
    """libpcap's bpf_validate() (pcap_validate_filter) on a list of (code, jt, jf, k)."""
    insns = list(insns)
    return bool(_libpcap_bpf().bpf_validate(_bpf_insns(insns), len(insns)))


def libpcap_filter(insns, packet: bytes, wirelen: int | None = None) -> int:
    """libpcap's bpf_filter(insns, packet, wirelen, caplen=len(packet))."""
    packet = bytes(packet)
    return _libpcap_bpf().bpf_filter(_bpf_insns(list(insns)), packet,
                                     len(packet) if wirelen is None else wirelen, len(packet))


# --- kernel: bpf(2) program load and test run (eBPF) ---------------------------------

SYS_BPF = 321                   # x86-64
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_XDP = 6
_ATTR_SIZE = 144                # covers the fields used below; the rest stays zero


class BpfLoadError(OSError):
    """BPF_PROG_LOAD refused the program; .log holds the verifier log."""

    def __init__(self, errno_: int, log: str):
        super().__init__(errno_, f"{os.strerror(errno_)}\n{log}")
        self.log = log


@functools.lru_cache(maxsize=1)
def _prog_libc():
    return ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    libc = _prog_libc()
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(cmd), attr,
                      ctypes.c_long(len(attr)))
    if rc < 0:
        return -ctypes.get_errno()
    return rc


BPF_BTF_LOAD = 18


def _minimal_btf(nfuncs: int) -> bytes:
    """A BTF blob with `int`, one `int f(void)` prototype and nfuncs static FUNC types
    (ids 3..) named f0, f1, ...: enough func_info for the verifier to accept callbacks
    (bpf_loop), which it refuses without BTF ("missing btf func_info")."""
    strings = b"\0int\0" + b"".join(f"f{i}\0".encode() for i in range(nfuncs))
    types = struct.pack("=IIII", 1, 1 << 24, 4, (1 << 24) | 32)        # [1] int
    types += struct.pack("=III", 0, 13 << 24, 1)                         # [2] int (void)
    off = 5
    for i in range(nfuncs):                                              # [3+i] f<i>
        types += struct.pack("=III", off, 12 << 24, 2)
        off += len(f"f{i}") + 1
    hdr = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _btf_load(blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 14)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=QQIII", attr, 0, ctypes.addressof(buf), ctypes.addressof(log),
                     len(blob), 1 << 14, 1)
    fd = _bpf(BPF_BTF_LOAD, attr)
    if fd < 0:
        raise BpfLoadError(-fd, log.value.decode(errors="replace"))
    return fd


def bpf_prog_load(raw: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER,
                  license: str = "GPL", log_size: int = 1 << 16,
                  func_starts: list[int] | None = None) -> int:
    """Load raw eBPF bytes; returns the program fd (caller closes it with os.close).
    func_starts: the first slot of every function (0 first) -> a minimal BTF with
    func_info is passed, as callbacks require.  Raises BpfLoadError with the verifier
    log when the kernel refuses."""
    try:
        # without a log first: a long verifier log overflows its buffer (ENOSPC)
        return _prog_load(raw, prog_type, license, 0, func_starts)
    except BpfLoadError:
        return _prog_load(raw, prog_type, license, max(log_size, 1 << 20), func_starts)


def _prog_load(raw: bytes, prog_type: int, license: str, log_size: int,
               func_starts: list[int] | None) -> int:
    insns = ctypes.create_string_buffer(raw, len(raw))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(max(log_size, 1))
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(raw) // 8,
                     ctypes.addressof(insns), ctypes.addressof(lic), 1 if log_size else 0,
                     log_size, ctypes.addressof(log) if log_size else 0)
    btf_fd = -1
    if func_starts:
        btf_fd = _btf_load(_minimal_btf(len(func_starts)))
        finfo_raw = b"".join(struct.pack("=II", s, 3 + i) for i, s in enumerate(func_starts))
        finfo = ctypes.create_string_buffer(finfo_raw, len(finfo_raw))
        # union bpf_attr (BPF_PROG_LOAD): prog_btf_fd @72, func_info_rec_size @76,
        # func_info @80, func_info_cnt @88
        struct.pack_into("=IIQI", attr, 72, btf_fd, 8, ctypes.addressof(finfo),
                         len(func_starts))
    try:
        fd = _bpf(BPF_PROG_LOAD, attr)
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)
    if fd < 0:
        raise BpfLoadError(-fd, log.value.decode(errors="replace"))
    return fd


def bpf_prog_test_run(fd: int, data: bytes, out_size: int = 4096) -> tuple[int, bytes]:
    """BPF_PROG_TEST_RUN once on `data`; returns (retval, data_out)."""
    din = ctypes.create_string_buffer(bytes(data), max(1, len(data)))
    dout = ctypes.create_string_buffer(out_size)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIIIQQI", attr, 0, fd, 0, len(data), out_size,
                     ctypes.addressof(din), ctypes.addressof(dout), 1)
    rc = _bpf(BPF_PROG_TEST_RUN, attr)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    retval, _, size_out = struct.unpack_from("=III", attr, 4)
    return retval, dout.raw[:min(size_out, out_size)]


# =============================================================================
# --- kernel: perf events for PERF_EVENT_ARRAY maps (tests/test_ebpf_maps_kernel.py)
# =============================================================================

_NR_PERF_EVENT_OPEN = 298  # x86-64
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10


def perf_bpf_output_open(cpu: int) -> int:
    """perf_event_open() of a BPF_OUTPUT software event on `cpu` (any task): the fd
    that a PERF_EVENT_ARRAY slot holds, or -errno.  perf_event_attr: type, size,
    config, sample_period, sample_type, ... (the rest zero; size 128 = VER8)."""
    attr = struct.pack("=IIQQQ", PERF_TYPE_SOFTWARE, 128, PERF_COUNT_SW_BPF_OUTPUT, 1,
                       PERF_SAMPLE_RAW)
    attr += bytes(128 - len(attr))
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(_NR_PERF_EVENT_OPEN), buf, ctypes.c_long(-1),
                      ctypes.c_long(cpu), ctypes.c_long(-1), ctypes.c_long(8))
    return -ctypes.get_errno() if fd < 0 else fd

import dataclasses  # noqa: E402

# =============================================================================
# --- libpcap savefile reading (appended by the capture-files helper) ----------
# libpcap 1.10.3 itself, through ctypes: pcap_open_offline_with_tstamp_precision
# (nanoseconds) and pcap_next_ex, so tests see exactly the headers and bytes that
# tcpdump's filters see, including libpcap's per-packet fix-ups.
# =============================================================================


class _PcapTimeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("frac", ctypes.c_long)]


class _PcapPkthdr(ctypes.Structure):
    _fields_ = [("ts", _PcapTimeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


@functools.lru_cache(maxsize=None)
def _libpcap():
    lib = ctypes.CDLL("libpcap.so.0.8")
    lib.pcap_open_offline_with_tstamp_precision.restype = ctypes.c_void_p
    lib.pcap_open_offline_with_tstamp_precision.argtypes = [ctypes.c_char_p, ctypes.c_uint,
                                                           ctypes.c_char_p]
    lib.pcap_next_ex.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(_PcapPkthdr)),
                                 ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    for name in ("pcap_close", "pcap_datalink", "pcap_snapshot", "pcap_is_swapped"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.pcap_datalink_val_to_name.restype = ctypes.c_char_p
    lib.pcap_datalink_name_to_val.argtypes = [ctypes.c_char_p]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    return lib


def libpcap_version() -> str:
    return _libpcap().pcap_lib_version().decode()


def libpcap_dlt_name(dlt: int) -> str | None:
    """pcap_datalink_val_to_name."""
    r = _libpcap().pcap_datalink_val_to_name(dlt)
    return r.decode() if r else None


def libpcap_dlt_value(name: str) -> int:
    """pcap_datalink_name_to_val (-1 when unknown)."""
    return _libpcap().pcap_datalink_name_to_val(name.encode())


@dataclasses.dataclass
class LibpcapRead:
    open_error: str | None           # pcap_open_offline's error, None when it opened
    dlt: int | None                  # pcap_datalink
    snapshot: int | None             # pcap_snapshot
    packets: list                    # (ts_ns, caplen, len, bytes) in file order
    error: str | None                # pcap_next_ex's error after the last packet


def libpcap_read(path: str, max_packets: int | None = None) -> LibpcapRead:
    """Every packet of `path` as libpcap 1.10.3 hands it over, timestamps in ns
    (tv_sec * 10^9 + tv_usec, tv_usec holding ns: PCAP_TSTAMP_PRECISION_NANO)."""
    lib = _libpcap()
    err = ctypes.create_string_buffer(512)
    p = lib.pcap_open_offline_with_tstamp_precision(os.fsencode(path), 1, err)
    if not p:
        return LibpcapRead(err.value.decode(errors="replace"), None, None, [], None)
    hdr = ctypes.POINTER(_PcapPkthdr)()
    data = ctypes.POINTER(ctypes.c_ubyte)()
    out = []
    error = None
    try:
        while max_packets is None or len(out) < max_packets:
            r = lib.pcap_next_ex(p, ctypes.byref(hdr), ctypes.byref(data))
            if r != 1:
                if r == -1:
                    error = lib.pcap_geterr(p).decode(errors="replace")
                break
            h = hdr.contents
            out.append((h.ts.sec * 1_000_000_000 + h.ts.frac, h.caplen, h.len,
                        ctypes.string_at(data, h.caplen)))
        return LibpcapRead(None, lib.pcap_datalink(p), lib.pcap_snapshot(p), out, error)
    finally:
        lib.pcap_close(p)


def bpf_verifier_log(raw: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER,
                     level: int = 2, log_size: int = 1 << 22) -> str:
    """The verifier log of loading `raw` at `level` (2: every instruction as it is
    checked, with the kernel's disassembly); the program is closed again."""
    insns = ctypes.create_string_buffer(raw, len(raw))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(log_size)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(raw) // 8,
                     ctypes.addressof(insns), ctypes.addressof(lic), level, log_size,
                     ctypes.addressof(log))
    fd = _bpf(BPF_PROG_LOAD, attr)
    text = log.value.decode(errors="replace")
    if fd < 0:
        raise BpfLoadError(-fd, text)
    os.close(fd)
    return text


def bpf_kernel_listing(raw: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER
                       ) -> dict[int, tuple[int, str]] | None:
    """The kernel's own disassembly of a program: the "Live regs before insn" listing
    that a level-2 verifier log starts with (Linux >= 6.15), printed even when the
    verifier later refuses the program.  {slot: (opcode, text)}, or None when the log
    has no listing (the program failed the early CFG checks)."""
    try:
        log = bpf_verifier_log(raw, prog_type)
    except BpfLoadError as e:
        log = e.log
    if "Live regs before insn:" not in log:
        return None
    out = {}
    for line in log.split("Live regs before insn:", 1)[1].splitlines()[1:]:
        # instructions inside a loop carry their strongly connected component's number
        # in an extra first column ("  1   2: ...") on this machine's 6.18
        m = __import__("re").match(r"\s*(?:\d+\s+)?(\d+): [0-9.]{10} \(([0-9a-f]{2})\) (.*)$",
                                   line)
        if not m:
            break
        out[int(m.group(1))] = (int(m.group(2), 16), m.group(3))
    return out
