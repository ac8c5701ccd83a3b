"""The one exception hierarchy of bpfkit.

Every error a user can provoke with bad input is a BpfError (or a subclass) whose
message says *where* (line:col of source text, instruction index and its disassembly,
byte offset in a file) and *what* was expected versus found.  No IndexError,
struct.error or KeyError escapes the public API.
"""
from __future__ import annotations


class BpfError(Exception):
    """Base class for every error bpfkit raises on purpose."""


class UsageError(BpfError):
    """Bad options or arguments (CLI exit status 2)."""


class UnsupportedError(BpfError):
    """A feature bpfkit recognises but does not implement; names the feature."""

    def __init__(self, feature: str, detail: str = ""):
        self.feature = feature
        super().__init__(f"unsupported: {feature}" + (f" ({detail})" if detail else ""))


class CaptureError(BpfError):
    """A capture file could not be read or written.

    ``offset`` is the byte offset in the file where the problem was found and
    ``records`` the number of complete records read before it.
    """

    def __init__(self, message: str, *, path: str | None = None,
                 offset: int | None = None, records: int | None = None):
        self.path = path
        self.offset = offset
        self.records = records
        where = []
        if path is not None:
            where.append(str(path))
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = (", ".join(where) + ": ") if where else ""
        suffix = f" ({records} complete records read)" if records is not None else ""
        super().__init__(prefix + message + suffix)


class CaptureWarning(UserWarning):
    """Non-strict reading hit bad data; the records before it were kept."""


class EncodingError(BpfError):
    """A binary or numeric program encoding (raw bytes, -dd, -ddd, comma form) is malformed."""


class AsmError(BpfError):
    """Assembly source text is malformed; says line:col and what was expected."""

    def __init__(self, message: str, *, line: int | None = None, col: int | None = None,
                 text: str | None = None):
        self.line = line
        self.col = col
        self.text = text
        loc = ""
        if line is not None:
            loc = f"{line}:{col}: " if col is not None else f"{line}: "
        full = loc + message
        if text is not None:
            full += f"\n    {text}"
            if col is not None and col >= 1:
                full += "\n    " + " " * (col - 1) + "^"
        super().__init__(full)


class ValidationError(BpfError):
    """A program breaks a rule of a validator (kernel bpf_check_classic or libpcap bpf_validate)."""

    def __init__(self, message: str, *, index: int | None = None, insn_text: str | None = None,
                 rule: str | None = None, errno: int | None = None):
        self.index = index
        self.insn_text = insn_text
        self.rule = rule
        self.errno = errno
        loc = ""
        if index is not None:
            loc = f"{index}: " + (f"({insn_text}) " if insn_text else "")
        tag = f" [{rule}]" if rule else ""
        super().__init__(f"{loc}{message}{tag}")


class CompileError(BpfError):
    """A filter expression could not be compiled; says the position in the expression."""

    def __init__(self, message: str, *, position: int | None = None, expr: str | None = None):
        self.position = position
        self.expr = expr
        super().__init__(message if position is None else f"{message} (at column {position + 1})")


class ExecutionError(BpfError):
    """A program could not be run (not a per-packet fault, which is data, not an exception)."""
