"""Basic blocks and register liveness of an eBPF program, for the vector engine.

A block is a maximal straight-line run of slots: it starts at slot 0, at a jump
target, after a jump or exit, and after a bpf-to-bpf call (the return address); helper
calls stay inside blocks (they run as one vector operation).  Liveness is the usual
backward data-flow over registers r0-r10; the engine drops dead registers when it
queues lanes at a block, so a branch split copies only what is still needed."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import isa

ALL_REGS = frozenset(range(11))
CALLER_SAVED = frozenset(range(1, 6))


@dataclass(slots=True)
class Block:
    start: int
    end: int                                   # exclusive slot index
    pcs: list[int] = field(default_factory=list)   # slot index of each instruction
    term: str = "fall"                   # fall | ja | jcond | may_goto | exit | call
    target: int | None = None                  # taken / ja / callee entry
    follow: int | None = None                  # fall-through / return address
    live_in: frozenset = ALL_REGS


def _uses_defs(insn: isa.Insn, op: isa.Op) -> tuple[set[int], set[int]]:
    k = op.kind
    if k == "alu":
        if op.op == isa.BPF_MOV:
            return ({insn.src} if op.source == isa.BPF_X else set()), {insn.dst}
        u = {insn.dst} | ({insn.src} if op.source == isa.BPF_X else set())
        return u, {insn.dst}
    if k in ("neg", "end"):
        return {insn.dst}, {insn.dst}
    if k == "jcond":
        return {insn.dst} | ({insn.src} if op.source == isa.BPF_X else set()), set()
    if k in ("ldx", "ldxs"):
        return {insn.src}, {insn.dst}
    if k == "st":
        return {insn.dst}, set()
    if k == "stx":
        return {insn.dst, insn.src}, set()
    if k == "atomic":
        u = {insn.dst, insn.src}
        d = set()
        if op.op & isa.BPF_FETCH:
            d.add(insn.src)
        if op.op == isa.BPF_CMPXCHG:
            u.add(0)
            d = {0}
        return u, d
    if k == "lddw":
        return set(), {insn.dst}
    if k in ("ldabs", "ldind"):
        # the verifier treats r1-r5 as clobbered, but the interpreter (which the engine
        # must equal on any program) leaves them: only r0 is defined
        u = {6} | ({insn.src} if k == "ldind" else set())
        return u, {0}
    if k == "call":
        return {1, 2, 3, 4, 5}, {0}
    if k == "callx":
        return {insn.dst, 1, 2, 3, 4, 5}, {0}
    if k == "exit":
        return {0}, set()
    return set(), set()


def build(slots: list, ops: list) -> dict[int, Block]:
    """Blocks by start slot for a slot-indexed program (the Interpreter's layout: the
    second slot of lddw is None)."""
    n = len(slots)
    leaders = {0}
    for pc, (i, op) in enumerate(zip(slots, ops)):
        if i is None:
            continue
        k = op.kind
        if k == "ja":
            leaders.add(pc + 1 + i.off)
            leaders.add(pc + 1)
        elif k == "gotol":
            leaders.add(pc + 1 + i.imm)
            leaders.add(pc + 1)
        elif k in ("jcond", "may_goto"):
            leaders.add(pc + 1 + i.off)
            leaders.add(pc + 1)
        elif k == "exit":
            leaders.add(pc + 1)
        elif k == "call" and i.src == isa.BPF_PSEUDO_CALL:
            leaders.add(pc + 1 + i.imm)
            leaders.add(pc + 1)
        elif k == "lddw" and i.src == isa.BPF_PSEUDO_FUNC:
            leaders.add(pc + 1 + i.imm)
    leaders = sorted(x for x in leaders if 0 <= x < n)
    blocks: dict[int, Block] = {}
    for j, s in enumerate(leaders):
        e = leaders[j + 1] if j + 1 < len(leaders) else n
        b = Block(s, e)
        pc = s
        while pc < e:
            i, op = slots[pc], ops[pc]
            b.pcs.append(pc)
            k = op.kind
            if k in ("ja", "gotol"):
                b.term, b.target = "ja", pc + 1 + (i.off if k == "ja" else i.imm)
            elif k in ("jcond", "may_goto"):
                b.term, b.target, b.follow = k, pc + 1 + i.off, pc + 1
            elif k == "exit":
                b.term = "exit"
            elif k == "call" and i.src == isa.BPF_PSEUDO_CALL:
                b.term, b.target, b.follow = "call", pc + 1 + i.imm, pc + 1
            pc += i.slots
        if b.term == "fall":
            b.follow = e if e < n else None
        blocks[s] = b
    _liveness(blocks, slots, ops)
    return blocks


def _liveness(blocks: dict[int, Block], slots, ops) -> None:
    use_def = {}
    for s, b in blocks.items():
        use, defs = set(), set()
        for pc in b.pcs:
            u, d = _uses_defs(slots[pc], ops[pc])
            use |= (u - defs)
            defs |= d
        if b.term == "call":
            # the callee sees r1-r5; after the return the caller's registers are
            # restored from the saved frame, so everything the caller had stays live
            use |= ALL_REGS - defs
        use_def[s] = (frozenset(use), frozenset(defs))
    live = {s: frozenset() for s in blocks}
    changed = True
    while changed:
        changed = False
        for s in sorted(blocks, reverse=True):
            b = blocks[s]
            out = set()
            for t in (b.target, b.follow):
                if t is not None and t in live:
                    out |= live[t]
            if b.term == "exit":
                out |= {0}
            use, defs = use_def[s]
            new = frozenset(use | (out - defs) | {10})
            if new != live[s]:
                live[s] = new
                changed = True
    for s, b in blocks.items():
        b.live_in = live[s]
