"""Capture files: PacketBatch, pcap and pcapng read/write, link types."""
from . import linktypes  # noqa: F401
from .batch import PacketBatch  # noqa: F401
from .reader import CaptureReader, open_capture, read_capture  # noqa: F401
from .writer import CaptureWriter, write_capture  # noqa: F401
