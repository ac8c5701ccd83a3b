"""Reference eBPF interpreter: one run (one packet) at a time, Linux semantics.

Semantics (RFC 9669 + Linux 6.x, kernel/bpf/core.c ___bpf_prog_run and the verifier's
rewrites in kernel/bpf/verifier.c do_misc_fixups):
* ALU32 results are zero-extended to 64 bits; shift amounts are masked to the operand
  width (&31 / &63) as the interpreter does (``DST << (SRC & 63)``).
* Division by zero gives 0 and modulo by zero leaves dst (ALU32: zero-extended), the
  checks the verifier patches in; sdiv by -1 is negation and smod by -1 is 0
  (the patched sequences); signed modulo truncates toward zero (C, not Python `%`).
* JMP compares 64 bits with the immediate sign-extended; JMP32 the low 32 bits.
* bpf-to-bpf calls run the callee with its own registers, as ___bpf_prog_run does via
  JMP_CALL_ARGS: r1-r5 are passed, the caller's r6-r9 (and r1-r5) are untouched on
  return and only r0 comes back; each frame has its own 512-byte stack; at most 8
  frames (MAX_CALL_FRAMES).
* bpf_tail_call (helper 12, raising TailCall) replaces the running program in the same
  frame, at most MAX_TAIL_CALL_CNT (33) times per run, counting as the kernel does
  (an empty slot still counts); bpf_loop (helper 181, raising CallbackLoop) runs its
  callback in a new frame per iteration.
* may_goto (BPF_JMP | BPF_JCOND) falls through while the frame's hidden loop counter
  is not zero, decrementing it, and jumps once it is: the verifier's non-timed fixup
  (kernel/bpf/verifier.c do_misc_fixups), whose prologue sets the counter to
  BPF_MAX_LOOPS (8M) on every entry to a program or subprogram that has may_goto.
  So each frame (the main program, every bpf-to-bpf call, every bpf_loop callback, a
  tail-called program) starts with Options.max_loops, and the (max_loops + 1)-th
  may_goto of a frame is the first that jumps.  Newer x86-64 JITs use a timed variant
  (the counter is refreshed until 250 ms have passed), which no replay can reproduce;
  a loop that ends before either budget runs out takes the same path in both.
  Exhausting 8M iterations needs far more than the default instruction budget.
* LD_ABS/LD_IND load big-endian from the packet as bpf_skb_load_helper_{8,16,32} do,
  with the SKF_NET_OFF/SKF_LL_OFF windows; an offset outside the packet ends the
  program with r0 = 0 (the verifier's ld_abs epilogue).

Memory: every pointer is a 64-bit address inside one of the run's regions (stack
frames, context, packet, map values ...), placed far apart in a synthetic address
space.  Every access must lie entirely inside one region (and a writable one for
stores); otherwise the run stops with a `Fault` record (pc, address, size, region) —
never a Python exception, never a read of another region's bytes.  The stack starts
zeroed (the kernel's is uninitialised, and the verifier refuses reads of it for
unprivileged programs).

Program-level problems (an unknown opcode, a jump out of the program, an unknown
helper, callx, kfuncs, map references without maps) are raised when the Interpreter is
built: ValidationError or UnsupportedError naming the feature.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..errors import EncodingError, UnsupportedError, ValidationError
from . import isa
from .helper_ids import helper_name
from .isa import Insn

__all__ = ["Region", "Fault", "Result", "Options", "Memory", "MemoryFault", "Interpreter", "run",
           "HelperExit", "TailCall", "CallbackLoop", "callback_target", "MAX_TAIL_CALL_CNT",
           "STACK_SIZE", "MAX_FRAMES"]

SKF_NET_OFF = -0x100000          # include/uapi/linux/filter.h
SKF_LL_OFF = -0x200000
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
STACK_SIZE = isa.MAX_BPF_STACK
MAX_FRAMES = isa.MAX_CALL_FRAMES

# synthetic address space: regions live 4 GiB apart so no pointer arithmetic a program
# can do within one s32 offset reaches a neighbour by accident
_REGION_SPACING = 1 << 32
_BASE = 0xFFFF_8880_0000_0000


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _s32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v >> 31 else v


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a run stopped abnormally.  kind: 'memory' (out of bounds / unmapped /
    read-only), 'budget' (instruction budget exhausted), 'call_depth' (more than 8
    frames), 'helper' (a helper reported misuse), 'unsupported'."""
    pc: int
    kind: str
    detail: str
    address: int | None = None
    size: int = 0
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """retval: r0 at exit (full 64 bits; 0 when the run faulted).  insns: instructions
    executed.  fault: None for a normal exit.  trace: bpf_trace_printk messages."""
    retval: int
    insns: int
    fault: Fault | None = None
    trace: tuple[bytes, ...] = ()


@dataclass(slots=True)
class Region:
    """A block of memory a program may address.  `buf` is used in place (a bytearray or
    a writable memoryview), so writes are visible to the caller (map values, packets).
    `base` is filled in by Memory.add.  Only offsets in the window [lo, hi) of `buf` are
    accessible (hi None = len(buf)): an XDP packet lives in a larger frame buffer and
    its window moves with bpf_xdp_adjust_head/tail.  `load_hook(offset, size)`, when
    set, computes loads instead of reading `buf` (contexts whose fields the kernel
    rewrites, e.g. xdp_md.data becoming a packet pointer); `store_hook(offset, data)`
    likewise replaces stores.  Both may raise MemoryFault."""
    name: str
    buf: bytearray | memoryview
    writable: bool = True
    base: int = 0
    lo: int = 0
    hi: int | None = None
    load_hook: Callable[[int, int], int] | None = None
    store_hook: Callable[[int, bytes], None] | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.buf)


class MemoryFault(Exception):
    """Raised inside a run (by memory accesses, context hooks or helpers) to stop it
    with a Fault record; never escapes Interpreter.run."""

    def __init__(self, kind: str, detail: str, address: int | None = None, size: int = 0,
                 region: str | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.address, self.size, self.region = \
            kind, detail, address, size, region


# map handles (CONST_PTR_TO_MAP) are addresses below every region: a program can pass
# them to helpers but any load or store through one faults
_MAP_HANDLE_BASE = _BASE - (1 << 32)
_MAP_HANDLE_STRIDE = 1 << 12
# callback addresses (lddw BPF_PSEUDO_FUNC): below the map handles, never memory
_FUNC_BASE = _MAP_HANDLE_BASE - (1 << 32)
_MAP_SRCS = (isa.BPF_PSEUDO_MAP_FD, isa.BPF_PSEUDO_MAP_IDX, isa.BPF_PSEUDO_MAP_VALUE,
             isa.BPF_PSEUDO_MAP_IDX_VALUE)


class Memory:
    """The regions of one run, addressable by synthetic 64-bit addresses.  Helpers get
    this object to read and write program memory with the same bounds checks, to turn
    map handles into maps (map_at) and map values into pointers (value_address).
    `context` is the program type's per-run state (e.g. the XDP buffer), `cpu` the
    simulated CPU the run is on."""

    def __init__(self, context: object = None, maps: Sequence[object] = (), cpu: int = 0,
                 ktime_ns: int = 0, prandom: Callable[[], int] | None = None,
                 packet_index: int = -1):
        self.packet_index = packet_index
        # bpf_trace_printk output of this run, one entry per call
        self.trace: list[bytes] = []
        # ring buffer records reserved in this run: address -> (map, ValueRef)
        self.reserved: dict[int, tuple[object, object]] = {}
        self._regions: list[Region] = []
        self._bases: list[int] = []
        self.context = context
        self.cpu = cpu
        self.ktime_ns = ktime_ns
        self.prandom = prandom
        self._maps: list[object] = list(maps)
        self._value_regions: dict[tuple[int, int], int] = {}

    def map_handle(self, m: object) -> int:
        """The handle of map `m` (the program's maps first; others, e.g. inner maps of
        a map-in-map, are added on first use)."""
        for i, x in enumerate(self._maps):
            if x is m:
                return _MAP_HANDLE_BASE + i * _MAP_HANDLE_STRIDE
        self._maps.append(m)
        return _MAP_HANDLE_BASE + (len(self._maps) - 1) * _MAP_HANDLE_STRIDE

    def map_at(self, addr: int) -> object:
        """The map whose handle is `addr`; MemoryFault if it is no map handle."""
        i, rem = divmod(addr - _MAP_HANDLE_BASE, _MAP_HANDLE_STRIDE)
        if rem or not 0 <= i < len(self._maps):
            raise MemoryFault("helper", f"0x{addr:x} is not a map pointer", addr)
        return self._maps[i]

    def value_address(self, ref, writable: bool = True) -> int:
        """Address of a map value (a ValueRef: buf, offset, size); the same element gets
        the same address for the whole run, and only its `size` bytes are reachable.
        writable=False for maps created with BPF_F_RDONLY_PROG."""
        key = (id(ref.buf), ref.offset)
        base = self._value_regions.get(key)
        if base is None:
            r = Region("map value", ref.buf, writable=writable, lo=ref.offset,
                       hi=ref.offset + ref.size)
            base = self.add(r)
            self._value_regions[key] = base
        return base + ref.offset

    def add(self, region: Region) -> int:
        """Place `region` after the existing ones; returns its base address."""
        region.base = _BASE + len(self._regions) * _REGION_SPACING
        self._regions.append(region)
        self._bases.append(region.base)
        return region.base

    def find(self, addr: int, size: int) -> tuple[Region, int]:
        """(region, offset) holding [addr, addr+size); MemoryFault if none does."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._regions[i]
            off = addr - r.base
            if r.lo <= off and off + size <= (len(r.buf) if r.hi is None else r.hi):
                return r, off
        # name the nearest region (within 64 KiB) so "stack[0]" explains fp-513
        near, best = None, 1 << 16
        for j in (i, i + 1):
            if 0 <= j < len(self._regions):
                r = self._regions[j]
                dist = max(r.base - addr, addr + size - r.end, 0)
                if dist < best:
                    near, best = r.name, dist
        raise MemoryFault("memory", f"access of {size} byte(s) at 0x{addr:x} outside every region"
                        + (f" (nearest: {near!r})" if near else ""), addr, size, near)

    def read(self, addr: int, size: int) -> bytes:
        r, off = self.find(addr, size)
        return bytes(r.buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        r, off = self.find(addr, len(data))
        if r.store_hook is not None:
            r.store_hook(off, data)
            return
        if not r.writable:
            raise MemoryFault("memory", f"write of {len(data)} byte(s) to read-only {r.name!r}",
                            addr, len(data), r.name)
        r.buf[off:off + len(data)] = data

    def address_of(self, region: Region, offset: int) -> int:
        return region.base + offset

    def load(self, addr: int, size: int) -> int:
        r, off = self.find(addr, size)
        if r.load_hook is not None:
            return r.load_hook(off, size)
        return int.from_bytes(r.buf[off:off + size], "little")

    def store(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


# A helper: called with (memory, r1, r2, r3, r4, r5), returns the new r0 (u64).  It may
# raise HelperExit(value) to end the program with that r0 (as bpf_tail_call or the
# conformance suite's "unwind" helper do).
Helper = Callable[..., int]


class HelperExit(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value


class CallbackLoop(Exception):
    """Raised by the bpf_loop helper after its argument checks: call the callback whose
    address (lddw BPF_PSEUDO_FUNC) is `target` nr_loops times with (i, ctx) until it
    returns non-zero; r0 = the number of calls made (kernel/bpf/bpf_iter.c bpf_loop)."""

    def __init__(self, nr_loops: int, target: int, ctx: int):
        super().__init__()
        self.nr_loops, self.target, self.ctx = nr_loops, target, ctx


def callback_target(addr: int, prog: "Interpreter") -> int | None:
    """The slot a callback address (from lddw BPF_PSEUDO_FUNC) points to, or None."""
    pc = addr - _FUNC_BASE
    if 0 <= pc < len(prog.slots) and prog.slots[pc] is not None:
        return pc
    return None


class TailCall(Exception):
    """Raised by the bpf_tail_call helper: `in_range` says the index was below the
    array's max_entries, `target` is the Interpreter in the slot (None: empty)."""

    def __init__(self, in_range: bool, target: "Interpreter | None"):
        super().__init__()
        self.in_range, self.target = in_range, target


MAX_TAIL_CALL_CNT = 33         # include/linux/bpf.h


@dataclass(frozen=True, slots=True)
class Options:
    """budget: instructions per run (a run that exceeds it faults with kind 'budget').
    max_loops: the value each frame's may_goto counter starts at (the kernel's
    BPF_MAX_LOOPS; smaller values make exhaustion testable).  helpers: helper id -> Helper.  callx_helpers: allow BPF_CALL|BPF_X and treat the
    register's value as a helper id (the bpf_conformance/uBPF convention; Linux refuses
    callx).  maps: the program's maps; lddw with src BPF_PSEUDO_MAP_FD or
    BPF_PSEUDO_MAP_IDX loads a handle to maps[imm], BPF_PSEUDO_MAP_VALUE /
    MAP_IDX_VALUE a pointer into the value of key 0 of maps[imm] (direct value access,
    as for global data).  A map object needs key_size, value_size and
    lookup_ptr(key, cpu) -> ValueRef(buf, offset, size) | None (bpfkit.ebpf.maps)."""
    budget: int = 1_000_000
    max_loops: int = isa.BPF_MAX_LOOPS
    helpers: Mapping[int, Helper] = field(default_factory=dict)
    callx_helpers: bool = False
    maps: Sequence[object] = ()


class Interpreter:
    """A loaded program.  `run` executes it once; the object holds no per-run state, so
    it is re-entrant."""

    def __init__(self, insns: Sequence[Insn], options: Options | None = None):
        self.options = options or Options()
        self.insns = list(insns)
        # slot-indexed program: jumps count slots; the second slot of lddw is None
        self.slots: list[Insn | None] = []
        self.ops: list[isa.Op | None] = []
        for i in self.insns:
            try:
                op = isa.check(i)
            except EncodingError as e:
                raise ValidationError(str(e), index=len(self.slots), rule="opcode") from None
            self.slots.append(i)
            self.ops.append(op)
            if i.slots == 2:
                self.slots.append(None)
                self.ops.append(None)
        self._validate()

    def _validate(self) -> None:
        n = len(self.slots)
        if n == 0:
            raise ValidationError("empty program", rule="length")
        last = self.slots[-1]
        if last is None or not (last.opcode in (isa.BPF_JMP | isa.BPF_EXIT, isa.BPF_JMP | isa.BPF_JA,
                                                isa.BPF_JMP32 | isa.BPF_JA)):
            # kernel check_subprogs: "last insn is not an exit or jmp"
            raise ValidationError("last instruction is not an exit or jump", index=n - 1,
                                  rule="last_insn")
        for pc, (i, op) in enumerate(zip(self.slots, self.ops)):
            if i is None:
                continue
            k = op.kind
            target = None
            if k in ("ja", "jcond", "may_goto"):
                target = pc + 1 + i.off
            elif k == "gotol":
                target = pc + 1 + i.imm
            elif k == "call" and i.src == isa.BPF_PSEUDO_CALL:
                target = pc + 1 + i.imm
            elif k == "call" and i.src == isa.BPF_PSEUDO_KFUNC_CALL:
                raise UnsupportedError("kfunc call", f"instruction {pc}: kfunc btf id {i.imm}")
            elif k == "call" and i.imm not in self.options.helpers:
                raise UnsupportedError(f"helper {i.imm} ({helper_name(i.imm)})",
                                       f"instruction {pc}: no implementation of this helper "
                                       "was given")
            elif k == "callx" and not self.options.callx_helpers:
                raise UnsupportedError("callx", f"instruction {pc}: Linux has no indirect calls")
            elif k == "lddw" and i.src != 0:
                self._check_map_ref(pc, i)
            if target is not None and not (0 <= target < n and self.slots[target] is not None):
                raise ValidationError(f"jump out of range or into the middle of lddw "
                                      f"(target {target})", index=pc, rule="jump_target")

    def _check_map_ref(self, pc: int, i: Insn) -> None:
        name = isa.PSEUDO_LDDW_NAMES[i.src]
        if i.src == isa.BPF_PSEUDO_FUNC:
            target = pc + 2 + _s32(i.imm) - 1
            if i.imm >> 32 or not (0 <= target < len(self.slots)
                                   and self.slots[target] is not None):
                raise ValidationError(f"lddw func: target {target} is not an instruction",
                                      index=pc, rule="func_ref")
            return
        if i.src not in _MAP_SRCS:
            raise UnsupportedError(f"lddw {name}", f"instruction {pc}")
        idx = i.imm & 0xFFFFFFFF
        maps = self.options.maps
        if idx >= len(maps):
            raise ValidationError(f"lddw {name} refers to map {idx}, the program has "
                                  f"{len(maps)} map(s)", index=pc, rule="map_ref")
        if i.src in (isa.BPF_PSEUDO_MAP_VALUE, isa.BPF_PSEUDO_MAP_IDX_VALUE):
            off = i.imm >> 32
            m = maps[idx]
            ref = m.lookup_ptr(bytes(m.key_size), 0) if m.key_size == 4 else None
            if ref is None or off >= m.value_size:
                # bpf_map_direct_read/map_direct_value_addr: array maps, offset inside
                raise ValidationError(f"lddw {name}: map {idx} has no direct value at "
                                      f"offset {off}", index=pc, rule="map_ref")

    # --- running ------------------------------------------------------------------

    def run(self, *, mem: bytearray | memoryview | bytes | None = None,
            packet: bytearray | memoryview | bytes | None = None,
            regions: Sequence[Region] = (), args: Sequence[int | str] = (),
            context: object = None, data_offset: int = 0,
            network_offset: int | None = None, cpu: int = 0, ktime_ns: int = 0,
            prandom: Callable[[], int] | None = None, packet_index: int = -1) -> Result:
        """Run once.

        mem: a buffer for the bpf_conformance convention: r1 = its address, r2 = its
        length (bytes are copied; pass a bytearray to see the program's writes).
        packet: the bytes LD_ABS/LD_IND read, starting at the mac header; data_offset is
        where skb->data is in it (LD_ABS offset 0) and network_offset where the network
        header is (SKF_NET_OFF; default data_offset).  regions: extra regions (context, map
        values).  args: initial r1.. r5 given as ints or as a region name (its address);
        args override mem's r1/r2.  context: per-run state helpers reach as
        memory.context.  cpu, ktime_ns (the packet's time, for the ktime helpers) and
        prandom (a seeded u32 generator for bpf_get_prandom_u32) and packet_index (tags
        ring buffer / perf records) are also for helpers."""
        memory = Memory(context, self.options.maps, cpu, ktime_ns, prandom, packet_index)
        stack_regions: list[Region] = []
        regs = [0] * 11
        byname: dict[str, int] = {}
        if mem is not None:
            buf = mem if isinstance(mem, (bytearray, memoryview)) else bytearray(mem)
            regs[1] = memory.add(Region("mem", buf))
            regs[2] = len(buf)
        for r in regions:
            byname[r.name] = memory.add(r)
        for n, a in enumerate(args, start=1):
            regs[n] = byname[a] if isinstance(a, str) else a & M64
        pkt = bytes(packet) if packet is not None else b""
        view = (data_offset, data_offset if network_offset is None else network_offset)
        res = _execute(self, memory, regs, stack_regions, pkt, view)
        if memory.trace:
            res = Result(res.retval, res.insns, res.fault, tuple(memory.trace))
        return res


def _new_frame(memory: Memory, stacks: list[Region], depth: int) -> int:
    """r10 for frame `depth` (frames are created lazily and reused, zeroed on entry)."""
    if depth < len(stacks):
        r = stacks[depth]
        r.buf[:] = bytes(STACK_SIZE)
    else:
        r = Region(f"stack[{depth}]", bytearray(STACK_SIZE))
        memory.add(r)
        stacks.append(r)
    return r.end


BPF_F_RDONLY_PROG = 1 << 7


def _prog_writable(m: object) -> bool:
    """Programs may not write values of maps created with BPF_F_RDONLY_PROG."""
    return not getattr(m, "flags", 0) & BPF_F_RDONLY_PROG


def _callback_regs(memory: Memory, stacks: list[Region], depth: int, i: int,
                   ctx: int) -> list[int]:
    """Registers of a bpf_loop callback frame: callback(i, ctx, 0, 0, 0)."""
    regs = [0] * 11
    regs[1], regs[2] = i, ctx
    regs[10] = _new_frame(memory, stacks, depth)
    return regs


_JCOND = {
    isa.BPF_JEQ: lambda a, b, sa, sb: a == b,
    isa.BPF_JNE: lambda a, b, sa, sb: a != b,
    isa.BPF_JGT: lambda a, b, sa, sb: a > b,
    isa.BPF_JGE: lambda a, b, sa, sb: a >= b,
    isa.BPF_JLT: lambda a, b, sa, sb: a < b,
    isa.BPF_JLE: lambda a, b, sa, sb: a <= b,
    isa.BPF_JSET: lambda a, b, sa, sb: (a & b) != 0,
    isa.BPF_JSGT: lambda a, b, sa, sb: sa > sb,
    isa.BPF_JSGE: lambda a, b, sa, sb: sa >= sb,
    isa.BPF_JSLT: lambda a, b, sa, sb: sa < sb,
    isa.BPF_JSLE: lambda a, b, sa, sb: sa <= sb,
}


def _alu(op: int, signed: int, a: int, b: int, bits: int) -> int:
    """One ALU operation on `bits`-wide unsigned operands; returns the masked result.
    `signed` is the off field (1 = sdiv/smod)."""
    mask = (1 << bits) - 1
    if op == isa.BPF_ADD:
        r = a + b
    elif op == isa.BPF_SUB:
        r = a - b
    elif op == isa.BPF_MUL:
        r = a * b
    elif op == isa.BPF_DIV:
        if signed:
            sa, sb = _sext(a, bits), _sext(b, bits)
            if sb == 0:
                r = 0
            else:
                q = abs(sa) // abs(sb)      # C truncates toward zero
                r = -q if (sa < 0) != (sb < 0) else q
        else:
            r = 0 if b == 0 else a // b
    elif op == isa.BPF_MOD:
        if signed:
            sa, sb = _sext(a, bits), _sext(b, bits)
            if sb == 0:
                r = a
            else:
                m = abs(sa) % abs(sb)       # sign follows the dividend (C semantics)
                r = -m if sa < 0 else m
        else:
            r = a if b == 0 else a % b
    elif op == isa.BPF_OR:
        r = a | b
    elif op == isa.BPF_AND:
        r = a & b
    elif op == isa.BPF_XOR:
        r = a ^ b
    elif op == isa.BPF_LSH:
        r = a << (b & (bits - 1))
    elif op == isa.BPF_RSH:
        r = a >> (b & (bits - 1))
    elif op == isa.BPF_ARSH:
        r = _sext(a, bits) >> (b & (bits - 1))
    elif op == isa.BPF_MOV:
        r = b
    else:  # pragma: no cover - the table has no other ALU op
        raise AssertionError(op)
    return r & mask


def _swap(v: int, bits: int) -> int:
    n = bits // 8
    return int.from_bytes((v & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def _execute(prog: Interpreter, memory: Memory, regs: list[int], stacks: list[Region],
             packet: bytes, pkt_view: tuple[int, int]) -> Result:
    slots, ops = prog.slots, prog.ops
    budget = prog.options.budget
    helpers = prog.options.helpers
    max_loops = prog.options.max_loops
    regs[10] = _new_frame(memory, stacks, 0)
    # (return pc, caller registers, bpf_loop state [i, nr_loops, target, ctx] or None,
    # the caller's may_goto counter)
    frames: list[tuple[int, list[int], list | None, int]] = []
    loops = max_loops            # this frame's may_goto counter
    pc = 0
    count = 0
    tail_calls = 0
    try:
        while True:
            if count >= budget:
                return Result(0, count, Fault(pc, "budget", f"instruction budget of {budget} "
                                              "exhausted"))
            count += 1
            insn = slots[pc]
            op = ops[pc]
            k = op.kind
            nxt = pc + 1
            if k == "alu":
                bits = op.width
                mask = (1 << bits) - 1
                if op.op == isa.BPF_MOV and insn.off:       # movsx
                    v = _sext(regs[insn.src], insn.off) & mask
                else:
                    if op.source == isa.BPF_X:
                        b = regs[insn.src] & mask
                    else:
                        b = (insn.imm & M64) & mask         # imm sign-extended, then truncated
                    v = _alu(op.op, insn.off, regs[insn.dst] & mask, b, bits)
                regs[insn.dst] = v
            elif k == "neg":
                mask = (1 << op.width) - 1
                regs[insn.dst] = (-regs[insn.dst]) & mask
            elif k == "end":
                v = regs[insn.dst]
                bits = insn.imm
                if op.name.startswith("le"):
                    regs[insn.dst] = v & ((1 << bits) - 1)      # host is little-endian
                else:
                    regs[insn.dst] = _swap(v, bits)
            elif k == "ja":
                nxt = pc + 1 + insn.off
            elif k == "gotol":
                nxt = pc + 1 + insn.imm
            elif k == "may_goto":
                if loops == 0:
                    nxt = pc + 1 + insn.off
                else:
                    loops -= 1
            elif k == "jcond":
                if op.width == 64:
                    a = regs[insn.dst]
                    b = regs[insn.src] if op.source == isa.BPF_X else insn.imm & M64
                    sa, sb = _s64(a), _s64(b)
                else:
                    a = regs[insn.dst] & M32
                    b = (regs[insn.src] if op.source == isa.BPF_X else insn.imm) & M32
                    sa, sb = _s32(a), _s32(b)
                if _JCOND[op.op](a, b, sa, sb):
                    nxt = pc + 1 + insn.off
            elif k == "ldx" or k == "ldxs":
                addr = (regs[insn.src] + insn.off) & M64
                v = memory.load(addr, op.size)
                regs[insn.dst] = _sext(v, 8 * op.size) & M64 if k == "ldxs" else v
            elif k == "st":
                memory.store((regs[insn.dst] + insn.off) & M64, op.size, insn.imm)
            elif k == "stx":
                memory.store((regs[insn.dst] + insn.off) & M64, op.size, regs[insn.src])
            elif k == "atomic":
                _atomic(memory, regs, insn, op)
            elif k == "lddw":
                if insn.src == 0:
                    regs[insn.dst] = insn.imm
                elif insn.src == isa.BPF_PSEUDO_FUNC:
                    # a callback address (check_ld_imm: target = pc + imm + 1)
                    regs[insn.dst] = _FUNC_BASE + pc + 1 + _s32(insn.imm)
                else:
                    m = prog.options.maps[insn.imm & M32]
                    if insn.src in (isa.BPF_PSEUDO_MAP_FD, isa.BPF_PSEUDO_MAP_IDX):
                        regs[insn.dst] = memory.map_handle(m)
                    else:
                        ref = m.lookup_ptr(bytes(m.key_size), memory.cpu)
                        regs[insn.dst] = memory.value_address(ref, _prog_writable(m)) \
                            + (insn.imm >> 32)
                nxt = pc + 2                                # lddw takes two slots
            elif k == "ldabs" or k == "ldind":
                # bpf_skb_load_helper_{8,16,32}: the offset is an int; k >= 0 is relative to
                # skb->data, [SKF_NET_OFF, 0) to the network header, [SKF_LL_OFF,
                # SKF_NET_OFF) to the mac header (bpf_internal_load_pointer_neg_helper);
                # anything else, or past the end, fails and the program returns 0
                k_ = insn.imm if k == "ldabs" else _s32(regs[insn.src] + insn.imm)
                if k_ >= 0:
                    off = pkt_view[0] + k_
                elif k_ >= SKF_NET_OFF:
                    off = pkt_view[1] + (k_ - SKF_NET_OFF)
                elif k_ >= SKF_LL_OFF:
                    off = k_ - SKF_LL_OFF
                else:
                    return Result(0, count, None)
                if off + op.size > len(packet):
                    return Result(0, count, None)
                regs[0] = int.from_bytes(packet[off:off + op.size], "big")
            elif k == "call":
                if insn.src == isa.BPF_PSEUDO_CALL:
                    if len(frames) + 1 >= MAX_FRAMES:
                        return Result(0, count, Fault(pc, "call_depth", f"more than {MAX_FRAMES} "
                                                      "call frames"))
                    frames.append((pc + 1, regs, None, loops))
                    loops = max_loops
                    callee = [0] * 11
                    callee[1:6] = regs[1:6]
                    regs = callee
                    regs[10] = _new_frame(memory, stacks, len(frames))
                    nxt = pc + 1 + insn.imm
                else:
                    try:
                        regs[0] = helpers[insn.imm](memory, *regs[1:6]) & M64
                    except CallbackLoop as cl:
                        target = callback_target(cl.target, prog)
                        if target is None:
                            return Result(0, count, Fault(pc, "helper", f"0x{cl.target:x} is "
                                                          "not a callback of this program"))
                        if cl.nr_loops == 0:
                            regs[0] = 0
                        else:
                            if len(frames) + 1 >= MAX_FRAMES:
                                return Result(0, count, Fault(pc, "call_depth",
                                              f"more than {MAX_FRAMES} call frames"))
                            loop = [0, cl.nr_loops, target, cl.ctx]
                            frames.append((pc + 1, regs, loop, loops))
                            loops = max_loops
                            regs = _callback_regs(memory, stacks, len(frames), 0, cl.ctx)
                            nxt = target
                    except TailCall as tc:
                        # ___bpf_prog_run JMP_TAIL_CALL: index check, then the counter
                        # (incremented even when the slot is empty), then the slot; on
                        # failure execution goes on after the call with r0 unchanged
                        if not tc.in_range or tail_calls >= MAX_TAIL_CALL_CNT:
                            pass
                        else:
                            tail_calls += 1
                            if tc.target is not None:
                                if frames:
                                    return Result(0, count, Fault(pc, "unsupported",
                                                  "tail call from a bpf-to-bpf subprogram"))
                                # the new program runs in the same frame: registers and
                                # stack are kept, r1 is still the context
                                prog = tc.target
                                slots, ops = prog.slots, prog.ops
                                helpers = prog.options.helpers
                                # the new program's prologue sets its own counter
                                max_loops = loops = prog.options.max_loops
                                nxt = 0
            elif k == "callx":
                hid = regs[insn.dst]
                h = helpers.get(hid)
                if h is None:
                    return Result(0, count, Fault(pc, "helper", f"callx to unknown helper {hid}"))
                regs[0] = h(memory, *regs[1:6]) & M64
            elif k == "exit":
                if not frames:
                    return Result(regs[0], count, None)
                r0 = regs[0]
                nxt, caller, loop, caller_loops = frames.pop()
                if loop is not None:
                    # a bpf_loop callback returned: 0 continues, anything else stops
                    i, n, target, ctx = loop
                    if r0 == 0 and i + 1 < n:
                        loop[0] = i + 1
                        frames.append((nxt, caller, loop, caller_loops))
                        loops = max_loops        # each call runs the callback's prologue
                        regs = _callback_regs(memory, stacks, len(frames), i + 1, ctx)
                        pc = target
                        continue
                    r0 = i + 1 if r0 != 0 else n
                regs = caller
                loops = caller_loops
                regs[0] = r0
            else:  # pragma: no cover - every kind of the table is handled
                raise AssertionError(k)
            pc = nxt
    except MemoryFault as f:
        return Result(0, count, Fault(pc, f.kind, f.detail, f.address, f.size, f.region))
    except HelperExit as e:
        return Result(e.value & M64, count, None)


def _atomic(memory: Memory, regs: list[int], insn: Insn, op: isa.Op) -> None:
    size = op.size
    mask = (1 << (8 * size)) - 1
    addr = (regs[insn.dst] + insn.off) & M64
    old = memory.load(addr, size)
    src = regs[insn.src] & mask
    a = insn.imm
    if a == isa.BPF_XCHG:
        memory.store(addr, size, src)
        regs[insn.src] = old
    elif a == isa.BPF_CMPXCHG:
        if (regs[0] & mask) == old:
            memory.store(addr, size, src)
        regs[0] = old                      # zero-extended for the 32-bit form
    else:
        base = a & ~isa.BPF_FETCH
        new = {isa.BPF_ADD: old + src, isa.BPF_OR: old | src, isa.BPF_AND: old & src,
               isa.BPF_XOR: old ^ src}[base]
        memory.store(addr, size, new)
        if a & isa.BPF_FETCH:
            regs[insn.src] = old


def run(insns: Sequence[Insn], *, mem: bytes | bytearray | None = None,
        packet: bytes | None = None, options: Options | None = None) -> Result:
    """Convenience: load and run once (see Interpreter.run)."""
    return Interpreter(insns, options).run(mem=mem, packet=packet)
