"""bpfkit.pcap.linktypes against libpcap 1.10.3: names (pcap_datalink_val_to_name /
name_to_val), the LINKTYPE -> DLT mapping a savefile gets (pcap_datalink of a crafted
file), snapshot adjustment (pcap_snapshot), and which DLTs tcpdump -w can write back."""
from __future__ import annotations

import subprocess

import pytest

import oracles
import pcap_craft
from bpfkit.errors import UsageError
from bpfkit.pcap import linktypes

VALUES = list(range(0, 300)) + [0x0FFF, 0xFFFF]


@pytest.mark.tcpdump
def test_names_equal_libpcap():
    for dlt in range(0, 1024):
        theirs = oracles.libpcap_dlt_name(dlt)
        lt = linktypes.linktype_of_dlt(dlt)
        if theirs is None:
            assert dlt not in dict(linktypes._DLT_NAMES), dlt
            continue
        # name_of takes the LINKTYPE a file stores; libpcap names the DLT
        assert linktypes.name_of(lt if lt is not None else dlt) == theirs, dlt
        assert oracles.libpcap_dlt_value(theirs) == dlt
        assert linktypes.dlt_of(linktypes.value_of(theirs)) == dlt
        assert linktypes.value_of(theirs.lower()) == linktypes.value_of(theirs)
    assert len(linktypes.names()) == sum(
        1 for d in range(1024) if oracles.libpcap_dlt_name(d) is not None)


@pytest.mark.tcpdump
def test_dlt_of_equals_libpcap_savefile(tmp_path):
    """The DLT libpcap gives a savefile of each link type (with FCS bits, too)."""
    p = tmp_path / "lt.pcap"
    for lt in VALUES + [0x30000001, 0x04000065, 0xFC000071]:
        p.write_bytes(pcap_craft.pcap([(1, 2, b"\x45" + bytes(19))], linktype=lt))
        r = oracles.libpcap_read(str(p))
        assert r.open_error is None, (lt, r.open_error)
        assert r.dlt == linktypes.dlt_of(lt), lt


@pytest.mark.tcpdump
def test_snapshot_adjustment_equals_libpcap(tmp_path):
    p = tmp_path / "snap.pcap"
    for dlt in (1, 113, 231, 249, 279):
        for snap in (0, 1, 64, 65535, 262144, 262145, 8 << 20, (8 << 20) + 1, 128 << 20,
                     0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
            p.write_bytes(pcap_craft.pcap([], linktype=dlt, snaplen=snap))
            r = oracles.libpcap_read(str(p))
            assert r.snapshot == linktypes.adjust_snapshot(dlt, snap), (dlt, snap)


@pytest.mark.tcpdump
def test_linktype_of_dlt_equals_tcpdump_w(tmp_path):
    """tcpdump -w maps the DLT back with dlt_to_linktype, or refuses the DLT."""
    src = tmp_path / "in.pcap"
    out = tmp_path / "out.pcap"
    for lt in VALUES:
        src.write_bytes(pcap_craft.pcap([(1, 2, bytes(20))], linktype=lt))
        if out.exists():
            out.unlink()
        run = subprocess.run(["tcpdump", "-r", str(src), "-w", str(out)],
                             capture_output=True, text=True)
        want = linktypes.linktype_of_dlt(linktypes.dlt_of(lt))
        if want is None:
            assert run.returncode != 0 and (not out.exists() or out.stat().st_size == 0), lt
        else:
            assert run.returncode == 0, (lt, run.stderr)
            assert pcap_craft.parse_pcap(out.read_bytes()).linktype == want, lt


def test_value_of_forms():
    # names are libpcap's DLT names; the value is what a file stores (LINKTYPE)
    assert linktypes.value_of("EN10MB") == 1 == linktypes.LINKTYPE_ETHERNET
    assert linktypes.value_of("RAW") == 101 == linktypes.LINKTYPE_RAW
    assert linktypes.dlt_of(linktypes.LINKTYPE_RAW) == 12
    assert linktypes.value_of("linux_sll") == 113
    assert linktypes.value_of("228") == 228
    assert linktypes.value_of("0x71") == 113
    assert linktypes.value_of(147) == 147
    assert linktypes.name_of(1) == "EN10MB"
    assert linktypes.name_of(12) == "RAW"        # LINKTYPE 12 is read as DLT_RAW too
    assert linktypes.name_of(4000) == "4000"
    assert linktypes.value_of(linktypes.name_of(4000)) == 4000
    for bad in ("NOPE", "", "-1", "0x100000000"):
        with pytest.raises(UsageError):
            linktypes.value_of(bad)


def test_fcs_bits():
    lt = linktypes.with_fcs_length(1, 2)
    assert lt == 0x24000001
    assert linktypes.lt_linktype(lt) == 1
    assert linktypes.lt_ext(lt) == 0x24000000
    assert linktypes.fcs_length_present(lt) and linktypes.fcs_length(lt) == 2
    assert linktypes.fcs_length(1) is None
    assert linktypes.dlt_of(0x30000001) == 1      # the ext bits never change the DLT
    with pytest.raises(UsageError):
        linktypes.with_fcs_length(1, 16)
