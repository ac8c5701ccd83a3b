"""Capture files: PacketBatch, pcap and pcapng readers and writers, link types."""
from .batch import PacketBatch  # noqa: F401
