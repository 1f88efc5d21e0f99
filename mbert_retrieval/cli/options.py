"""Options shared by several commands' parsers, written once: the encoder options, `--spec` and
`--index-dir` (with their deprecated `--index` spellings), positive integers. argparse only; the library
is imported lazily, when a parsed option is turned into a config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class DeprecatedAlias(argparse.Action):
    """An old option name kept working (hidden from ``--help``): stores into the new option's ``dest``
    and records a note, which ``cli.main`` prints once logging is set up."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        setattr(namespace, self.dest, values)
        notes = list(getattr(namespace, "deprecations", None) or [])
        notes.append(f"{option_string} is now {self.new} (the old name still works, for now)")
        namespace.deprecations = notes


def add_spec_option(parser: argparse.ArgumentParser | Any, help: str, default: str | None = None) -> None:
    """``--spec NAME|YAML``: an index spec (what kind of index to build), as in ``index build``; the
    old ``--index`` spelling of eval, mine and sweep is kept as a deprecated alias."""
    parser.add_argument("--spec", default=default, help=help)
    parser.add_argument("--index", dest="spec", action=DeprecatedAlias, new="--spec")


def add_index_dir_option(parser: argparse.ArgumentParser | Any, help: str) -> None:
    """``--index-dir DIR``: a built index folder; ``search``'s old ``--index`` is a deprecated alias."""
    parser.add_argument("--index-dir", metavar="DIR", help=help)
    parser.add_argument("--index", dest="index_dir", action=DeprecatedAlias, new="--index-dir")


def positive_int(value: str) -> int:
    """argparse ``type=`` for counts and sizes: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


# The encoder options, written once: name -> (flag, argparse keywords). Commands pick the ones they take
# (``add_encoder_options``) and may reword a help text or change a default for their context.
ENCODER_OPTIONS: dict[str, dict[str, Any]] = {
    "batch-size": {"type": positive_int, "default": 32, "help": "texts per forward pass (default 32)"},
    "max-seq-length": {"type": positive_int, "help": "tokens per text (default: the model's own)"},
    "kind": {
        "choices": ["dense", "colbert"],
        "help": "single-vector or multi-vector model (default: told from the checkpoint)",
    },
    "query-prompt": {"help": "text prepended to every query (default: the model's 'query' prompt)"},
    "document-prompt": {"help": "text prepended to every document (default: the model's own)"},
    "no-normalize": {"action": "store_true", "help": "keep raw vectors (dot product instead of cosine)"},
    "query-length": {"type": positive_int, "help": "colbert: query tokens (default 32, padded with [MASK])"},
    "document-length": {"type": positive_int, "help": "colbert: document tokens (default: the checkpoint's, 180)"},
    "no-query-expansion": {"action": "store_true", "help": "colbert: do not pad queries with [MASK]"},
    "embedding-size": {"type": positive_int, "help": "colbert: projection size for a plain encoder (default 128)"},
    "device": {"help": "cpu, cuda, cuda:1 (default: a GPU when one is visible)"},
    "trust-remote-code": {"action": "store_true", "help": "let the checkpoint run its own code"},
    "no-unpad": {"action": "store_true", "help": "ModernBERT: padded HF forward (docs/encoding.md)"},
    "no-progress": {"action": "store_true", "help": "no progress bars"},
}


def add_encoder_options(
    parser: argparse.ArgumentParser | Any, names: Sequence[str], **changes: str | dict[str, Any]
) -> None:
    """Add the encoder options ``names`` (keys of ``ENCODER_OPTIONS``) to ``parser``, in that order.

    ``changes`` rewords an option for this command, keyed by its name with ``_`` for ``-``: a string is
    a new help text, a dict replaces keywords (``batch_size={"default": None, "help": ...}``)."""
    for name in names:
        keywords = dict(ENCODER_OPTIONS[name])
        change = changes.pop(name.replace("-", "_"), None)
        if isinstance(change, str):
            keywords["help"] = change
        elif change:
            keywords.update(change)
        parser.add_argument(f"--{name}", **keywords)
    if changes:
        raise TypeError(f"not among the options added: {sorted(changes)}")


def apply_unpad_option(args: argparse.Namespace) -> None:
    """``--no-unpad``: encoders built from here on use transformers' padded forward."""
    if getattr(args, "no_unpad", False):
        from mbert_retrieval.encoders.backend import set_unpad_default

        set_unpad_default(False)


def encoder_config(args: argparse.Namespace, model: str | None = None) -> Any:
    """The ``EncoderConfig`` the encoder options in ``args`` describe (options a command lacks stay unset)."""
    from mbert_retrieval.config import EncoderConfig

    def get(name: str) -> Any:
        return getattr(args, name, None)

    return EncoderConfig(
        model=model if model is not None else args.model,
        batch_size=32 if get("batch_size") is None else args.batch_size,
        max_seq_length=get("max_seq_length"),
        query_prompt=get("query_prompt"),
        document_prompt=get("document_prompt"),
        normalize=False if get("no_normalize") else None,
        device=get("device"),
        trust_remote_code=bool(get("trust_remote_code")),
        unpad=False if get("no_unpad") else None,
        kind=get("kind"),
        query_length=get("query_length"),
        document_length=get("document_length"),
        query_expansion=False if get("no_query_expansion") else None,
        embedding_size=get("embedding_size"),
    )
