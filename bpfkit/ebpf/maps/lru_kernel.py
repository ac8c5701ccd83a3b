"""The kernel's LRU list machinery (kernel/bpf/bpf_lru_list.c), step for step, for LRU
hash maps created with ``lru_policy="kernel"``.

Each element owns a node on one of these lists: the global active and inactive lists
(common LRU) or a CPU's own active/inactive lists (BPF_F_NO_COMMON_LRU), or a CPU's
local "pending" list (common LRU: nodes handed out but not yet flushed).  Free nodes
carry no key, so free lists are just counts.  A lookup by a program sets the node's
reference bit; the rest -- flushing pending nodes, rotating the active and inactive
lists, shrinking (evicting) a batch of unreferenced nodes, stealing from other CPUs --
follows the kernel functions named in the comments.  Sequential semantics: the CPU of
each operation is given by the caller (the kernel uses the CPU it runs on).

Version: the common LRU refills target_free = clamp(nr_elems / ncpus / 2, 1, 128) nodes
at a time, as since Linux 6.16 (before, always LOCAL_FREE_TARGET = 128).  Verified
against 6.18 with evictions, reference bits, both CPUs and the steal loop
(tests/test_ebpf_maps_kernel.py::test_lru_kernel_policy)."""
from __future__ import annotations

from typing import Callable

ACTIVE, INACTIVE, FREE, LOCAL_FREE, PENDING = range(5)
LOCAL_FREE_TARGET = 128
PERCPU_FREE_TARGET = 4


class Node:
    __slots__ = ("key", "ref", "type", "cpu", "prev", "next")

    def __init__(self, key=None, cpu=0, type_=FREE):
        self.key = key
        self.ref = 0
        self.type = type_
        self.cpu = cpu
        self.prev = self.next = self


class DList:
    """A circular doubly linked list with a sentinel, like struct list_head."""

    def __init__(self):
        self.head = Node()

    def empty(self) -> bool:
        return self.head.next is self.head

    def first(self) -> Node:
        return self.head.next

    @staticmethod
    def unlink(n: Node) -> None:
        n.prev.next = n.next
        n.next.prev = n.prev
        n.prev = n.next = n

    def add_head(self, n: Node) -> None:       # list_add
        h = self.head
        n.next, n.prev = h.next, h
        h.next.prev = n
        h.next = n


class _List:
    """struct bpf_lru_list: active/inactive lists, their counts, the free count and the
    inactive-rotation cursor."""

    def __init__(self):
        self.lists = {ACTIVE: DList(), INACTIVE: DList()}
        self.counts = {ACTIVE: 0, INACTIVE: 0}
        self.free = 0
        self.nir = self.lists[INACTIVE].head   # next_inactive_rotation


class _Local:
    """struct bpf_lru_locallist: a CPU's free count and pending list."""

    def __init__(self, cpu: int):
        self.free = 0
        self.pending = DList()
        self.next_steal = cpu


class KernelLru:
    def __init__(self, nr_elems: int, num_cpus: int, percpu: bool,
                 del_from_htab: Callable[[Node], None]):
        self.percpu = percpu
        self.num_cpus = num_cpus
        self.del_from_htab = del_from_htab
        if percpu:
            # bpf_percpu_lru_populate(): nr_elems / ncpus free nodes per CPU.
            self.nr_scans = PERCPU_FREE_TARGET
            self.cpu_lists = [_List() for _ in range(num_cpus)]
            per = nr_elems // num_cpus
            for c, lst in enumerate(self.cpu_lists):
                lst.free = per if c < num_cpus - 1 else nr_elems - per * (num_cpus - 1)
        else:
            # bpf_common_lru_populate()
            self.nr_scans = LOCAL_FREE_TARGET
            self.glob = _List()
            self.glob.free = nr_elems
            self.locals = [_Local(c) for c in range(num_cpus)]
            self.target_free = min(max(nr_elems // num_cpus // 2, 1), LOCAL_FREE_TARGET)

    # ---- node moves (__bpf_lru_node_move*, list_move) ----
    def _move(self, l: _List, n: Node, tgt: int) -> None:
        """__bpf_lru_node_move(): between/within active and inactive, or to free."""
        if n.type != tgt:
            if n.type in l.counts:
                l.counts[n.type] -= 1
            if tgt in l.counts:
                l.counts[tgt] += 1
            n.type = tgt
        n.ref = 0
        if n is l.nir:
            l.nir = l.nir.prev
        DList.unlink(n)
        if tgt == FREE:
            l.free += 1
        else:
            l.lists[tgt].add_head(n)

    def _move_to_free(self, l: _List, n: Node) -> None:
        """__bpf_lru_node_move_to_free() (the destination free list is counted by the
        caller)."""
        if n is l.nir:
            l.nir = l.nir.prev
        if n.type in l.counts:
            l.counts[n.type] -= 1
        n.type = FREE
        DList.unlink(n)

    def _move_in(self, l: _List, n: Node, tgt: int) -> None:
        """__bpf_lru_node_move_in(): from a local pending list into the LRU list."""
        l.counts[tgt] += 1
        n.type = tgt
        n.ref = 0
        DList.unlink(n)
        l.lists[tgt].add_head(n)

    # ---- rotation and shrinking ----
    def _rotate_active(self, l: _List) -> None:
        head = l.lists[ACTIVE].head
        first = head.next
        node = head.prev
        i = 0
        while node is not head:
            prev = node.prev
            self._move(l, node, ACTIVE if node.ref else INACTIVE)
            i += 1
            if i == self.nr_scans or node is first:
                break
            node = prev

    def _rotate_inactive(self, l: _List) -> None:
        inactive = l.lists[INACTIVE]
        if inactive.empty():
            return
        sentinel = inactive.head
        last = l.nir.next
        if last is sentinel:
            last = last.next
        cur = l.nir
        nxt = sentinel
        i = 0
        while i < self.nr_scans:
            if cur is sentinel:
                cur = cur.prev
                continue
            nxt = cur.prev
            if cur.ref:
                self._move(l, cur, ACTIVE)
            if cur is last:
                break
            cur = nxt
            i += 1
        l.nir = nxt

    def _rotate(self, l: _List) -> None:
        # __bpf_lru_list_rotate(): the active list only when the inactive one is low.
        if l.counts[INACTIVE] < l.counts[ACTIVE]:
            self._rotate_active(l)
        self._rotate_inactive(l)

    def _evict(self, l: _List, n: Node) -> None:
        self.del_from_htab(n)
        self._move_to_free(l, n)

    def _shrink_inactive(self, l: _List, target: int) -> int:
        head = l.lists[INACTIVE].head
        node = head.prev
        done = i = 0
        while node is not head:
            prev = node.prev
            if node.ref:
                self._move(l, node, ACTIVE)
            else:
                self._evict(l, node)
                done += 1
                if done == target:
                    break
            i += 1
            if i == self.nr_scans:
                break
            node = prev
        return done

    def _shrink(self, l: _List, target: int) -> int:
        """__bpf_lru_list_shrink(): unreferenced inactive nodes first; if none, force
        out the tail of the inactive list (or of the active list).  Returns how many
        nodes were freed (the caller credits them to its free list)."""
        done = self._shrink_inactive(l, target)
        if done:
            return done
        lst = l.lists[INACTIVE] if not l.lists[INACTIVE].empty() else l.lists[ACTIVE]
        if lst.empty():
            return 0
        self._evict(l, lst.head.prev)
        return 1

    # ---- the common LRU (bpf_common_lru_*) ----
    def _flush(self, loc: _Local) -> None:
        head = loc.pending.head
        node = head.prev
        while node is not head:
            prev = node.prev
            self._move_in(self.glob, node, ACTIVE if node.ref else INACTIVE)
            node = prev

    def _pop_free_to_local(self, loc: _Local) -> None:
        g = self.glob
        self._flush(loc)
        self._rotate(g)
        n = min(g.free, self.target_free)
        g.free -= n
        loc.free += n
        if n < self.target_free:
            loc.free += self._shrink(g, self.target_free - n)

    def _pop_pending(self, loc: _Local) -> bool:
        """__local_list_pop_pending(): evict the oldest pending node, unreferenced first."""
        for force in (False, True):
            head = loc.pending.head
            node = head.prev
            while node is not head:
                if not node.ref or force:
                    self.del_from_htab(node)
                    DList.unlink(node)
                    return True
                node = node.prev
        return False

    def _add_pending(self, loc: _Local, cpu: int, key) -> Node:
        n = Node(key, cpu, PENDING)
        loc.pending.add_head(n)
        return n

    def pop_free(self, cpu: int, key) -> Node | None:
        """bpf_lru_pop_free(): a node for a new element of `key` on `cpu`, evicting as
        the kernel would; None when nothing can be had (the update fails -ENOMEM)."""
        if self.percpu:
            l = self.cpu_lists[cpu]
            self._rotate(l)
            if l.free == 0:
                l.free += self._shrink(l, PERCPU_FREE_TARGET)
            if l.free == 0:
                return None
            l.free -= 1
            n = Node(key, cpu, FREE)
            DList.unlink(n)
            l.counts[INACTIVE] += 1
            n.type = INACTIVE
            l.lists[INACTIVE].add_head(n)
            return n
        loc = self.locals[cpu]
        if loc.free == 0:
            self._pop_free_to_local(loc)
        if loc.free:
            loc.free -= 1
            return self._add_pending(loc, cpu, key)
        first = steal = loc.next_steal
        got = False
        while True:
            sl = self.locals[steal]
            if sl.free:
                sl.free -= 1
                got = True
            else:
                got = self._pop_pending(sl)
            steal = (steal + 1) % self.num_cpus
            if got or steal == first:
                break
        loc.next_steal = steal
        return self._add_pending(loc, cpu, key) if got else None

    def push_free(self, n: Node) -> None:
        """bpf_lru_push_free(): a deleted or replaced element's node."""
        if self.percpu:
            self._move(self.cpu_lists[n.cpu], n, FREE)
        elif n.type == PENDING:
            DList.unlink(n)
            n.type = LOCAL_FREE
            n.ref = 0
            self.locals[n.cpu].free += 1
        else:
            self._move(self.glob, n, FREE)

    @staticmethod
    def set_ref(n: Node) -> None:
        n.ref = 1
