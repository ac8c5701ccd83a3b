"""Unit tests of the compiler passes (no oracle needed).  Expected values are derived
in the comments from libpcap's scanner.l / grammar.y / gencode.c rules; the
differential tests (test_compiler_corpus/fuzz/verdicts) check the same behaviour
against the installed tcpdump at scale."""
from __future__ import annotations

import pytest

from bpfkit.cbpf.compiler import compile_filter
from bpfkit.cbpf.compiler.codegen import atoin, ether_aton, linearize, Block
from bpfkit.cbpf.compiler.lexer import tokens
from bpfkit.cbpf.isa import BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_RET
from bpfkit.errors import BpfError, CompileError, UnsupportedError, UsageError


def kinds(text):
    return [(t.kind, t.value) for t in tokens(text)][:-1]


@pytest.mark.parametrize("text, expected", [
    # numbers: decimal, 0x hex, leading-0 octal (scanner.l stou)
    ("10 0x10 010 0", [("NUM", 10), ("NUM", 16), ("NUM", 8), ("NUM", 0)]),
    ("4294967295 0xffffffff 037777777777",
     [("NUM", 2**32 - 1), ("NUM", 2**32 - 1), ("EID", "037777777777")]),  # 12 hex digits: MAC rule wins the tie
    # keywords are case-sensitive; \name escapes a keyword
    ("tcp TCP \\tcp", [("TCP", None), ("ID", "TCP"), ("ID", "tcp")]),
    # longest match: "tcpdump" is an identifier, "es-is" a keyword, "tcp-syn" a constant
    ("tcpdump es-is tcp-syn", [("ID", "tcpdump"), ("ESIS", None), ("NUM", 2)]),
    ("&& || and or not !", [("AND", None), ("OR", None), ("AND", None), ("OR", None),
                            ("!", None), ("!", None)]),
    ("== = != <= >= << >>", [("=", None), ("=", None), ("!=", None), ("<=", None),
                              (">=", None), ("<<", None), (">>", None)]),
    ("1.2.3.4 10.1 0x1.2", [("HID", "1.2.3.4"), ("HID", "10.1"), ("HID", "0x1.2")]),
    ("1.2.3.4.5", [("ID", "1.2.3.4.5")]),            # 5 parts: only the ID rule matches
    ("aa:bb:cc:dd:ee:ff aabb.ccdd.eeff a-b-c-d-e-f",
     [("EID", "aa:bb:cc:dd:ee:ff"), ("EID", "aabb.ccdd.eeff"), ("EID", "a-b-c-d-e-f")]),
    ("::1 fe80::1:2 ::ffff:1.2.3.4", [("HID6", "::1"), ("HID6", "fe80::1:2"),
                                      ("HID6", "::ffff:1.2.3.4")]),
    ("portrange 7-7", [("PORTRANGE", None), ("ID", "7-7")]),
])
def test_lexer(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text, message", [
    ("4294967296", "number 4294967296 overflows 32 bits"),
    ("0x100000000", "number 0x100000000 overflows 32 bits"),
    ("08", "number 08 contains non-octal digit"),
    # digits are consumed left to right with the overflow test first, so this
    # overflows before the '8' is reached (stou)
    ("003777777777778", "number 003777777777778 overflows 32 bits"),
    ("fe80::1::2", None),   # not a V6 form at all: lexed as pieces, parse error later
])
def test_lexer_errors(text, message):
    toks = list(tokens(text))
    errs = [t for t in toks if t.kind == "ERROR"]
    if message is None:
        assert not errs or errs[0].value is None or "bogus" in errs[0].value
    else:
        assert errs and errs[0].value == message


@pytest.mark.parametrize("s, expected", [
    ("1.2.3.4", (0x01020304, 32)), ("10", (10, 8)), ("192.168", (0xC0A8, 16)),
    ("256.1", (0, -1)),          # a part > 255 is invalid (__pcap_atoin)
])
def test_atoin(s, expected):
    assert atoin(s) == expected


@pytest.mark.parametrize("s, expected", [
    ("ab:cd:ef:00:00:01", bytes.fromhex("abcdef000001")),
    ("Ab.cD.ef.00.0.01", bytes.fromhex("abcdef000001")),    # single-digit groups allowed
    ("abcd.ef00.0003", bytes.fromhex("abcdef000003")),
    ("abcdef000003", bytes.fromhex("abcdef000003")),
])
def test_ether_aton(s, expected):
    assert ether_aton(s) == expected


def test_empty_expression_accepts_everything():
    # pcap_compile with no expression: one `ret #snaplen`
    assert compile_filter("", snaplen=1234).as_tuples() == [(BPF_RET | BPF_K, 0, 0, 1234)]


def test_ret_uses_snaplen_and_linktype_forms():
    # `ip` on Ethernet: ldh [12]; jeq #0x800; ret #snaplen; ret #0
    p = compile_filter("ip", "EN10MB", snaplen=100)
    assert p.as_tuples() == [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 100), (6, 0, 0, 0)]
    assert p.linktype == 1 and p.snaplen == 100
    assert compile_filter("ip", 1).as_tuples() == compile_filter("ip", "DLT_EN10MB").as_tuples()
    # LINKTYPE_RAW (101, a file's value) is DLT_RAW (12)
    assert compile_filter("ip", 101).linktype == 12
    with pytest.raises(UsageError):
        compile_filter("ip", "IEEE802_11")


def test_null_ip6_savefile_vs_dead_handle():
    # DLT_NULL stores AF_ in host byte order; a savefile may come from any BSD, so
    # libpcap tests AF_INET6 = 24, 28 and 30; a dead handle tests Linux's 10.  x86 is
    # little-endian, so the word compared is htonl(AF).
    # gen_linktype: b0 = 24; b1 = 28; or(b0, b1); b0 = 30; or(b0, b1): the last one ORed
    # in front comes first in the listing.
    saved = compile_filter("ip6", "NULL", savefile=True).as_tuples()
    assert [k for c, _, _, k in saved if c == 0x15] == [30 << 24, 24 << 24, 28 << 24]
    dead = compile_filter("ip6", "NULL", savefile=False).as_tuples()
    assert [k for c, _, _, k in dead if c == 0x15] == [10 << 24]
    # DLT_LOOP stores it in network byte order
    loop = compile_filter("ip6", "LOOP", savefile=True).as_tuples()
    assert [k for c, _, _, k in loop if c == 0x15] == [30, 24, 28]


def test_inbound_savefile_error():
    # gen_inbound: only the cooked link types carry a direction in the packet;
    # otherwise a savefile cannot use Linux's packet-type ancillary load.
    with pytest.raises(CompileError, match="inbound/outbound not supported on Ethernet"):
        compile_filter("inbound", "EN10MB")
    assert compile_filter("outbound", "LINUX_SLL").as_tuples()[:2] == [
        (0x28, 0, 0, 0), (0x15, 0, 1, 4)]      # ldh [0]; jeq #LINUX_SLL_OUTGOING


@pytest.mark.parametrize("expr, message, column", [
    ("tcp and", "can't parse filter expression: syntax error", 8),      # at end of input
    ("host 1.2.3.4 and (", "can't parse filter expression: syntax error", 19),
    ("tcp host 1.2.3.4", "'tcp' modifier applied to host", 10),     # found at the value
    ("net 10.0.0.1/8", 'non-network bits set in "10.0.0.1/8"', 5),
    ("port 70000", "illegal port number 70000 > 65535", 6),
    ("ip @", "can't parse filter expression: syntax error", 4),
    ("len / 0 > 1", "division by zero", 5),
    ("len << 32 > 1", "shift by more than 31 bits", 5),
    ("vlan 4096", "VLAN tag 4096 greater than maximum 4095", 1),
    ("1 = 08", "number 08 contains non-octal digit", 5),
])
def test_compile_errors_have_libpcap_message_and_position(expr, message, column):
    with pytest.raises(CompileError) as ei:
        compile_filter(expr)
    assert ei.value.args[0] == f"{message} (at column {column})"
    assert ei.value.position == column - 1


def test_geneve_errors():
    with pytest.raises(CompileError, match="Geneve VNI 16777216 greater than maximum 16777215"):
        compile_filter("geneve 16777216")
    # geneve makes the payload offset variable, which protochain cannot handle
    with pytest.raises(CompileError, match="'protochain' not supported with variable"):
        compile_filter("geneve and protochain 4")


def test_deep_nesting_is_unsupported_not_a_crash():
    with pytest.raises(UnsupportedError):
        compile_filter("(" * 2000 + "tcp" + ")" * 2000)
    for opt in (False, True):      # parentheses generate no code
        assert compile_filter("(" * 100 + "tcp" + ")" * 100, optimize=opt).as_tuples() == \
            compile_filter("tcp", optimize=opt).as_tuples()


def test_every_error_is_a_bpferror():
    for expr in ["(", ")", "[", "host", "ether host", "1 +", "tcp[", "\\", "'", "net 1.2.3.4 mask",
                 "ip6 net fe80::/129", "portrange a-", "proto nosuch", "ether proto \\nosuch"]:
        with pytest.raises(BpfError):
            compile_filter(expr)


def test_linearize_long_jump():
    # convert_code_r lays out a block, then its JT subtree, then its JF subtree.  With
    # 300 blocks on the JT side, the false edge is more than 255 instructions away, so
    # it becomes jf 0 to an extra `ja` placed right after the branch (longjf).
    far = Block(BPF_RET | BPF_K, 1)
    chain = Block(BPF_RET | BPF_K, 0)
    for _ in range(300):
        b = Block(BPF_JMP | BPF_JEQ | BPF_K, 7)
        b.jt = b.jf = chain
        chain = b
    root = Block(BPF_JMP | BPF_JEQ | BPF_K, 5)
    root.jt, root.jf = chain, far
    out = linearize(root)
    assert len(out) == 1 + 1 + 300 + 1 + 1
    assert (out[0].jt, out[0].jf) == (1, 0)          # jt skips the ja slot
    assert out[1].code == BPF_JMP | BPF_JA
    assert 2 + out[1].k == len(out) - 1 and out[-1].k == 1   # ja lands on ret #1


def test_expression_rejects_all_packets_only_when_optimizing():
    # `ip and not ip` can never match: libpcap's optimizer folds it to `ret #0` and
    # pcap_compile refuses it; unoptimized it compiles (and rejects every packet).
    with pytest.raises(CompileError, match="expression rejects all packets"):
        compile_filter("ip and not ip")
    prog = compile_filter("ip and not ip", optimize=False)
    assert prog.as_tuples()[-1] == (BPF_RET | BPF_K, 0, 0, 0)


def test_optimizer_folds_constants_and_dead_loads():
    # `len - 14 < 100` is generated as scratch-memory arithmetic (ld len; st M[0];
    # ld #14; st M[1]; ldx M[1]; ld M[0]; sub x; st M[2]; ...); value numbering turns
    # the X operand into a constant, and dead-store elimination removes every st.
    un = compile_filter("len - 14 < 100", optimize=False)
    op = compile_filter("len - 14 < 100")
    assert len(op) < len(un)
    assert not any((c & 0x07) in (0x02, 0x03) for c, _, _, _ in op.as_tuples())  # no st/stx


def test_builtin_name_tables_agree_with_this_machines_databases(monkeypatch):
    # The built-in services/protocols tables stand in when /etc/services or
    # /etc/protocols is missing; where this machine has the files, the two must agree.
    import os
    import socket
    from bpfkit.cbpf.compiler import names
    if not (os.path.exists("/etc/services") and os.path.exists("/etc/protocols")):
        pytest.skip("this machine has no /etc/services or /etc/protocols to compare with")
    system_ports = {n: names.nametoport(n) for n in names._BUILTIN_SERVICES}
    system_protos = {n: names.getprotobyname(n) for n in names._BUILTIN_PROTOCOLS}
    monkeypatch.setattr(names.os.path, "exists", lambda p: False)
    for n, v in system_ports.items():
        if v is not None:
            assert names.nametoport(n) == v, n
    for n, v in system_protos.items():
        if v is not None:
            assert names.getprotobyname(n) == v, n
    assert names.nametoport("no-such-service") is None
