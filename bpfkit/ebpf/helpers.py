"""Helper functions for the reference interpreter (ids: include/uapi/linux/bpf.h).

A helper is called as helper(memory, r1, r2, r3, r4, r5) -> r0 (see interp.Memory for
what `memory` offers).  Arguments are u64 register values; the kernel's prototypes
narrow some (`u32 flags`, `int offset`), which is done here where it matters.
Map helpers use the program-side map API of bpfkit.ebpf.maps: lookup_ptr,
update_raw, delete_raw (0 / -errno) on the run's CPU (memory.cpu).
"""
from __future__ import annotations

from .interp import CallbackLoop, Helper, Memory, MemoryFault, TailCall

__all__ = ["map_helpers", "basic_helpers", "csum_add32", "MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM",
           "MAP_DELETE_ELEM"]

MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM = 1, 2, 3
_M64 = (1 << 64) - 1


def _map_lookup_elem(memory: Memory, r1: int, r2: int, *_) -> int:
    """bpf_map_lookup_elem(map, key): a pointer to the value, or NULL (0)."""
    m = memory.map_at(r1)
    ref = m.lookup_ptr(memory.read(r2, m.key_size), memory.cpu)
    if ref is None:
        return 0
    if not hasattr(ref, "buf"):
        # map-in-map: the inner map (a handle the program may pass on)
        return memory.map_handle(ref)
    return memory.value_address(ref, not getattr(m, "flags", 0) & (1 << 7))


def _map_update_elem(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_) -> int:
    """bpf_map_update_elem(map, key, value, u64 flags): 0 or -errno."""
    m = memory.map_at(r1)
    key = memory.read(r2, m.key_size)
    value = memory.read(r3, m.value_size)
    return m.update_raw(key, value, r4, memory.cpu) & _M64


def _map_delete_elem(memory: Memory, r1: int, r2: int, *_) -> int:
    """bpf_map_delete_elem(map, key): 0 or -errno."""
    m = memory.map_at(r1)
    return m.delete_raw(memory.read(r2, m.key_size), memory.cpu) & _M64


def map_helpers() -> dict[int, Helper]:
    """map_lookup_elem 1, map_update_elem 2, map_delete_elem 3."""
    return {MAP_LOOKUP_ELEM: _map_lookup_elem, MAP_UPDATE_ELEM: _map_update_elem,
            MAP_DELETE_ELEM: _map_delete_elem}


# --- queue / stack / bloom filter, per-CPU lookup -------------------------------------------

def _map_push_elem(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_map_push_elem(map, value, u64 flags)."""
    m = memory.map_at(r1)
    return m.push_raw(memory.read(r2, m.value_size), r3, memory.cpu) & _M64


def _is_bloom(m) -> bool:
    from .maps import MapType
    return getattr(m, "type", None) == MapType.BLOOM_FILTER


def _pop_or_peek(memory: Memory, r1: int, r2: int, pop: bool) -> int:
    m = memory.map_at(r1)
    if not pop and _is_bloom(m):
        # bloom_map_peek_elem: the value is the input, membership is the result
        rc, _ = m.peek_raw(memory.cpu, value=memory.read(r2, m.value_size))
        return rc & _M64
    rc, value = m.pop_raw(memory.cpu) if pop else m.peek_raw(memory.cpu)
    # __queue_map_get / __stack_map_get zero the value when the map is empty
    memory.write(r2, value if rc == 0 else bytes(m.value_size))
    return rc & _M64


def _map_pop_elem(memory: Memory, r1: int, r2: int, *_) -> int:
    return _pop_or_peek(memory, r1, r2, True)


def _map_peek_elem(memory: Memory, r1: int, r2: int, *_) -> int:
    return _pop_or_peek(memory, r1, r2, False)


def _map_lookup_percpu_elem(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_map_lookup_percpu_elem(map, key, u32 cpu): NULL unless a per-CPU map."""
    m = memory.map_at(r1)
    ref = m.lookup_percpu_ptr(memory.read(r2, m.key_size), r3 & 0xFFFFFFFF)
    return 0 if ref is None else memory.value_address(ref)


# --- time, randomness, CPU ---------------------------------------------------------------------

def _ktime(memory: Memory, *_) -> int:
    """bpf_ktime_get_ns / _boot_ns / _coarse_ns: the packet's capture time (DESIGN.md:
    replays are deterministic), given to the run as ktime_ns."""
    return memory.ktime_ns & _M64


def _prandom(memory: Memory, *_) -> int:
    if memory.prandom is None:
        raise MemoryFault("helper", "bpf_get_prandom_u32 needs a seeded generator "
                          "(run(..., prandom=...))")
    return memory.prandom() & 0xFFFFFFFF


def _smp_processor_id(memory: Memory, *_) -> int:
    return memory.cpu


# --- checksums ----------------------------------------------------------------------------------

def csum_add32(total: int, data: bytes) -> int:
    """32-bit ones'-complement sum of little-endian u32 words plus `total` (x86-64
    csum_partial for a length that is a multiple of 4: the end-around-carry sum; any
    order of carries gives the same value, the non-zero representative of the sum
    modulo 2**32-1)."""
    s = total + sum(int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4))
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def _csum_add(a: int, b: int) -> int:
    s = a + b                                  # csum_add: 32-bit add with end-around carry
    return (s & 0xFFFFFFFF) + (s >> 32)


def csum_partial(data: bytes, seed: int) -> int:
    """x86-64 csum_partial: the ones'-complement sum of `data` read as little-endian
    words, a short tail zero-padded, plus seed."""
    pad = (-len(data)) % 4
    return csum_add32(seed, bytes(data) + bytes(pad))


def _csum_diff(memory: Memory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_csum_diff(from, u32 from_size, to, u32 to_size, __wsum seed).

    On this machine's kernel (6.18, measured by tests/test_ebpf_helpers.py) any sizes are
    accepted and the result is folded to 16 bits: to only -> csum_partial(to, seed);
    from only -> ~csum_partial(from, ~seed); both -> csum_sub(csum_partial(to, seed),
    csum_partial(from, 0)); neither -> seed; then from32to16.  (Kernels before the
    rewrite that dropped the per-CPU scratch buffer refused sizes that are not
    multiples of 4 and returned the 32-bit value.)"""
    from_size, to_size = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF
    seed = r5 & 0xFFFFFFFF
    frm = memory.read(r1, from_size) if from_size else b""
    to = memory.read(r3, to_size) if to_size else b""
    if from_size and to_size:
        ret = _csum_add(csum_partial(to, seed), ~csum_partial(frm, 0) & 0xFFFFFFFF)
    elif to_size:
        ret = csum_partial(to, seed)
    elif from_size:
        ret = ~csum_partial(frm, ~seed & 0xFFFFFFFF) & 0xFFFFFFFF
    else:
        ret = seed
    ret = (ret & 0xFFFF) + (ret >> 16)            # from32to16
    return (ret & 0xFFFF) + (ret >> 16)


def _tail_call(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_tail_call(ctx, prog_array, u32 index): the interpreter switches programs
    (interp.TailCall); the slots hold Interpreter objects (maps.ProgArrayMap)."""
    m = memory.map_at(r2)
    if not hasattr(m, "get_object"):
        raise MemoryFault("helper", "bpf_tail_call needs a PROG_ARRAY map")
    index = r3 & 0xFFFFFFFF
    raise TailCall(index < m.max_entries, m.get_object(index))


BPF_MAX_LOOPS = 8 * 1024 * 1024


def _loop(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_) -> int:
    """bpf_loop(u32 nr_loops, callback, ctx, u64 flags): flags -> -EINVAL, more than
    BPF_MAX_LOOPS -> -E2BIG; else the interpreter runs the callback (CallbackLoop)."""
    if r4:
        return -22 & _M64
    nr = r1 & 0xFFFFFFFF
    if nr > BPF_MAX_LOOPS:
        return -7 & _M64
    raise CallbackLoop(nr, r2, r3)


def _spin_lock(memory: Memory, *_) -> int:
    """bpf_spin_lock/unlock: runs are sequential (DESIGN.md), so a lock is always free;
    the helpers return 0 and do nothing."""
    return 0


# --- ring buffer and perf event output ------------------------------------------------------

def _ringbuf_output(memory: Memory, r1: int, r2: int, r3: int, r4: int, *_) -> int:
    """bpf_ringbuf_output(ringbuf, data, u64 size, u64 flags): 0, -EINVAL, -EAGAIN."""
    m = memory.map_at(r1)
    return m.output(memory.read(r2, r3), r4, packet_index=memory.packet_index) & _M64


def _ringbuf_reserve(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_ringbuf_reserve(ringbuf, u64 size, u64 flags): a record pointer or NULL
    (any flag is NULL)."""
    m = memory.map_at(r1)
    if r3:
        return 0
    ref = m.reserve(r2, r3, packet_index=memory.packet_index)
    if ref is None:
        return 0
    addr = memory.value_address(ref)
    memory.reserved[addr] = (m, ref)
    return addr


def _ringbuf_finish(memory: Memory, r1: int, r2: int, discard: bool) -> int:
    entry = memory.reserved.pop(r1, None)
    if entry is None:
        raise MemoryFault("helper", f"0x{r1:x} is not a reserved ring buffer record",
                          r1)
    m, ref = entry
    (m.discard if discard else m.submit)(ref, r2)
    return 0


def _ringbuf_submit(memory: Memory, r1: int, r2: int, *_) -> int:
    return _ringbuf_finish(memory, r1, r2, False)


def _ringbuf_discard(memory: Memory, r1: int, r2: int, *_) -> int:
    return _ringbuf_finish(memory, r1, r2, True)


def _ringbuf_query(memory: Memory, r1: int, r2: int, *_) -> int:
    return memory.map_at(r1).query(r2) & _M64


BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CTXLEN_MASK = 0xFFFFF << 32


def _ctx_bytes(memory: Memory) -> bytes:
    """The packet bytes bpf_skb/xdp_event_output append (from skb->data / xdp->data)."""
    ctx = memory.context
    frame = getattr(ctx, "frame", None)
    if frame is None:
        return b""
    if hasattr(ctx, "data"):                       # XdpBuff
        return bytes(frame[ctx.data:ctx.data_end])
    return bytes(frame[14:])                       # SkBuff: data after the Ethernet header


def _perf_event_output(memory: Memory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_perf_event_output(ctx, map, u64 flags, data, u64 size) for skb/XDP programs
    (bpf_skb_event_output / bpf_xdp_event_output): flag bits outside the index and
    ctxlen fields are -EINVAL; ctxlen packet bytes are appended (-EFAULT when longer
    than the packet)."""
    if r3 & ~(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK):
        return -22 & _M64
    ctx_len = (r3 & BPF_F_CTXLEN_MASK) >> 32
    pkt = _ctx_bytes(memory)
    if ctx_len > len(pkt):
        return -14 & _M64
    m = memory.map_at(r2)
    data = memory.read(r4, r5) + pkt[:ctx_len]
    return m.output(r3 & BPF_F_INDEX_MASK, data, cpu=memory.cpu,
                    packet_index=memory.packet_index) & _M64


def _strncmp(memory: Memory, r1: int, r2: int, r3: int, *_) -> int:
    """bpf_strncmp(s1, u32 s1_sz, s2): the kernel's generic strncmp (lib/string.c,
    x86-64 has no own): -1, 0 or 1 as an int; s2 is a NUL-terminated constant string."""
    n = r2 & 0xFFFFFFFF
    for i in range(n):
        c1 = memory.load(r1 + i, 1)
        c2 = memory.load(r3 + i, 1)
        if c1 != c2:
            return (-1 if c1 < c2 else 1) & _M64
        if c1 == 0:
            break
    return 0


def basic_helpers() -> dict[int, Helper]:
    """Map helpers plus: push/pop/peek 87-89, map_lookup_percpu_elem 195, ktime_get_ns 5,
    ktime_get_boot_ns 125, ktime_get_coarse_ns 160, get_prandom_u32 7,
    get_smp_processor_id 8, csum_diff 28, tail_call 12, loop 181, spin_lock 93,
    spin_unlock 94, perf_event_output 25, ringbuf_output/reserve/submit/discard/query
    130-134, strncmp 182, trace_printk 6."""
    h = map_helpers()
    h.update({87: _map_push_elem, 88: _map_pop_elem, 89: _map_peek_elem,
              195: _map_lookup_percpu_elem, 5: _ktime, 125: _ktime, 160: _ktime,
              7: _prandom, 8: _smp_processor_id, 28: _csum_diff, 12: _tail_call,
              181: _loop, 93: _spin_lock, 94: _spin_lock, 25: _perf_event_output,
              130: _ringbuf_output, 131: _ringbuf_reserve, 132: _ringbuf_submit,
              133: _ringbuf_discard, 134: _ringbuf_query, 182: _strncmp,
              6: _trace_printk})
    return h


# --- bpf_trace_printk ------------------------------------------------------------------------

MAX_TRACE_PRINTK_VARARGS = 3


def _is_print_or_space(c: int) -> bool:
    return 0x20 <= c <= 0x7E or c in (0x09, 0x0A, 0x0B, 0x0C, 0x0D)


def _read_cstring(memory: Memory, addr: int) -> bytes:
    """A NUL-terminated string in one region (an unmapped pointer reads as "", as
    strncpy_from_kernel_nofault failing does)."""
    try:
        region, off = memory.find(addr, 1)
    except MemoryFault:
        return b""
    end = len(region.buf) if region.hi is None else region.hi
    data = bytes(region.buf[off:end])
    nul = data.find(b"\0")
    if nul < 0:
        raise MemoryFault("unsupported", "%s string runs past the end of its region "
                          "(the kernel would read unrelated memory)", addr)
    return data[:nul]


def format_printk(memory: Memory, fmt: bytes, args: list[int]) -> bytes | int:
    """bpf_bprintf_prepare's checks and bstr_printf's output for the supported subset:
    %d %i %u %x %X with optional [0 +-] flags, a width and l/ll, %c, %s, %%.
    Returns the formatted bytes or -EINVAL; %p (pointer formats) is refused as
    unsupported."""
    out = bytearray()
    i, n, spec = 0, len(fmt), 0
    while i < n:
        c = fmt[i]
        if not _is_print_or_space(c):
            # 6.18 stable later allowed bytes >= 0x80 in plain text: not modelled
            return -22
        if c != 0x25:                                  # '%'
            out.append(c)
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == 0x25:
            out.append(0x25)
            i += 2
            continue
        if spec >= len(args):
            return -22
        j = i + 1
        flags = b""
        while j < n and fmt[j:j + 1] in (b"0", b"+", b"-", b" "):
            flags += fmt[j:j + 1]
            j += 1
        width = b""
        if j < n and 0x31 <= fmt[j] <= 0x39:
            while j < n and 0x30 <= fmt[j] <= 0x39:
                width += fmt[j:j + 1]
                j += 1
        conv = fmt[j:j + 1]
        arg = args[spec]
        if conv == b"p":
            raise MemoryFault("unsupported", "bpf_trace_printk %p formats")
        if conv == b"s":
            nxt = fmt[j + 1:j + 2]
            if nxt and not (nxt.isspace() or (nxt.isascii() and not nxt.isalnum()
                                              and nxt != b"_" and 0x21 <= nxt[0] <= 0x7E)):
                return -22
            out += (b"%" + flags + width + b"s") % _read_cstring(memory, arg)
            i = j + 1
            spec += 1
            continue
        if conv == b"c":
            out += (b"%" + flags.replace(b"+", b"").replace(b" ", b"").replace(b"0", b"")
                    + width + b"c") % (arg & 0xFF)
            i = j + 1
            spec += 1
            continue
        size = 4
        if conv == b"l":
            size, j = 8, j + 1
            conv = fmt[j:j + 1]
            if conv == b"l":
                j += 1
                conv = fmt[j:j + 1]
        if conv not in (b"d", b"i", b"u", b"x", b"X"):
            return -22
        v = arg & ((1 << (8 * size)) - 1)
        if conv in (b"d", b"i"):
            if v >> (8 * size - 1):
                v -= 1 << (8 * size)
            out += (b"%" + flags + width + b"d") % v
        else:
            # number(): '+' and ' ' only apply to signed conversions
            f = flags.replace(b"+", b"").replace(b" ", b"")
            out += (b"%" + f + width + (b"d" if conv == b"u" else conv)) % v
        i = j + 1
        spec += 1
    return bytes(out)


def _trace_printk(memory: Memory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_trace_printk(fmt, u32 fmt_size, arg1, arg2, arg3): the format must hold a NUL
    within fmt_size; returns the length of the message (bstr_printf's count), which is
    appended to memory.trace."""
    size = r2 & 0xFFFFFFFF
    raw = memory.read(r1, size) if size else b""
    nul = raw.find(b"\0")
    if nul < 0:
        return -22 & _M64
    res = format_printk(memory, raw[:nul], [r3, r4, r5])
    if isinstance(res, int):
        return res & _M64
    memory.trace.append(res)
    return len(res)
