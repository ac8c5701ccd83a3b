"""Disassembler against its oracles.

* libpcap's own bpf_image(), called through ctypes from the installed libpcap 1.10.3,
  for every 16-bit opcode and a table of field values (unknown opcodes, negative and
  huge k, ancillary offsets, jump targets beyond 255).
* `tcpdump -d/-dd/-ddd` over every accepted expression of the shared corpus
  (../shared/corpus/libpcap-filter-exprs.jsonl), optimized and with -O: the listing is
  byte-identical, -dd/-ddd are byte-identical, and assembling the -d listing gives the
  -ddd program.  Answers are cached in /tmp/bpfkit-oracle-cache/disasm-<version>.json.
  Run this file directly to (re)build the cache and print the counts and timings.
* Round trips asm(disasm(p)) == p in both syntaxes (see bpfkit.cbpf.disasm for which
  programs round-trip), with hypothesis over isa.OPCODES.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from bpfkit.cbpf import isa
from bpfkit.cbpf.asm import assemble
from bpfkit.cbpf.disasm import (RET_X, bpf_asm_fields, format_bpf_asm, format_tcpdump,
                                image, listing_fields)
from bpfkit.cbpf.encodings import format_dd, format_ddd, load_program
from bpfkit.cbpf.program import Insn, Program
from bpfkit.errors import UnsupportedError

CACHE_DIR = Path("/tmp/bpfkit-oracle-cache")
WORKERS = 4

# --- libpcap's bpf_image through ctypes ---------------------------------------------


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


def _libpcap():
    for name in ("libpcap.so.0.8", "libpcap.so.1", ctypes.util.find_library("pcap")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.bpf_image.restype = ctypes.c_char_p
        lib.bpf_image.argtypes = [ctypes.POINTER(_BpfInsn), ctypes.c_int]
        lib.pcap_lib_version.restype = ctypes.c_char_p
        return lib
    return None


LIBPCAP = _libpcap()


def libpcap_image(ins: Insn, n: int) -> str:
    return LIBPCAP.bpf_image(ctypes.byref(_BpfInsn(ins.code, ins.jt, ins.jf, ins.k)), n).decode()


def _need_libpcap():
    if LIBPCAP is None:
        pytest.fail("libpcap shared library not found (it comes with tcpdump)", pytrace=False)
    assert b"1.10.3" in LIBPCAP.pcap_lib_version(), LIBPCAP.pcap_lib_version()


# field values that exercise every formatting rule of bpf_image: zero, small, the
# signed boundary, u32 max, the SKF_AD_OFF window (named, unnamed and the first offset
# after SKF_AD_MAX), SKF_NET_OFF / SKF_LL_OFF
K_VALUES = [0, 1, 12, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            0xFFFFF000, 0xFFFFF000 + 40, 0xFFFFF000 + 41, 0xFFFFF000 + 60, 0xFFFFF000 + 64,
            0xFFF00000, 0xFFE00000 + 14]
JT_JF = [(0, 0), (1, 2), (255, 0), (0, 255), (255, 255)]
INDICES = [0, 9, 999, 4095]


@pytest.mark.tcpdump
def test_image_every_low_opcode_matches_libpcap():
    _need_libpcap()
    n = 0
    for code in range(0x100):
        for k in K_VALUES:
            for jt, jf in JT_JF:
                for idx in INDICES:
                    ins = Insn(code, jt, jf, k)
                    assert image(ins, idx) == libpcap_image(ins, idx), (code, jt, jf, k, idx)
                    n += 1
    assert n == 0x100 * len(K_VALUES) * len(JT_JF) * len(INDICES)


@pytest.mark.tcpdump
def test_image_every_16bit_opcode_matches_libpcap():
    """Codes above 0xff (struct sock_filter's code is u16) are unknown to bpf_image."""
    _need_libpcap()
    for code in range(0x10000):
        ins = Insn(code, 3, 4, 0x12345678)
        assert image(ins, 17) == libpcap_image(ins, 17), hex(code)


@pytest.mark.tcpdump
@settings(max_examples=1000, deadline=None)
@given(code=st.sampled_from(sorted(isa.OPCODES) + [RET_X, 0x81, 0x1e, 0xff]),
       jt=st.integers(0, 255), jf=st.integers(0, 255), k=st.integers(0, 0xFFFFFFFF),
       n=st.integers(0, 0x7FFFFFFF))
def test_image_random_fields_match_libpcap(code, jt, jf, k, n):
    _need_libpcap()
    ins = Insn(code, jt, jf, k)
    assert image(ins, n) == libpcap_image(ins, n)


# --- the tcpdump corpus ---------------------------------------------------------------


def tcpdump_version() -> str:
    r = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True)
    words = [l.split()[2] for l in (r.stdout + r.stderr).splitlines()[:2]
             if len(l.split()) > 2 and l.split()[1] == "version"]
    return "_".join(words) or "unknown"


def load_corpus(shared: Path) -> list[tuple[str, int, bool, str]]:
    """(dlt, snaplen, optimize, expr) for every corpus line, optimized and with -O."""
    keys = []
    with open(shared / "corpus" / "libpcap-filter-exprs.jsonl") as f:
        for line in f:
            d = json.loads(line)
            for optimize in (True, False):
                keys.append((d["dlt"], int(d.get("snaplen", 262144)), optimize, d["expr"]))
    return keys


def _ask(key) -> list:
    """[rc, -d, -dd, -ddd, stderr] of `tcpdump -y DLT -s SNAPLEN [-O] FLAG EXPR`."""
    dlt, snaplen, optimize, expr = key
    base = ["tcpdump", "-y", dlt, "-s", str(snaplen)] + ([] if optimize else ["-O"])
    out = {}
    for flag in ("-ddd", "-d", "-dd"):
        r = subprocess.run(base + [flag, expr], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            return [r.returncode, "", "", "", r.stderr]
        out[flag] = r.stdout
    return [0, out["-d"], out["-dd"], out["-ddd"], ""]


def _key_str(key) -> str:
    return json.dumps(list(key))


def oracle_answers(keys) -> tuple[dict, int]:
    """{key: [rc, d, dd, ddd, stderr]} from tcpdump, cached on disk; and how many were
    asked of tcpdump now (0 on a warm run)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"disasm-tcpdump-{tcpdump_version()}.json"
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        cache = {}
    todo = sorted({k for k in keys if _key_str(k) not in cache})
    if todo:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
            for k, ans in zip(todo, ex.map(_ask, todo)):
                cache[_key_str(k)] = ans
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    return {k: cache[_key_str(k)] for k in keys}, len(todo)


def corpus_check(shared: Path) -> dict:
    """Compare everything; returns the counts and the first mismatches."""
    keys = load_corpus(shared)
    t0 = time.monotonic()
    answers, asked = oracle_answers(keys)
    t_oracle = time.monotonic() - t0
    counts = dict(keys=len(keys), accepted=0, rejected=0, listing_same=0, dd_same=0,
                  ddd_same=0, asm_same=0, bpf_asm_roundtrip=0, asked=asked,
                  oracle_seconds=round(t_oracle, 1))
    bad = []
    for key in keys:
        rc, d, dd, ddd, _err = answers[key]
        if rc != 0:
            counts["rejected"] += 1
            continue
        counts["accepted"] += 1
        prog = load_program(ddd, fmt="ddd")
        checks = {
            "listing_same": format_tcpdump(prog) == d,
            "dd_same": format_dd(prog) == dd,
            "ddd_same": format_ddd(prog) == ddd,
            "asm_same": assemble(d) == prog,
            "bpf_asm_roundtrip": assemble(format_bpf_asm(prog), syntax="bpf_asm") == prog,
        }
        for name, ok in checks.items():
            counts[name] += ok
            if not ok and len(bad) < 10:
                bad.append((name, key))
    counts["check_seconds"] = round(time.monotonic() - t0 - t_oracle, 1)
    counts["first_failures"] = bad
    return counts


@pytest.mark.tcpdump
def test_corpus_listing_identical_to_tcpdump(shared_dir):
    c = corpus_check(shared_dir)
    print(json.dumps(c))
    assert c["accepted"] + c["rejected"] == c["keys"]
    assert c["accepted"] > 0
    assert c["first_failures"] == []
    for name in ("listing_same", "dd_same", "ddd_same", "asm_same", "bpf_asm_roundtrip"):
        assert c[name] == c["accepted"], name


# --- round trips ------------------------------------------------------------------------

def _roundtrips_tcpdump(ins: Insn) -> bool:
    """The documented rule: a -d line re-assembles exactly when the fields it does not
    show are zero (bpf_image drops them)."""
    shown = listing_fields(ins.code)
    return all(f in shown or getattr(ins, f) == 0 for f in ("jt", "jf", "k"))


def _jump_ok(ins: Insn, n: int, count: int) -> bool:
    """Targets that exist: listings can name any absolute target, labels only
    instructions of the program."""
    if isa.BPF_CLASS(ins.code) != isa.BPF_JMP:
        return True
    if ins.code == isa.BPF_JMP | isa.BPF_JA:
        return n + 1 + ins.sk < count and n + 1 + ins.sk >= 0
    if ins.code not in isa.OPCODES:
        return True
    return n + 1 + ins.jt < count and n + 1 + ins.jf < count


@st.composite
def programs(draw, codes=tuple(sorted(isa.OPCODES)) + (RET_X,), clean=True):
    """Random programs over the given opcodes; with ``clean`` the fields a text form
    does not show are zero and jumps land inside the program."""
    count = draw(st.integers(1, 40))
    insns = []
    for n in range(count):
        code = draw(st.sampled_from(codes))
        if clean and n == count - 1 and isa.BPF_CLASS(code) == isa.BPF_JMP:
            code = isa.BPF_RET | isa.BPF_K   # a label must name an instruction
        jt = draw(st.integers(0, 255))
        jf = draw(st.integers(0, 255))
        k = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(K_VALUES)))
        if isa.BPF_CLASS(code) == isa.BPF_JMP and clean:
            room = count - n - 1
            if code == isa.BPF_JMP | isa.BPF_JA:
                k = draw(st.integers(0, max(room - 1, 0))) if room else 0
            else:
                jt = draw(st.integers(0, min(room - 1, 255))) if room else 0
                jf = draw(st.integers(0, min(room - 1, 255))) if room else 0
        if clean:
            fields = listing_fields(code) & (bpf_asm_fields(code) or frozenset())
            jt, jf, k = (v if f in fields else 0 for f, v in zip(("jt", "jf", "k"), (jt, jf, k)))
        insns.append(Insn(code, jt, jf, k))
    return Program(insns)


@settings(max_examples=150, deadline=None)
@given(programs(codes=tuple(sorted(isa.OPCODES)) + (RET_X, 0x81, 0x1e, 0xd5, 0xff),
                clean=False))
def test_roundtrip_tcpdump_listing(prog):
    """asm(disasm(p)) == p for the tcpdump syntax exactly when every instruction's
    unshown fields are zero; otherwise the result differs only in those fields."""
    text = format_tcpdump(prog)
    back = assemble(text, syntax="tcpdump")
    assert len(back) == len(prog)
    for a, b in zip(prog, back):
        if _roundtrips_tcpdump(a):
            assert a == b
        else:
            shown = listing_fields(a.code)
            assert a.code == b.code
            assert all(getattr(a, f) == getattr(b, f) for f in shown)
            assert all(getattr(b, f) == 0 for f in ("jt", "jf", "k") if f not in shown)
    assert format_tcpdump(back) == text      # the listing itself is a fixed point


@settings(max_examples=150, deadline=None)
@given(programs())
def test_roundtrip_bpf_asm(prog):
    text = format_bpf_asm(prog)
    assert assemble(text, syntax="bpf_asm") == prog
    assert assemble(text) == prog             # auto-detection agrees


@settings(max_examples=200, deadline=None)
@given(programs(clean=False))
def test_bpf_asm_never_drops_fields_silently(prog):
    """Programs outside the round-trip set: either an UnsupportedError (jump target
    outside the program) or text whose comments name every dropped field."""
    try:
        text = format_bpf_asm(prog)
    except UnsupportedError as e:
        assert "outside the program" in str(e)
        return
    back = assemble(text, syntax="bpf_asm")
    for n, (a, b) in enumerate(zip(prog, back)):
        if a != b:
            line = text.splitlines()[n]
            assert "not expressible, dropped" in line, line


def _bpf_asm_expressible(prog: Program) -> bool:
    return all((i.code in isa.OPCODES or i.code == RET_X) and _jump_ok(i, n, len(prog))
               for n, i in enumerate(prog))


def _bpf_asm_exact(prog: Program) -> bool:
    return all(f in bpf_asm_fields(i.code) or getattr(i, f) == 0
               for i in prog for f in ("jt", "jf", "k"))


def test_kernel_test_programs_follow_the_roundtrip_rules(shared_dir):
    """The 134 programs of the kernel's lib/test_bpf.c (odd ones included: unused
    fields set, unknown opcodes) behave exactly as the module doc of disasm says."""
    tests = json.loads((shared_dir / "corpus" / "linux-test_bpf-classic.json").read_text())
    seen = dict(listing_exact=0, listing_lossy=0, bpf_asm_exact=0, bpf_asm_lossy=0,
                bpf_asm_unsupported=0, not_a_program=0)
    for t in tests["tests"]:
        if not t["insns"] or any(not (0 <= jt <= 255 and 0 <= jf <= 255)
                                 for _, jt, jf, _ in t["insns"]):
            seen["not_a_program"] += 1        # empty, or jt/jf beyond u8 on purpose
            continue
        prog = Program(t["insns"])
        back = assemble(format_tcpdump(prog), syntax="tcpdump")
        exact = all(_roundtrips_tcpdump(i) for i in prog)
        assert (back == prog) == exact, t["descr"]
        seen["listing_exact" if exact else "listing_lossy"] += 1
        if not _bpf_asm_expressible(prog):
            with pytest.raises(UnsupportedError):
                format_bpf_asm(prog)
            seen["bpf_asm_unsupported"] += 1
            continue
        text = format_bpf_asm(prog)
        back = assemble(text, syntax="bpf_asm")
        assert (back == prog) == _bpf_asm_exact(prog), t["descr"]
        if back == prog:
            seen["bpf_asm_exact"] += 1
        else:
            seen["bpf_asm_lossy"] += 1
            assert "not expressible, dropped" in text
    print(seen)
    assert seen["listing_exact"] + seen["listing_lossy"] + seen["not_a_program"] == \
        len(tests["tests"])


def test_bpf_asm_unknown_opcode_is_unsupported():
    with pytest.raises(UnsupportedError, match="0x1e"):
        format_bpf_asm(Program([Insn(0x1E), Insn(6)]))


# --- golden lines, reasoned from bpf_image's formats ---------------------------------
# (`(%03d) %-8s %-16s jt %d\tjf %d` for conditional jumps, `(%03d) %-8s %s` otherwise;
# each also checked against libpcap's bpf_image by the tests above)

IMAGE_CASES = [
    (Insn(0x28, 0, 0, 12), 0, "(000) ldh      [12]"),
    (Insn(0x15, 0, 3, 0x800), 1, "(001) jeq      #0x800           jt 2\tjf 5"),
    (Insn(0x07), 5, "(005) tax      "),                   # %-8s pads, then ' ' + ''
    (Insn(0x16), 7, "(007) ret      "),
    (Insn(0x06, 0, 0, 0xFFFFFFFF), 2, "(002) ret      #-1"),    # %d of a u32
    (Insn(0x05, 0, 0, 3), 10, "(010) ja       14"),               # absolute target
    (Insn(0x20, 0, 0, 0xFFFFF000), 0, "(000) ld       [proto]"),
    (Insn(0x1E, 0, 0, 0), 4, "(004) unimp    0x1e"),
    (Insn(0xB1, 0, 0, 14), 3, "(003) ldxb     4*([14]&0xf)"),
    (Insn(0x54, 0, 0, 0x1FFF), 3, "(003) and      #0x1fff"),
    (Insn(0x04, 0, 0, 0xFFFFFFFF), 3, "(003) add      #-1"),
]


@pytest.mark.parametrize("ins,n,want", IMAGE_CASES)
def test_image_golden(ins, n, want):
    assert image(ins, n) == want


BPF_ASM_CASES = [
    ([Insn(0x28, 0, 0, 12), Insn(0x15, 0, 1, 0x800), Insn(6, 0, 0, 0xFFFF), Insn(6)],
     "    ldh [12]\n    jneq #0x800, L3\n    ret #65535\nL3: ret #0\n"),
    ([Insn(0x20, 0, 0, 0xFFFFF000), Insn(0x16)], "ld #proto\nret a\n"),
    ([Insn(0x48, 0, 0, 14), Insn(0xB1, 0, 0, 14), Insn(0x0E)],
     "ldh [x + 14]\nldxb 4*([14]&0xf)\nret x\n"),
    ([Insn(0x15, 1, 2, 7), Insn(0x16), Insn(0x16), Insn(0x06)],
     "    jeq #0x7, L2, L3\n    ret a\nL2: ret a\nL3: ret #0\n"),
]


@pytest.mark.parametrize("insns,want", BPF_ASM_CASES)
def test_bpf_asm_golden(insns, want):
    assert format_bpf_asm(Program(insns)) == want
    assert assemble(want) == Program(insns)


if __name__ == "__main__":
    shared = Path(__file__).resolve().parent.parent.parent / "shared"
    t = time.monotonic()
    result = corpus_check(shared)
    result["total_seconds"] = round(time.monotonic() - t, 1)
    print(json.dumps(result, indent=1))
    sys.exit(0 if not result["first_failures"] else 1)
