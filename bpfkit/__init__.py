"""bpfkit: Berkeley Packet Filter programs over packet captures, with the answers of
the Linux kernel and libpcap.  This module only re-exports the public API."""
__version__ = "0.1.0"

from .errors import (AsmError, BpfError, CaptureError, CaptureWarning, CompileError,  # noqa: F401
                     EncodingError, ExecutionError, UnsupportedError, UsageError,
                     ValidationError)
