"""The paper report (``mbert-retrieval report``).

The paper report reads one or more
results folders and puts our numbers beside the ModernBERT paper's (``reference.py``), with
bootstrap intervals over queries and paired tests between runs (``stats.py``); ``write_report``
writes ``report.md``, ``report.json`` and ``report.png`` (``plots.py``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.core.errors import ConfigError, DataError, MbertRetrievalError
from mbert_retrieval.core.io import check_folder_target, write_json, write_text
from mbert_retrieval.report.reference import DEFAULT_PAPER_NAMES, SUMMARY_DATASETS, PaperNumbers

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# The paper report: our results next to the ModernBERT paper's, with confidence over queries.

PAPER_METRIC = "nDCG@10"
PAPER_SOURCE = "ModernBERT paper, arXiv 2412.13663 (Table 1 and the per-dataset BEIR tables), nDCG@10 x100"
REPORT_FILES = ("report.md", "report.json", "report.png")


@dataclass
class ResultsFolder:
    """One ``results.json`` folder (an ``eval`` output) and what the report needs from it."""

    path: Path
    label: str
    results: dict[str, Any]
    suite: Any = None  # SuiteSpec when the suite file is found

    @property
    def engine(self) -> str:
        return str(self.results.get("engine", "ours"))

    @property
    def kind(self) -> str | None:
        return (self.results.get("encoder") or {}).get("kind")


def load_results_folder(path: str | Path, label: str | None = None) -> ResultsFolder:
    """Read ``path/results.json`` (or a ``results.json`` path); the suite is looked up by name for paper names."""
    path = Path(path)
    folder = path.parent if path.name == "results.json" else path
    file = folder / "results.json"
    if not file.is_file():
        raise DataError(file, "no results.json here; give folders written by `mbert-retrieval eval`")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(file, f"malformed JSON ({e.msg})", line=e.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise DataError(file, "not a results file of this tool (no 'metrics' mapping)")
    suite = None
    if data.get("suite"):
        from mbert_retrieval.catalog import load_suite

        try:
            suite = load_suite(str(data["suite"]))
        except MbertRetrievalError:
            log.info("%s: suite %r not found; paper names come from the dataset keys", file, data["suite"])
    return ResultsFolder(path=folder, label=label or folder.name, results=data, suite=suite)


def _spec(folder: ResultsFolder, key: str) -> Any:
    if folder.suite is None:
        return None
    name = key.split(".", 1)[0]
    return next((d for d in folder.suite.datasets if d.name == name), None)


def _is_default_split(folder: ResultsFolder, key: str) -> bool:
    """``scifact`` is on the suite's split (the paper's); ``scifact.train`` is not."""
    spec = _spec(folder, key)
    if spec is not None:
        return key == spec.name
    return "." not in key


def paper_name(folder: ResultsFolder, key: str) -> str | None:
    spec = _spec(folder, key)
    if spec is not None and spec.paper_name:
        return str(spec.paper_name)
    return DEFAULT_PAPER_NAMES.get(key)


def _parts_from_files(folder: ResultsFolder, key: str, metric: str) -> dict[str | None, dict[str, float]] | None:
    record = folder.results.get("datasets", {}).get(key, {})
    subs = list(record.get("subsets") or {})
    files = {s: folder.path / "per_query" / key / f"{s}.json" for s in subs} if subs else {None: None}
    if not subs:
        given = record.get("per_query")
        files = {None: folder.path / given if isinstance(given, str) else folder.path / "per_query" / f"{key}.json"}
    parts: dict[str | None, dict[str, float]] = {}
    for sub, file in files.items():
        if file is None or not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(file, f"malformed JSON ({e.msg})", line=e.lineno) from None
        if not isinstance(data, dict) or not isinstance(data.get(metric), dict):
            return None
        parts[sub] = {str(q): float(v) for q, v in data[metric].items()}
    return parts


def _parts_from_runs(
    folder: ResultsFolder, key: str, metric: str, data_dir: Path
) -> dict[str | None, dict[str, float]] | None:
    from mbert_retrieval.data.beir import load_qrels
    from mbert_retrieval.results.metrics import evaluate
    from mbert_retrieval.results.runs import read_run

    record = folder.results.get("datasets", {}).get(key, {})
    spec = _spec(folder, key)
    split = record.get("split") or (spec.split if spec is not None else None)
    base = data_dir / (spec.folder_name if spec is not None else key.split(".", 1)[0])
    subs = list(record.get("subsets") or {}) or [None]
    parts: dict[str | None, dict[str, float]] = {}
    for sub in subs:
        run_file = folder.path / "runs" / (f"{key}/{sub}.trec" if sub else f"{key}.trec")
        qrels_file = (base / sub if sub else base) / "qrels" / f"{split}.tsv"
        if split is None or not run_file.is_file() or not qrels_file.is_file():
            return None
        ev = evaluate(load_qrels(qrels_file), read_run(run_file), [metric])
        parts[sub] = ev.per_query[metric]
    return parts


def per_query_parts(
    folder: ResultsFolder, key: str, metric: str, data_dir: Path | None = None
) -> tuple[dict[str | None, dict[str, float]] | None, str]:
    """Per-query values of ``metric`` for one dataset (one dict per subset) and where they came from:
    ``per_query`` files written by eval, else recomputed from ``runs/`` and the qrels under ``data_dir``."""
    parts = _parts_from_files(folder, key, metric)
    if parts is not None:
        source = "per_query files"
    elif data_dir is not None:
        parts = _parts_from_runs(folder, key, metric, data_dir)
        source = "recomputed from runs/ + qrels"
        if parts is None:
            return None, "none (no per_query file; run file or qrels not found under --data-dir)"
    else:
        return None, "none (no per_query file; pass --data-dir to recompute from runs/ + qrels)"
    reported = folder.results["metrics"].get(key, {}).get(metric)
    if reported is not None and parts:
        from mbert_retrieval.results.stats import weighted_mean

        mean = weighted_mean([np.fromiter(p.values(), dtype=np.float64) for p in parts.values()])
        if abs(mean - float(reported)) > 1e-4:  # MTEB rounds its means to 5 decimals
            return None, f"none (per-query mean {mean:.5f} does not reproduce the reported {float(reported):.5f})"
    return parts, source


def _aligned(
    a: dict[str | None, dict[str, float]], b: dict[str | None, dict[str, float]]
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    if set(a) != set(b):
        return None
    xs, ys = [], []
    for sub in sorted(a, key=str):
        common = sorted(set(a[sub]) & set(b[sub]))
        if not common:
            return None
        xs.append(np.array([a[sub][q] for q in common]))
        ys.append(np.array([b[sub][q] for q in common]))
    return xs, ys


def _display_name(folders: list[ResultsFolder], key: str) -> str:
    for f in folders:
        spec = _spec(f, key)
        if spec is not None and spec.paper_name and key == spec.name:
            return str(spec.paper_name)
    return key


def _dataset_keys(folders: list[ResultsFolder], paper: PaperNumbers) -> list[str]:
    """Every dataset key of the runs: the paper's BEIR datasets first, in its order, then the others as found."""
    keys: list[str] = []
    for f in folders:
        keys += [k for k in f.results["metrics"] if k not in keys]
    return [k for k in paper.beir if k in keys] + [k for k in keys if k not in paper.beir]


def _paper_value(folders: list[ResultsFolder], paper: PaperNumbers, key: str, mldr_row: str) -> float | None:
    """The paper's number for ``key`` (None off the suite's split, or where the paper has none)."""
    f = next(f for f in folders if key in f.results["metrics"])
    if not _is_default_split(f, key):
        return None
    if key in paper.beir:
        return paper.beir[key]
    name = paper_name(f, key)
    row = mldr_row if name == "MLDR" else SUMMARY_DATASETS.get(name or "")
    return paper.table1.get(row) if row else None


def _run_entry(
    folder: ResultsFolder,
    key: str,
    ref: float | None,
    *,
    metric: str,
    data_path: Path | None,
    resamples: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str | None, dict[str, float]] | None]:
    """One run's cell for ``key`` (value x100, bootstrap interval, difference to the paper) and its per-query values."""
    from mbert_retrieval.results.stats import bootstrap_ci

    value = folder.results["metrics"].get(key, {}).get(metric)
    entry: dict[str, Any] = {"value": None if value is None else 100 * float(value), "ci": None, "delta": None}
    parts, source = (None, "not run") if value is None else per_query_parts(folder, key, metric, data_path)
    if parts:
        ci = bootstrap_ci(
            [np.fromiter(p.values(), dtype=np.float64) for p in parts.values()], resamples=resamples, seed=seed
        )
        entry["ci"] = {"low": 100 * ci.low, "high": 100 * ci.high, "n_queries": ci.n}
    entry["ci_source"] = source
    if value is not None and ref is not None:
        entry["delta"] = entry["value"] - ref
    return entry, parts


def _paired_tests(
    parts_per_run: list[dict[str | None, dict[str, float]] | None], *, test_resamples: int, seed: int
) -> list[dict[str, Any]]:
    """Paired tests of every run against the first, over the queries both have."""
    from mbert_retrieval.results.stats import paired_test

    paired = []
    for j in range(1, len(parts_per_run)):
        a, b = parts_per_run[0], parts_per_run[j]
        aligned = _aligned(a, b) if a and b else None
        if aligned is None:
            continue
        t = paired_test(aligned[0], aligned[1], resamples=test_resamples, seed=seed)
        paired.append(
            {
                "run": j,
                "against": 0,
                "diff": 100 * t.mean_diff,
                "diff_low": 100 * t.diff_ci.low,
                "diff_high": 100 * t.diff_ci.high,
                "p_value": t.p_value,
                "n_queries": t.n,
            }
        )
    return paired


def _drop_paper_numbers(datasets: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    """The paper reports nDCG@10 only: no paper column (nor differences to it) for another metric."""
    for d in datasets:
        d["paper"] = None
        for r in d["runs"]:
            r["delta"] = None
    for row in summary:
        row["paper"] = None
        row.pop("paper_mean_of_15", None)
        for r in row["runs"]:
            r["delta"] = None
            if "paper_same_datasets" in r:
                r["paper_same_datasets"] = None


def build_report(
    folders: list[ResultsFolder],
    paper: PaperNumbers,
    *,
    metric: str = "nDCG@10",
    data_dir: str | Path | None = None,
    resamples: int = 1000,
    seed: int = 0,
    test_resamples: int = 10_000,
    mldr: str = "ood",
) -> dict[str, Any]:
    """Per dataset: the paper's number, ours (x100) with a bootstrap 95% interval and the difference;
    paired tests of every run against the first; and the Table 1 style summary. JSON-able."""
    if not folders:
        raise ConfigError("give at least one results folder")
    data_path = Path(data_dir) if data_dir else None
    mldr_row = "MLDR (ID)" if mldr == "id" else "MLDR (OOD)"
    datasets = []
    for key in _dataset_keys(folders, paper):
        ref = _paper_value(folders, paper, key, mldr_row)
        cells = [
            _run_entry(f, key, ref, metric=metric, data_path=data_path, resamples=resamples, seed=seed) for f in folders
        ]
        paired = _paired_tests([parts for _, parts in cells], test_resamples=test_resamples, seed=seed)
        runs = [entry for entry, _ in cells]
        datasets.append({"key": key, "name": _display_name(folders, key), "paper": ref, "runs": runs, "paired": paired})

    summary = _summary(folders, paper, datasets, metric, mldr_row)
    if metric != PAPER_METRIC:
        _drop_paper_numbers(datasets, summary)
    return {
        "metric": metric,
        "scale": "x100",
        "paper": {
            "model": paper.model,
            "size": paper.size,
            "setting": paper.setting,
            "label": paper.label,
            "source": PAPER_SOURCE,
        },
        "runs": [
            {
                "label": f.label,
                "path": str(f.path),
                "model": f.results.get("model"),
                "engine": f.engine,
                "suite": f.results.get("suite"),
                "kind": f.kind,
            }
            for f in folders
        ],
        "datasets": datasets,
        "summary": summary,
        "confidence": {
            "interval": f"percentile bootstrap over queries (within each subset), {resamples} resamples, seed {seed}",
            "paired_test": "two-sided paired randomization (sign-flip) test against the first run, "
            f"{test_resamples} resamples, seed {seed}; difference interval: paired bootstrap",
        },
    }


def _summary(
    folders: list[ResultsFolder], paper: PaperNumbers, datasets: list[dict[str, Any]], metric: str, mldr_row: str
) -> list[dict[str, Any]]:
    """Table 1 rows: BEIR (mean over the BEIR datasets each run has, marked n/15), MLDR, CodeSearchNet, StackQA."""
    by_key = {d["key"]: d for d in datasets}
    n_beir = len(paper.beir)
    rows = []
    beir_runs = []
    for j, _ in enumerate(folders):
        present = [k for k in paper.beir if k in by_key and by_key[k]["runs"][j]["value"] is not None]
        if not present:
            beir_runs.append({"value": None, "n": 0, "datasets": [], "paper_same_datasets": None, "delta": None})
            continue
        ours = math.fsum(by_key[k]["runs"][j]["value"] for k in present) / len(present)
        ref = paper.beir_mean if len(present) == n_beir else math.fsum(paper.beir[k] for k in present) / len(present)
        beir_runs.append(
            {"value": ours, "n": len(present), "datasets": present, "paper_same_datasets": ref, "delta": ours - ref}
        )
    rows.append(
        {
            "row": "BEIR",
            "paper": paper.table1["BEIR"],
            "paper_mean_of_15": paper.beir_mean,
            "n_total": n_beir,
            "runs": beir_runs,
        }
    )
    for row in (mldr_row, "CodeSearchNet", "StackQA"):
        wanted = "MLDR" if row.startswith("MLDR") else row
        runs = []
        for j, f in enumerate(folders):
            key = next(
                (
                    k
                    for k in f.results["metrics"]
                    if paper_name(f, k) == wanted and _is_default_split(f, k) and metric in f.results["metrics"][k]
                ),
                None,
            )
            value = by_key[key]["runs"][j]["value"] if key else None
            ref = paper.table1.get(row)
            runs.append(
                {
                    "value": value,
                    "dataset": key,
                    "delta": None if value is None or ref is None else value - ref,
                }
            )
        rows.append({"row": row, "paper": paper.table1.get(row), "runs": runs})
    return rows


def _num(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _paper_num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"  # the paper prints one decimal


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: per-dataset table, Table 1 summary, and how confidence was computed."""
    runs = report["runs"]
    letters = [chr(ord("A") + i) if i < 26 else f"R{i}" for i in range(len(runs))]
    metric = report["metric"]
    p = report["paper"]
    lines = [f"# {metric} x100: ours vs {p['label']} in the ModernBERT paper", ""]
    if metric != PAPER_METRIC:
        lines += [f"The paper reports {PAPER_METRIC} only: no paper numbers for {metric}.", ""]
    for letter, r in zip(letters, runs, strict=True):
        lines.append(
            f"- **{letter}** = `{r['label']}`: model `{r['model']}`, engine {r['engine']}, suite {r['suite']}"
            + (f", {r['kind']}" if r.get("kind") else "")
        )
    lines += ["", "## Per dataset", ""]
    header = ["dataset", "paper"]
    for i, letter in enumerate(letters):
        header += [letter, f"{letter} 95% CI", f"Δ {letter}"]
        if i:
            header += [f"{letter}−A (95% CI), p"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "|".join(["---:"] * (len(header) - 1)) + "|")
    for d in report["datasets"]:
        cells = [d["name"], _paper_num(d["paper"])]
        paired = {t["run"]: t for t in d["paired"]}
        for i, r in enumerate(d["runs"]):
            ci = r["ci"]
            ci_cell = f"[{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "-"
            cells += [_num(r["value"]), ci_cell, _num(r["delta"], sign=True)]
            if i:
                t = paired.get(i)
                cells.append(
                    f"{t['diff']:+.2f} [{t['diff_low']:+.2f}, {t['diff_high']:+.2f}], p={t['p_value']:.3g}"
                    if t
                    else "-"
                )
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Table 1 summary", ""]
    header = ["", "paper"] + [h for letter in letters for h in (letter, f"Δ {letter}")]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "|".join(["---:"] * (len(header) - 1)) + "|")
    notes = []
    for row in report["summary"]:
        if row["row"] == "BEIR":
            counts = {r["n"] for r in row["runs"] if r["n"]}
            n = max(counts) if counts else 0
            label = "BEIR" if n == row["n_total"] and len(counts) == 1 else f"BEIR ({n}/{row['n_total']})"
            first = row["runs"][0]
            if first["n"] and first["n"] < row["n_total"] and first["paper_same_datasets"] is not None:
                paper_cell = f"{first['paper_same_datasets']:.2f}"
                notes.append(
                    f"BEIR is incomplete: the mean is over the {first['n']} BEIR datasets run "
                    f"({', '.join(first['datasets'])}); the paper column there is the paper's mean over the same "
                    f"datasets; its mean over all {row['n_total']} is {row['paper_mean_of_15']:.1f}."
                )
            else:
                paper_cell = _paper_num(row["paper"])
            cells = [label, paper_cell]
            for r in row["runs"]:
                value = "-" if r["value"] is None else f"{r['value']:.2f} ({r['n']}/{row['n_total']})"
                cells += [value, _num(r["delta"], sign=True)]
        else:
            cells = [row["row"], _paper_num(row["paper"])]
            for r in row["runs"]:
                cells += [_num(r["value"]), _num(r["delta"], sign=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    sources = sorted(
        {
            f"{x}: {r['ci_source']}"
            for d in report["datasets"]
            for x, r in zip(letters, d["runs"], strict=True)
            if r["value"] is not None
        }
    )
    lines += [
        f"- Paper numbers: {p['source']}; `-` where the paper has none (ColBERT: no code or StackQA; "
        "MLDR (ID) is the model fine-tuned on MLDR train).",
        f"- 95% CI: {report['confidence']['interval']}. Per-query values: {'; '.join(sources)}.",
        f"- Paired test: {report['confidence']['paired_test']}. Δ = ours − paper.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``report.json`` and ``report.png`` (bars: paper and each run per dataset) in ``out_dir``."""
    from mbert_retrieval.report.plots import BarSeries, grouped_bar_chart

    out = check_folder_target(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REPORT_FILES}
    write_text(paths["report.md"], report_markdown(report))
    write_json(paths["report.json"], report)
    names = [d["name"] for d in report["datasets"]]
    series = [BarSeries(f"paper: {report['paper']['label']}", [d["paper"] for d in report["datasets"]])]
    for i, run in enumerate(report["runs"]):
        rows = [d["runs"][i] for d in report["datasets"]]
        series.append(
            BarSeries(
                f"{run['label']} ({run['engine']})",
                [r["value"] for r in rows],
                low=[r["ci"]["low"] if r["ci"] else None for r in rows],
                high=[r["ci"]["high"] if r["ci"] else None for r in rows],
            )
        )
    grouped_bar_chart(
        paths["report.png"],
        names,
        series,
        title=f"{report['metric']} x100 per dataset: ours vs {report['paper']['label']} (bars: 95% bootstrap CI)",
        ylabel=f"{report['metric']} x100",
    )
    return paths
