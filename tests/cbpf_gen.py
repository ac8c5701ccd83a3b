"""Test support for the classic BPF interpreter/validator tests: hypothesis strategies
for programs and packets, a synthetic Ethernet packet maker, tcpdump -ddd programs."""
from __future__ import annotations

import random
import struct

from hypothesis import strategies as st

import oracles
from bpfkit.cbpf.isa import (BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JMP,
                             BPF_LD, BPF_LDX, BPF_LEN, BPF_MEM, BPF_MISC, BPF_MSH, BPF_RET,
                             BPF_ST, BPF_STX, BPF_W, SKF_AD_OFF, SKF_LL_OFF, SKF_NET_OFF)
from bpfkit.cbpf.program import Program

U32 = 0xFFFFFFFF

# Opcodes libpcap 1.10.3's bpf_filter implements (its switch), by family.
LOADS_ABS = [BPF_LD | s | BPF_ABS for s in (BPF_W, BPF_H, BPF_B)]
LOADS_IND = [BPF_LD | s | BPF_IND for s in (BPF_W, BPF_H, BPF_B)]
ALU_K = [BPF_ALU | op for op in (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0)]
ALU_X = [c | 0x08 for c in ALU_K]
CJMP = [BPF_JMP | op | src for op in (0x10, 0x20, 0x30, 0x40) for src in (0x00, 0x08)]
OTHER = [BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN, BPF_LDX | BPF_MSH | BPF_B,
         BPF_LD | BPF_IMM, BPF_LDX | BPF_IMM, BPF_ALU | 0x80, BPF_MISC | 0x00, BPF_MISC | 0x80]
MEM_LOADS = [BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM]
STORES = [BPF_ST, BPF_STX]
RETS = [BPF_RET | 0x00, BPF_RET | 0x10]
JA = BPF_JMP | 0x00

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 12, 13, 14, 15, 16, 20, 23, 31, 32, 33, 63, 64, 0x7F,
               0x80, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFF,
               SKF_AD_OFF & U32, (SKF_AD_OFF - 1) & U32, SKF_NET_OFF & U32, SKF_LL_OFF & U32]


def k_values(offsets_max: int = 80):
    return _S.one_of(_S.integers(0, offsets_max), _S.sampled_from(INTERESTING),
                     _S.integers(0, U32))


class _Draw:
    """A hypothesis-style `draw` over a seeded random.Random: programs are built from
    one drawn seed (fast; hypothesis's per-value draws made generation the bottleneck).
    A failing example is reported with its seed and the program in the assertion."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def __call__(self, spec):
        kind = spec[0]
        r = self.rng
        if kind == "int":
            return r.randint(spec[1], spec[2])
        if kind == "pick":
            return r.choice(spec[1])
        if kind == "bool":
            return r.random() < 0.5
        if kind == "any":
            return self(r.choice(spec[1]))
        if kind == "map":
            return spec[2](self(spec[1]))
        raise AssertionError(kind)


class _S:
    """Strategy-like specs understood by _Draw (same names as hypothesis's)."""
    integers = staticmethod(lambda lo, hi: ("int", lo, hi))
    sampled_from = staticmethod(lambda seq: ("pick", list(seq)))
    booleans = staticmethod(lambda: ("bool",))
    one_of = staticmethod(lambda *specs: ("any", specs))
    just = staticmethod(lambda v: ("pick", [v]))

    @staticmethod
    def mapped(spec, fn):
        return ("map", spec, fn)


def _seeded(builder):
    """Turn builder(draw, **kw) into a function returning a hypothesis strategy."""
    def strategy(**kw):
        return st.integers(0, (1 << 64) - 1).map(lambda seed: builder(_Draw(seed), **kw))
    strategy.build = builder
    strategy.__name__ = builder.__name__
    strategy.__doc__ = builder.__doc__
    return strategy


def _libpcap_body(draw, n: int, store_max: int = 15) -> list:
    """n forward-only instructions from bpf_filter's repertoire; jumps land at most
    on index n (the instruction right after the body)."""
    body = []
    for i in range(n):
        left = n - i - 1                # instructions after this one in the body
        fam = draw(_S.sampled_from(["abs", "ind", "alu_k", "alu_x", "cjmp", "other", "mem",
                                    "st", "ja", "ret"]))
        if fam == "abs":
            body.append((draw(_S.sampled_from(LOADS_ABS)), 0, 0, draw(k_values())))
        elif fam == "ind":
            body.append((draw(_S.sampled_from(LOADS_IND)), 0, 0, draw(k_values())))
        elif fam in ("alu_k", "alu_x"):
            code = draw(_S.sampled_from(ALU_K if fam == "alu_k" else ALU_X))
            k = draw(k_values())
            if fam == "alu_k" and code & 0xF0 in (0x30, 0x90) and k == 0:
                k = 1                   # constant div/mod by 0 is invalid
            body.append((code, 0, 0, k))
        elif fam == "cjmp":
            body.append((draw(_S.sampled_from(CJMP)), draw(_S.integers(0, left)),
                         draw(_S.integers(0, left)), draw(k_values())))
        elif fam == "other":
            body.append((draw(_S.sampled_from(OTHER)), 0, 0, draw(k_values())))
        elif fam == "mem":
            body.append((draw(_S.sampled_from(MEM_LOADS)), 0, 0, draw(_S.integers(0, 15))))
        elif fam == "st":
            body.append((draw(_S.sampled_from(STORES)), 0, 0,
                         draw(_S.integers(0, store_max))))
        elif fam == "ja":
            body.append((JA, 0, 0, draw(_S.integers(0, left))))
        else:
            body.append((draw(_S.sampled_from(RETS)), 0, 0, draw(k_values())))
    return body


def _scratch_prologue(draw) -> list:
    out = []
    for m in range(16):
        out += [(BPF_LD | BPF_IMM, 0, 0, draw(_S.integers(0, U32))), (BPF_ST, 0, 0, m)]
    return out


@_seeded
def libpcap_programs(draw, max_len: int = 24):
    """Programs libpcap 1.10.3's bpf_validate accepts and its bpf_filter can run to
    completion: only opcodes bpf_filter implements, forward jumps only, ending in a
    ret, and every scratch cell written first (1.10.3 leaves M[] uninitialised)."""
    n = draw(_S.integers(1, max_len))
    body = _libpcap_body(draw, n - 1)
    body.append((draw(_S.sampled_from(RETS)), 0, 0, draw(k_values())))
    return Program(_scratch_prologue(draw) + body)


@_seeded
def looping_programs(draw, max_body: int = 16):
    """A bounded loop through a backward `ja`, as libpcap's protochain makes them:
    M[15] = (wire length & 3) iterations, a random forward-only body (which never
    writes M[15] and may return early), then the latch
    `ld M[15]; jeq #0 exit; sub #1; st M[15]; ja body`, and `txa; ret a`."""
    m = draw(_S.integers(1, max_body))
    head = _scratch_prologue(draw) + [(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
                                      (BPF_ALU | 0x50, 0, 0, 3), (BPF_ST, 0, 0, 15)]
    body = _libpcap_body(draw, m, store_max=14)
    latch = [(BPF_LD | BPF_MEM, 0, 0, 15), (BPF_JMP | 0x10, 3, 0, 0),
             (BPF_ALU | 0x10, 0, 0, 1), (BPF_ST, 0, 0, 15),
             (JA, 0, 0, (-(m + 5)) & U32)]
    return Program(head + body + latch + [(BPF_MISC | 0x80, 0, 0, 0), (BPF_RET | 0x10, 0, 0, 0)])


@st.composite
def packets(draw, max_len: int = 72):
    """(captured bytes, wire length >= caplen)."""
    data = draw(st.binary(min_size=0, max_size=max_len))
    extra = draw(st.one_of(st.just(0), st.integers(0, 3000)))
    return data, len(data) + extra


def synthetic_packet(rng: random.Random) -> tuple[bytes, int]:
    """An Ethernet frame: IPv4/IPv6 (possibly 802.1Q-tagged, possibly a fragment,
    possibly with IPv6 extension headers), ARP, or junk; TCP/UDP/ICMP/SCTP with
    common ports; sometimes truncated (caplen < wirelen)."""
    def ports():
        return struct.pack(">HH", rng.choice([80, 53, 443, 22, 1234, rng.randrange(65536)]),
                           rng.choice([80, 53, 443, 8080, rng.randrange(65536)]))
    l4proto = rng.choice([6, 17, 1, 132, 58, 2, 47])
    if l4proto == 6:
        l4 = ports() + bytes(8) + bytes([rng.choice([0x50, 0x60, 0x80]),
                                         rng.choice([0x02, 0x12, 0x10, 0x11, 0x04])]) + bytes(6)
    elif l4proto in (17, 132):
        l4 = ports() + bytes(4 if l4proto == 17 else 8)
    else:
        l4 = bytes([rng.randrange(256) for _ in range(8)])
    l4 += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    kind = rng.choice(["ip", "ip", "ip6", "ip6", "arp", "junk"])
    if kind == "ip":
        frag = rng.choice([0, 0, 0, 0x2000, 0x0005, 0x4000])
        ihl = rng.choice([5, 5, 6])
        l3 = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(l4), 1, frag, 64, l4proto, 0,
                         bytes([10, 0, 0, rng.choice([1, 2])]),
                         bytes([rng.choice([10, 192]), 0, 0, rng.choice([1, 2])])) + bytes(4 * (ihl - 5))
        etype = 0x0800
    elif kind == "ip6":
        nxt = l4proto if l4proto != 1 else 58
        ext = b""
        if rng.random() < 0.3:
            ext = bytes([nxt, 0]) + bytes(6)       # hop-by-hop, 8 bytes
            nxt = 0
        l3 = struct.pack(">IHBB16s16s", 0x60000000, len(ext) + len(l4), nxt, 64,
                         bytes(15) + b"\x01", bytes(15) + bytes([rng.choice([1, 2])])) + ext
        etype = 0x86DD
    elif kind == "arp":
        l3, l4, etype = bytes([0, 1, 8, 0, 6, 4, 0, 1]) + bytes(20), b"", 0x0806
    else:
        l3, l4, etype = b"", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60))), \
            rng.randrange(65536)
    eth = bytes([rng.choice([0xFF, 0x00, 0x01])]) + bytes(11)
    if rng.random() < 0.15:
        eth += struct.pack(">HH", 0x8100, rng.randrange(4096))
    frame = eth + struct.pack(">H", etype) + l3 + l4
    wirelen = len(frame)
    if rng.random() < 0.2:
        frame = frame[:rng.randrange(0, len(frame) + 1)]
    return frame, wirelen


def tcpdump_program(expr: str, dlt: str = "EN10MB") -> Program:
    """`tcpdump -y DLT -ddd EXPR` as a Program."""
    rc, out, err = oracles.tcpdump_compile(expr, dlt, "-ddd")
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    insns = [tuple(int(v) for v in ln.split()) for ln in lines[1:]]
    assert len(insns) == int(lines[0])
    return Program(insns)


# --- kernel (socket filter) programs ---------------------------------------------------

# Ancillary loads whose value an AF_UNIX datagram's skb fixes (see test_cbpf_kernel):
# everything but SKF_AD_RANDOM.
KERNEL_ANC = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 60]
KERNEL_CODES = sorted(c for c, info in __import__("bpfkit.cbpf.isa", fromlist=["OPCODES"])
                      .OPCODES.items() if info.in_kernel)


@_seeded
def kernel_programs(draw, max_len: int = 20, epilogue: bool = True):
    """Classic programs in the kernel's instruction set, mostly valid: forward jumps
    in range, constant div/mod by non-zero, shifts < 32, M[k] (k < 16) usually
    written first, ancillary loads at known SKF_AD_* offsets (not RANDOM), negative
    offsets near SKF_NET_OFF / SKF_LL_OFF.  `ret a` jumps to an epilogue returning
    (A >> s) & 0xff for a drawn s, so that a datagram longer than 255 bytes reveals
    those bits of A through its received length."""
    n = draw(_S.integers(1, max_len))
    shift = draw(_S.sampled_from([0, 8, 16, 24]))
    epi = ([(BPF_ALU | 0x70, 0, 0, shift)] if shift else []) + \
        [(BPF_ALU | 0x50, 0, 0, 0xFF), (BPF_RET | 0x10, 0, 0, 0)] if epilogue else []
    prologue = []
    if draw(_S.booleans()):
        for m in range(16):
            prologue += [(BPF_LD | BPF_IMM, 0, 0, draw(_S.integers(0, U32))), (BPF_ST, 0, 0, m)]
    body = []
    offs = _S.one_of(_S.integers(0, 300), _S.sampled_from(INTERESTING),
                     _S.mapped(_S.integers(SKF_NET_OFF, SKF_NET_OFF + 300), lambda v: v & U32),
                     _S.mapped(_S.integers(SKF_LL_OFF, SKF_LL_OFF + 300), lambda v: v & U32))
    for i in range(n):
        to_epi = n - i - 1                  # ja offset that lands on the epilogue
        fam = draw(_S.sampled_from(["abs", "anc", "ind", "alu_k", "alu_x", "cjmp", "other",
                                    "mem", "st", "ja", "retk", "reta"]))
        if fam == "abs":
            body.append((draw(_S.sampled_from(LOADS_ABS)), 0, 0, draw(offs)))
        elif fam == "anc":
            body.append((draw(_S.sampled_from(LOADS_ABS)), 0, 0,
                         (SKF_AD_OFF + draw(_S.sampled_from(KERNEL_ANC))) & U32))
        elif fam == "ind":
            body.append((draw(_S.sampled_from(LOADS_IND)), 0, 0, draw(offs)))
        elif fam in ("alu_k", "alu_x"):
            code = draw(_S.sampled_from(ALU_K if fam == "alu_k" else ALU_X))
            k = draw(k_values(300))
            if fam == "alu_k" and code & 0xF0 in (0x30, 0x90) and k == 0:
                k = 3
            if fam == "alu_k" and code & 0xF0 in (0x60, 0x70):
                k &= 31
            body.append((code, 0, 0, k))
        elif fam == "cjmp":
            body.append((draw(_S.sampled_from(CJMP)), draw(_S.integers(0, to_epi)),
                         draw(_S.integers(0, to_epi)), draw(k_values(300))))
        elif fam == "other":
            body.append((draw(_S.sampled_from(OTHER)), 0, 0, draw(offs)))
        elif fam == "mem":
            body.append((draw(_S.sampled_from(MEM_LOADS)), 0, 0, draw(_S.integers(0, 15))))
        elif fam == "st":
            body.append((draw(_S.sampled_from(STORES)), 0, 0, draw(_S.integers(0, 15))))
        elif fam == "ja":
            body.append((JA, 0, 0, draw(_S.integers(0, to_epi))))
        elif fam == "retk":
            body.append((BPF_RET, 0, 0, draw(_S.one_of(_S.integers(0, 300),
                                                       _S.sampled_from(INTERESTING)))))
        else:
            body.append((JA, 0, 0, to_epi) if epilogue else (BPF_RET | 0x10, 0, 0, 0))
    if not epilogue and (not body or body[-1][0] not in RETS):
        body.append((BPF_RET | 0x10, 0, 0, 0))
    return Program(prologue + body + epi)


@_seeded
def wild_programs(draw, max_len: int = 12):
    """Anything: opcodes from the table, kernel-only ones, random u16 codes; jump
    offsets and k values anywhere; for validator-vs-validator differentials."""
    n = draw(_S.integers(0, max_len))
    out = []
    for i in range(n):
        code = draw(_S.one_of(_S.sampled_from(KERNEL_CODES), _S.sampled_from(KERNEL_CODES),
                              _S.integers(0, 0xFF), _S.integers(0, 0xFFFF)))
        jt = draw(_S.one_of(_S.integers(0, max(0, n - i - 1)), _S.integers(0, 255)))
        jf = draw(_S.one_of(_S.integers(0, max(0, n - i - 1)), _S.integers(0, 255)))
        k = draw(_S.one_of(_S.integers(0, 20), _S.sampled_from(INTERESTING),
                           _S.integers(0, U32),
                           _S.mapped(_S.integers(SKF_AD_OFF, -1), lambda v: v & U32),
                           _S.mapped(_S.integers(-(n + 1), -1), lambda v: v & U32)))
        out.append((code, jt, jf, k))
    if n and draw(_S.booleans()):
        out[-1] = (draw(_S.sampled_from(RETS + [BPF_RET | 0x08])), 0, 0, draw(k_values()))
    return Program(out)
