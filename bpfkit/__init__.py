"""bpfkit: Berkeley Packet Filter programs over packet captures, with the answers of
the Linux kernel and libpcap.  This module only re-exports the public API.

The re-exports are resolved lazily (PEP 562), so `import bpfkit` stays cheap and the
CLI only pays for the parts a subcommand uses.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import (AsmError, BpfError, CaptureError, CaptureWarning, CompileError,  # noqa: F401
                     EncodingError, ExecutionError, UnsupportedError, UsageError,
                     ValidationError)

# public name -> module that defines it
_EXPORTS = {
    # capture files
    "PacketBatch": "bpfkit.pcap.batch",
    "open_capture": "bpfkit.pcap.reader",
    "read_capture": "bpfkit.pcap.reader",
    "CaptureWriter": "bpfkit.pcap.writer",
    "write_capture": "bpfkit.pcap.writer",
    # classic BPF
    "CbpfProgram": ("bpfkit.cbpf.program", "Program"),
    "CbpfInsn": ("bpfkit.cbpf.program", "Insn"),
    "load_program": "bpfkit.cbpf.encodings",
    "read_program": "bpfkit.cbpf.encodings",
    "assemble": "bpfkit.cbpf.asm",
    "format_tcpdump": "bpfkit.cbpf.disasm",
    "format_bpf_asm": "bpfkit.cbpf.disasm",
    "validate": "bpfkit.cbpf.validate",
    "run_filter": "bpfkit.cbpf.interp",
    "run_socket": "bpfkit.cbpf.interp",
    "SkbMeta": "bpfkit.cbpf.interp",
    "run_batch": "bpfkit.cbpf.vinterp",
    "compile_filter": "bpfkit.cbpf.compiler",
    # eBPF
    "EbpfProgram": ("bpfkit.ebpf.program", "Program"),
    "EbpfInsn": ("bpfkit.ebpf.isa", "Insn"),
    "create_map": "bpfkit.ebpf.maps",
    "MapSpec": "bpfkit.ebpf.maps",
    "run_capture": "bpfkit.ebpf.runner",
    # whole captures
    "run_program": "bpfkit.filtering",
    "filter_capture": "bpfkit.filtering",
}

__all__ = ["__version__", "AsmError", "BpfError", "CaptureError", "CaptureWarning",
           "CompileError", "EncodingError", "ExecutionError", "UnsupportedError",
           "UsageError", "ValidationError", *_EXPORTS]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'bpfkit' has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
