"""ELF objects (clang -target bpf .o) as eBPF input for `disasm --ebpf` and `run --ebpf`."""
from __future__ import annotations

from ..errors import UsageError

ELF_MAGIC = b"\x7fELF"


def add_elf_options(group, *, with_set: bool) -> None:
    group.add_argument("--section", metavar="SEC",
                       help="ELF input: the program's section (e.g. xdp, socket)")
    group.add_argument("--name", dest="elf_func", metavar="FUNC",
                       help="ELF input: the program's function name")
    if with_set:
        group.add_argument("--set", dest="sets", action="append", default=[],
                           metavar="NAME=VALUE",
                           help="ELF input: set a global (e.g. `const volatile` in .rodata) "
                                "before the run, as a libbpf skeleton does; repeatable")


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def load_object(data: bytes, path: str):
    """The ElfObject of `data`, read from `path` ('-': stdin, which has no name)."""
    from ..ebpf.elf import load_elf, open_elf
    return load_elf(data) if path == "-" else open_elf(path)


def parse_sets(sets) -> dict[str, int]:
    """['NAME=VALUE', ...] -> {NAME: int}; VALUE in any base Python's int(x, 0) reads."""
    out: dict[str, int] = {}
    for s in sets or []:
        name, eq, value = s.partition("=")
        if not eq or not name:
            raise UsageError(f"--set {s!r}: expected NAME=VALUE")
        try:
            out[name] = int(value, 0)
        except ValueError:
            raise UsageError(f"--set {s!r}: VALUE must be a number (decimal, 0x hex, 0o, 0b)") \
                from None
    return out


def refuse_non_elf_options(args) -> None:
    for attr, flag in (("section", "--section"), ("elf_func", "--name"), ("sets", "--set")):
        if getattr(args, attr, None):
            raise UsageError(f"{flag} is for ELF objects (clang -target bpf .o)")
