"""``mbert-retrieval ls`` and ``validate``: what can be named instead of a path, and checking YAML files."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from mbert_retrieval.core.errors import MbertRetrievalError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``ls`` and ``validate``."""
    p = sub.add_parser(
        "ls",
        help="list the shipped suites (with their datasets), recipes and index specs",
        description="List what can be named instead of a path: the shipped suites (`eval --suite`) with their "
        "datasets, the recipes (`train`) and the index specs (`--spec`, `--index`).",
    )
    p.set_defaults(func=cmd_ls)
    v = sub.add_parser(
        "validate",
        help="validate recipe, suite or index spec YAML files",
        description="Check each file (all of them, also after a bad one): an `ok` line per good file, an "
        "`error:` line per bad one; exit 1 if any is bad.",
    )
    v.add_argument("files", nargs="+", help="YAML files (their folder or content says what they are)")
    v.set_defaults(func=cmd_validate)


def _columns(rows: list[list[str]]) -> list[str]:
    """``rows`` (of equal length) as lines of left-aligned columns, each as wide as its longest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def cmd_ls(args: argparse.Namespace) -> int:
    from mbert_retrieval.catalog import (
        list_index_specs,
        list_recipes,
        list_suites,
        load_index_spec,
        load_recipe_by_name,
        load_suite,
    )
    from mbert_retrieval.core.types import plural

    suites = [(name, path, load_suite(path)) for name, path in list_suites().items()]
    width = max((len(d.name) for *_, suite in suites for d in suite.datasets), default=0)
    for name, path, suite in suites:  # dataset names padded alike in every suite
        print(f"suite {name}  ({path})")
        print(textwrap.indent(textwrap.fill(suite.description, 96), "  "))
        for d in suite.datasets:
            flags = [f"split={d.split}"]
            if d.subsets:
                flags.append(plural(len(d.subsets), "subset"))
            if d.ignore_identical_ids:
                flags.append("ignore_identical_ids")
            print(f"    {d.name:<{width}}  {' '.join(flags)}")
    print()
    recipes = [(name, load_recipe_by_name(str(path))) for name, path in list_recipes().items()]
    rows = [[f"recipe {n}", f"kind={r.kind}", f"loss={r.loss.name}", r.description] for n, r in recipes]
    print("\n".join(_columns(rows)))
    print()
    specs = [(name, load_index_spec(path)) for name, path in list_index_specs().items()]
    print("\n".join(_columns([[f"index {n}", f"kind={s.index.kind}", s.description] for n, s in specs])))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mbert_retrieval.catalog import validate_file

    failed = 0
    for f in args.files:  # every file is checked: one `ok` or `error:` line each
        try:
            what = validate_file(f)
        except MbertRetrievalError as e:
            failed += 1
            message = str(e)  # names the file already (as given, or as a Path writes it)
            named = message.startswith((f, os.path.normpath(f)))
            print(f"error: {message if named else f'{f}: {message}'}", file=sys.stderr)
            continue
        print(f"ok  {f}  ({what})")
    return 1 if failed else 0
