"""Options shared by several commands' parsers. argparse only; no library imports."""

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
