"""cBPF -> eBPF translation.

socket mode (bpfkit.translate.socket): the Linux kernel's bpf_convert_filter, made
loadable as a BPF_PROG_TYPE_SOCKET_FILTER program; run it on the eBPF interpreter
with bpfkit.translate.skbrun.run_translation.

xdp mode (bpfkit.translate.xdp): a verifier-clean XDP program making the classic
filter's match decision (libpcap semantics) with explicit bounds guards (widened in
the manner of cbpfc, or one per load); bpfkit.translate.xdpobj writes it as an ELF
object with BTF that libbpf loaders and bpfkit.ebpf.elf accept.

bpfkit.translate.compare: both translations against the classic interpreters over a
batch of packets (the API behind `bpfkit compare`).
"""
from .skbrun import interpreter_for, run_translation, skb_context_values  # noqa: F401
from .socket import SocketTranslation, translate_socket  # noqa: F401
from .xdp import XdpTranslation, translate_xdp  # noqa: F401

__all__ = ["SocketTranslation", "translate_socket", "run_translation", "interpreter_for",
           "skb_context_values", "XdpTranslation", "translate_xdp"]
