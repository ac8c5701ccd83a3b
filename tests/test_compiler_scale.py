"""Long filters (DESIGN.md "compile time of large expressions"): the optimizer's fast
paths (dominator forests, class queries, replayed opt_j walks) must give libpcap's
exact program on the shapes that make libpcap's optimizer quadratic.

The truth is `tcpdump -y EN10MB -ddd EXPR` (optimized, dead handle, so compiled with
savefile=False), cached under /tmp/bpfkit-oracle-cache like the corpus answers.
tcpdump needs ~5 s at 200 clauses and ~40 s at 400, so the oracle is not asked for
more than 200; bench/bench_compile.py times the larger sizes.
"""
from __future__ import annotations

import pytest

from bpfkit.cbpf.compiler import compile_filter
from test_compiler_corpus import oracle_answers, parse_ddd


def host_port_clauses(n: int) -> str:
    """The issue's benchmark shape: n `(host A and port P)` clauses joined by `or`."""
    return " or ".join(f"(host 10.{i // 250}.{i % 250}.1 and port {1000 + i})"
                       for i in range(n))


# Other long shapes that exercise different walks through the optimizer.
SHAPES = {
    "host-port-50": host_port_clauses(50),
    "host-port-100": host_port_clauses(100),
    "host-port-200": host_port_clauses(200),
    "hosts-or-80": " or ".join(f"host 10.1.{i}.{i + 1}" for i in range(80)),
    "src-dst-60": " or ".join(f"(src host 10.2.0.{i} and dst port {i + 1})"
                              for i in range(60)),
    "not-net-40": " and ".join(f"not net 10.{i}.0.0/16" for i in range(40)),
    "tcp-udp-ports-50": " or ".join(f"({'tcp' if i % 2 else 'udp'} port {2000 + i})"
                                    for i in range(50)),
    "ip6-ip-mix-40": " or ".join(
        f"(host fe80::{i + 1} and port {i + 7})" if i % 3 == 0
        else f"(ip and host 192.168.{i}.1 and not port {i + 7})" for i in range(40)),
    "ether-vlan-30": " or ".join(f"(ether src 0:1:2:3:4:{i:x} and vlan {i + 1})"
                                 for i in range(30)),
    "len-arith-40": " or ".join(f"(len = {60 + i} and ip[8] = {i})" for i in range(40)),
}


@pytest.mark.tcpdump
def test_long_filters_identical_to_tcpdump():
    keys = [("EN10MB", 262144, True, e) for e in SHAPES.values()]
    answers = oracle_answers(keys)
    checked = 0
    for name, expr in SHAPES.items():
        rc, out, err = answers[("EN10MB", 262144, True, expr)]
        assert rc == 0, (name, err)
        want = parse_ddd(out)
        got = compile_filter(expr, "EN10MB", savefile=False).as_tuples()
        assert got == want, f"{name}: {len(got)} vs libpcap's {len(want)} instructions"
        checked += 1
    assert checked == len(SHAPES)
