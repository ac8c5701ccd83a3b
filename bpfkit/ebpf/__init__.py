"""eBPF: instruction set, assembler, disassembler, reference interpreter, program-type
contexts (progtypes) and helpers.

Maps live in bpfkit.ebpf.maps.  The submodules stay importable by name; the package
re-exports their main entry points."""
from . import asm, disasm, helpers, interp, isa, progtypes
from .asm import assemble
from .disasm import format_insn, listing
from .disasm import disasm as disassemble
from .interp import Fault, Interpreter, Options, Region, Result, run
from .isa import Insn, decode, encode, lddw
from .progtypes import load, run_socket_filter, run_xdp

__all__ = ["Insn", "encode", "decode", "lddw", "assemble", "disassemble", "format_insn",
           "listing", "Interpreter", "Options", "Region", "Result", "Fault", "run",
           "load", "run_xdp", "run_socket_filter",
           "asm", "disasm", "helpers", "interp", "isa", "progtypes"]
