"""Parser for pcap-filter expressions: libpcap 1.10.3 grammar.y, by recursive descent.

The semantic actions call `codegen.CodeGen` in the same order as bison reduces, because
that order fixes the scratch-register numbers and which error is reported first.

Grammar facts reproduced here (grammar.y):
* `and`/`or` have equal precedence and group left; `not` binds tighter.
* A bare value after `and`/`or` (`port 80 or 443`, `host a and (b or c)`) reuses the
  qualifiers of the term before it ($<blk>0 in grammar.y), never its `not`.
* Arithmetic precedence, lowest first: `|`, `&`, `<< >>`, `+ -`, `* /`, unary minus.
  `%` and `^` have no declared precedence, so bison *shifts* whenever one of them is the
  pending operator or the lookahead: `8 % 5 * 2` is `8 % (5 * 2)`, `2 * 8 % 5` is
  `2 * (8 % 5)`.
"""
from __future__ import annotations

from ...errors import CompileError
from ..isa import (BPF_ADD, BPF_AND, BPF_DIV, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_LSH, BPF_MOD,
                   BPF_MUL, BPF_OR, BPF_RSH, BPF_SUB, BPF_XOR)
from . import ast as A
from .codegen import (LLC_S_SUBTYPES, LLC_U_SUBTYPES, CodeGen, gen_and, gen_not, gen_or)
from .lexer import tokens

# grammar.y `pname` tokens -> protocol qualifier
PNAME = {"LINK": "link", "IP": "ip", "ARP": "arp", "RARP": "rarp", "SCTP": "sctp",
         "TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "IGMP": "igmp", "IGRP": "igrp",
         "PIM": "pim", "VRRP": "vrrp", "CARP": "carp", "ATALK": "atalk", "AARP": "aarp",
         "DECNET": "decnet", "LAT": "lat", "SCA": "sca", "MOPDL": "mopdl", "MOPRC": "moprc",
         "IPV6": "ip6", "ICMPV6": "icmp6", "AH": "ah", "ESP": "esp", "ISO": "iso",
         "ESIS": "esis", "ISIS": "isis", "L1": "l1", "L2": "l2", "IIH": "iih", "LSP": "lsp",
         "SNP": "snp", "PSNP": "psnp", "CSNP": "csnp", "CLNP": "clnp", "STP": "stp",
         "IPX": "ipx", "NETBEUI": "netbeui", "RADIO": "radio"}
DQUAL = {"SRC": A.SRC, "DST": A.DST, "ADDR1": A.ADDR1, "ADDR2": A.ADDR2, "ADDR3": A.ADDR3,
         "ADDR4": A.ADDR4, "RA": A.RA, "TA": A.TA}
AQUAL = {"HOST": A.HOST, "NET": A.NET, "PORT": A.PORT, "PORTRANGE": A.PORTRANGE}
HEAD_START = set(DQUAL) | set(AQUAL) | {"PROTO", "PROTOCHAIN", "GATEWAY"}
ID_TOKENS = {"ID", "HID", "HID6", "EID", "AID"}

# arithmetic operators: token -> (BPF ALU op, bison precedence or None when undeclared)
ARITH = {"+": (BPF_ADD, 4), "-": (BPF_SUB, 4), "*": (BPF_MUL, 5), "/": (BPF_DIV, 5),
         "%": (BPF_MOD, None), "&": (BPF_AND, 2), "|": (BPF_OR, 1), "^": (BPF_XOR, None),
         "<<": (BPF_LSH, 3), ">>": (BPF_RSH, 3)}
UMINUS_PREC = 6
# relop / irelop: token -> (jump, reversed)
RELOP = {">": (BPF_JGT, False), ">=": (BPF_JGE, False), "=": (BPF_JEQ, False),
         "<=": (BPF_JGT, True), "<": (BPF_JGE, True), "!=": (BPF_JEQ, True)}

# ATM and SS7 keywords (grammar.y atmtype/atmmultitype, mtp3field) -> the name libpcap's
# error message uses (sic: 'oam4ec', and the HSL fields reported without the 'h').
_ATM_TYPES = {"LANE": "lane", "METAC": "metac", "BCC": "bcc", "OAM": "oam", "OAMF4": "oamf4",
              "OAMF4EC": "oam4ec", "OAMF4SC": "oam4sc", "SC": "sc", "ILMIC": "ilmic",
              "CONNECTMSG": "connectmsg", "METACONNECT": "metaconnect"}
_MTP3_FIELDS = {"SIO": "sio", "OPC": "opc", "DPC": "dpc", "SLS": "sls", "HSIO": "sio",
                "HOPC": "opc", "HDPC": "dpc", "HSLS": "sls"}

# grammar.y name tables for the operands of 802.11 and pf primitives (ieee80211.h,
# pfvar.h); only used to decide that libpcap gets as far as its link-type check.
_WLAN_TYPES = {"mgt": 0x00, "management": 0x00, "ctl": 0x04, "control": 0x04, "data": 0x08}
_WLAN_SUBTYPES = {
    0x00: {"assocreq", "assoc-req", "assocresp", "assoc-resp", "reassocreq", "reassoc-req",
           "reassocresp", "reassoc-resp", "probereq", "probe-req", "proberesp",
           "probe-resp", "beacon", "atim", "disassoc", "disassociation", "auth",
           "authentication", "deauth", "deauthentication"},
    0x04: {"ps-poll", "rts", "cts", "ack", "cf-end", "cf-end-ack"},
    0x08: {"data", "data-cf-ack", "data-cf-poll", "data-cf-ack-poll", "null", "cf-ack",
           "cf-poll", "cf-ack-poll", "qos-data", "qos-data-cf-ack", "qos-data-cf-poll",
           "qos-data-cf-ack-poll", "qos", "qos-cf-poll", "qos-cf-ack-poll"},
}
_WLAN_DIRS = {"nods", "tods", "fromds", "dstods"}
_PF_REASONS = {"match", "bad-offset", "fragment", "short", "normalize", "memory",
               "bad-timestamp", "congestion", "ip-option", "proto-cksum", "state-mismatch",
               "state-insert", "state-limit", "src-limit", "synproxy"}
_PF_ACTIONS = {"pass", "accept", "block", "drop", "scrub", "noscrub", "nat", "nonat",
               "binat", "nobinat", "rdr", "nordr"}


class Parser:
    def __init__(self, text: str, gen: CodeGen):
        self.text = text
        self.gen = gen
        self._it = tokens(text)
        self._buf: list[A.Token] = []

    # -- token access --
    def peek(self, i: int = 0) -> A.Token:
        while len(self._buf) <= i:
            self._buf.append(next(self._it) if not self._buf or self._buf[-1].kind != "EOF"
                             else self._buf[-1])
        return self._buf[i]

    def la(self, i: int) -> A.Token:
        """Token i ahead, read as a lookahead bison needs: a lexical error is raised."""
        t = self.peek(i)
        if t.kind == "ERROR":
            self._buf[:i] = []
            return self.cur
        return t

    @property
    def cur(self) -> A.Token:
        """The lookahead token; a lexical error is reported when bison would read it."""
        t = self.peek()
        if t.kind == "ERROR":
            if t.value:
                raise CompileError(t.value, position=t.pos, expr=self.text)
            self.syntax_error(t)
        return t

    def advance(self) -> A.Token:
        t = self.cur
        self._buf.pop(0)
        return t

    def expect(self, kind: str) -> A.Token:
        if self.cur.kind != kind:
            self.syntax_error(self.cur)
        return self.advance()

    def syntax_error(self, t: A.Token):
        raise CompileError("can't parse filter expression: syntax error", position=t.pos,
                           expr=self.text)

    def at(self, t: A.Token) -> None:
        self.gen.pos = t.pos

    # -- prog / expr / term --
    def parse(self):
        if self.cur.kind == "EOF":
            return None
        b, _q = self.expr(A.QERR)
        if self.cur.kind != "EOF":
            self.syntax_error(self.cur)
        return b

    def expr(self, q: A.Qual):
        b, q = self.term(q)
        while self.cur.kind in ("AND", "OR"):
            op = self.advance().kind
            if self._id_follows():
                if self.peek().kind == "NUM" and \
                        self.la(1).kind not in ("AND", "OR", ")", "EOF"):
                    # `expr and NUM <junk>`: bison cannot tell an id from an arth
                    # operand here, so it reports the syntax error before gen_ncode.
                    self.advance()
                    self.syntax_error(self.cur)
                b2, q2 = self.id_(q)
            else:
                b2, q2 = self.term(q)
            (gen_and if op == "AND" else gen_or)(b, b2)
            b, q = b2, q2
        return b, q

    def _id_follows(self) -> bool:
        """After and/or: is this a bare value (`id`) or a new term?  Decided the way the
        LALR(1) automaton ends up deciding, from the tokens after any `not`s."""
        i = 0
        while self.peek(i).kind == "!":
            i += 1
        t = self.peek(i)
        if t.kind in ID_TOKENS:
            return True
        if t.kind == "NUM":
            return self.peek(i + 1).kind not in ARITH and self.peek(i + 1).kind not in RELOP
        if t.kind == "(":
            close = self._matching_paren(i)
            after = self.peek(close + 1).kind if close is not None else "EOF"
            if after in ARITH or after in RELOP:
                return False
            return self._paren_is_pid(i)
        return False

    def _paren_is_pid(self, i: int) -> bool:
        """`( ...` in id position: a parenthesised list of bare values (pid), or an
        expression/arithmetic?  pid starts with an address-like token or a number that
        is not followed by an operator."""
        j = i + 1
        while self.peek(j).kind == "!":
            j += 1
        t = self.peek(j)
        if t.kind in ID_TOKENS:
            return True
        if t.kind == "NUM":
            nxt = self.peek(j + 1).kind
            return nxt in ("AND", "OR", ")")
        if t.kind == "(":
            close = self._matching_paren(j)
            nxt = self.peek(close + 1).kind if close is not None else "EOF"
            return nxt in ("AND", "OR", ")") and self._paren_is_pid(j)
        return False

    def _matching_paren(self, i: int) -> int | None:
        depth = 0
        j = i
        while True:
            k = self.peek(j).kind
            if k == "(":
                depth += 1
            elif k == ")":
                depth -= 1
                if depth == 0:
                    return j
            elif k in ("EOF", "ERROR"):
                return None
            j += 1

    def term(self, q: A.Qual):
        if self.cur.kind == "!":
            self.advance()
            b, q2 = self.term(q)
            gen_not(b)
            return b, q2
        return self.rterm(q)

    def rterm(self, q: A.Qual):
        t = self.cur
        k = t.kind
        if k in PNAME:
            nk = self.la(1).kind
            if nk in HEAD_START:
                return self.head_id(q)
            if nk == "[":
                return self.relation(), A.QERR
            if nk in ("TK_BROADCAST", "TK_MULTICAST", "TYPE", "SUBTYPE", "DIR"):
                self.advance()
                return self.other_pqual(PNAME[k], t), A.QERR
            self.advance()
            if nk not in ("AND", "OR", ")", "EOF"):
                # bison's default action after `pname` reduces it to a pqual (no
                # semantic action), so a bad lookahead is a syntax error before any
                # "link layer applied in wrong context" could be reported.
                self.syntax_error(self.cur)
            self.at(t)
            return self.gen.gen_proto_abbrev(PNAME[k]), A.QERR
        if k in HEAD_START:
            return self.head_id(q)
        if k in ("TK_BROADCAST", "TK_MULTICAST", "TYPE", "SUBTYPE", "DIR"):
            return self.other_pqual(None, t), A.QERR
        if k == "(":
            close = self._matching_paren(0)
            after = self.peek(close + 1).kind if close is not None else "EOF"
            if after in ARITH or after in RELOP:
                return self.relation(), A.QERR
            self.advance()
            b, _q = self.expr(q)
            self.expect(")")
            return b, q            # rterm: paren expr ')' { $$.q = $1.q }
        if k in ("NUM", "LEN", "-"):
            return self.relation(), A.QERR
        return self.other(t), A.QERR

    # -- head id --
    def head_id(self, q_prev: A.Qual):
        """rterm: head id.  The head's qualifiers replace q_prev for this id and for
        bare values after it."""
        proto = None
        if self.cur.kind in PNAME:
            proto = PNAME[self.advance().kind]
        k = self.cur.kind
        dir_ = addr = None
        if k in DQUAL:
            dir_ = DQUAL[self.advance().kind]
            if dir_ in (A.SRC, A.DST) and self.cur.kind in ("OR", "AND") and \
                    self.peek(1).kind == ("DST" if dir_ == A.SRC else "SRC"):
                dir_ = A.OR if self.advance().kind == "OR" else A.AND
                self.advance()
            if self.cur.kind in AQUAL:
                addr = AQUAL[self.advance().kind]
        elif k in AQUAL:
            addr = AQUAL[self.advance().kind]
        elif k == "PROTO":
            self.advance()
            addr = A.PROTO
        elif k == "PROTOCHAIN":
            self.advance()
            addr = A.PROTOCHAIN
        elif k == "GATEWAY":
            self.advance()
            addr = A.GATEWAY
        else:
            self.syntax_error(self.cur)
        q = A.Qual(proto, dir_, addr)
        b, _ = self.id_(q)
        return b, q

    # -- id / nid / pid --
    def id_(self, q: A.Qual):
        t = self.cur
        if t.kind == "!":
            self.advance()
            b, q2 = self.id_(q)
            gen_not(b)
            return b, q2
        if t.kind in ("NUM", "("):
            if t.kind == "(" and not self._paren_is_pnum(0):
                self.advance()
                b = self.pid(q)
                self.expect(")")
                return b, q
            v = self.pnum()
            self.at(t)
            return self.gen.gen_ncode(None, v, q), q
        if t.kind in ID_TOKENS:
            return self.nid(q), q
        self.syntax_error(t)

    def _paren_is_pnum(self, i: int) -> bool:
        """`( NUM )`, possibly nested: a parenthesised number (grammar.y pnum)."""
        j = i
        depth = 0
        while self.peek(j).kind == "(":
            depth += 1
            j += 1
        if self.peek(j).kind != "NUM":
            return False
        for d in range(depth):
            if self.peek(j + 1 + d).kind != ")":
                return False
        return True

    def pid(self, q: A.Qual):
        t = self.cur
        if t.kind == "NUM" or (t.kind == "(" and self._paren_is_pnum(0)):
            v = self.pnum()
            self.at(t)
            b = self.gen.gen_ncode(None, v, q)
        elif t.kind in ID_TOKENS or t.kind == "!":
            if t.kind == "!":
                self.advance()
                b, _ = self.id_(q)
                gen_not(b)
            else:
                b = self.nid(q)
        else:
            self.syntax_error(t)
        while self.cur.kind in ("AND", "OR"):
            op = self.advance().kind
            b2, _ = self.id_(q)
            (gen_and if op == "AND" else gen_or)(b, b2)
            b = b2
        return b

    def pnum(self) -> int:
        if self.cur.kind == "(":
            self.advance()
            v = self.pnum()
            self.expect(")")
            return v
        return self.expect("NUM").value

    def nid(self, q: A.Qual):
        t = self.advance()
        self.at(t)
        g = self.gen
        if t.kind == "ID":
            return g.gen_scode(t.value, q)
        # (peek, not cur: with a lexical error as lookahead bison still takes the
        # default reduction `nid: HID`, whose gencode error then wins.)
        if t.kind == "HID":
            if self.peek().kind == "/":
                self.advance()
                n = self.expect("NUM").value
                self.at(t)
                return g.gen_mcode(t.value, None, n, q)
            if self.peek().kind == "NETMASK":
                self.advance()
                m = self.expect("HID").value
                self.at(t)
                return g.gen_mcode(t.value, m, 0, q)
            for addr, word in ((A.PORT, "port"), (A.PORTRANGE, "portrange"),
                               (A.PROTO, "proto"), (A.PROTOCHAIN, "protochain")):
                if q.addr == addr:
                    # grammar.y reports these with bpf_set_error(), which keeps an
                    # error the lexer already set for the lookahead token.
                    la = self.peek()
                    if la.kind == "ERROR" and la.value:
                        self.cur
                    g.error(f"'{word}' modifier applied to ip host")
            return g.gen_ncode(t.value, 0, q)
        if t.kind == "HID6":
            if self.peek().kind == "/":
                self.advance()
                n = self.expect("NUM").value
                self.at(t)
                return g.gen_mcode6(t.value, None, n, q)
            return g.gen_mcode6(t.value, None, 128, q)
        if t.kind == "EID":
            return g.gen_ecode(t.value, q)
        return g.gen_acode(t.value, q)

    # -- arithmetic and relations --
    def relation(self):
        start = self.cur
        a0 = self.arth()
        t = self.cur
        if t.kind not in RELOP:
            self.syntax_error(t)
        self.advance()
        a1 = self.arth()
        code, rev = RELOP[t.kind]
        self.at(start)
        return self.gen.gen_relation(code, a0, a1, rev)

    def arth(self):
        """Shift-reduce over arithmetic operators with bison's conflict resolution."""
        operands = []
        ops: list[tuple[str, A.Token]] = []   # ('u-' for unary minus, else operator)

        def prec(op: str):
            return UMINUS_PREC if op == "u-" else ARITH[op][1]

        def reduce():
            op, tok = ops.pop()
            self.at(tok)
            if op == "u-":
                operands.append(self.gen.gen_neg(operands.pop()))
            else:
                a1 = operands.pop()
                a0 = operands.pop()
                operands.append(self.gen.gen_arth(ARITH[op][0], a0, a1))

        def operand():
            while self.cur.kind == "-":
                ops.append(("u-", self.advance()))
            operands.append(self.primary())

        operand()
        while self.cur.kind in ARITH:
            look = self.cur.kind
            while ops:
                top = prec(ops[-1][0])
                pl = prec(look)
                if top is None or pl is None or pl > top:
                    break
                reduce()
            ops.append((look, self.advance()))
            operand()
        while ops:
            reduce()
        return operands[0]

    def primary(self):
        t = self.cur
        g = self.gen
        if t.kind == "NUM":
            self.advance()
            return g.gen_loadi(t.value)
        if t.kind == "LEN":
            self.advance()
            return g.gen_loadlen()
        if t.kind == "(":
            self.advance()
            a = self.arth()
            self.expect(")")
            return a
        if t.kind in PNAME:
            self.advance()
            self.expect("[")
            inst = self.arth()
            size = 1
            if self.cur.kind == ":":
                self.advance()
                size = self.expect("NUM").value
            self.expect("]")
            self.at(t)
            return g.gen_load(PNAME[t.kind], inst, size)
        self.syntax_error(t)

    # -- `other` --
    def other_pqual(self, proto, start: A.Token):
        t = self.advance()
        self.at(start)
        if t.kind == "TK_BROADCAST":
            return self.gen.gen_broadcast(proto)
        if t.kind == "TK_MULTICAST":
            return self.gen.gen_multicast(proto)
        # p80211 (grammar.y): `type T [subtype S]`, `subtype S`, `dir D`.  None of
        # bpfkit's link types is 802.11, so once the operands are checked the way the
        # grammar checks them, gen_p80211_type/gen_p80211_fcdir reject the primitive.
        g = self.gen
        if t.kind == "TYPE":
            arg = self.advance()
            if arg.kind == "NUM":
                if arg.value & ~0x0C:
                    g.error(f"invalid 802.11 type value 0x{arg.value:02x}")
                tval = arg.value
            elif arg.kind == "ID":
                if arg.value not in _WLAN_TYPES:
                    g.error(f'unknown 802.11 type name "{arg.value}"')
                tval = _WLAN_TYPES[arg.value]
            else:
                self.syntax_error(arg)
            if self.cur.kind == "SUBTYPE":
                self.advance()
                sub = self.advance()
                if sub.kind == "NUM":
                    if sub.value & ~0xF0:
                        g.error(f"invalid 802.11 subtype value 0x{sub.value:02x}")
                elif sub.kind == "ID":
                    if tval not in _WLAN_SUBTYPES:
                        g.error("unknown 802.11 type")
                    if sub.value not in _WLAN_SUBTYPES[tval]:
                        g.error(f'unknown 802.11 subtype name "{sub.value}"')
                else:
                    self.syntax_error(sub)
            g.error("802.11 link-layer types supported only on 802.11")
        if t.kind == "SUBTYPE":
            sub = self.advance()
            if sub.kind != "ID":
                self.syntax_error(sub)
            if not any(sub.value in names for names in _WLAN_SUBTYPES.values()):
                g.error("unknown 802.11 type name")
            g.error("802.11 link-layer types supported only on 802.11")
        arg = self.advance()                                   # DIR
        if arg.kind == "ID" and arg.value not in _WLAN_DIRS:
            g.error("unknown 802.11 direction")
        if arg.kind not in ("NUM", "ID"):
            self.syntax_error(arg)
        g.error("frame direction supported only with 802.11 headers")

    def _opt_pnum(self):
        # A lexical error as lookahead does not stop bison's default reduction of
        # `vlan`/`mpls`/... without a number, whose own error (if any) then replaces
        # the lexer's message: so peek without raising here.
        k = self.peek().kind
        if k in ("NUM", "("):         # bison shifts '(' as the start of a pnum
            return self.pnum(), True
        return 0, False

    def other(self, t: A.Token):
        g = self.gen
        k = t.kind
        self.advance()
        self.at(t)
        if k == "LESS":
            return g.gen_less(self.expect("NUM").value)
        if k == "GREATER":
            return g.gen_greater(self.expect("NUM").value)
        if k == "CBYTE":
            idx = self.expect("NUM").value
            op = self.cur.kind
            if op not in ("&", "|", "<", ">", "="):
                self.syntax_error(self.cur)
            self.advance()
            val = self.expect("NUM").value
            self.at(t)
            return g.gen_byteop(op, idx, val)
        if k in ("INBOUND", "OUTBOUND"):
            return g.gen_inbound(k == "OUTBOUND")
        if k == "IFINDEX":
            return g.gen_ifindex(self.expect("NUM").value)
        if k == "VLAN":
            v, has = self._opt_pnum()
            self.at(t)
            return g.gen_vlan(v, has)
        if k == "MPLS":
            v, has = self._opt_pnum()
            self.at(t)
            return g.gen_mpls(v, has)
        if k == "PPPOED":
            return g.gen_pppoed()
        if k == "PPPOES":
            v, has = self._opt_pnum()
            self.at(t)
            return g.gen_pppoes(v, has)
        if k == "GENEVE":
            v, has = self._opt_pnum()
            self.at(t)
            return g.gen_geneve(v, has)
        if k == "LLC":
            if self.peek().kind == "ID":
                name = self.advance().value
                self.at(t)
                if name in ("i", "s", "u"):
                    return g.gen_llc(name)
                if name in LLC_S_SUBTYPES:
                    return g.gen_llc("s_sub", LLC_S_SUBTYPES[name])
                if name in LLC_U_SUBTYPES:
                    return g.gen_llc("u_sub", LLC_U_SUBTYPES[name])
                g.error(f'unknown LLC type name "{name}"')
            if self.peek().kind == "PF_RNR":
                self.advance()
                return g.gen_llc("s_sub", LLC_S_SUBTYPES["rnr"])
            return g.gen_llc()
        # pf(4) log fields (gencode.c gen_pf_*): only DLT_PFLOG has them.
        pf = {"PF_IFNAME": ("ID", None, "ifname"), "PF_RSET": ("ID", None, "ruleset"),
              "PF_RNR": ("NUM", None, "rnr"), "PF_SRNR": ("NUM", None, "srnr"),
              "PF_REASON": ("NUM", _PF_REASONS, "reason"),
              "PF_ACTION": (None, _PF_ACTIONS, "action")}
        if k in pf:
            kind, names, word = pf[k]
            arg = self.cur
            if arg.kind == "ID" and names is not None and arg.value not in names:
                g.error(f'unknown PF {word} "{arg.value}"')
            if arg.kind == kind or (names is not None and arg.kind == "ID"):
                self.advance()
                g.error(f"{word} supported only on PF linktype")
            self.syntax_error(arg)
        # ATM, MTP2 and MTP3 (SS7) primitives (gen_atmtype_abbrev, gen_atmfield_code,
        # gen_mtp2type_abbrev, gen_mtp3field_code): none of bpfkit's link types has them.
        if k in _ATM_TYPES:
            g.error(f"'{_ATM_TYPES[k]}' supported only on raw ATM")
        if k in ("FISU", "LSSU", "MSU"):
            g.error(f"'{k.lower()}' supported only on MTP2")
        if k in ("HFISU", "HLSSU", "HMSU"):
            g.error(f"'{k.lower()}' supported only on MTP2_HSL")
        if k in ("VPI", "VCI") or k in _MTP3_FIELDS:
            self._field_value()
            self.at(t)
            if k in ("VPI", "VCI"):
                g.error(f"'{k.lower()}' supported only on raw ATM")
            g.error(f"'{_MTP3_FIELDS[k]}' supported only on SS7")
        self.syntax_error(t)

    def _field_value(self):
        """grammar.y atmvalue/mtp3value: NUM, relop NUM, irelop NUM or '(' list ')'."""
        c = self.cur
        if c.kind == "NUM":
            self.advance()
        elif c.kind in RELOP:
            self.advance()
            self.expect("NUM")
        elif c.kind == "(":
            # atmlistvalue: libpcap generates (and so rejects) at its first value
            self.advance()
            self._field_value()
        else:
            self.syntax_error(c)


def parse(text: str, gen: CodeGen):
    """Parse `text`, generating code with `gen`; returns the root block (None: empty)."""
    return Parser(text, gen).parse()
