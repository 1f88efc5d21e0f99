"""Bad input, one row per case, through the real CLI (``mbert_retrieval.cli.app.main``).

Each row gives the command line, built in a fresh folder, and what the user must see: either a
non-zero exit with exactly one ``error: ...`` line naming the file and line or key, no traceback and
no output that looks complete (no ``results.json``, no index ``manifest.json``, no model); or, where
skipping or keeping is the documented behaviour, exit 0 with a counted warning. A bug found here
is fixed where it lives, and its row stays as the regression test.
The TREC run rows go through ``runs.read_run``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.lock import lock_path
from mbert_retrieval.results.runs import read_run

DOCS = [{"_id": f"d{i}", "title": "", "text": f"Document {i} is about topic {i % 3} and code."} for i in range(8)]
QUERIES = [{"_id": "q1", "text": "topic 1"}, {"_id": "q2", "text": "topic 2"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def recipe(out: str, base: str, data: str, loss: str = "mnrl", extra: str = "", source: str = "triples") -> str:
    return (
        f"name: t\nkind: dense\noutput_dir: {out}\nmodel: {{base: {base}}}\n"
        f"data:\n  train: {{source: {source}, path: {data}}}\nloss: {{name: {loss}}}\n"
        f"training: {{max_steps: 2, batch_size: 4}}\n{extra}"
    )


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory, tiny_modernbert: str) -> Path:
    """A flat index of DOCS built once; rows copy it before editing."""
    root = tmp_path_factory.mktemp("bad-inputs-index")
    (root / "corpus.jsonl").write_text(jsonl(DOCS), encoding="utf-8")
    argv = ["index", "build", "--model", tiny_modernbert, "--corpus", str(root / "corpus.jsonl")]
    assert main([*argv, "--spec", "faiss-flat", "--out", str(root / "idx"), "--no-progress"]) == 0
    return root / "idx"


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory, tiny_modernbert: str) -> str:
    """The tiny model with one weight changed: same dimension, another identity."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("other-tiny") / "model"
    shutil.copytree(tiny_modernbert, folder)
    weights = load_file(folder / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("weight") and weights[k].ndim == 2)
    weights[name] = weights[name] + 0.01
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return str(folder)


@dataclass
class Env:
    """The folder a row runs in, with helpers to write its inputs."""

    root: Path
    model: str
    index_src: Path | None = None
    other_model: str | None = None
    minilm: str | None = None
    monkeypatch: pytest.MonkeyPatch | None = None

    def p(self, name: str) -> str:
        return str(self.root / name)

    def write(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def beir(self, corpus: str | bytes | None = None, qrels: str = QRELS, queries: str | None = None) -> list[str]:
        """A one-dataset suite over ``data/ds``; returns the eval arguments for it (out: ``out``)."""
        self.write("data/ds/corpus.jsonl", jsonl(DOCS) if corpus is None else corpus)
        self.write("data/ds/queries.jsonl", jsonl(QUERIES) if queries is None else queries)
        self.write("data/ds/qrels/test.tsv", qrels)
        suite = self.write("suite.yaml", "name: s\ndatasets:\n  - {name: ds}\n")
        return ["eval", "--suite", suite, "--data-dir", self.p("data"), "--model", self.model, "--out", self.p("out")]

    def build(
        self, corpus: str | bytes | None = None, name: str = "corpus.jsonl", spec: str = "faiss-flat"
    ) -> list[str]:
        """``index build`` of ``corpus`` (default DOCS) into ``idx``."""
        path = self.write(name, jsonl(DOCS) if corpus is None else corpus)
        return ["index", "build", "--model", self.model, "--corpus", path, "--spec", spec, "--out", self.p("idx")]

    def index(self, edit: Callable[[dict], None] | None = None) -> str:
        """A copy of the built index at ``idx``, its manifest edited by ``edit``."""
        assert self.index_src is not None
        shutil.copytree(self.index_src, self.root / "idx")
        if edit is not None:
            manifest = json.loads((self.root / "idx" / "manifest.json").read_text())
            edit(manifest)
            (self.root / "idx" / "manifest.json").write_text(json.dumps(manifest))
        return self.p("idx")

    def search(self, *extra: str) -> list[str]:
        return ["search", "--index-dir", self.p("idx"), "topic one", *extra]


@dataclass
class Row:
    argv: Callable[[Env], list[str]]
    expect: list[str]  # substrings of the one error line (or of stderr, for a warning row)
    warning: bool = False  # documented skip/keep: exit 0 and a counted warning
    absent: tuple[str, ...] = ()  # paths under the row's folder that must not exist afterwards
    needs: tuple[str, ...] = field(default=())  # fixtures the row uses: "index", "other", "minilm"


def _set(path: str, value):
    def edit(m: dict) -> None:
        node = m
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


def _evil_checkpoint(env: Env) -> str:
    """The tiny model as a sentence-transformers folder whose modules.json names a module of its own code."""
    folder = env.root / "evil"
    shutil.copytree(env.model, folder)
    (folder / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(env.root / 'PWNED')!r}).write_text('ran')\n"
        "from sentence_transformers.models import Normalize as Evil\n"
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "", "type": "evil.Evil"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return str(folder)


def _pickle_checkpoint(env: Env) -> str:
    """The tiny model with its weights as pytorch_model.bin only (a pickle)."""
    import torch
    from safetensors.torch import load_file

    folder = env.root / "pickled"
    shutil.copytree(env.model, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return str(folder)


def _not_a_model(env: Env) -> str:
    env.write("notmodel/README.md", "just a folder")
    return env.p("notmodel")


def _fail_writes(env: Env, under: str, err: int, *, replace: bool = True) -> None:
    """Simulate a full disk (``os.replace`` fails) or a read-only folder (creating files fails) under ``under``."""
    assert env.monkeypatch is not None
    prefix = str(env.root / under)
    real_replace, real_mkstemp, real_open = os.replace, tempfile.mkstemp, os.open

    def inside(p: object) -> bool:
        return str(p).startswith(prefix)

    def fake_replace(src, dst, *a, **k):
        if inside(dst):
            raise OSError(err, os.strerror(err), str(dst))
        return real_replace(src, dst, *a, **k)

    def fake_mkstemp(*a, **k):
        if inside(k.get("dir", "")):
            raise PermissionError(err, os.strerror(err), str(k["dir"]))
        return real_mkstemp(*a, **k)

    def fake_open(path, flags, *a, **k):
        if inside(path) and flags & os.O_CREAT:
            raise PermissionError(err, os.strerror(err), str(path))
        return real_open(path, flags, *a, **k)

    if replace:
        env.monkeypatch.setattr(os, "replace", fake_replace)
    else:
        env.monkeypatch.setattr(tempfile, "mkstemp", fake_mkstemp)
        env.monkeypatch.setattr(os, "open", fake_open)


def _hold_lock(env: Env) -> None:
    """The lock of ``idx`` held by another live process (this test's parent) on this host."""
    holder = {
        "pid": os.getppid(),
        "host": socket.gethostname(),
        "started": "t",
        "command": "index build (another terminal)",
    }
    lock_path(env.root / "idx").write_text(json.dumps(holder))


def _tiny_docs(n: int) -> str:
    return jsonl([{"_id": f"d{i}", "text": f"doc {i}"} for i in range(n)])


ROWS: dict[str, Row] = {
    # ---------------- recipes: validate / train --dry-run / train ----------------
    "recipe-yaml-syntax": Row(
        lambda e: ["validate", e.write("r.yaml", "name: t\nkind: [dense\n")], ["r.yaml:3: YAML syntax error"]
    ),
    "recipe-unknown-key": Row(
        lambda e: ["validate", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv", extra="bogus: 1\n"))],
        ["r.yaml:9: bogus: unknown key"],
    ),
    "recipe-wrong-type": Row(
        lambda e: [
            "validate",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv").replace("max_steps: 2", "max_steps: x")),
        ],
        ["r.yaml:8: training.max_steps: Input should be a valid integer"],
    ),
    "recipe-missing-loss-validate": Row(
        lambda e: [
            "validate",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv").replace("loss: {name: mnrl}\n", "")),
        ],
        ["r.yaml", "loss: Field required"],
    ),
    "recipe-missing-output-dir-dry-run": Row(
        lambda e: [
            "train",
            "--dry-run",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv").replace(f"output_dir: {e.p('o')}\n", "")),
        ],
        ["r.yaml", "output_dir: Field required"],
    ),
    "recipe-distillation-loss-without-teacher-scores": Row(
        lambda e: ["train", "--dry-run", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv", loss="distill_kl"))],
        ["r.yaml", "loss 'distill_kl' needs teacher scores"],
    ),
    "recipe-teacher-scores-without-distillation-loss": Row(
        lambda e: ["validate", e.write("r.yaml", recipe(e.p("o"), e.model, "t.jsonl", source="distillation"))],
        ["r.yaml", "teacher scores goes with a distillation loss"],
    ),
    "recipe-colbert-loss-for-dense-model": Row(
        lambda e: ["validate", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv", loss="contrastive"))],
        ["r.yaml", "loss 'contrastive' is not for dense models"],
    ),
    "recipe-cached-mini-batch-above-batch": Row(
        lambda e: [
            "train",
            "--dry-run",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv", loss="cached_mnrl")),
            "loss.mini_batch_size=64",
        ],
        ["mini_batch_size is larger than training.batch_size"],
    ),
    "recipe-override-unknown-key": Row(
        lambda e: ["train", "--dry-run", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv")), "training.nope=3"],
        ["error: override 'training.nope=3': unknown key 'training.nope'"],
    ),
    "recipe-override-misspelt-key": Row(
        lambda e: [
            "train",
            "--dry-run",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv")),
            "training.lerning_rate=1",
        ],
        [
            "error: override 'training.lerning_rate=1': unknown key 'training.lerning_rate'; "
            "did you mean 'training.learning_rate'?"
        ],
    ),
    "recipe-override-wrong-type": Row(
        lambda e: [
            "train",
            "--dry-run",
            e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv")),
            "training.batch_size=x",
        ],
        ["error: override 'training.batch_size=x': training.batch_size: Input should be a valid integer"],
    ),
    "recipe-override-data-path-missing": Row(
        lambda e: [
            "train",
            "--dry-run",
            e.write("r.yaml", recipe(e.p("o"), e.model, e.write("t.tsv", "q\tp\tn\n"))),
            "data.train.path=nope.tsv",
        ],
        ["error: override 'data.train.path=nope.tsv': data.train.path: nope.tsv: not found (looked from the working"],
    ),
    "recipe-override-not-key-value": Row(
        lambda e: ["train", "--dry-run", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv")), "training.epochs"],
        ["override 'training.epochs': expected key.sub=value"],
    ),
    "recipe-empty-file": Row(lambda e: ["validate", e.write("r.yaml", "")], ["r.yaml: the file is empty"]),
    "recipe-not-utf8": Row(lambda e: ["validate", e.write("r.yaml", b"name: caf\xe9\n")], ["r.yaml: not valid UTF-8"]),
    "recipe-not-found": Row(lambda e: ["train", "--dry-run", e.p("missing.yaml")], ["missing.yaml: file not found"]),
    "recipe-duplicate-key": Row(
        lambda e: ["validate", e.write("r.yaml", recipe(e.p("o"), e.model, "t.tsv", extra="seed: 1\nseed: 2\n"))],
        ["r.yaml:10", "duplicate key 'seed'"],
    ),
    "recipe-data-path-missing-dry-run": Row(
        lambda e: ["train", "--dry-run", e.write("r.yaml", recipe(e.p("o"), e.model, e.p("nope.tsv")))],
        ["r.yaml:6: data.train.path: ", "nope.tsv: not found"],
    ),
    "recipe-relative-data-path-missing": Row(  # run from another folder: both places it was looked for
        lambda e: (
            e.write("work/here/.keep", ""),
            e.monkeypatch.chdir(e.root / "work" / "here"),
            ["train", "--dry-run", e.write("recipes/r.yaml", recipe(e.p("o"), e.model, "../data/t.tsv"))],
        )[2],
        [
            "recipes/r.yaml:6: data.train.path: ../data/t.tsv: not found (looked beside the recipe: ",
            "/data/t.tsv; and from the working directory: ",
            "/work/data/t.tsv)",
        ],
    ),
    "validate-a-folder": Row(
        lambda e: ["validate", e.write("a.yaml", recipe(e.p("o"), e.model, "t.tsv")), e.write("d/x", "") and e.p("d")],
        ["d: a folder, not a YAML file"],
    ),
    "validate-one-bad-file-among-good": Row(  # every file is checked; exit 1
        lambda e: [
            "validate",
            e.write("a.yaml", recipe(e.p("o"), e.model, "t.tsv")),
            e.write("b.yaml", recipe(e.p("o"), e.model, "t.tsv", extra="traning: {epochs: 2}\n")),
            e.write("c.yaml", "name: s\ndatasets:\n  - {name: a}\n"),
        ],
        ["b.yaml:9: traning: unknown key; did you mean 'training'?"],
    ),
    "train-output-holds-a-model": Row(
        lambda e: (
            e.write("o/model/config.json", "{}"),
            ["train", e.write("r.yaml", recipe(e.p("o"), e.model, e.write("t.tsv", "q\tp\tn\n")))],
        )[1],
        ["o/model exists", "--overwrite"],
        absent=("o/checkpoints", "o/train_log.jsonl"),
    ),
    # ---------------- suites (eval) ----------------
    "suite-unknown-key": Row(
        lambda e: [*e.beir()[:2], e.write("s.yaml", "name: s\ndatasets:\n  - {name: ds, foo: 1}\n"), *e.beir()[3:]],
        ["s.yaml:3: datasets.0.foo: unknown key"],
        absent=("out/results.json",),
    ),
    "suite-missing-datasets": Row(
        lambda e: [*e.beir()[:2], e.write("s.yaml", "name: s\n"), *e.beir()[3:]],
        ["s.yaml:1: datasets: Field required"],
        absent=("out",),
    ),
    "suite-bad-metric-name": Row(
        lambda e: ["validate", e.write("s.yaml", "name: s\nmetrics: [nDCG@x]\ndatasets:\n  - {name: a}\n")],
        ["s.yaml:2: metrics: unknown measure 'nDCG@x'"],
    ),
    "suite-top-k-below-metric-cutoff": Row(
        lambda e: ["validate", e.write("s.yaml", "name: s\ntop_k: 5\ndatasets:\n  - {name: a}\n")],
        ["s.yaml:1", "top_k 5 is below the deepest metric cutoff 100"],
    ),
    "suite-max-docs-on-beir-source": Row(
        lambda e: ["validate", e.write("s.yaml", "name: s\ndatasets:\n  - {name: a, max_docs: 3}\n")],
        ["s.yaml:3", "max_docs applies only to source 'stdlib'"],
    ),
    # ---------------- index specs ----------------
    "spec-unknown-kind": Row(
        lambda e: [*e.build()[:6], "--spec", e.write("i.yaml", "name: i\nindex: {kind: annoy}\n"), "--out", e.p("idx")],
        ["i.yaml:2: index: Input tag 'annoy'"],
        absent=("idx",),
    ),
    "spec-wrong-type": Row(
        lambda e: [
            *e.build()[:6],
            "--spec",
            e.write("i.yaml", "name: i\nindex: {kind: faiss, type: hnsw, M: lots}\n"),
            "--out",
            e.p("idx"),
        ],
        ["i.yaml:2: index.M: Input should be a valid integer"],
        absent=("idx",),
    ),
    "spec-yaml-tab": Row(
        lambda e: ["validate", e.write("i.yaml", "name: i\nindex:\n\tkind: faiss\n")], ["i.yaml:3: YAML syntax error"]
    ),
    "spec-multi-vector-with-a-dense-model": Row(
        lambda e: [*e.build(spec="plaid")[:3], e.minilm, *e.build(spec="plaid")[4:]],
        ["'plaid' is a plaid index over token vectors", "single-vector model: use a FAISS spec"],
        absent=("idx", "idx.partial"),
        needs=("minilm",),
    ),
    "spec-faiss-with-kind-colbert": Row(
        lambda e: [*e.build(), "--kind", "colbert"],
        ["'faiss-flat' is a FAISS index", "a ColBERT model needs a plaid, voyager or exact-maxsim spec"],
        absent=("idx", "idx.partial"),
    ),
    "spec-ivf-pq-on-a-tiny-corpus": Row(
        lambda e: e.build(spec="faiss-ivf-pq"), ["needs at least 1024 training vectors"], absent=("idx", "idx.partial")
    ),
    "spec-unknown-name": Row(lambda e: e.build(spec="nope"), ["unknown index spec 'nope'"], absent=("idx",)),
    # ---------------- corpus (JSONL / TSV) ----------------
    "corpus-broken-json-line": Row(
        lambda e: e.build('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'),
        ["corpus.jsonl:2: malformed JSON"],
        absent=("idx", "idx.partial"),
    ),
    "corpus-missing-id": Row(
        lambda e: e.beir(corpus='{"_id": "d1", "text": "a"}\n{"text": "b"}\n'),
        ["corpus.jsonl:2: field '_id': missing"],
        absent=("out/results.json",),
    ),
    "corpus-duplicate-id": Row(
        lambda e: e.build('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'),
        ["corpus.jsonl:2: field '_id': duplicate id 'd1' (first on line 1)"],
        absent=("idx", "idx.partial"),
    ),
    "corpus-id-with-white-space": Row(
        lambda e: e.build('{"_id": "a b", "text": "x"}\n'),
        ["corpus.jsonl:1: field '_id'", "white space"],
        absent=("idx",),
    ),
    "corpus-whitespace-only-text": Row(
        lambda e: e.build('{"_id": "a", "text": "x"}\n{"_id": "b", "text": " \\t "}\n'),
        ["corpus.jsonl:2: field 'text'", "blank", "--skip-blank"],
        absent=("idx", "idx.partial"),
    ),
    "corpus-whitespace-only-text-skipped": Row(
        lambda e: [*e.build('{"_id": "a", "text": "x"}\n{"_id": "b", "title": "", "text": ""}\n'), "--skip-blank"],
        ["corpus.jsonl: skipped 1 blank document (the first on line 2, id 'b')"],
        warning=True,
    ),
    "corpus-empty-text-in-eval-kept": Row(
        lambda e: e.beir(corpus=jsonl(DOCS) + '{"_id": "e", "text": ""}\n'),
        ["1 empty documents (kept)"],
        warning=True,
    ),
    "corpus-non-utf8": Row(
        lambda e: e.beir(corpus=b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "caf\xe9"}\n'),
        ["corpus.jsonl:2: not valid UTF-8 (byte 26)"],
        absent=("out/results.json",),
    ),
    "corpus-tsv-wrong-columns": Row(
        lambda e: e.build("id\ttext\na\tx\nb\ty\tz\n", name="c.tsv"),
        ["c.tsv:3: expected 2 tab-separated columns (id, text), got 3"],
        absent=("idx",),
    ),
    "corpus-empty-file": Row(
        lambda e: e.build("\n\n"), ["corpus.jsonl: the corpus holds no documents"], absent=("idx",)
    ),
    "corpus-unknown-format": Row(lambda e: e.build("a,b\n", name="c.csv"), ["c.csv: unknown corpus format"]),
    "corpus-truncated-gzip": Row(
        lambda e: e.build(b"\x1f\x8b\x08\x00garbage", name="c.jsonl.gz"), ["c.jsonl.gz: cannot read"], absent=("idx",)
    ),
    "corpus-1mb-document-truncated": Row(
        lambda e: e.beir(corpus=jsonl([*DOCS, {"_id": "big", "text": "word " * 200_000}])),
        ["ds: 1 of 9 documents exceed", "tokens and are truncated"],
        warning=True,
    ),
    "corpus-10mb-document-truncated": pytest.param(  # ~45 s on 2 cores: the tokenizer reads all 2M words, twice
        Row(
            lambda e: e.beir(corpus=jsonl([*DOCS, {"_id": "big", "text": "word " * 2_000_000}])),
            ["ds: 1 of 9 documents exceed", "tokens and are truncated"],
            warning=True,
        ),
        marks=pytest.mark.slow,
    ),
    # ---------------- queries and qrels ----------------
    "qrels-unknown-query": Row(
        lambda e: e.beir(qrels=QRELS + "q9\td3\t1\n"), ["1 qrels for unknown queries (dropped)"], warning=True
    ),
    "qrels-unknown-document": Row(
        lambda e: e.beir(qrels=QRELS + "q1\tzz\t1\n"),
        ["1 qrels for unknown documents (kept, never retrieved)"],
        warning=True,
    ),
    "qrels-non-integer-score": Row(
        lambda e: e.beir(qrels=QRELS + "q2\td3\t0.5\n"),
        ["qrels/test.tsv:4: field 'score': relevance must be an integer, got '0.5'"],
        absent=("out/results.json",),
    ),
    "qrels-missing-header": Row(
        lambda e: e.beir(qrels="q1\td1\t1\nq2\td2\t1\n"),
        ["1 qrels without a header line (first line read as data)"],
        warning=True,
    ),
    "qrels-wrong-columns": Row(
        lambda e: e.beir(qrels="query-id\tcorpus-id\tscore\nq1\td1\n"),
        ["qrels/test.tsv:2: expected 3 tab-separated columns"],
        absent=("out/results.json",),
    ),
    "qrels-only-unknown-queries": Row(
        lambda e: e.beir(qrels="query-id\tcorpus-id\tscore\nq8\td1\t1\n"),
        ["qrels/test.tsv: no judgements left for any known query"],
        absent=("out/results.json",),
    ),
    "queries-duplicate-id": Row(
        lambda e: [
            *e.search()[:3],
            "--queries",
            e.write("q.jsonl", jsonl(QUERIES + QUERIES[:1])),
            "--out",
            e.p("r.trec"),
        ],
        ["q.jsonl:3: field '_id': duplicate id 'q1' (first on line 1)"],
        absent=("r.trec",),
        needs=("index",),
    ),
    "queries-blank-text": Row(
        lambda e: [*e.search()[:3], "--queries", e.write("q.tsv", "q1\t  \n"), "--out", e.p("r.trec")],
        ["q.tsv:1: field 'text': query 'q1' is blank"],
        absent=("r.trec",),
        needs=("index",),
    ),
    # ---------------- index folders ----------------
    "index-missing-manifest": Row(
        lambda e: (e.index(), (e.root / "idx" / "manifest.json").unlink(), e.search())[2],
        ["idx/manifest.json: missing: not an index folder, or an unfinished build"],
        needs=("index",),
    ),
    "index-folder-not-found": Row(lambda e: e.search(), ["idx: index folder not found"]),
    "index-manifest-malformed": Row(
        lambda e: (e.index(), e.write("idx/manifest.json", '{"kind": "faiss",'), e.search())[2],
        ["idx/manifest.json:1: malformed JSON"],
        needs=("index",),
    ),
    "index-manifest-edited-dim": Row(
        lambda e: (e.index(_set("dim", 32)), e.search())[1],
        ["idx: index.faiss holds 64-dim vectors, manifest.json says 32"],
        needs=("index",),
    ),
    "index-manifest-edited-n-docs": Row(
        lambda e: (e.index(_set("n_docs", 99)), e.search())[1],
        ["doc_ids.txt, index.faiss and manifest.json disagree on the number of documents"],
        needs=("index",),
    ),
    "index-manifest-edited-fingerprint": Row(
        lambda e: (e.index(_set("encoder.fingerprint", "0" * 32)), e.search())[1],
        ["index was built with encoder", "differs in weights or settings"],
        needs=("index",),
    ),
    "index-manifest-file-escapes-folder": Row(
        lambda e: (e.index(_set("files.doc_ids", "../../etc/hostname")), e.search())[1],
        ["manifest.json: field 'files.doc_ids': '../../etc/hostname' is not a file name inside the index folder"],
        needs=("index",),
    ),
    "index-manifest-unknown-kind": Row(
        lambda e: (e.index(_set("kind", "annoy")), e.search())[1], ["unknown index kind 'annoy'"], needs=("index",)
    ),
    "index-snippets-missing": Row(
        lambda e: (e.index(), (e.root / "idx" / "snippets.jsonl").unlink(), e.search())[2],
        ["idx/snippets.jsonl: missing: the index folder is incomplete"],
        needs=("index",),
    ),
    "index-truncated-faiss-file": Row(
        lambda e: (
            e.index(),
            (e.root / "idx" / "index.faiss").write_bytes((e.root / "idx" / "index.faiss").read_bytes()[:500]),
            e.search(),
        )[2],
        ["idx/index.faiss: unreadable FAISS index"],
        needs=("index",),
    ),
    "index-recorded-model-moved": Row(
        lambda e: (e.index(_set("encoder_load.model", e.p("moved-model"))), e.search())[1],
        ["does not exist any more; pass --model PATH"],
        needs=("index",),
    ),
    "index-recorded-trust-remote-code": Row(
        lambda e: (e.index(_set("encoder_load.trust_remote_code", True)), e.search())[1],
        ["the index was built with --trust-remote-code", "pass --trust-remote-code"],
        needs=("index",),
    ),
    "index-searched-with-another-dimension": Row(
        lambda e: (e.index(), e.search("--model", e.minilm))[1],
        ["index holds 64-dim vectors", "gives 384-dim vectors"],
        needs=("index", "minilm"),
    ),
    "index-searched-with-another-identity": Row(
        lambda e: (e.index(), e.search("--model", e.other_model))[1],
        ["index was built with encoder", "differs in weights or settings"],
        needs=("index", "other"),
    ),
    "index-add-existing-ids": Row(
        lambda e: ["index", "add", e.index(), "--corpus", e.write("new.jsonl", jsonl(DOCS[:2]))],
        ["new.jsonl: 2 document ids are already in the index ('d0', 'd1'); pass --replace"],
        needs=("index",),
    ),
    # ---------------- models ----------------
    "model-path-does-not-exist": Row(
        lambda e: [*e.build()[:2], "--model", e.p("no-model"), *e.build()[4:]],
        ["model path does not exist:", "no-model"],
        absent=("idx", "idx.partial"),
    ),
    "model-folder-is-not-a-model": Row(
        lambda e: [*e.build()[:2], "--model", _not_a_model(e), *e.build()[4:]],
        ["cannot load model", "notmodel"],
        absent=("idx", "idx.partial"),
    ),
    "model-weights-corrupt-eval": Row(
        lambda e: (
            shutil.copytree(e.model, e.root / "broken"),
            (e.root / "broken" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{oops"),
            [*e.beir()[:5], "--model", e.p("broken"), "--out", e.p("out")],
        )[2],
        ["cannot load model", "broken"],
        absent=("out/results.json",),
    ),
    "model-weights-corrupt-colbert-index-build": Row(
        lambda e: (
            shutil.copytree(e.model, e.root / "broken"),
            (e.root / "broken" / "model.safetensors").write_bytes(b"not safetensors at all"),
            [
                *e.build(spec="exact-maxsim")[:2],
                "--model",
                e.p("broken"),
                *e.build(spec="exact-maxsim")[4:],
                "--kind",
                "colbert",
            ],
        )[2],
        ["cannot load model", "broken"],
        absent=("idx",),
    ),
    "model-config-not-json": Row(
        lambda e: [
            *e.build()[:2],
            "--model",
            e.write("badcfg/config.json", "{oops")[: -len("/config.json")],
            *e.build()[4:],
        ],
        ["cannot load model", "badcfg"],
        absent=("idx",),
    ),
    "model-runs-its-own-code-index-build": Row(
        lambda e: [*e.build()[:2], "--model", _evil_checkpoint(e), *e.build()[4:]],
        ["evil/modules.json: module 1 has type 'evil.Evil'", "--trust-remote-code"],
        absent=("idx", "PWNED"),
    ),
    "model-runs-its-own-code-eval": Row(
        lambda e: [*e.beir()[:5], "--model", _evil_checkpoint(e), *e.beir()[7:]],
        ["evil/modules.json: module 1 has type 'evil.Evil'"],
        absent=("out/results.json", "PWNED"),
    ),
    "model-pickle-weights-index-build": Row(
        lambda e: [*e.build()[:2], "--model", _pickle_checkpoint(e), *e.build()[4:]],
        ["pickled/pytorch_model.bin: weights stored as a pickle", "--allow-pickle", "MBERT_RETRIEVAL_ALLOW_PICKLE=1"],
        absent=("idx",),
    ),
    "model-pickle-weights-eval": Row(
        lambda e: [*e.beir()[:5], "--model", _pickle_checkpoint(e), *e.beir()[7:]],
        ["pickled/pytorch_model.bin: weights stored as a pickle"],
        absent=("out/results.json",),
    ),
    # ---------------- outputs ----------------
    "index-out-already-holds-an-index": Row(
        lambda e: (e.index(), e.build())[1], ["idx already exists; pass --overwrite"], needs=("index",)
    ),
    "index-out-is-not-an-index-overwrite": Row(
        lambda e: (e.write("idx/notes.txt", "mine"), [*e.build(), "--overwrite"])[1],
        ["idx is not an index folder (no manifest.json); refusing to replace it"],
    ),
    "search-run-file-exists": Row(
        lambda e: (
            e.index(),
            e.write("r.trec", "keep me\n"),
            [*e.search()[:3], "--queries", e.write("q.jsonl", jsonl(QUERIES)), "--out", e.p("r.trec")],
        )[2],
        ["r.trec already exists; pass --overwrite"],
        needs=("index",),
    ),
    "eval-out-is-a-file": Row(
        lambda e: (e.write("out", "my notes\n"), e.beir())[1],
        ["out exists and is not a folder; choose another --out"],
    ),
    "eval-mteb-out-is-a-file": Row(
        lambda e: (e.write("out", "my notes\n"), [*e.beir(), "--engine", "mteb"])[1],
        ["out exists and is not a folder; choose another --out"],
    ),
    "report-out-is-a-file": Row(
        lambda e: ["report", e.p("results"), "--out", e.write("rep", "my notes\n")],
        ["rep exists and is not a folder; choose another --out"],
    ),
    "search-run-file-is-a-folder": Row(
        lambda e: (
            e.index(),
            e.write("runs/keep.txt", "mine"),
            [*e.search()[:3], "--queries", e.write("q.jsonl", jsonl(QUERIES)), "--out", e.p("runs"), "--overwrite"],
        )[2],
        ["runs is a folder; --out names the file to write"],
        needs=("index",),
    ),
    "search-blank-query": Row(
        lambda e: (e.index(), ["search", "--index-dir", e.p("idx"), "   "])[1],
        ["the query is empty or blank"],
        needs=("index",),
    ),
    "eval-out-holds-another-models-results": Row(
        lambda e: (
            e.write("out/results.json", json.dumps({"metrics": {}, "encoder": {"name": "x", "fingerprint": "other"}})),
            e.beir(),
        )[1],
        ["out/results.json holds results of another model", "--overwrite"],
    ),
    "eval-out-results-json-malformed": Row(
        lambda e: (e.write("out/results.json", '{"metrics": '), e.beir())[1],
        ["out/results.json:1: malformed JSON", "pass --overwrite"],
    ),
    "index-out-locked-by-another-run": Row(
        lambda e: (_hold_lock(e), e.build())[1],
        ["idx is being written by another run: pid", "index build (another terminal)"],
        absent=("idx", "idx.partial"),
    ),
    "disk-full-during-index-build": Row(
        lambda e: (_fail_writes(e, "idx", errno.ENOSPC), e.build())[1],
        ["idx.partial/build.json: cannot write: No space left on device"],
        absent=("idx",),
    ),
    "disk-full-writing-eval-results": Row(
        lambda e: (_fail_writes(e, "out/results.json", errno.ENOSPC), e.beir())[1],
        ["out/results.json: cannot write: No space left on device"],
        absent=("out/results.json", "out/results.md"),
    ),
    "read-only-index-folder": Row(
        lambda e: (_fail_writes(e, "ro", errno.EACCES, replace=False), [*e.build()[:-1], e.p("ro/idx")])[1],
        ["ro/.idx.lock: cannot write: Permission denied"],
        absent=("ro/idx",),
    ),
    "read-only-run-file-folder": Row(
        lambda e: (
            e.index(),
            _fail_writes(e, "ro", errno.EACCES, replace=False),
            [*e.search()[:3], "--queries", e.write("q.jsonl", jsonl(QUERIES)), "--out", e.p("ro/r.trec")],
        )[2],
        ["ro/r.trec: cannot write: Permission denied"],
        absent=("ro/r.trec",),
        needs=("index",),
    ),
}


PARAMS = [
    pytest.param(v.values[0], id=k, marks=v.marks) if hasattr(v, "values") else pytest.param(v, id=k)
    for k, v in ROWS.items()
]


@pytest.mark.parametrize("row", PARAMS)
def test_bad_input(
    row: Row, request: pytest.FixtureRequest, tmp_path: Path, tiny_modernbert: str, capsys, monkeypatch
) -> None:
    env = Env(tmp_path, tiny_modernbert, monkeypatch=monkeypatch)
    if "index" in row.needs:
        env.index_src = request.getfixturevalue("built_index")
    if "other" in row.needs:
        env.other_model = request.getfixturevalue("other_tiny")
    if "minilm" in row.needs:
        env.minilm = request.getfixturevalue("minilm_path")
    argv = row.argv(env)
    code = main([*argv, *(["--no-progress"] if argv[0] in ("eval",) or argv[:2] == ["index", "build"] else [])])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text, text
    if row.warning:
        assert code == 0, text
        for part in row.expect:
            assert part in captured.err, (part, captured.err)
        return
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code != 0 and len(errors) == 1, (code, captured.err)
    for part in row.expect:
        assert part in errors[0], (part, errors[0])
    for rel in row.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was written by a failed run"
    if argv[0] == "eval" and not (tmp_path / "out" / "results.json").exists():  # nothing that looks like an output
        assert not (tmp_path / "out" / "config.resolved.yaml").exists(), "a failed eval left its config behind"
    if (tmp_path / "idx").is_dir() and "index" not in row.needs:
        assert not (tmp_path / "idx" / "manifest.json").exists()


def test_warning_rows_are_recorded_with_the_output(tmp_path: Path, tiny_modernbert: str, capsys) -> None:
    """Counted warnings are not only printed: eval keeps them in results.json, index build in the manifest."""
    env = Env(tmp_path, tiny_modernbert)
    argv = env.beir(corpus=jsonl(DOCS) + '{"_id": "e", "text": ""}\n', qrels=QRELS + "q9\td3\t1\nq1\tzz\t1\n")
    assert main([*argv, "--no-progress"]) == 0
    warnings = json.loads((tmp_path / "out" / "results.json").read_text())["datasets"]["ds"]["warnings"]
    assert warnings == {
        "empty documents (kept)": 1,
        "qrels for unknown queries (dropped)": 1,
        "qrels for unknown documents (kept, never retrieved)": 1,
    }
    argv = env.build('{"_id": "a", "text": "x"}\n{"_id": "b", "text": ""}\n')
    assert main([*argv, "--skip-blank", "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["build"]["corpus_warnings"] == {"blank documents (skipped)": 1} and manifest["n_docs"] == 1
    capsys.readouterr()


def test_allow_pickle_is_the_users_opt_in_for_one_command(tmp_path: Path, tiny_modernbert: str, capsys) -> None:
    """``--allow-pickle`` lets a pickle-only checkpoint load for that command only (the env var is restored)."""
    from mbert_retrieval.core.checkpoint import ALLOW_PICKLE_ENV

    env = Env(tmp_path, tiny_modernbert)
    argv = [*env.build()[:2], "--model", _pickle_checkpoint(env), *env.build()[4:], "--no-progress"]
    assert main(argv) == 1 and "weights stored as a pickle" in capsys.readouterr().err
    assert ALLOW_PICKLE_ENV not in os.environ
    assert main(["--allow-pickle", *argv]) == 0, capsys.readouterr().err
    assert ALLOW_PICKLE_ENV not in os.environ
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["n_docs"] == len(DOCS)


RUN_ROWS = {
    "run-wrong-column-count": ("q1 Q0 a 1 0.5 tag\nq1 a 2 0.4 tag\n", "r.trec:2: expected 6 columns"),
    "run-score-not-a-number": ("q1 Q0 a 1 high tag\n", "r.trec:1: field 'score': not a number: 'high'"),
    "run-score-not-finite": ("q1 Q0 a 1 nan tag\n", "r.trec:1: field 'score': not a finite number"),
    "run-rank-not-an-integer": ("q1 Q0 a first 0.5 tag\n", "r.trec:1: field 'rank': not an integer"),
    "run-document-twice-for-a-query": ("q1 Q0 a 1 0.5 t\nq1 Q0 a 2 0.4 t\n", "r.trec:2: field 'docid': document 'a'"),
    "run-not-utf8": (b"q1 Q0 caf\xe9 1 0.5 t\n", "r.trec:1: not valid UTF-8"),
    "run-empty-file": ("\n", "r.trec: holds no results"),
    "run-csv-instead-of-trec": (
        "q1,Q0,a,1,0.5,t\n",
        "r.trec:1: expected 6 columns (qid Q0 docid rank score tag), got 1",
    ),
}


@pytest.mark.parametrize(("content", "message"), list(RUN_ROWS.values()), ids=list(RUN_ROWS))
def test_bad_run_file(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "r.trec"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as info:
        read_run(path)
    assert message in str(info.value) and "\n" not in str(info.value)
