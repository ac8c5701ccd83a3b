"""Classic BPF: isa (the instruction facts), program (Insn, Program), encodings (raw,
-dd, -ddd, comma; read_program), asm / disasm (tcpdump -d listing and bpf_asm syntax),
validate (kernel and libpcap rule sets), interp (scalar reference: libpcap filter mode and
Linux socket mode), vinterp (vectorised filter mode over a PacketBatch), compiler
(pcap-filter expressions).  Import the submodule you need; nothing is loaded here."""
