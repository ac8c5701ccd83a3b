"""Value storage for the hash maps: rows of one width in a few numpy pages.

A hash element's value lives in one *row*: ``width`` bytes (the value rounded up to
8 bytes; per-CPU maps: one such slot per CPU, side by side).  Rows live in pages that
are never moved or resized, so a row's memory is stable while its element exists, as a
pointer returned to a program must be.  Pages double in size as the map grows.

Keeping all values of a map in a few 2-D uint8 arrays lets the vector engine read and
update many elements with one numpy operation (gather, scatter, add) instead of one
Python call per element; the map itself (which key has which row, bucket order) stays
in hashmaps.HashMap.

Each live row has one memoryview over it (``view(row)``): what ValueRef.buf is for that
element, so ``lookup_ptr(k).buf is lookup_ptr(k).buf`` and (id(buf), offset) is a
stable address for the interpreter.  A freed row (element deleted or replaced) is
reused only once nothing refers to its memoryview any more (a weak reference tells):
a pointer kept past the deletion of its element keeps pointing to memory no element
uses, so writes through it stay invisible, as with one bytearray per element.  (A
memoryview *sliced* from ValueRef.buf does not keep the row reserved by itself; keep
the ValueRef.)
"""
from __future__ import annotations

import weakref

import numpy as np


class Rows:
    """Rows of `width` bytes (a multiple of 8) in pages (uint8 [rows, width] each,
    pages[k] holding rows starts[k]...): the vector engine's access to many values at
    once.  Array maps are one page over their own storage (Rows.over)."""

    def __init__(self, width: int):
        self.width = width
        self.pages: list[np.ndarray] = []
        self.starts: list[int] = []

    @classmethod
    def over(cls, page: np.ndarray) -> "Rows":
        r = cls(page.shape[1])
        r.pages, r.starts = [page], [0]
        return r

    def _pages_of(self, rows: np.ndarray):
        """(page, in-page row indices, positions in `rows`) for each page `rows` touch."""
        if len(self.pages) == 1:
            yield self.pages[0], rows, slice(None)
            return
        starts = np.asarray(self.starts, np.int64)
        p = np.searchsorted(starts, rows, side="right") - 1
        counts = np.bincount(p, minlength=len(self.pages))
        # positions grouped by page: one stable sort of small ints (a radix sort)
        order = np.argsort(p.astype(np.int16), kind="stable")
        ends = np.cumsum(counts)
        for k in np.flatnonzero(counts).tolist():
            sel = order[ends[k] - counts[k]:ends[k]]
            yield self.pages[k], rows[sel] - starts[k], sel

    def row(self, row: int) -> np.ndarray:
        """Row `row` (a writable uint8 view)."""
        p = len(self.starts) - 1
        while self.starts[p] > row:
            p -= 1
        return self.pages[p][row - self.starts[p]]

    def gather(self, rows: np.ndarray, ncols: int) -> np.ndarray:
        """uint8 [len(rows), ncols]: the first ncols bytes of each row."""
        out = np.empty((len(rows), ncols), np.uint8)
        for page, r, sel in self._pages_of(rows):
            # np.take of whole rows, then the columns: much faster than page[r, :n]
            out[sel] = np.take(page, r, axis=0)[:, :ncols]
        return out

    def scatter(self, rows: np.ndarray, data: np.ndarray, at: int = 0) -> None:
        """Bytes [at, at + data.shape[1]) of row rows[i] = data[i] (rows distinct)."""
        n = data.shape[1]
        for page, r, sel in self._pages_of(rows):
            if at == 0 and n == self.width:
                page[r] = data[sel]
            else:
                page[r, at:at + n] = data[sel]

    def scatter_bytes(self, rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> None:
        """Byte cols[i] of row rows[i] = data[i] ((row, col) pairs distinct)."""
        for page, r, sel in self._pages_of(rows):
            page[r, cols[sel]] = data[sel]

    def add_words(self, rows: np.ndarray, words: np.ndarray, values: np.ndarray) -> None:
        """Add values (uint64) to the little-endian u64 words[i] of rows[i], modulo 2**64;
        repeated (row, word) pairs add up."""
        for page, r, sel in self._pages_of(rows):
            np.add.at(page.view(np.uint64), (r, words[sel]), values[sel])


class Slab(Rows):
    """The rows of one hash map, allocated and freed one element at a time."""

    def __init__(self, width: int, first_rows: int = 1024):
        super().__init__(max(8, (width + 7) & ~7))      # u64 views need whole words
        self.rows = 0                              # rows handed out so far (high mark)
        self._first = max(1, first_rows)
        self._views: dict[int, memoryview] = {}    # live rows that have been viewed
        self._free: list[int] = []                 # rows that may be reused
        self._held: dict[int, weakref.ref] = {}    # freed rows a memoryview still uses

    # --- rows ---------------------------------------------------------------------------
    def _grow(self) -> None:
        n = self._first if not self.pages else self.rows
        self.starts.append(self.rows)
        self.pages.append(np.zeros((n, self.width), np.uint8))

    def alloc(self) -> int:
        """A zeroed row for a new element."""
        return self.alloc_many(1)[0]

    def alloc_many(self, n: int) -> list[int]:
        """n zeroed rows for new elements: reusable rows first, then fresh ones."""
        take = min(n, len(self._free))
        rows = self._free[len(self._free) - take:][::-1]
        del self._free[len(self._free) - take:]
        for row in rows:
            self.row(row)[:] = 0
        while len(rows) < n:
            if not self.pages or self.rows == self.starts[-1] + len(self.pages[-1]):
                self._grow()
            k = min(n - len(rows), self.starts[-1] + len(self.pages[-1]) - self.rows)
            rows.extend(range(self.rows, self.rows + k))     # zero since the page was made
            self.rows += k
        return rows

    def free(self, row: int) -> None:
        """The element of `row` is gone; the row is reused once its memoryview (made
        at the first view(row)) dies."""
        mv = self._views.pop(row, None)
        if mv is None:
            self._free.append(row)
            return

        def dead(_ref, row=row):
            if self._held.pop(row, None) is not None:
                self._free.append(row)

        self._held[row] = weakref.ref(mv, dead)
        del mv        # the last reference, unless someone still holds a ValueRef

    def view(self, row: int) -> memoryview:
        """The memoryview of live row `row` (the same object every time)."""
        mv = self._views.get(row)
        if mv is None:
            mv = self._views[row] = memoryview(self.row(row))
        return mv
