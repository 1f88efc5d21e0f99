"""Published numbers: the ModernBERT paper's tables and MTEB's, read from ``eval/reference/*.csv``.

The paper's numbers are NDCG@10 x100 (arXiv 2412.13663, Table 1 and the per-dataset BEIR tables);
``mteb_reference.csv`` is on a 0-1 scale. Values are returned exactly as written in the files.
BEIR columns are our dataset names (``eval/beir.yaml``): ``msmarco`` is the dev split and
``cqadupstack`` the mean of its 12 forums, as in the paper.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from mbert_retrieval.core.errors import ConfigError, DataError

_PACKAGE = Path(__file__).resolve().parents[1]  # mbert_retrieval/
TABLE1_FILE = "modernbert_table1.csv"
BEIR_FILE = "modernbert_beir_per_dataset.csv"
MTEB_FILE = "mteb_reference.csv"
SETTINGS = ("dpr", "colbert")
SIZES = ("base", "large")

# Table 1 columns per setting; None where the paper has no number for that setting.
_TABLE1_COLUMNS: dict[str, dict[str, str | None]] = {
    "dpr": {
        "BEIR": "beir_dpr",
        "MLDR (OOD)": "mldr_ood_dpr",
        "MLDR (ID)": "mldr_id_dpr",
        "CodeSearchNet": "codesearchnet",
        "StackQA": "stackqa",
    },
    "colbert": {
        "BEIR": "beir_colbert",
        "MLDR (OOD)": "mldr_ood_colbert",
        "MLDR (ID)": None,
        "CodeSearchNet": None,
        "StackQA": None,
    },
}
# The paper name of one of our datasets -> its Table 1 row (MLDR: out-of-domain unless asked).
SUMMARY_DATASETS = {"MLDR": "MLDR (OOD)", "CodeSearchNet": "CodeSearchNet", "StackQA": "StackQA"}
# Our dataset keys whose paper name a suite may not state (fallback when the suite file is not found).
DEFAULT_PAPER_NAMES = {"mldr": "MLDR", "codesearchnet": "CodeSearchNet", "stackoverflow-qa": "StackQA"}


def reference_dir() -> Path:
    """``eval/reference`` of the checkout, or the copy a wheel carries."""
    for d in (_PACKAGE.parent / "eval" / "reference", _PACKAGE / "_resources" / "eval" / "reference"):
        if (d / TABLE1_FILE).is_file():
            return d
    raise DataError(_PACKAGE.parent / "eval" / "reference", "reference tables not found (eval/reference/*.csv)")


def read_csv(name: str, folder: Path | None = None) -> list[dict[str, str]]:
    """Rows of one reference CSV, as strings."""
    path = (folder or reference_dir()) / name
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(path, "reference table not found") from None
    if not rows:
        raise DataError(path, "reference table is empty")
    return rows


def _number(path: str, row: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"not a number: {text!r}", line=row + 2, field=column) from None


@dataclass(frozen=True)
class PaperNumbers:
    """One model of the paper in one setting: per-dataset BEIR and the Table 1 row (x100)."""

    setting: str
    size: str
    model: str
    beir: dict[str, float]  # our BEIR dataset name -> nDCG@10 x100 (15 datasets)
    beir_mean: float  # the per-dataset table's mean column (= Table 1 BEIR)
    table1: dict[str, float | None] = field(default_factory=dict)  # "BEIR", "MLDR (OOD)", ... -> value or None

    @property
    def label(self) -> str:
        return f"{self.model}-{self.size} ({'ColBERT' if self.setting == 'colbert' else 'DPR'})"


def beir_datasets(folder: Path | None = None) -> list[str]:
    """The 15 BEIR datasets of the paper, in the tables' order."""
    header = list(read_csv(BEIR_FILE, folder)[0])
    return [c for c in header if c not in ("setting", "size", "model", "mean")]


def paper_models(size: str = "base", folder: Path | None = None) -> list[str]:
    """Models with a row in Table 1 for ``size``."""
    return [r["model"] for r in read_csv(TABLE1_FILE, folder) if r["size"] == size]


def paper_numbers(
    size: str = "base", model: str = "ModernBERT", setting: str = "dpr", folder: Path | None = None
) -> PaperNumbers:
    """The paper's numbers for one (size, model, setting), exactly as in the reference files."""
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}; choose from {', '.join(SETTINGS)}")
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose from {', '.join(SIZES)}")
    table1 = read_csv(TABLE1_FILE, folder)
    row1 = next((r for r in table1 if r["size"] == size and r["model"] == model), None)
    if row1 is None:
        raise ConfigError(f"the paper has no {size} {model!r}; it has: {', '.join(paper_models(size, folder))}")
    beir_rows = read_csv(BEIR_FILE, folder)
    index, row = next(
        ((i, r) for i, r in enumerate(beir_rows) if (r["setting"], r["size"], r["model"]) == (setting, size, model)),
        (None, None),
    )
    if row is None or index is None:
        raise ConfigError(f"the paper has no per-dataset BEIR table for {size} {model!r} ({setting})")
    names = beir_datasets(folder)
    beir = {name: _number(BEIR_FILE, index, name, row[name]) for name in names}
    t1_index = table1.index(row1)
    summary = {
        label: None if column is None else _number(TABLE1_FILE, t1_index, column, row1[column])
        for label, column in _TABLE1_COLUMNS[setting].items()
    }
    return PaperNumbers(
        setting=setting,
        size=size,
        model=model,
        beir=beir,
        beir_mean=_number(BEIR_FILE, index, "mean", row["mean"]),
        table1=summary,
    )


@dataclass(frozen=True)
class MtebReference:
    """A published MTEB (or Pyserini) number, 0-1 scale."""

    dataset: str
    split: str
    model: str
    ndcg_at_10: float
    settings: str
    source: str


def mteb_reference(folder: Path | None = None) -> list[MtebReference]:
    """All rows of ``mteb_reference.csv``."""
    rows = read_csv(MTEB_FILE, folder)
    return [
        MtebReference(
            dataset=r["dataset"],
            split=r["split"],
            model=r["model"],
            ndcg_at_10=_number(MTEB_FILE, i, "ndcg_at_10", r["ndcg_at_10"]),
            settings=r["settings"],
            source=r["source"],
        )
        for i, r in enumerate(rows)
    ]


def find_mteb_reference(dataset: str, model: str, split: str = "test", folder: Path | None = None) -> MtebReference:
    """The published number of ``model`` (exact name, or a unique substring) on ``dataset``/``split``."""
    rows = [r for r in mteb_reference(folder) if r.dataset == dataset and r.split == split]
    exact = [r for r in rows if r.model == model]
    hits = exact or [r for r in rows if model.lower() in r.model.lower()]
    if len(hits) != 1:
        known = "; ".join(r.model for r in rows) or "none"
        what = "no" if not hits else f"{len(hits)}"
        raise ConfigError(f"{what} published numbers match {model!r} on {dataset} ({split}); known: {known}")
    return hits[0]


__all__ = [
    "DEFAULT_PAPER_NAMES",
    "SETTINGS",
    "SIZES",
    "SUMMARY_DATASETS",
    "MtebReference",
    "PaperNumbers",
    "beir_datasets",
    "find_mteb_reference",
    "mteb_reference",
    "paper_models",
    "paper_numbers",
    "reference_dir",
]
