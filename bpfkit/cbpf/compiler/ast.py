"""Vocabulary shared by the lexer, parser and code generator of the pcap-filter compiler.

libpcap's grammar (grammar.y) does not build a syntax tree: its semantic actions call the
code generator directly (gen_ncode, gen_and, ...), and the *order* of those calls decides
the register allocation and the error reported first.  bpfkit keeps that structure: the
parser drives `codegen.CodeGen`; this module holds the values passed between them —
qualifiers (libpcap's `struct qual`) and token kinds.
"""
from __future__ import annotations

from dataclasses import dataclass

# Address-type qualifiers (gencode.h Q_HOST ...); None is Q_DEFAULT.
HOST, NET, PORT, GATEWAY, PROTO, PROTOCHAIN, PORTRANGE = (
    "host", "net", "port", "gateway", "proto", "protochain", "portrange")
UNDEF = "undef"          # Q_UNDEF: the qualifier of "no previous qualifier" (grammar.y qerr)

# Direction qualifiers; None is Q_DEFAULT.
SRC, DST, OR, AND = "src", "dst", "or", "and"
ADDR1, ADDR2, ADDR3, ADDR4, RA, TA = "addr1", "addr2", "addr3", "addr4", "ra", "ta"

# Protocol qualifiers (the grammar's `pname`); None is Q_DEFAULT.
PROTOS = ("link", "ip", "arp", "rarp", "sctp", "tcp", "udp", "icmp", "igmp", "igrp", "pim",
          "vrrp", "carp", "atalk", "aarp", "decnet", "lat", "sca", "moprc", "mopdl", "ip6",
          "icmp6", "ah", "esp", "iso", "esis", "isis", "l1", "l2", "iih", "lsp", "snp",
          "psnp", "csnp", "clnp", "stp", "ipx", "netbeui", "radio")


@dataclass(frozen=True, slots=True)
class Qual:
    """libpcap's `struct qual`: protocol, direction and address-type qualifiers.
    None means Q_DEFAULT (not given); UNDEF means Q_UNDEF (grammar.y's qerr)."""
    proto: str | None = None
    dir: str | None = None
    addr: str | None = None


QERR = Qual(UNDEF, UNDEF, UNDEF)


@dataclass(frozen=True, slots=True)
class Token:
    """One token of scanner.l: kind is a keyword's token name (e.g. 'HOST', 'AND'), a
    punctuation string ('(', '>=', ...), 'NUM' (value int), 'ID'/'HID'/'HID6'/'EID'/'AID'
    (value str), 'EOF', or 'ERROR' (value: the message, raised when consumed)."""
    kind: str
    value: object
    pos: int
    text: str = ""
