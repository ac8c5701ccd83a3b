"""The helper id table equals __BPF_FUNC_MAPPER of the installed uapi header."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import skip_or_fail

from bpfkit.ebpf.helper_ids import HELPER_NAMES, helper_name

HEADER = Path("/usr/include/linux/bpf.h")


def test_table_equals_header():
    if not HEADER.exists():
        skip_or_fail(f"{HEADER} is missing (apt-get install linux-libc-dev)")
    m = re.search(r"#define __BPF_FUNC_MAPPER\(FN\)(.*?)\n\n", HEADER.read_text(), re.S)
    names = re.findall(r"FN\((\w+)", m.group(1))
    n = min(len(names), len(HELPER_NAMES))
    assert list(HELPER_NAMES[:n]) == names[:n] and n >= 210


@pytest.mark.parametrize("hid,name", [
    # the ids the eBPF issue lists
    (1, "map_lookup_elem"), (2, "map_update_elem"), (3, "map_delete_elem"),
    (5, "ktime_get_ns"), (6, "trace_printk"), (7, "get_prandom_u32"),
    (8, "get_smp_processor_id"), (12, "tail_call"), (23, "redirect"),
    (25, "perf_event_output"), (26, "skb_load_bytes"), (28, "csum_diff"),
    (44, "xdp_adjust_head"), (51, "redirect_map"), (54, "xdp_adjust_meta"),
    (65, "xdp_adjust_tail"), (87, "map_push_elem"), (89, "map_peek_elem"),
    (93, "spin_lock"), (94, "spin_unlock"), (125, "ktime_get_boot_ns"),
    (130, "ringbuf_output"), (134, "ringbuf_query"), (160, "ktime_get_coarse_ns"),
    (181, "loop"), (182, "strncmp"), (188, "xdp_get_buff_len"), (189, "xdp_load_bytes"),
    (190, "xdp_store_bytes"), (195, "map_lookup_percpu_elem"),
])
def test_issue_ids(hid, name):
    assert helper_name(hid) == "bpf_" + name


def test_unknown():
    assert helper_name(0) == helper_name(100000) == "unknown"
