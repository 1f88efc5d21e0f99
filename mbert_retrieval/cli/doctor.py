"""``mbert-retrieval doctor``: argparse and the handler; the report itself is ``flows.doctor``."""

from __future__ import annotations

import argparse
import json

DOCTOR_EXAMPLES = """\
examples:
  mbert-retrieval doctor                          # libraries, devices, encoder paths, pitfalls
  mbert-retrieval doctor --model ./my-modernbert  # the path this checkpoint's encoders will take
  mbert-retrieval doctor --device cuda --json     # as JSON, planned for a GPU
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``doctor``."""
    d = sub.add_parser(
        "doctor",
        help="check libraries, devices and the encoding paths on this machine",
        description="Print library versions and availability (torch, CUDA, flash-attn, FAISS, fast-plaid, MTEB, "
        "bm25s), the attention / unpadding path and dtype each model kind will use, and known pitfalls.",
        epilog=DOCTOR_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--model", help="a checkpoint (local folder or hub id) to plan for")
    d.add_argument("--device", help="plan for this device (default: a GPU when one is visible)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from mbert_retrieval.flows.doctor import format_report, report

    r = report(args.model, args.device)
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0
