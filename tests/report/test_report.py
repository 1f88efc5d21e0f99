"""``mbert-retrieval report``: paper numbers exactly as published, intervals, paired tests, PNG."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, write_beir

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.report.reference import (
    beir_datasets,
    find_mteb_reference,
    mteb_reference,
    paper_models,
    paper_numbers,
    reference_dir,
)

REFERENCE = REPO / "eval" / "reference"


def _csv(name: str) -> list[dict[str, str]]:
    with open(REFERENCE / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _paper_beir(setting: str = "dpr", size: str = "base", model: str = "ModernBERT") -> dict[str, str]:
    return next(
        r
        for r in _csv("modernbert_beir_per_dataset.csv")
        if (r["setting"], r["size"], r["model"]) == (setting, size, model)
    )


def _table1(size: str = "base", model: str = "ModernBERT") -> dict[str, str]:
    return next(r for r in _csv("modernbert_table1.csv") if (r["size"], r["model"]) == (size, model))


def _is_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200


def _small_corpus() -> tuple[list[dict], list[dict], dict]:
    corpus = [
        {"_id": f"d{i}", "title": f"doc {i}", "text": f"text about topic {i % 5} and item {i}"} for i in range(30)
    ]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 5} item {i}"} for i in range(12)]
    qrels = {"test": [(f"q{i}", f"d{i}", 1) for i in range(12)] + [(f"q{i}", f"d{i + 5}", 2) for i in range(12)]}
    return corpus, queries, qrels


@pytest.fixture
def beir_run(tmp_path: Path, tiny_modernbert: str) -> Path:
    """A results folder written by the real eval CLI: a tiny ModernBERT on small scifact/nfcorpus folders."""
    corpus, queries, qrels = _small_corpus()
    for name in ("scifact", "nfcorpus"):
        write_beir(tmp_path / "data" / name, corpus, queries, qrels)
    out = tmp_path / "run"
    args = ["-q", "eval", "--suite", "beir", "--datasets", "scifact,nfcorpus", "--data-dir", str(tmp_path / "data")]
    assert main([*args, "--model", tiny_modernbert, "--out", str(out), "--no-progress", "--top-k", "100"]) == 0
    return out


def test_reference_files_are_the_published_tables_unchanged() -> None:
    shared = REPO.parent / "shared" / "reference"
    if not shared.is_dir():
        pytest.skip("shared/reference not beside the repository")
    for name in ("modernbert_table1.csv", "modernbert_beir_per_dataset.csv", "mteb_reference.csv"):
        assert (REFERENCE / name).read_bytes() == (shared / name).read_bytes(), name
    assert reference_dir() == REFERENCE


def test_paper_numbers_equal_the_csv_for_every_model() -> None:
    names = beir_datasets()
    assert len(names) == 15 and names[:4] == ["nfcorpus", "scifact", "trec-covid", "fiqa"]
    for row in _csv("modernbert_beir_per_dataset.csv"):
        p = paper_numbers(row["size"], row["model"], row["setting"])
        assert p.beir == {n: float(row[n]) for n in names}
        assert p.beir_mean == float(row["mean"])
        # the paper's mean column is the mean of its 15 (unrounded) columns, all printed with one decimal
        assert abs(sum(p.beir.values()) / 15 - p.beir_mean) <= 0.1
        t1 = _table1(row["size"], row["model"])
        assert p.table1["BEIR"] == float(t1[f"beir_{row['setting']}"]) == p.beir_mean
        assert p.table1["MLDR (OOD)"] == float(t1[f"mldr_ood_{row['setting']}"])
        if row["setting"] == "dpr":
            assert p.table1["CodeSearchNet"] == float(t1["codesearchnet"])
            assert p.table1["StackQA"] == float(t1["stackqa"])
            assert p.table1["MLDR (ID)"] == float(t1["mldr_id_dpr"])
        else:
            assert p.table1["StackQA"] is None and p.table1["CodeSearchNet"] is None
    assert "NomicBERT" in paper_models("base") and "NomicBERT" not in paper_models("large")
    with pytest.raises(ConfigError, match="no large 'NomicBERT'"):
        paper_numbers("large", "NomicBERT")
    with pytest.raises(ConfigError, match="unknown setting"):
        paper_numbers("base", "ModernBERT", "sparse")


def test_mteb_reference() -> None:
    rows = mteb_reference()
    assert len(rows) == len(_csv("mteb_reference.csv"))
    assert find_mteb_reference("scifact", "sentence-transformers/all-MiniLM-L6-v2").ndcg_at_10 == 0.64508
    assert find_mteb_reference("qmsum-longembed", "bm25s").ndcg_at_10 == 0.83231
    with pytest.raises(ConfigError, match="3 published numbers match 'BM25'"):
        find_mteb_reference("scifact", "BM25")


def test_report_on_an_eval_folder(beir_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(beir_run)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((beir_run / "report.json").read_text(encoding="utf-8"))
    results = json.loads((beir_run / "results.json").read_text(encoding="utf-8"))
    paper = _paper_beir()
    assert report["paper"]["setting"] == "dpr" and report["paper"]["model"] == "ModernBERT"
    rows = {d["key"]: d for d in report["datasets"]}
    assert list(rows) == ["nfcorpus", "scifact"]  # the paper's order
    for key in rows:
        assert rows[key]["paper"] == float(paper[key])  # exactly the published number
        run = rows[key]["runs"][0]
        assert run["value"] == pytest.approx(100 * results["metrics"][key]["nDCG@10"])
        assert run["delta"] == pytest.approx(run["value"] - float(paper[key]))
        assert run["ci_source"] == "per_query files"
        assert run["ci"]["low"] <= run["value"] <= run["ci"]["high"] and run["ci"]["n_queries"] == 12
    summary = {r["row"]: r for r in report["summary"]}
    beir = summary["BEIR"]
    assert beir["paper"] == float(_table1()["beir_dpr"]) and beir["runs"][0]["n"] == 2
    assert beir["runs"][0]["paper_same_datasets"] == pytest.approx(
        (float(paper["scifact"]) + float(paper["nfcorpus"])) / 2
    )
    assert summary["MLDR (OOD)"]["paper"] == float(_table1()["mldr_ood_dpr"])
    assert summary["CodeSearchNet"]["paper"] == float(_table1()["codesearchnet"])
    assert summary["StackQA"]["paper"] == float(_table1()["stackqa"])
    assert summary["StackQA"]["runs"][0]["value"] is None
    md = (beir_run / "report.md").read_text(encoding="utf-8")
    assert md == printed.rstrip("\n") + "\n" or md.rstrip() == printed.rstrip()
    assert f"| SciFact | {paper['scifact']} |" in md and f"| NFCorpus | {paper['nfcorpus']} |" in md
    assert "BEIR (2/15)" in md and "its mean over all 15 is 41.6" in md
    _is_png(beir_run / "report.png")


def test_report_png_title_fits_the_figure(beir_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's long title is wrapped to lie inside the figure (it was cut at both edges), checked on
    the figure `report` saves, with the renderer's extents, before it is saved."""
    from matplotlib.figure import Figure

    saved: list[tuple[str, bool]] = []
    original = Figure.savefig

    def checked_savefig(fig: Figure, *args, **kwargs) -> None:
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        box = ax.title.get_window_extent(renderer)
        inside = box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y0 >= 0 and box.y1 <= fig.bbox.height
        saved.append((ax.title.get_text(), inside))
        original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked_savefig)
    assert main(["-q", "report", str(beir_run)]) == 0
    ((title, inside),) = saved
    assert inside, title
    assert (
        title.replace("\n", " ") == "nDCG@10 x100 per dataset: ours vs ModernBERT-base (DPR) (bars: 95% bootstrap CI)"
    )
    assert "\n" in title  # too long for one line of this 6-inch figure
    _is_png(beir_run / "report.png")


def test_markdown_table_says_the_values_are_x100(beir_run: Path) -> None:
    from mbert_retrieval.results.tables import markdown_table

    results = json.loads((beir_run / "results.json").read_text(encoding="utf-8"))
    table = (beir_run / "results.md").read_text(encoding="utf-8")
    assert table == markdown_table(results) + "\n"
    *_, blank, note = table.splitlines()
    value = results["metrics"]["scifact"]["nDCG@10"]
    assert f"| scifact | test | 12 | 30 | {100 * value:.2f} |" in table
    assert blank == "" and note == "nDCG@10, R@100, RR@10, MAP@100 x100 (0.6451 is shown as 64.51)."
    assert markdown_table(results, scale=1).splitlines()[-1].startswith("| **mean (2)**")  # unscaled: no note


def test_intervals_recomputed_from_runs_and_qrels(beir_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(beir_run), "--out", str(tmp_path / "r1")]) == 0
    first = json.loads((tmp_path / "r1" / "report.json").read_text(encoding="utf-8"))
    shutil.rmtree(beir_run / "per_query")
    assert main(["report", str(beir_run), "--out", str(tmp_path / "r2")]) == 0
    without = json.loads((tmp_path / "r2" / "report.json").read_text(encoding="utf-8"))
    assert without["datasets"][0]["runs"][0]["ci"] is None
    assert "pass --data-dir" in without["datasets"][0]["runs"][0]["ci_source"]
    data = beir_run.parent / "data"
    assert main(["report", str(beir_run), "--data-dir", str(data), "--out", str(tmp_path / "r3")]) == 0
    again = json.loads((tmp_path / "r3" / "report.json").read_text(encoding="utf-8"))
    for a, b in zip(first["datasets"], again["datasets"], strict=True):
        assert b["runs"][0]["ci_source"] == "recomputed from runs/ + qrels"
        assert b["runs"][0]["ci"] == pytest.approx(a["runs"][0]["ci"])


def test_another_metric_has_no_paper_column(beir_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(beir_run), "--metric", "R@100", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    results = json.loads((beir_run / "results.json").read_text(encoding="utf-8"))
    for d in report["datasets"]:
        assert d["paper"] is None and d["runs"][0]["delta"] is None
        assert d["runs"][0]["value"] == pytest.approx(100 * results["metrics"][d["key"]]["R@100"])
        assert d["runs"][0]["ci"] is not None
    assert all(row["paper"] is None for row in report["summary"])
    assert "reports nDCG@10 only" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_two_runs_side_by_side_with_a_paired_test(beir_run: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(beir_run, twin)
    assert main(["report", str(beir_run), str(twin)]) == 1  # several folders: --out is required
    out = tmp_path / "both"
    assert main(["report", str(beir_run), str(twin), "--labels", "first,second", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["label"] for r in report["runs"]] == ["first", "second"]
    for d in report["datasets"]:
        (test,) = d["paired"]
        assert test["p_value"] == 1.0 and test["diff"] == 0.0 and test["n_queries"] == 12
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "B−A (95% CI), p" in md and "p=1" in md
    _is_png(out / "report.png")


def _results(keys: dict[str, float], suite: str, kind: str = "dense") -> dict:
    """results.json in the schema eval writes (no per_query files: no intervals)."""
    return {
        "suite": suite,
        "model": "some/model",
        "encoder": {"kind": kind, "name": "some/model", "fingerprint": "x"},
        "main_metric": "nDCG@10",
        "metric_names": ["nDCG@10"],
        "metrics": {k: {"nDCG@10": v} for k, v in keys.items()},
        "datasets": {k: {"split": "dev" if k == "msmarco" else "test", "n_queries": 10, "n_docs": 100} for k in keys},
    }


def test_complete_beir_and_table1_rows_colbert(tmp_path: Path) -> None:
    beir = {k: 0.5 for k in beir_datasets()}
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "results.json").write_text(json.dumps(_results(beir, "beir", "colbert")), encoding="utf-8")
    (tmp_path / "mldr").mkdir()
    (tmp_path / "mldr" / "results.json").write_text(
        json.dumps(_results({"mldr": 0.7}, "mldr", "colbert")), encoding="utf-8"
    )
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "beir"), str(tmp_path / "mldr"), "--paper", "large", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["paper"]["setting"] == "colbert"  # told from the first run's encoder kind
    paper = _paper_beir("colbert", "large")
    assert {d["key"]: d["paper"] for d in report["datasets"]} == {
        **{k: float(paper[k]) for k in beir},
        "mldr": float(_table1("large")["mldr_ood_colbert"]),
    }
    summary = {r["row"]: r for r in report["summary"]}
    assert summary["BEIR"]["runs"][0]["n"] == 15
    assert summary["BEIR"]["runs"][0]["paper_same_datasets"] == float(_table1("large")["beir_colbert"])
    assert summary["BEIR"]["runs"][0]["delta"] == pytest.approx(50.0 - 52.4)
    assert summary["MLDR (OOD)"]["runs"][1]["value"] == pytest.approx(70.0)
    assert summary["CodeSearchNet"]["paper"] is None
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| BEIR | 52.4 | 50.00 (15/15) | -2.40 |" in md
    assert "none (no per_query file; pass --data-dir" in md
    _is_png(out / "report.png")


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no results.json here" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 1
    assert "malformed JSON" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps(_results({"scifact": 0.5}, "beir")), encoding="utf-8")
    assert main(["report", str(tmp_path), "--model", "ELECTRA"]) == 1
    assert "the paper has no base 'ELECTRA'" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--metric", "NDCG10"]) == 1
    assert "unknown measure" in capsys.readouterr().err
