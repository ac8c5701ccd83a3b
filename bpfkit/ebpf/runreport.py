"""What `bpfkit run --ebpf` prints and writes, built batch by batch from a streamed run
(bpfkit.ebpf.runner.stream_capture) in bounded memory, and byte for byte what the
whole-run RunResult gives (RunResult.to_json, the summary, write_capture of
RunResult.output).

RunReport keeps the counts per verdict in memory and spools everything that grows with
the capture (per-packet return values and instruction counts for --json, fault,
skipped and trace lines) to anonymous temporary files, which it copies out at the end.
OutputCapture writes the output packets (-w) as they come; the file header's snaplen,
link type and time stamp precision are only final at the end (an adjusted packet may
outgrow the snaplen), so it fixes the header up then, and the time stamps of the records
written before a switch to nanosecond precision (pcapng input with interfaces of both
precisions).  An output it cannot seek in (standard output) is written to a temporary
file first and copied out when the run is over.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
import tempfile
from typing import BinaryIO, Optional

import numpy as np

from ..errors import CaptureError, UsageError
from ..pcap import CaptureWriter, PacketBatch
from ..pcap import pcapfile
from ..pcap.writer import write_error
from .progtypes import BPF_PROG_TYPE_XDP, PROG_TYPE_NAMES, XDP_VERDICTS, verdict_name
from .runner import (BatchResult, add_verdict_counts, fault_json, redirect_json,
                     skipped_json, trace_json)

__all__ = ["RunReport", "OutputCapture"]

_CHUNK = 1 << 20          # array elements per piece when copying a spool out


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Spool:
    """An append-only temporary file of text items (joined by `sep` when copied out)."""

    def __init__(self, sep: str):
        self.sep = sep
        self.count = 0
        self._f = None

    def add(self, text: str) -> None:
        if self._f is None:
            self._f = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        if self.count:
            self._f.write(self.sep)
        self._f.write(text)
        self.count += 1

    def copy_to(self, out) -> None:
        if self._f is None:
            return
        self._f.flush()
        self._f.seek(0)
        shutil.copyfileobj(self._f, out, 1 << 20)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class _ArraySpool:
    """An append-only temporary file of one numpy dtype."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._f = tempfile.TemporaryFile("w+b")

    def add(self, a: np.ndarray) -> None:
        np.ascontiguousarray(a, self.dtype).tofile(self._f)
        self.count += len(a)

    def chunks(self):
        self._f.flush()
        self._f.seek(0)
        left = self.count
        while left:
            a = np.fromfile(self._f, self.dtype, count=min(left, _CHUNK))
            if not len(a):
                raise OSError("a temporary file came back short")
            left -= len(a)
            yield a

    def close(self) -> None:
        self._f.close()


class RunReport:
    """Feed it every BatchResult of a run (add), then write the summary
    (write_summary) or the --json object (write_json).  json: what is kept is what the
    JSON object needs (else what the summary needs); trace: the summary lists the
    bpf_trace_printk lines."""

    def __init__(self, program, *, json: bool = False, trace: bool = False):
        self.program = program
        self.xdp = program.prog_type == BPF_PROG_TYPE_XDP
        self.json = json
        self.trace = trace
        self.packets = 0
        self.accepted = 0
        self.counts: dict[str, int] = {name: 0 for name in XDP_VERDICTS.values()}
        self.faults = _Spool("," if json else "\n")
        self.skipped = _Spool("," if json else "\n")
        self.traces = _Spool("," if json else "\n")
        self.redirects = _Spool(",")
        self._retval = _ArraySpool(np.uint32) if json else None
        self._insns = _ArraySpool(np.uint64) if json else None

    def add(self, part: BatchResult) -> None:
        rv = part.retval
        self.packets += len(rv)
        if self.xdp:
            add_verdict_counts(self.counts, rv)
        else:
            self.accepted += int(np.count_nonzero(rv))
        if self.json:
            self._retval.add(rv)
            self._insns.add(part.insns)
            for f in part.faults:
                self.faults.add(_dumps(fault_json(f)))
            for s in part.skipped:
                self.skipped.add(_dumps(skipped_json(s)))
            for t in part.trace:
                self.traces.add(_dumps(trace_json(t)))
            for i, t in sorted(part.redirects.items()):
                self.redirects.add(_dumps(redirect_json(i, t)))
            return
        for f in part.faults:
            self.faults.add(f"  packet {f.packet}: pc {f.pc}: {f.kind}: {f.detail}")
        for s in part.skipped:
            self.skipped.add(f"  packet {s.packet}: {s.reason}")
        if self.trace:
            # a message usually ends in its own newline (as trace_pipe shows it)
            for t in part.trace:
                self.traces.add(f"trace: packet {t.packet}: "
                                f"{t.text.decode('utf-8', 'replace').removesuffix(chr(10))}")

    def verdict_counts(self) -> dict[str, int]:
        """As RunResult.verdict_counts."""
        if not self.xdp:
            return {"accepted": self.accepted, "rejected": self.packets - self.accepted}
        return dict(self.counts)

    def write_summary(self, out, *, maps: Optional[dict] = None, engine: str) -> None:
        """The summary `bpfkit run --ebpf` prints; maps: RunResult.dump_maps() to list."""
        out.write(f"packets: {self.packets}\n")
        for name, n in self.verdict_counts().items():
            out.write(f"{name}: {n}\n")
        out.write(f"faults: {self.faults.count}\n")
        self._lines(self.faults, out)
        out.write(f"skipped: {self.skipped.count}\n")
        self._lines(self.skipped, out)
        self._lines(self.traces, out)
        if maps is not None:
            for name, entries in maps.items():
                out.write(f"map {name}: {len(entries)} entries\n")
                for d in entries:
                    v = d["value"] if isinstance(d["value"], str) else " ".join(d["value"])
                    out.write(f"  key {d['key']} value {v}\n")
        out.write(f"engine: {engine}\n")

    @staticmethod
    def _lines(spool: _Spool, out) -> None:
        if spool.count:
            spool.copy_to(out)
            out.write("\n")

    def write_json(self, out, *, maps: Optional[dict] = None, problems=(),
                   engine: str, handed: Optional[dict] = None) -> None:
        """RunResult.to_json(dump_maps=maps is not None) as print_json prints it (one
        line); maps: RunResult.dump_maps()."""
        if not self.json:
            raise ValueError("RunReport(json=False) keeps no per-packet values")
        out.write(f'{{"packets":{self.packets},'
                  f'"type":{_dumps(PROG_TYPE_NAMES[self.program.prog_type])},"retval":[')
        self._numbers(self._retval, out)
        if self.xdp:
            out.write('],"verdict":[')
            sep = ""
            for a in self._retval.chunks():
                vals, inv = np.unique(a, return_inverse=True)
                names = np.array([_dumps(verdict_name(int(v))) for v in vals.tolist()],
                                 dtype=object)
                out.write(sep + ",".join(names[inv.reshape(-1)].tolist()))
                sep = ","
        out.write(f'],"counts":{_dumps(self.verdict_counts())},"insns":[')
        self._numbers(self._insns, out)
        for key, spool in (("faults", self.faults), ("skipped", self.skipped),
                           ("trace", self.traces)):
            out.write(f'],"{key}":[')
            spool.copy_to(out)
        out.write("]")
        if self.redirects.count:
            out.write(',"redirect":[')
            self.redirects.copy_to(out)
            out.write("]")
        if maps is not None:
            out.write(f',"maps":{_dumps(maps)}')
        out.write(f',"warnings":{_dumps([str(p) for p in problems])},'
                  f'"engine":{_dumps(engine)},'
                  f'"handed_to_interp":{_dumps(dict(handed or {}))}}}\n')

    @staticmethod
    def _numbers(spool: _ArraySpool, out) -> None:
        sep = ""
        for a in spool.chunks():
            out.write(sep + ",".join(map(str, a.tolist())))
            sep = ","

    def close(self) -> None:
        for s in (self.faults, self.skipped, self.traces, self.redirects, self._retval,
                  self._insns):
            if s is not None:
                s.close()

    def __enter__(self) -> "RunReport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OutputCapture:
    """`-w`: the output packets of a streamed run as a classic pcap file, identical to
    write_capture(path, RunResult.output).  write(part, header) after each batch with
    the run's output_header() at that point; finish(header) with the final one."""

    def __init__(self, path: str, *, source=None):
        if _same_file(source, path):
            # the input is memory-mapped: truncating it under the reader would kill the
            # process (SIGBUS), as in bpfkit filter
            raise UsageError(f"the output {path} is the input capture; write elsewhere")
        self.path = path
        self._dest: Optional[BinaryIO] = None       # copy the temporary file here at the end
        self._tmp: Optional[str] = None
        target = path
        if path == "-" or _special(path):
            fd, self._tmp = tempfile.mkstemp(prefix="bpfkit-", suffix=".pcap")
            os.close(fd)
            target = self._tmp
            if path == "-":
                self._dest = sys.stdout.buffer
        self._target = target
        self._existed = target != path or os.path.lexists(path)
        self._w: Optional[CaptureWriter] = None
        self._header: Optional[tuple[int, int, bool]] = None
        self._nanos = False
        self._ts: Optional[_ArraySpool] = None      # µs records so far: ts_ns, caplen
        self._cap: Optional[_ArraySpool] = None
        self._us_records = 0                        # records written in µs that must
        self._fix_us = 0                            # become ns (the first _fix_us ones)

    def write(self, part: BatchResult, header: tuple[int, int, bool]) -> None:
        out: PacketBatch = part.output
        linktype, snaplen, nanos = header
        if self._w is None:
            self._open(header)
        if nanos and not self._nanos:
            # from here on the file is in ns: the records written so far get their ns
            # time stamps back at the end (finish)
            self._fix_us = self._us_records
            self._nanos = self._w.nanos = True
        if out.linktype != self._w.linktype:
            out = dataclasses.replace(out, linktype=self._w.linktype)   # header fixed later
        self._w.write(out)
        if not self._nanos:
            self._ts.add(out.ts_ns)
            self._cap.add(out.caplen)
            self._us_records += len(out)

    def _open(self, header: tuple[int, int, bool]) -> None:
        linktype, snaplen, nanos = header
        self._header = header
        self._nanos = nanos
        self._w = CaptureWriter(self._target, linktype=linktype, snaplen=snaplen,
                                nanos=nanos)
        if not nanos:
            self._ts = _ArraySpool(np.int64)
            self._cap = _ArraySpool(np.uint32)

    def finish(self, header: tuple[int, int, bool]) -> None:
        if self._w is None:
            self._open(header)
        self._w.close()
        linktype, snaplen, nanos = header
        if nanos != self._nanos:
            raise CaptureError("the output's time stamp precision changed back",
                               path=self.path)  # cannot happen: precision only goes up
        if header != self._header or self._fix_us:
            self._fix(header)
        if self._tmp is not None:
            self._copy_out()
        self.close()

    def _fix(self, header: tuple[int, int, bool]) -> None:
        linktype, snaplen, nanos = header
        try:
            with open(self._target, "r+b") as f:
                f.write(pcapfile.file_header(linktype, snaplen, nanos))
            if self._fix_us:
                self._fix_time_stamps()
        except OSError as e:
            raise write_error(e.errno, self.path) from None

    def _fix_time_stamps(self) -> None:
        """Rewrite the fraction field of the first _fix_us records in ns."""
        mm = np.memmap(self._target, np.uint8, "r+")
        try:
            pos, left = pcapfile.FILE_HEADER_LEN, self._fix_us
            # the two spools hold the same number of items: their chunks line up
            for ts, cap in zip(self._ts.chunks(), self._cap.chunks()):
                if left <= 0:
                    break
                ts, cap = ts[:left], cap[:left].astype(np.int64)
                left -= len(ts)
                ends = np.cumsum(cap + 16)
                starts = pos + np.concatenate(([0], ends[:-1]))
                pos += int(ends[-1])
                frac = (ts - np.floor_divide(ts, 1_000_000_000) * 1_000_000_000).astype("<u4")
                fb = frac.view(np.uint8).reshape(-1, 4)
                for k in range(4):
                    mm[starts + 4 + k] = fb[:, k]
            mm.flush()
        finally:
            del mm

    def _copy_out(self) -> None:
        try:
            with open(self._tmp, "rb") as src:
                if self._dest is not None:
                    self._dest.flush()
                    shutil.copyfileobj(src, self._dest, 1 << 20)
                    self._dest.flush()
                else:
                    with open(self.path, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as e:
            raise write_error(e.errno, self.path) from None

    def abort(self) -> None:
        """The run failed: close, and remove the output file if this made it (a file
        that was there before the run is left as the run left it)."""
        try:
            self.close()
        except CaptureError:
            pass
        if not self._existed:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        for s in (self._ts, self._cap):
            if s is not None:
                s.close()
        self._ts = self._cap = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def __enter__(self) -> "OutputCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _same_file(capture, output) -> bool:
    if not isinstance(capture, (str, os.PathLike)) or capture == "-" or output == "-":
        return False
    try:
        return os.path.samefile(capture, output)
    except OSError:
        return False            # one of them does not exist (yet)


def _special(path: str) -> bool:
    """An existing path that is not a regular file (a FIFO, /dev/stdout ...): written
    through a temporary file, as it cannot be sought in."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
