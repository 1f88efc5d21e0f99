"""PLAID (fast-plaid) and Voyager on seeded random token vectors, against exact MaxSim."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.config import PlaidSpec, VoyagerSpec
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.indexes import check_compatible, make_index
from mbert_retrieval.indexes import plaid as plaid_module
from mbert_retrieval.indexes.manifest import check_encoder, read_manifest
from mbert_retrieval.indexes.maxsim import ExactMaxSimIndex
from mbert_retrieval.indexes.plaid import PlaidIndex, full_scores_for
from mbert_retrieval.indexes.voyager import VoyagerIndex

DIM = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """300 documents of 8-40 tokens; 20 queries that are noisy samples of documents 0..19's tokens."""
    rng = np.random.default_rng(0)
    docs = [_unit(rng.standard_normal((int(rng.integers(8, 40)), DIM))) for _ in range(300)]
    queries = []
    for i in range(20):
        picks = docs[i][rng.integers(0, len(docs[i]), 16)]
        queries.append(_unit(picks + 0.1 * rng.standard_normal(picks.shape)))
    return [f"d{i}" for i in range(300)], docs, queries


def _overlap(a: dict, b: dict, k: int) -> float:
    return len(set(list(a)[:k]) & set(list(b)[:k])) / k


def test_plaid_agrees_with_exact_and_reopens(tmp_path: Path, corpus) -> None:
    ids, docs, queries = corpus
    qids = [f"q{i}" for i in range(len(queries))]
    exact = ExactMaxSimIndex(DIM)
    exact.add(ids, docs)
    truth = exact.search(qids, queries, 10)

    plaid = make_index(PlaidSpec(nbits=4, n_full_scores=512), DIM, folder=tmp_path / "plaid")
    assert isinstance(plaid, PlaidIndex)
    plaid.add(ids[:150], docs[:150])  # chunked, as the pipeline streams shards
    plaid.add(ids[150:], docs[150:])
    got = plaid.search(qids, queries, 10)
    for i, q in enumerate(qids):
        assert next(iter(got[q])) == f"d{i}"  # the source document comes first, as in exact search
    assert np.mean([_overlap(truth[q], got[q], 10) for q in qids]) >= 0.8
    plaid.save(meta={"encoder": {"name": "random", "fingerprint": "abc", "dim": DIM}})
    reopened = PlaidIndex.load(tmp_path / "plaid")
    assert reopened.search(qids, queries, 10) == got
    manifest = read_manifest(tmp_path / "plaid", kind="plaid")
    assert (manifest["n_docs"], manifest["dim"], manifest["backend"]) == (300, DIM, "fast-plaid")
    check_encoder(manifest, {"name": "random", "fingerprint": "abc", "dim": DIM}, tmp_path)
    with pytest.raises(ConfigError, match="index was built with encoder random"):
        check_encoder(manifest, {"name": "other", "fingerprint": "xyz", "dim": DIM}, tmp_path)
    with pytest.raises(ConfigError, match="index holds 32-dim vectors"):
        check_encoder(manifest, {"name": "other", "fingerprint": "abc", "dim": 64}, tmp_path)


def test_plaid_build_depends_only_on_its_inputs(tmp_path: Path, corpus) -> None:
    """Builds from different global random states give byte-identical files, and leave those states alone
    (fast-plaid's k-means seeds torch's and numpy's global generators)."""
    import torch

    ids, docs, queries = corpus
    qids = [f"q{i}" for i in range(len(queries))]
    runs, files = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        np.random.seed(seed)  # the legacy global generator
        before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
        plaid = make_index(PlaidSpec(nbits=4, n_full_scores=512), DIM, folder=tmp_path / f"p{seed}")
        plaid.add(ids[:150], docs[:150])
        plaid.add(ids[150:], docs[150:])
        assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is left alone
        assert np.array_equal(np.random.get_state()[1], np_before)
        runs.append(plaid.search(qids, queries, 10))
        plaid.save(meta={"encoder": {"name": "random", "fingerprint": "abc", "dim": DIM}})
        backend = tmp_path / f"p{seed}" / "fast_plaid_index"
        files.append({p.name: p.read_bytes() for p in backend.iterdir() if p.is_file() and p.name != "plaid.lock"})
    assert {"centroids.npy", "metadata.json", "merged_codes.npy", "merged_residuals.npy"} <= set(files[0])
    assert files[0] == files[1]
    assert runs[0] == runs[1]


def test_plaid_ids_follow_add_order_and_skip_identical(tmp_path: Path, corpus) -> None:
    """fast-plaid numbers documents in add order, across chunks; ``doc_ids.txt`` maps them back."""
    ids, docs, _ = corpus
    order = list(range(299, -1, -1))  # ids not in sorted order, to catch any positional mix-up
    plaid = PlaidIndex(DIM, PlaidSpec(nbits=4, n_full_scores=512), tmp_path / "p")
    for start in (0, 100, 200):
        chunk = order[start : start + 100]
        plaid.add([ids[i] for i in chunk], [docs[i] for i in chunk])
    probes = [5, 150, 297]
    run = plaid.search([f"q{i}" for i in probes], [docs[i] for i in probes], 3)
    assert [next(iter(run[f"q{i}"])) for i in probes] == [ids[i] for i in probes]
    skipped = plaid.search([ids[5]], [docs[5]], 3, ignore_identical_ids=True)[ids[5]]
    assert ids[5] not in skipped and len(skipped) == 3
    everything = plaid.search(["q"], [docs[0]], 1000)["q"]
    assert len(everything) <= 300 and next(iter(everything)) == ids[0]
    plaid.save()
    assert not list((tmp_path / "p").rglob("*.pkl"))  # no pickled id mappings any more
    assert (tmp_path / "p" / "doc_ids.txt").read_text().splitlines() == [ids[i] for i in order]


def test_plaid_too_few_token_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tiny = [_unit(rng.standard_normal((3, DIM))) for _ in range(3)]  # 9 token vectors
    plaid = PlaidIndex(DIM, PlaidSpec(), tmp_path / "p")
    plaid.add(["a", "b", "c"], tiny)
    with pytest.raises(ConfigError, match=r"PLAID needs at least 10 token vectors .* the corpus has 9"):
        plaid.search(["q"], [tiny[0]], 2)
    fallback = PlaidIndex(DIM, PlaidSpec(fallback="exact"), tmp_path / "f")
    fallback.add(["a", "b", "c"], tiny)
    assert next(iter(fallback.search(["q"], [tiny[1]], 2)["q"])) == "b"
    fallback.save()
    assert next(iter(PlaidIndex.load(tmp_path / "f").search(["q"], [tiny[2]], 2)["q"])) == "c"


def test_voyager_reranks_exactly(tmp_path: Path, corpus) -> None:
    ids, docs, queries = corpus
    qids = [f"q{i}" for i in range(len(queries))]
    exact = ExactMaxSimIndex(DIM)
    exact.add(ids, docs)
    voyager = make_index(
        VoyagerSpec(M=16, ef_construction=100, ef_search=100, candidates=50), DIM, folder=tmp_path / "v"
    )
    assert isinstance(voyager, VoyagerIndex)
    voyager.add(ids, docs)
    got = voyager.search(qids, queries, 10)
    all_scores = exact.score_all(queries)
    for i, q in enumerate(qids):
        assert next(iter(got[q])) == f"d{i}"
        for doc, score in got[q].items():  # scores are exact MaxSim (fp16 storage)
            assert score == pytest.approx(float(all_scores[i, ids.index(doc)]), abs=1e-4)
    voyager.save()
    assert (tmp_path / "v" / "voyager" / "index.voyager").is_file()
    assert not list((tmp_path / "v").rglob("*.pkl"))
    reopened = VoyagerIndex.load(tmp_path / "v")
    assert reopened.search(qids, queries, 10) == got
    skipped = reopened.search([ids[3]], [docs[3]], 5, ignore_identical_ids=True)[ids[3]]
    assert ids[3] not in skipped and len(skipped) == 5


def test_voyager_more_candidates_than_token_vectors(tmp_path: Path, corpus) -> None:
    """``candidates`` (and ``k``) beyond the token vectors held: every document is found, in chunks."""
    ids, docs, queries = corpus
    voyager = VoyagerIndex(DIM, VoyagerSpec(M=8, ef_construction=50, ef_search=10, candidates=1000), tmp_path / "v")
    voyager.add(ids[:3], docs[:3])
    voyager.add(ids[3:6], docs[3:6])
    assert voyager.n_tokens == sum(len(d) for d in docs[:6]) < 1000
    exact = ExactMaxSimIndex(DIM)
    exact.add(ids[:6], docs[:6])
    got = voyager.search(["a", "b"], queries[:2], 50)
    truth = exact.search(["a", "b"], queries[:2], 50)
    for q in ("a", "b"):
        assert list(got[q]) == list(truth[q]) and len(got[q]) == 6
        assert list(got[q].values()) == pytest.approx(list(truth[q].values()), abs=1e-4)
    assert VoyagerIndex(DIM, None, tmp_path / "empty").search(["a"], queries[:1], 5) == {"a": {}}


def test_kind_compatibility_and_missing_manifest(tmp_path: Path) -> None:
    check_compatible(PlaidSpec(), "colbert")
    with pytest.raises(ConfigError, match="a ColBERT encoder needs one of"):
        from mbert_retrieval.config import FaissSpec

        check_compatible(FaissSpec(), "colbert")
    with pytest.raises(ConfigError, match="a single-vector encoder needs a faiss index"):
        check_compatible(PlaidSpec(), "dense")
    with pytest.raises(DataError, match=r"manifest\.json: missing: not an index folder"):
        PlaidIndex.load(tmp_path)


def test_plaid_says_when_it_caps_the_hits(tmp_path: Path, corpus, caplog, monkeypatch) -> None:
    """fast-plaid keeps ``n_full_scores / 4`` candidates: with ``scale_with_k`` off a deeper ``k`` gets fewer
    hits, and a warning naming the cap and the setting that raises it (once per index)."""
    package_logger = logging.getLogger("mbert_retrieval")  # an earlier CLI test may have set it up
    monkeypatch.setattr(package_logger, "propagate", True)
    monkeypatch.setattr(package_logger, "handlers", [])
    ids, docs, queries = corpus
    plaid = PlaidIndex(DIM, PlaidSpec(nbits=4, n_full_scores=64, scale_with_k=False), tmp_path / "p")
    plaid.add(ids, docs)
    with caplog.at_level("WARNING", logger="mbert_retrieval"):
        assert all(len(h) == 16 for h in plaid.search(["a"], queries[:1], 16).values())
        assert not _plaid_warnings(caplog)  # within the cap: silent
        run = plaid.search(["a", "b"], queries[:2], 200)
        assert all(len(h) <= 16 for h in run.values())
        plaid.search(["a"], queries[:1], 200)
    (record,) = _plaid_warnings(caplog)
    assert "at most 16 of the 200 hits" in record.getMessage() and "n_full_scores >= 800" in record.getMessage()


def test_plaid_full_scores_follow_colberts_table_for_deeper_k(tmp_path: Path, corpus) -> None:
    """``scale_with_k``: n_full_scores at least ColBERT's own (256 / 1024 / max(4096, 4k)), so a deep ``k``
    gets its hits; a spec above the table keeps its own value."""
    small, big = PlaidSpec(n_full_scores=64), PlaidSpec(n_full_scores=8192)
    assert [full_scores_for(small, k) for k in (1, 10, 11, 100, 101, 1000, 2000)] == [
        256, 256, 1024, 1024, 4096, 4096, 8000,
    ]  # fmt: skip
    assert [full_scores_for(big, k) for k in (10, 1000, 4000)] == [8192, 8192, 16000]
    assert full_scores_for(PlaidSpec(n_full_scores=64, scale_with_k=False), 1000) == 64
    ids, docs, queries = corpus
    plaid = PlaidIndex(DIM, small, tmp_path / "p")
    plaid.add(ids, docs)
    assert all(len(h) == 200 for h in plaid.search(["a", "b"], queries[:2], 200).values())


def test_plaid_exact_if_faster_picks_exact_maxsim_for_a_small_corpus(tmp_path: Path, corpus, monkeypatch) -> None:
    """``exact_if_faster`` (CPU): the documents are held until the first search, which uses exact MaxSim
    where the cost model says it is faster than building and searching PLAID; the choice is saved and
    reopened. Saving before any search, or a corpus above ``exact_max_tokens``, builds PLAID."""
    monkeypatch.setattr(PlaidIndex, "_may_choose_exact", lambda self: self.spec.exact_if_faster)  # CPU or not
    ids, docs, queries = corpus
    qids = [f"q{i}" for i in range(len(queries))]
    exact = ExactMaxSimIndex(DIM)
    exact.add(ids, docs)
    truth = exact.search(qids, queries, 10)

    auto = PlaidIndex(DIM, PlaidSpec(exact_if_faster=True), tmp_path / "auto")
    auto.add(ids[:5], docs[:5])
    assert auto.search([], [], 10) == {} and not auto.backend_folder.exists()  # no queries: nothing decided
    auto = PlaidIndex(DIM, PlaidSpec(exact_if_faster=True), tmp_path / "auto")
    auto.add(ids[:100], docs[:100])
    auto.add(ids[100:], docs[100:])
    assert not auto.backend_folder.exists()  # nothing built yet: the first search decides
    assert auto.search(qids, queries, 10) == truth and auto.backend == "exact-maxsim"
    auto.add(["extra"], [docs[0]])  # later documents join the exact index
    assert set(auto.search(["q0"], queries[:1], 2)["q0"]) == {"d0", "extra"}
    auto.save()
    reopened = PlaidIndex.load(tmp_path / "auto")
    assert reopened.backend == "exact-maxsim" and reopened.search(qids, queries, 10) == auto.search(qids, queries, 10)
    assert read_manifest(tmp_path / "auto", kind="plaid")["exact_dtype"] == "float16"

    monkeypatch.setattr(plaid_module, "estimated_seconds", lambda *a: (2.0, 1.0))  # PLAID estimated faster
    built = PlaidIndex(DIM, PlaidSpec(exact_if_faster=True), tmp_path / "built")
    built.add(ids, docs)
    built.search(qids, queries, 10)
    assert built.backend == "fast-plaid" and built.backend_folder.is_dir()
    reused = PlaidIndex(DIM, PlaidSpec(exact_if_faster=True), tmp_path / "auto")  # the exact index's folder
    reused.add(ids, docs)
    reused.prepare(len(qids))
    reused.save()
    assert not (tmp_path / "auto" / "tokens.npy").exists()  # the earlier exact arrays are gone
    assert PlaidIndex.load(tmp_path / "auto").backend == "fast-plaid"
    for name, spec in (
        ("saved", PlaidSpec(exact_if_faster=True)),
        ("big", PlaidSpec(exact_if_faster=True, exact_max_tokens=500)),
    ):
        other = PlaidIndex(DIM, spec, tmp_path / name)
        other.add(ids, docs)
        if name == "saved":
            other.save()  # an index saved before any search is for searches to come: PLAID
        assert other.backend == "fast-plaid" and other.backend_folder.is_dir()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CPU search only")
def test_plaid_cpu_search_runs_torch_on_one_thread_and_restores_it() -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), plaid_module._search_torch_threads():
            assert torch.get_num_threads() == plaid_module.SEARCH_TORCH_THREADS
            raise RuntimeError("fast-plaid failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _plaid_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mbert_retrieval.indexes.plaid" and r.levelno == logging.WARNING]
