"""BPF_MAP_TYPE_LPM_TRIE: longest-prefix match (kernel/bpf/lpm_trie.c).

Keys are struct bpf_lpm_trie_key_u8: a u32 prefixlen (little-endian) followed by
key_size - 4 data bytes, most significant bit first.  The trie has the kernel's shape
(the same nodes, intermediate nodes and child slots, built by the same insertion and
deletion steps), because GET_NEXT_KEY walks it in post-order and returns each node's
stored data bytes -- including whatever bits past the prefix the key was inserted with.
"""
from __future__ import annotations

from .base import BpfMap, ValueRef
from .consts import BPF_EXIST, BPF_NOEXIST, EEXIST, EINVAL, ENOENT, ENOSPC
from .spec import MapSpec


class _Node:
    __slots__ = ("prefixlen", "data", "value", "im", "child")

    def __init__(self, prefixlen: int, data: bytes, value: bytearray | None, im: bool):
        self.prefixlen = prefixlen
        self.data = data
        self.value = value
        self.im = im                      # intermediate node: no value of its own
        self.child: list[_Node | None] = [None, None]


def _bit(data: bytes, index: int) -> int:
    return (data[index >> 3] >> (7 - (index & 7))) & 1


class LpmTrieMap(BpfMap):
    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        super().__init__(spec, num_cpus)
        self.data_size = self.key_size - 4
        self.max_prefixlen = 8 * self.data_size
        self.root: _Node | None = None
        self.n_entries = 0

    def _split(self, key: bytes) -> tuple[int, bytes]:
        key = bytes(key)
        return int.from_bytes(key[:4], "little"), key[4:]

    def _match(self, node: _Node, plen: int, data: bytes) -> int:
        """longest_prefix_match(): common leading bits, at most min of both prefixes."""
        limit = min(node.prefixlen, plen)
        n = 0
        for a, b in zip(node.data, data):
            if n >= limit:
                break
            x = a ^ b
            if x:
                n += 8 - x.bit_length()
                break
            n += 8
        return min(n, limit)

    # -- lookup: longest match --
    def _find(self, key: bytes) -> _Node | None:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return None   # trie_lookup_elem() refuses such keys before walking (6.13+)
        found = None
        node = self.root
        while node is not None:
            m = self._match(node, plen, data)
            if m == self.max_prefixlen:
                return node
            if m < node.prefixlen:
                break
            if not node.im:
                found = node
            node = node.child[_bit(data, node.prefixlen)]
        return found

    def _sys_lookup(self, key):
        node = self._find(key)
        return (-ENOENT, None) if node is None else (0, bytes(node.value))

    def lookup_ptr(self, key, cpu=0):
        node = self._find(key)
        return None if node is None else ValueRef(node.value, 0, self.value_size)

    # -- update (trie_update_elem) --
    def _can_add(self, flags: int) -> int:
        # trie_check_add_elem(): a new entry under BPF_EXIST is ENOENT; full is ENOSPC.
        if flags == BPF_EXIST:
            return -ENOENT
        if self.n_entries == self.max_entries:
            return -ENOSPC
        self.n_entries += 1
        return 0

    def _update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags > BPF_EXIST:
            return -EINVAL
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -EINVAL
        new = _Node(plen, data, bytearray(value), False)
        parent, side = None, 0
        node = self.root
        m = 0
        while node is not None:
            m = self._match(node, plen, data)
            if node.prefixlen != m or node.prefixlen == plen:
                break
            parent, side = node, _bit(data, node.prefixlen)
            node = node.child[side]

        def put(n: _Node) -> None:
            if parent is None:
                self.root = n
            else:
                parent.child[side] = n

        if node is None:
            rc = self._can_add(flags)
            if rc == 0:
                put(new)
            return rc
        if node.prefixlen == m:
            # Same prefix: replace the node (a real one, or an intermediate one that
            # now becomes real), keeping its children.
            if not node.im:
                if flags == BPF_NOEXIST:
                    return -EEXIST
            else:
                rc = self._can_add(flags)
                if rc:
                    return rc
            new.child = node.child
            put(new)
            return 0
        rc = self._can_add(flags)
        if rc:
            return rc
        if m == plen:
            # The new prefix contains the node: it becomes the node's parent.
            new.child[_bit(node.data, m)] = node
            put(new)
            return 0
        im = _Node(m, node.data, None, True)
        if _bit(data, m):
            im.child = [node, new]
        else:
            im.child = [new, node]
        put(im)
        return 0

    def _sys_update(self, key, value, flags):
        return self._update(key, value, flags)

    def update_raw(self, key, value, flags, cpu=0):
        return self._update(key, value, flags)

    # -- delete (trie_delete_elem) --
    def _delete(self, key: bytes) -> int:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -EINVAL
        gp, gside = None, 0          # the slot holding `parent` (trim2)
        parent, side = None, 0       # the slot holding `node` (trim)
        node = self.root
        m = 0
        while node is not None:
            m = self._match(node, plen, data)
            if node.prefixlen != m or node.prefixlen == plen:
                break
            gp, gside = parent, side
            parent, side = node, _bit(data, node.prefixlen)
            node = node.child[side]
        if node is None or node.prefixlen != plen or node.prefixlen != m or node.im:
            return -ENOENT
        self.n_entries -= 1
        if node.child[0] is not None and node.child[1] is not None:
            node.im = True
            node.value = None
            return 0

        def put(holder, hside, n):
            if holder is None:
                self.root = n
            else:
                holder.child[hside] = n

        if parent is not None and parent.im and node.child == [None, None]:
            other = parent.child[1] if parent.child[0] is node else parent.child[0]
            put(gp, gside, other)
            return 0
        put(parent, side, node.child[0] if node.child[0] is not None else node.child[1])
        return 0

    def _sys_delete(self, key):
        return self._delete(key)

    def delete_raw(self, key, cpu=0):
        return self._delete(key)

    # -- get_next_key: post-order (trie_get_next_key) --
    def _leftmost(self, node: _Node | None) -> _Node | None:
        nxt = None
        while node is not None:
            if node.im:
                node = node.child[0]
            else:
                nxt = node
                node = node.child[0] if node.child[0] is not None else node.child[1]
        return nxt

    def _sys_next_key(self, key):
        if self.root is None:
            return -ENOENT, None
        plen, data = self._split(key) if key is not None else (0, b"")
        nxt = None
        if key is None or plen > self.max_prefixlen:
            nxt = self._leftmost(self.root)
        else:
            # Find the node with exactly this key, remembering the path.
            stack = []
            node = self.root
            while node is not None:
                stack.append(node)
                m = self._match(node, plen, data)
                if node.prefixlen != m or node.prefixlen == plen:
                    break
                node = node.child[_bit(data, node.prefixlen)]
            last = stack[-1]
            if last.prefixlen != plen or last.im or self._match(last, plen, data) != plen:
                nxt = self._leftmost(self.root)
            else:
                node = last
                found = False
                while len(stack) > 1:
                    par = stack[-2]
                    if par.child[0] is node and par.child[1] is not None:
                        nxt = self._leftmost(par.child[1])
                        found = True
                        break
                    if not par.im:
                        nxt = par
                        found = True
                        break
                    node = par
                    stack.pop()
                if not found:
                    return -ENOENT, None
        if nxt is None:
            return -ENOENT, None
        return 0, nxt.prefixlen.to_bytes(4, "little") + bytes(nxt.data)

    def __len__(self) -> int:
        return self.n_entries
