"""BpfMap: the base class of every map, and ValueRef, the interpreter's view of a value.

Three layers of access, all with the kernel's semantics:

* ``sys_*`` methods mirror the bpf(2) element commands one to one (BPF_MAP_LOOKUP_ELEM,
  UPDATE, DELETE, GET_NEXT_KEY, LOOKUP_AND_DELETE): they take and return bytes in the
  syscall layout (per-CPU values: round_up(value_size, 8) bytes per CPU, concatenated)
  and return ``0`` / ``-errno``.  The kernel differential tests call these.
* the Python API (``lookup/get/update/delete/next_key/keys/items``) wraps them and raises
  MapError (.errno) instead of returning -errno.
* the program-facing methods used by the interpreter's helpers (``lookup_ptr``,
  ``update_raw``, ``delete_raw``, ``push_raw``/``pop_raw``/``peek_raw``,
  ``lookup_percpu_ptr``) act as the in-kernel map ops do when a BPF program calls a
  helper on a given CPU, and return ``0`` / ``-errno`` or a ValueRef / None (NULL).

Byte order: keys and values are raw bytes; integers are little-endian (x86-64).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .consts import (BPF_ANY, BPF_F_LOCK, BPF_F_RDONLY, BPF_F_WRONLY, EFAULT, EINVAL,
                     ENOENT, ENOTSUPP, EPERM, MapType, round_up)
from .spec import MapError, MapSpec


@dataclass(frozen=True, slots=True)
class ValueRef:
    """A writable, stable window onto one map value: ``buf[offset:offset+size]``.

    What bpf_map_lookup_elem() returns to a program.  ``buf`` is the storage object
    itself (a bytearray, or for hash maps a memoryview of the element's slab row), never
    a copy: a program writing through the pointer changes the map, as in the kernel.
    The storage of a value never moves or resizes while the element exists, so
    (id(buf), offset) is a stable address the interpreter may map to a fake pointer.
    After the element is deleted or replaced the ValueRef still points to the old
    storage, which is detached from the map (writes to it are invisible: a slab row is
    not reused while a ValueRef holds it; the kernel may instead recycle a preallocated
    element, see README in maps/__init__)."""
    buf: bytearray | memoryview      # hash maps: the element's row of the map's slab
    offset: int
    size: int

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.offset:self.offset + self.size]

    def read(self) -> bytes:
        return bytes(self.buf[self.offset:self.offset + self.size])

    def write(self, data: bytes, at: int = 0) -> None:
        if at < 0 or at + len(data) > self.size:
            raise MapError(EINVAL, f"write of {len(data)} bytes at {at} outside a "
                           f"{self.size}-byte value")
        self.buf[self.offset + at:self.offset + at + len(data)] = data


def _b(key) -> bytes | None:
    """Keys are dict keys in several maps: always immutable bytes."""
    return key if key is None or type(key) is bytes else bytes(key)


def as_bytes(obj: Any, size: int, what: str, op: str) -> bytes:
    """Coerce a key/value to exactly `size` bytes (bytes-like, or an int packed
    little-endian into `size` bytes)."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        if size == 0 or not 0 <= obj < 1 << (8 * size):
            raise MapError(EINVAL, f"{what} {obj} does not fit in {size} bytes", op=op)
        return obj.to_bytes(size, "little")
    try:
        b = bytes(obj)
    except TypeError:
        raise MapError(EINVAL, f"{what} must be bytes or int, got {type(obj).__name__}",
                       op=op) from None
    if len(b) != size:
        raise MapError(EINVAL, f"{what} must be {size} bytes, got {len(b)}", op=op)
    return b


class BpfMap:
    """Base of every map.  Subclasses override the ``_sys_*`` hooks they support; the
    defaults return what the kernel returns for a map type without that operation."""

    percpu = False

    def __init__(self, spec: MapSpec, num_cpus: int = 1):
        self.spec = spec
        self.type = MapType(spec.type)
        self.key_size = spec.key_size
        self.value_size = spec.value_size
        self.max_entries = spec.max_entries
        self.flags = spec.flags
        self.name = spec.name
        self.num_cpus = num_cpus

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} key={self.key_size} "
                f"value={self.value_size} max={self.max_entries}>")

    # ---- layout helpers -------------------------------------------------------------
    @property
    def sys_value_size(self) -> int:
        """Bytes of a value as it crosses bpf(2)."""
        if self.percpu:
            return round_up(self.value_size, 8) * self.num_cpus
        return self.value_size

    def _key(self, key: Any, op: str) -> bytes | None:
        if self.key_size == 0:
            if key is not None:
                # __bpf_copy_key(): a key pointer for a key-less map is -EINVAL.
                raise MapError(EINVAL, "this map type takes no key (pass None)", op=op)
            return None
        return as_bytes(key, self.key_size, "key", op)

    # ---- bpf(2) commands: 0 / -errno -----------------------------------------------
    def _sys_key_rc(self, key, op: str, null_ok: bool = False) -> int:
        """__bpf_copy_key(): a key-less map takes a NULL key (else EINVAL); a keyed map
        faults (EFAULT) on NULL, except GET_NEXT_KEY where NULL means "first".  A key
        of the wrong length is a caller bug here (the kernel copies key_size bytes)."""
        if self.key_size == 0:
            return 0 if key is None else -EINVAL
        if key is None:
            return 0 if null_ok else -EFAULT
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != self.key_size:
            raise MapError(EINVAL, f"key must be {self.key_size} bytes, got {key!r}", op=op)
        return 0

    def _sys_value_check(self, value, op: str) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)) or \
                len(value) != self.sys_value_size:
            raise MapError(EINVAL, f"value must be {self.sys_value_size} bytes in the "
                           "syscall layout", op=op)

    def sys_lookup(self, key: bytes | None, flags: int = 0) -> tuple[int, bytes | None]:
        """BPF_MAP_LOOKUP_ELEM (for queue/stack: peek).  map_lookup_elem() in syscall.c
        refuses any flag but BPF_F_LOCK, and BPF_F_LOCK without a bpf_spin_lock in the
        value (bpfkit values never have one: there is no BTF here)."""
        if flags & ~BPF_F_LOCK:
            return -EINVAL, None
        if self.flags & BPF_F_WRONLY:
            return -EPERM, None
        if flags & BPF_F_LOCK:
            return -EINVAL, None
        rc = self._sys_key_rc(key, "lookup")
        return (rc, None) if rc else self._sys_lookup(_b(key))

    def sys_update(self, key: bytes | None, value: bytes, flags: int = BPF_ANY) -> int:
        """BPF_MAP_UPDATE_ELEM (for queue/stack/bloom: push)."""
        if self.flags & BPF_F_RDONLY:
            return -EPERM
        if flags & BPF_F_LOCK:
            return -EINVAL
        rc = self._sys_key_rc(key, "update")
        if rc:
            return rc
        self._sys_value_check(value, "update")
        return self._sys_update(_b(key), bytes(value), flags)

    def sys_delete(self, key: bytes | None) -> int:
        """BPF_MAP_DELETE_ELEM."""
        if self.flags & BPF_F_RDONLY:
            return -EPERM
        return self._sys_key_rc(key, "delete") or self._sys_delete(_b(key))

    def sys_next_key(self, key: bytes | None) -> tuple[int, bytes | None]:
        """BPF_MAP_GET_NEXT_KEY; key None = the first key."""
        if self.flags & BPF_F_WRONLY:
            return -EPERM, None
        rc = self._sys_key_rc(key, "next_key", null_ok=True)
        return (rc, None) if rc else self._sys_next_key(_b(key))

    def sys_lookup_and_delete(self, key: bytes | None,
                              flags: int = 0) -> tuple[int, bytes | None]:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (for queue/stack: pop)."""
        if flags & ~BPF_F_LOCK:
            return -EINVAL, None
        if self.flags & (BPF_F_RDONLY | BPF_F_WRONLY):
            return -EPERM, None
        if flags:  # BPF_F_LOCK: no bpf_spin_lock in bpfkit values
            return -EINVAL, None
        rc = self._sys_key_rc(key, "lookup_and_delete")
        return (rc, None) if rc else self._sys_lookup_and_delete(_b(key))

    def _sys_lookup(self, key):
        return -ENOTSUPP, None

    def _sys_update(self, key, value, flags):
        return -ENOTSUPP

    def _sys_delete(self, key):
        return -ENOTSUPP

    def _sys_next_key(self, key):
        return -ENOTSUPP, None

    def _sys_lookup_and_delete(self, key):
        # map_lookup_and_delete_elem(): only queue/stack and the hash family have it.
        return -ENOTSUPP, None

    # ---- Python API: raises MapError -------------------------------------------------
    def _raise(self, rc: int, op: str, what: str = "") -> None:
        if rc < 0:
            raise MapError(-rc, what or f"{self.type.name} {op} failed", op=op)

    def _pack_value(self, value: Any, op: str) -> bytes:
        if self.percpu:
            return self.pack_percpu(value, op)
        return as_bytes(value, self.value_size, "value", op)

    def _unpack_value(self, raw: bytes):
        if self.percpu:
            stride = round_up(self.value_size, 8)
            return [raw[i * stride:i * stride + self.value_size] for i in range(self.num_cpus)]
        return raw

    def pack_percpu(self, values: Any, op: str = "update") -> bytes:
        """A per-CPU value for bpf(2): either the syscall layout itself (bytes of
        round_up(value_size, 8) * num_cpus) or a sequence of num_cpus values."""
        stride = round_up(self.value_size, 8)
        if isinstance(values, (bytes, bytearray, memoryview)):
            return as_bytes(values, stride * self.num_cpus, "per-CPU value", op)
        try:
            vals = list(values)
        except TypeError:
            raise MapError(EINVAL, "per-CPU value must be a sequence of one value per CPU",
                           op=op) from None
        if len(vals) != self.num_cpus:
            raise MapError(EINVAL, f"per-CPU value needs {self.num_cpus} values, got "
                           f"{len(vals)}", op=op)
        return b"".join(as_bytes(v, self.value_size, "value", op).ljust(stride, b"\0")
                        for v in vals)

    def lookup(self, key: Any = None):
        """The value of `key` (bytes; a list of bytes per CPU for per-CPU maps); MapError
        ENOENT if absent.  Like the syscall, this does not count as a use for LRU maps."""
        rc, raw = self.sys_lookup(self._key(key, "lookup"))
        self._raise(rc, "lookup", "no such key" if rc == -ENOENT else "")
        return self._unpack_value(raw)

    def get(self, key: Any = None, default=None):
        """lookup() returning `default` instead of raising ENOENT."""
        rc, raw = self.sys_lookup(self._key(key, "lookup"))
        if rc == -ENOENT:
            return default
        self._raise(rc, "lookup")
        return self._unpack_value(raw)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Set `key` to `value` with BPF_ANY / BPF_NOEXIST / BPF_EXIST."""
        self._raise(self.sys_update(self._key(key, "update"), self._pack_value(value, "update"),
                                    flags), "update")

    def delete(self, key: Any) -> None:
        rc = self.sys_delete(self._key(key, "delete"))
        self._raise(rc, "delete", "no such key" if rc == -ENOENT else "")

    def lookup_and_delete(self, key: Any = None):
        rc, raw = self.sys_lookup_and_delete(self._key(key, "lookup_and_delete"))
        self._raise(rc, "lookup_and_delete", "no such key" if rc == -ENOENT else "")
        return self._unpack_value(raw)

    def next_key(self, key: Any = None) -> bytes | None:
        """The key after `key` in the map's iteration order (the first if `key` is None
        or, as in the kernel, not in the map); None after the last one."""
        rc, nxt = self.sys_next_key(None if key is None else self._key(key, "next_key"))
        if rc == -ENOENT:
            return None
        self._raise(rc, "next_key")
        return nxt

    def keys(self) -> Iterator[bytes]:
        key = None
        while True:
            key = self.next_key(key)
            if key is None:
                return
            yield key

    def items(self) -> Iterator[tuple[bytes, Any]]:
        for k in self.keys():
            v = self.get(k)
            if v is not None:
                yield k, v

    def __iter__(self):
        return self.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def dump(self) -> list[dict]:
        """JSON-ready contents: [{"key": hex, "value": hex}] in iteration order; for
        per-CPU maps "value" is a list with one hex string per CPU.  Maps of objects
        show the object's name (inner maps) or repr; key-less maps override this."""
        out = []
        for k, v in self.items():
            if isinstance(v, (bytes, bytearray)):
                val: Any = bytes(v).hex()
            elif isinstance(v, list):
                val = [bytes(x).hex() for x in v]
            else:
                val = getattr(v, "name", None) or repr(v)
            out.append({"key": k.hex(), "value": val})
        return out

    def items_numpy(self, key_dtype, value_dtype):
        """(keys, values) as numpy arrays of the given dtypes (per-CPU maps: values have
        shape (n, num_cpus))."""
        import numpy as np
        ks, vs = [], []
        for k, v in self.items():
            ks.append(k)
            vs.append(b"".join(v) if self.percpu else v)
        kd, vd = np.dtype(key_dtype), np.dtype(value_dtype)
        if kd.itemsize != self.key_size or vd.itemsize != self.value_size:
            raise MapError(EINVAL, f"dtypes of {kd.itemsize}/{vd.itemsize} bytes do not "
                           f"match key/value sizes {self.key_size}/{self.value_size}")
        keys = np.frombuffer(b"".join(ks), dtype=kd)
        vals = np.frombuffer(b"".join(vs), dtype=vd)
        if self.percpu:
            vals = vals.reshape(len(ks), self.num_cpus)
        return keys, vals

    # ---- program side: what the helpers do inside a program --------------------------
    def lookup_ptr(self, key: bytes | None, cpu: int = 0) -> Any:
        """bpf_map_lookup_elem(): a ValueRef (for map-in-map: the inner map; for redirect
        maps: the entry object) or None for NULL."""
        return None

    def update_raw(self, key: bytes | None, value: bytes, flags: int, cpu: int = 0) -> int:
        """bpf_map_update_elem(): 0 or -errno."""
        return -ENOTSUPP

    def delete_raw(self, key: bytes | None, cpu: int = 0) -> int:
        """bpf_map_delete_elem(): 0 or -errno."""
        return -ENOTSUPP

    def push_raw(self, value: bytes, flags: int, cpu: int = 0) -> int:
        """bpf_map_push_elem()."""
        return -ENOTSUPP

    def pop_raw(self, cpu: int = 0) -> tuple[int, bytes | None]:
        """bpf_map_pop_elem(): (0, value) or (-errno, None)."""
        return -ENOTSUPP, None

    def peek_raw(self, cpu: int = 0, value: bytes | None = None) -> tuple[int, bytes | None]:
        """bpf_map_peek_elem(): (0, value) or (-errno, None).  `value` is the helper's
        value argument, an input for bloom filters (the value to test)."""
        return -ENOTSUPP, None

    def lookup_percpu_ptr(self, key: bytes, cpu: int) -> ValueRef | None:
        """bpf_map_lookup_percpu_elem(): only per-CPU maps; NULL otherwise."""
        return None
