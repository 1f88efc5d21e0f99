"""``mbert-retrieval`` command line: the entry point. Assembles the command groups' parsers (one module
each in ``cli/``), sets up logging and signals, calls the handler, and turns user errors into one
``error:`` line (exit 1; Ctrl-C and SIGTERM exit 130). Parses arguments and calls the library; nothing else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from mbert_retrieval import __version__
from mbert_retrieval.cli import catalog, doctor, export, index, quickstart, report, train
from mbert_retrieval.cli import eval as eval_command
from mbert_retrieval.core.checkpoint import ALLOW_PICKLE_ENV
from mbert_retrieval.core.errors import MbertRetrievalError
from mbert_retrieval.core.io import WRITE_ERRNOS

log = logging.getLogger("mbert_retrieval")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every parser's formatter (``build_parser`` sets it): the description filled to the terminal (at
    most 100 columns), its paragraphs kept; the epilog (examples, command lines) printed verbatim."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_sections = False

    def start_section(self, heading: str | None) -> None:
        self._in_sections = True  # the description is added before the option sections, the epilog after them
        super().start_section(heading)

    def add_text(self, text: str | None) -> None:
        if self._in_sections or text is None or text is argparse.SUPPRESS:
            super().add_text(text)
        else:
            self._add_item(self._format_description, [text])

    def _format_description(self, text: str) -> str:
        if "%(prog)" in text:
            text = text % {"prog": self._prog}
        width = max(min(self._width, 100) - self._current_indent, 11)
        indent = " " * self._current_indent
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        return (
            "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs)
            + "\n\n"
        )


# one module per command group, each with add_parsers(sub); their commands are listed in this order
COMMAND_GROUPS = (eval_command, train, index, report, doctor, quickstart, export, catalog)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbert-retrieval",
        description="ModernBERT retrieval toolkit: train, index and evaluate single-vector and ColBERT retrievers.",
        epilog="Run `mbert-retrieval COMMAND --help` for a command's options and examples.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_log_options(parser, default=False)
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let checkpoints whose weights are only pickle files (pytorch_model.bin, *.pt) load, with torch's "
        "weights_only reader; only for files you trust (the same as MBERT_RETRIEVAL_ALLOW_PICKLE=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command_group in COMMAND_GROUPS:
        command_group.add_parsers(sub)
    for command in _subcommands(parser):
        _add_log_options(command, default=argparse.SUPPRESS)  # `eval ... -q` as well as `-q eval ...`
        command.formatter_class = HelpFormatter
    return parser


def _add_log_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """-v / -q. On subcommands their default is SUPPRESS, so an unset flag there leaves the top-level one."""
    group = parser.add_argument_group("logging")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (commands, and actions such as ``index build``), each once."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [child, *_subcommands(child)]
    return found


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose else "%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if not verbose:
        # Third-party chatter (load reports, tokenizer hints) stays quiet unless asked for.
        from mbert_retrieval.encoders.backend import set_quiet

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        set_quiet(True)
        for name in ("sentence_transformers", "faiss"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _sigterm_as_interrupt() -> None:
    """SIGTERM (``kill``, a scheduler's time limit) takes the Ctrl-C path: clean-up handlers run,
    locks are released, temporary copies removed. Only in the main thread (signal's rule)."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train RECIPE --dry-run key=value`: argparse fills the overrides positional once, before the option;
    # key=value words after an option are overrides too. Anything else stays an error, as parse_args says.
    if (
        extra
        and getattr(args, "overrides", None) is not None
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    for note in getattr(args, "deprecations", None) or []:
        log.warning("note: %s", note)
    _sigterm_as_interrupt()
    previous = os.environ.get(ALLOW_PICKLE_ENV)
    if args.allow_pickle:  # read by checkpoint.check_checkpoint wherever a model is loaded
        os.environ[ALLOW_PICKLE_ENV] = "1"
    try:
        return int(args.func(args) or 0)
    except MbertRetrievalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, quota, permissions where no atomic writer caught it (trainer saves)
        if e.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {e.filename or ''}: cannot write: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished datasets and embedding shards are kept, run again to resume", file=sys.stderr)
        return 130
    finally:
        if args.allow_pickle:
            if previous is None:
                os.environ.pop(ALLOW_PICKLE_ENV, None)
            else:
                os.environ[ALLOW_PICKLE_ENV] = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
