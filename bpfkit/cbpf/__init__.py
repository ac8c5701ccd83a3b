"""Classic BPF: isa, program, encodings, asm, disasm, validate, interp."""
