"""Filter expressions on the command line: words joined with spaces (as tcpdump's
copy_argv does), or read from a file with -F (as tcpdump's read_infile does)."""
from __future__ import annotations

from ..errors import CompileError, UsageError


def add_expression_options(p) -> None:
    p.add_argument("expression", nargs="*", metavar="EXPR",
                   help="pcap-filter(7) expression; several words are joined with spaces")
    p.add_argument("-F", dest="expr_file", metavar="FILE",
                   help="read the expression from FILE ('#' starts a comment to the end of "
                        "the line, as in tcpdump)")
    p.add_argument("-O", dest="no_optimize", action="store_true",
                   help="do not run the optimizer (as tcpdump -O)")


def expression_text(args) -> str | None:
    """The expression the user gave, or None when there is none."""
    words = list(args.expression or [])
    if args.expr_file is not None:
        if words:
            raise UsageError(f"both -F {args.expr_file} and an expression on the command "
                             f"line ({' '.join(words)!r}); give one")
        try:
            with open(args.expr_file, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise UsageError(f"{args.expr_file}: cannot read expression: {e.strerror}") \
                from None
        # tcpdump's read_infile blanks '#' comments up to the end of the line
        return "\n".join(line.split("#", 1)[0] for line in text.split("\n"))
    return " ".join(words) if words else None


def describe(e: CompileError, expr: str) -> str:
    """One line: libpcap's message, the column, and the expression with the spot marked."""
    msg = str(e)
    pos = getattr(e, "position", None)
    flat = " ".join(expr.split("\n"))
    if pos is None or not 0 <= pos <= len(flat):
        return f"{msg}: {flat!r}"
    return f"{msg}: {flat[:pos]}>>>{flat[pos:]}"
