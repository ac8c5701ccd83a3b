"""An XDP translation as a BPF ELF object, the shape clang gives (`clang -target bpf
-g -c`): ELF64 relocatable, EM_BPF, the code in section ``xdp`` under one global
function symbol, a ``license`` section ("GPL"), ``.BTF`` describing the function
(``int NAME(struct xdp_md *ctx)``) and ``.BTF.ext`` with its func_info, so libbpf-based
loaders (``bpftool prog load``, ``ip link ... xdp obj F sec xdp``) and bpfkit's own
ELF loader (bpfkit.ebpf.elf) accept it.  The code has no relocations (no maps, no
calls).
"""
from __future__ import annotations

import struct

from ..errors import UsageError
from .xdp import XdpTranslation

__all__ = ["xdp_object"]

EM_BPF = 247
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB = 1, 2, 3
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 1, 2, 4
_BTF_KIND_INT, _BTF_KIND_PTR, _BTF_KIND_STRUCT = 1, 2, 4
_BTF_KIND_FUNC, _BTF_KIND_FUNC_PROTO = 12, 13
_XDP_MD_FIELDS = ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index",
                  "egress_ifindex")


class _Strings:
    def __init__(self):
        self.buf = bytearray(b"\0")
        self.at: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        if s not in self.at:
            self.at[s] = len(self.buf)
            self.buf += s.encode() + b"\0"
        return self.at[s]


def _btf(name: str, section: str) -> tuple[bytes, dict[str, int]]:
    """(.BTF bytes, its string offsets).  Types: [1] int, [2] unsigned int,
    [3] struct xdp_md, [4] struct xdp_md *, [5] int (struct xdp_md *ctx), [6] FUNC."""
    s = _Strings()
    t = bytearray()

    def typ(name_off, kind, vlen, size_or_type):
        t.extend(struct.pack("<III", name_off, kind << 24 | vlen, size_or_type))

    typ(s("int"), _BTF_KIND_INT, 0, 4)
    t.extend(struct.pack("<I", 1 << 24 | 32))                 # BTF_INT_SIGNED, 32 bits
    typ(s("unsigned int"), _BTF_KIND_INT, 0, 4)
    t.extend(struct.pack("<I", 32))
    typ(s("xdp_md"), _BTF_KIND_STRUCT, len(_XDP_MD_FIELDS), 4 * len(_XDP_MD_FIELDS))
    for n, f in enumerate(_XDP_MD_FIELDS):
        t.extend(struct.pack("<III", s(f), 2, 32 * n))         # member offsets in bits
    typ(0, _BTF_KIND_PTR, 0, 3)
    typ(0, _BTF_KIND_FUNC_PROTO, 1, 1)
    t.extend(struct.pack("<II", s("ctx"), 4))
    typ(s(name), _BTF_KIND_FUNC, 1, 5)                         # vlen 1: BTF_FUNC_GLOBAL
    s(section)                                                 # .BTF.ext names sections
    s("<bpfkit>")                                              # line info: file name
    s(f"classic BPF translated by bpfkit ({name})")            # line info: source line
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(t), len(t), len(s.buf))
    return hdr + bytes(t) + bytes(s.buf), s.at


def _btf_ext(strings: dict[str, int], section: str, name: str) -> bytes:
    """.BTF.ext: one func_info record (instruction 0 is function type 6) and one
    line_info record for instruction 0 (the kernel wants line info to start there;
    libbpf skips func info of a program without line info)."""
    sec = strings[section]
    func_info = struct.pack("<I", 8) + struct.pack("<II", sec, 1) + struct.pack("<II", 0, 6)
    line_info = struct.pack("<I", 16) + struct.pack("<II", sec, 1) + struct.pack(
        "<IIII", 0, strings["<bpfkit>"],
        strings[f"classic BPF translated by bpfkit ({name})"], 1 << 10 | 1)  # line 1 col 1
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(func_info), len(func_info),
                      len(line_info))
    return hdr + func_info + line_info


def xdp_object(tr: XdpTranslation, name: str = "cbpf_filter", section: str = "xdp",
               license: str = "GPL") -> bytes:
    """The ELF object bytes for an XDP translation."""
    if not name.isidentifier():
        raise UsageError(f"function name {name!r} is not a C identifier")
    code = tr.to_bytes()
    btf, strings = _btf(name, section)
    lic = license.encode() + b"\0"
    strtab = _Strings()
    # section table: (name, type, flags, data, link, info, align, entsize)
    sections = [
        (section, _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, code, 0, 0, 8, 0),
        ("license", _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE, lic, 0, 0, 1, 0),
        (".BTF", _SHT_PROGBITS, 0, btf, 0, 0, 4, 0),
        (".BTF.ext", _SHT_PROGBITS, 0, _btf_ext(strings, section, name), 0, 0, 4, 0),
    ]
    sym_index = len(sections) + 1            # section indexes: 0 null, 1.. the above
    str_index = sym_index + 1
    # symbols: null; then the globals (sh_info = 1: no locals after the null one)
    syms = struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)
    syms += struct.pack("<IBBHQQ", strtab(name), 1 << 4 | 2, 0, 1, 0, len(code))   # FUNC
    syms += struct.pack("<IBBHQQ", strtab("_license"), 1 << 4 | 1, 0, 2, 0, len(lic))
    sections.append((".symtab", _SHT_SYMTAB, 0, syms, str_index, 1, 8, 24))
    for sec in sections:
        strtab(sec[0])
    strtab(".strtab")
    sections.append((".strtab", _SHT_STRTAB, 0, None, 0, 0, 1, 0))
    strbytes = bytes(strtab.buf)

    out = bytearray(64)
    headers = [bytes(64)]
    for sname, stype, flags, data, link, info, align, entsize in sections:
        data = strbytes if data is None else data
        while len(out) % align:
            out.append(0)
        offset = len(out)
        out += data
        headers.append(struct.pack("<IIQQQQIIQQ", strtab.at[sname], stype, flags, 0, offset,
                                   len(data), link, info, align, entsize))
    while len(out) % 8:
        out.append(0)
    shoff = len(out)
    for h in headers:
        out += h
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    out[0:64] = ident + struct.pack("<HHIQQQIHHHHHH", 1, EM_BPF, 1, 0, 0, shoff, 0, 64, 0,
                                    0, 64, len(headers), len(headers) - 1)
    return bytes(out)
