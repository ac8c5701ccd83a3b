"""The vectorized batch engine: eBPF programs over whole captures at numpy speed, with
the reference interpreter's results bit for bit (engine.py, cfg.py, alu.py, memory.py,
mapwave.py)."""
from .engine import VECTOR_HELPERS, LaneOutcome, VectorProgram, batch_input

__all__ = ["VectorProgram", "LaneOutcome", "VECTOR_HELPERS", "batch_input"]
