"""The ``mbert-retrieval`` command line: argparse only, one module per command group (``app`` assembles
them and is the entry point; ``options`` holds the options several commands share)."""

from mbert_retrieval.cli.app import main

__all__ = ["main"]
