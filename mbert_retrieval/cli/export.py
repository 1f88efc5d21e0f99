"""``mbert-retrieval export``: a ColBERT model written in another library's layout (PyLate 1.6)."""

from __future__ import annotations

import argparse

EXPORT_EXAMPLES = """\
examples:
  # a ColBERT trained here (a sentence-transformers 6 save) for PyLate 1.6 users
  mbert-retrieval export out/scifact-colbert/model --format pylate --out out/scifact-colbert-pylate
  # then, in an environment with pylate==1.6.0:
  python -c "from pylate import models; models.ColBERT('out/scifact-colbert-pylate')"
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``export``."""
    from mbert_retrieval.encoders.export import EXPORT_HELP

    p = sub.add_parser(
        "export",
        help="write a ColBERT model in another library's layout (PyLate 1.6)",
        description=EXPORT_HELP.replace("\n", " "),
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a multi-vector model folder or hub id (sentence-transformers 6, PyLate, Stanford)")
    p.add_argument("--format", choices=["pylate"], default="pylate", help="the layout to write (default pylate)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at DIR")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from mbert_retrieval.encoders.export import export_pylate

    out = export_pylate(args.model, args.out, overwrite=args.overwrite)
    print(f"PyLate model: {out}")
    return 0
