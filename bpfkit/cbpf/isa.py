"""Classic BPF instruction set: field names as in linux/bpf_common.h and pcap/bpf.h,
ancillary offsets as in linux/filter.h, and the one table of instruction facts that
the assembler, disassembler, validators and interpreters all read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# --- instruction classes (BPF_CLASS) ---------------------------------------
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_MISC = 0x07

# --- load/store size (BPF_SIZE) --------------------------------------------
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10

# --- load/store mode (BPF_MODE) --------------------------------------------
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_LEN = 0x80
BPF_MSH = 0xA0

# --- ALU / jump operations (BPF_OP) ----------------------------------------
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0

BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40

# --- operand source (BPF_SRC) and return value (BPF_RVAL) -------------------
BPF_K = 0x00
BPF_X = 0x08
BPF_A = 0x10

# --- misc (BPF_MISCOP) -------------------------------------------------------
BPF_TAX = 0x00
BPF_TXA = 0x80

BPF_MEMWORDS = 16          # scratch memory M[0..15]
BPF_MAXINSNS = 4096        # kernel limit (linux/bpf_common.h)


def BPF_CLASS(code: int) -> int: return code & 0x07
def BPF_SIZE(code: int) -> int: return code & 0x18
def BPF_MODE(code: int) -> int: return code & 0xE0
def BPF_OP(code: int) -> int: return code & 0xF0
def BPF_SRC(code: int) -> int: return code & 0x08
def BPF_RVAL(code: int) -> int: return code & 0x18
def BPF_MISCOP(code: int) -> int: return code & 0xF8


# --- Linux ancillary data and negative offsets (linux/filter.h) -------------
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
SKF_AD_NLATTR = 12
SKF_AD_NLATTR_NEST = 16
SKF_AD_MARK = 20
SKF_AD_QUEUE = 24
SKF_AD_HATYPE = 28
SKF_AD_RXHASH = 32
SKF_AD_CPU = 36
SKF_AD_ALU_XOR_X = 40
SKF_AD_VLAN_TAG = 44
SKF_AD_VLAN_TAG_PRESENT = 48
SKF_AD_PAY_OFFSET = 52
SKF_AD_RANDOM = 56
SKF_AD_VLAN_TPID = 60
SKF_AD_MAX = 64

SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000

# Ancillary offset (relative to SKF_AD_OFF) -> the name the kernel's bpf_asm
# (tools/bpf/bpf_exp.l) uses after '#', e.g. `ld #proto`.  ALU_XOR_X has no
# bpf_asm keyword; the disassembler prints it as a plain absolute load.
ANCILLARY_NAMES: dict[int, str] = {
    SKF_AD_PROTOCOL: "proto",
    SKF_AD_PKTTYPE: "type",
    SKF_AD_IFINDEX: "ifidx",
    SKF_AD_NLATTR: "nla",
    SKF_AD_NLATTR_NEST: "nlan",
    SKF_AD_MARK: "mark",
    SKF_AD_QUEUE: "queue",
    SKF_AD_HATYPE: "hatype",
    SKF_AD_RXHASH: "rxhash",
    SKF_AD_CPU: "cpu",
    SKF_AD_VLAN_TAG: "vlan_tci",
    SKF_AD_VLAN_TAG_PRESENT: "vlan_avail",
    SKF_AD_PAY_OFFSET: "poff",
    SKF_AD_RANDOM: "rand",
    SKF_AD_VLAN_TPID: "vlan_tpid",
}
ANCILLARY_BY_NAME: dict[str, int] = {v: k for k, v in ANCILLARY_NAMES.items()}


def ancillary_of(k: int) -> Optional[int]:
    """If absolute-load offset ``k`` (u32) addresses Linux ancillary data, return
    the SKF_AD_* index (k - SKF_AD_OFF), else None.  Mirrors the kernel's
    `BPF_ANC | SKF_AD_*` decoding in bpf_check_basics_ok / convert_bpf_extensions."""
    sk = k - (1 << 32) if k & 0x80000000 else k
    if SKF_AD_OFF <= sk < 0:
        return sk - SKF_AD_OFF
    return None


# --- the table of instruction facts ----------------------------------------
@dataclass(frozen=True, slots=True)
class OpInfo:
    """Facts about one valid opcode.

    ``mnemonic``: the tcpdump/libpcap (bpf_image) mnemonic.
    ``operand``:  the operand shape, one of
        'none'   (ret a, tax, txa, neg)
        'retk'   (ret #k)
        'abs'    ([k])         'ind'  ([x + k])     'msh' (4*([k]&0xf))
        'len'    (#pktlen)     'imm'  (#k)          'mem' (M[k])
        'ja'     (absolute target)
        'jk'     (#k, jt, jf)  'jx'   (x, jt, jf)
        'aluk'   (#k)          'alux' (x)
    ``size``: load width in bytes for packet loads, else 0.
    ``in_kernel``: accepted by bpf_check_classic (net/core/filter.c);
    ``in_libpcap``: accepted by libpcap's bpf_validate (bpf_filter.c).
    """
    code: int
    mnemonic: str
    operand: str
    size: int = 0
    in_kernel: bool = True
    in_libpcap: bool = True


def _build_table() -> dict[int, OpInfo]:
    t: dict[int, OpInfo] = {}

    def add(code, mn, operand, size=0, kernel=True, libpcap=True):
        assert code not in t, hex(code)
        t[code] = OpInfo(code, mn, operand, size, kernel, libpcap)

    # loads into A
    for sz, suffix, nbytes in ((BPF_W, "", 4), (BPF_H, "h", 2), (BPF_B, "b", 1)):
        add(BPF_LD | sz | BPF_ABS, "ld" + suffix, "abs", nbytes)
        add(BPF_LD | sz | BPF_IND, "ld" + suffix, "ind", nbytes)
    add(BPF_LD | BPF_W | BPF_LEN, "ld", "len")
    add(BPF_LD | BPF_IMM, "ld", "imm")
    add(BPF_LD | BPF_MEM, "ld", "mem")
    # loads into X.  LDX ABS is in neither set (not allowed by the kernel,
    # and libpcap's bpf_filter has no case for it).
    add(BPF_LDX | BPF_W | BPF_LEN, "ldx", "len")
    add(BPF_LDX | BPF_IMM, "ldx", "imm")
    add(BPF_LDX | BPF_MEM, "ldx", "mem")
    add(BPF_LDX | BPF_B | BPF_MSH, "ldxb", "msh", 1)
    # stores
    add(BPF_ST, "st", "mem")
    add(BPF_STX, "stx", "mem")
    # ALU
    for op, mn in ((BPF_ADD, "add"), (BPF_SUB, "sub"), (BPF_MUL, "mul"), (BPF_DIV, "div"),
                   (BPF_MOD, "mod"), (BPF_AND, "and"), (BPF_OR, "or"), (BPF_XOR, "xor"),
                   (BPF_LSH, "lsh"), (BPF_RSH, "rsh")):
        add(BPF_ALU | op | BPF_K, mn, "aluk")
        add(BPF_ALU | op | BPF_X, mn, "alux")
    add(BPF_ALU | BPF_NEG, "neg", "none")
    # jumps
    add(BPF_JMP | BPF_JA, "ja", "ja")
    for op, mn in ((BPF_JEQ, "jeq"), (BPF_JGT, "jgt"), (BPF_JGE, "jge"), (BPF_JSET, "jset")):
        add(BPF_JMP | op | BPF_K, mn, "jk")
        add(BPF_JMP | op | BPF_X, mn, "jx")
    # returns (BPF_RET|BPF_X is not an instruction: neither bpf_check_classic
    # nor libpcap's bpf_filter has a case for it)
    add(BPF_RET | BPF_K, "ret", "retk")
    add(BPF_RET | BPF_A, "ret", "none")
    # misc
    add(BPF_MISC | BPF_TAX, "tax", "none")
    add(BPF_MISC | BPF_TXA, "txa", "none")
    return t


OPCODES: dict[int, OpInfo] = _build_table()


def opinfo(code: int) -> Optional[OpInfo]:
    return OPCODES.get(code)


def is_cond_jump(code: int) -> bool:
    return BPF_CLASS(code) == BPF_JMP and BPF_OP(code) != BPF_JA
