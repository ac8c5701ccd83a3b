"""Long filters (DESIGN.md "compile time of large expressions"): the optimizer's fast
paths (dominator forests, class queries, short and replayed opt_j walks, the numpy
common-case filter, results kept across passes) must give libpcap's exact program on
the shapes that make libpcap's optimizer quadratic.

The truth is `tcpdump -y EN10MB -ddd EXPR` (optimized, dead handle, so compiled with
savefile=False), cached under /tmp/bpfkit-oracle-cache like the corpus answers.  The
oracle is asked up to 200 clauses here; bench/bench_compile.py compares the larger
sizes (tcpdump takes ~0.5 s at 400 clauses and ~4 s at 1000 on the reference machine).

The optimizer chooses between equivalent ways to compute the same thing by size
(numpy or Python for opt_j's common case, indexed or scanned edge classes, walks with
or without the memo); test_equivalent_paths forces each choice both ways on generated
expressions, whose graphs are mostly too small to reach the large-filter paths.
"""
from __future__ import annotations

import pytest

from bpfkit.cbpf.compiler import compile_filter
from bpfkit.errors import BpfError
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


@pytest.mark.parametrize("knob, low, high", [
    ("VECTOR_MIN_BLOCKS", 0, 10 ** 9),   # numpy common-case filter vs the Python test
    ("SMALL_CLASS", 0, 10 ** 9),         # every class indexed vs every class scanned
    ("FAST_STEPS", 0, 10 ** 9),          # every walk with the memo vs none
])
def test_equivalent_paths(monkeypatch, knob, low, high):
    import random

    from bpfkit.cbpf.compiler import optimizer
    from test_compiler_fuzz import DLTS, _gen

    r = random.Random(17)
    cases = [(r.choice(DLTS), _gen(r, r.choice([3, 4, 5]))) for _ in range(400)]
    cases += [("EN10MB", e) for e in SHAPES.values()]

    def run(value):
        monkeypatch.setattr(optimizer, knob, value)
        out = []
        for dlt, expr in cases:
            try:
                out.append(compile_filter(expr, dlt, savefile=False).as_tuples())
            except BpfError as e:           # the same error either way
                out.append(repr(e))
        return out

    a, b = run(low), run(high)
    assert [c for c, x, y in zip(cases, a, b) if x != y] == []
