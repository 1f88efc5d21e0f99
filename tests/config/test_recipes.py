"""Recipes: schema, overrides, validation messages, training data loaders, and short real training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from mbert_retrieval.catalog import list_recipes, load_recipe_by_name, validate_file
from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.data import training
from mbert_retrieval.flows.train import batch_summary
from mbert_retrieval.recipes import load_recipe

BASE = """\
name: t
kind: dense
output_dir: out/t
model: {base: some/model}
data:
  train: {source: triples, path: data.tsv}
loss: {name: mnrl}
"""


def test_every_shipped_recipe_loads() -> None:
    recipes = list_recipes()
    assert "scifact-dense" in recipes
    for name, path in recipes.items():
        r = load_recipe_by_name(name)
        assert r.model.base and r.output_dir
        assert validate_file(path) == "recipe"


def test_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BASE)
    r = load_recipe(
        path,
        [
            "model.base=/models/x",
            "output_dir=/tmp/o",
            "training.learning_rate=1e-4",
            "training.epochs=3",
            "training.max_steps=null",
            "model.max_seq_length=128",
            "loss.name=cached_mnrl",
            "loss.mini_batch_size=8",
        ],
    )
    assert (r.model.base, r.output_dir, r.training.learning_rate, r.training.epochs) == ("/models/x", "/tmp/o", 1e-4, 3)
    assert r.model.max_seq_length == 128 and r.loss.name == "cached_mnrl" and r.training.max_steps is None


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (BASE + "extra: 1\n", [], "r.yaml:8: extra: unknown key"),
        (
            BASE.replace("{name: mnrl}", "{name: mnrl, scale: hot}"),
            [],
            "r.yaml:7: loss.scale: Input should be a valid number",
        ),
        (BASE.replace("kind: dense", "kind: sparse"), [], "r.yaml:2: kind: Input should be 'dense' or 'colbert'"),
        (BASE.replace("{name: mnrl}", "{name: margin_mse}"), [], "loss 'margin_mse' needs teacher scores"),
        (BASE.replace("{name: mnrl}", "{name: contrastive}"), [], "loss 'contrastive' is not for dense models"),
        (BASE.replace("output_dir: out/t\n", ""), [], "output_dir: Field required"),
        (
            BASE,
            ["training.batch_size=many"],
            "override 'training.batch_size=many': training.batch_size: Input should be a valid integer",
        ),
        (BASE, ["nonsense"], "override 'nonsense': expected key.sub=value"),
        (BASE, ["model.base.x=1"], "override 'model.base.x=1': 'base' is not a section"),
        (
            BASE,
            ["output_dir=o", "training.lerning_rate=1"],
            "override 'training.lerning_rate=1': unknown key 'training.lerning_rate'; "
            "did you mean 'training.learning_rate'?",
        ),
        (
            BASE,
            ["trainig.learning_rate=1"],
            "override 'trainig.learning_rate=1': unknown key 'trainig.learning_rate'; "
            "did you mean 'training.learning_rate'?",
        ),
        (BASE, ["traning.x=1"], "override 'traning.x=1': unknown key 'traning' (in 'traning.x'); did you mean"),
        (BASE + "traning: {epochs: 2}\n", [], "r.yaml:8: traning: unknown key; did you mean 'training'?"),
        # only the override that brought the problem is named, not the others given with it
        (BASE, ["output_dir=o", "loss.name=contrastive"], "override 'loss.name=contrastive': loss 'contrastive' is"),
        # a problem of the file itself still names the file and line, whatever overrides come with it
        (BASE.replace("kind: dense", "kind: sparse"), ["output_dir=o"], "r.yaml:2: kind: Input should be"),
        (
            BASE,
            ["training.batch_size=4", "loss.name=cached_mnrl"],
            "loss.mini_batch_size is larger than training.batch_size",
        ),
    ],
)
def test_bad_recipes(tmp_path: Path, text: str, overrides: list[str], expected: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_recipe(path, overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)
    if overrides and "override" in expected:  # an override's problem does not name the file
        assert "r.yaml" not in str(err.value)


def test_batch_summary_warns_when_devices_differ(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BASE)
    r = load_recipe(
        path, ["training.batch_size=64", "training.gradient_accumulation_steps=8", "training.num_devices=8"]
    )
    s = batch_summary(r, world_size=1)
    assert (s["global_batch"], s["in_batch_candidates_per_query"]) == (512, 64)
    assert "written for 8 devices (global batch 4096)" in s["note"]


def test_training_data_loaders(tmp_path: Path, data_dir: Path) -> None:
    pairs = training.beir_pairs(data_dir / "scifact", "train")
    assert pairs.column_names == ["query", "positive"] and len(pairs) == 919
    tsv = tmp_path / "t.tsv"
    tsv.write_text("q1\tp1\tn1\nq2\tp2\tn2\n")
    assert training.triples(tsv).column_names == ["query", "positive", "negative_1"]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        '{"query": "q", "positive": "p", "negatives": ["a", "b"]}\n'
        '{"query": "q2", "positive": "p2", "negatives": ["c"]}\n'
    )
    with pytest.raises(DataError, match=r"t.jsonl:2: 1 negative where the first row has 2"):
        training.triples(jsonl)
    real = training.triples(data_dir / "msmarco-triples-sample" / "triples.tsv")
    assert len(real) == 100 and real.column_names == ["query", "positive", "negative_1"]
    kd = tmp_path / "kd.jsonl"
    kd.write_text(json.dumps({"query": "q", "documents": ["a", "b", "c"], "scores": [3, 2, 1]}) + "\n")
    rows = training.distillation(kd, n_ways=2)
    assert rows[0] == {"query": "q", "document_1": "a", "document_2": "b", "scores": [3.0, 2.0]}
    with pytest.raises(DataError, match="fewer than n_ways=32"):
        training.distillation(kd)


def test_hub_distillation_ids_resolve_to_text() -> None:
    from datasets import Dataset

    train = Dataset.from_dict(
        {"query_id": [7, 9], "document_ids": [[3, 1, 2], [2, 3, 1]], "scores": [[0.9, 0.5, 0.1], [1, 2, 3]]}
    )
    queries = Dataset.from_dict({"query_id": [9, 7], "text": ["nine", "seven"]})
    documents = Dataset.from_dict({"document_id": [1, 2, 3], "text": ["one", "two", "three"]})
    rows = training.resolve_ids(train, queries, documents, n_ways=2)
    assert rows[0] == {"query": "seven", "document_1": "three", "document_2": "one", "scores": [0.9, 0.5]}
    assert [rows[1]["document_1"], rows[1]["document_2"]] == ["two", "three"]


def _write_triples(path: Path, data_dir: Path) -> Path:
    lines = (data_dir / "msmarco-triples-sample" / "triples.tsv").read_text(encoding="utf-8").splitlines()[:24]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_dense_end_to_end(tmp_path: Path, data_dir: Path, tiny_modernbert: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(BASE.replace("data.tsv", str(_write_triples(tmp_path / "tr.tsv", data_dir))))
    out = tmp_path / "run"
    argv = ["train", str(recipe), f"model.base={tiny_modernbert}", f"output_dir={out}"]
    argv += ["training.batch_size=8", "training.max_steps=3", "model.max_seq_length=64", "training.logging_steps=1"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} >= {"model", "recipe.resolved.yaml", "train_log.jsonl", "checkpoints"}
    # the resolved recipe is complete (every key, null ones too) and loads back to the recipe that ran
    import yaml

    from mbert_retrieval.recipes import Recipe

    resolved = out / "recipe.resolved.yaml"
    assert set(yaml.safe_load(resolved.read_text())) == set(Recipe.model_fields)
    assert "intent: null" in resolved.read_text()
    assert load_recipe(resolved).model_dump() == load_recipe(recipe, argv[2:]).model_dump()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log)
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert "- hard negatives per row: 1\n- candidates per query: 16" in card  # 8 positives + 8 negatives
    from mbert_retrieval.encoders.dense import DenseEncoder

    trained = DenseEncoder(str(out / "model"), show_progress=False)
    before = DenseEncoder(tiny_modernbert, max_seq_length=64, show_progress=False)
    assert trained.describe()["max_seq_length"] == 64 and trained.describe()["pooling"] == "mean"
    assert not np.allclose(trained.encode_queries(["what is x"]), before.encode_queries(["what is x"]), atol=1e-4)
    assert main(argv) == 1  # the model exists: refused without --overwrite


def test_train_colbert_end_to_end(tmp_path: Path, data_dir: Path, tiny_modernbert: str) -> None:
    recipe = tmp_path / "r.yaml"
    text = BASE.replace("kind: dense", "kind: colbert").replace("{name: mnrl}", "{name: contrastive}")
    recipe.write_text(text.replace("data.tsv", str(_write_triples(tmp_path / "tr.tsv", data_dir))))
    out = tmp_path / "run"
    argv = ["train", str(recipe), f"model.base={tiny_modernbert}", f"output_dir={out}", "training.batch_size=8"]
    argv += ["training.max_steps=2", "model.document_length=48", "model.embedding_size=32"]
    assert main(argv) == 0
    from mbert_retrieval.encoders import detect_kind, load_encoder

    assert detect_kind(str(out / "model")) == "colbert"
    enc = load_encoder(str(out / "model"), show_progress=False)
    assert enc.describe()["dim"] == 32 and enc.describe()["document_length"] == 48


def _mldr_row(i: int, negatives: int) -> dict:
    return {
        "query_id": f"q-en-{i}",
        "query": f"question {i}",
        "positive_passages": [{"docid": f"doc-en-{i}", "text": f"long article {i} " * 50}],
        "negative_passages": [
            {"docid": f"doc-en-n{i}-{j}", "text": f"other article {i}.{j}"} for j in range(negatives)
        ],
    }


def test_mldr_rows_shaped_like_the_hub(tmp_path: Path) -> None:
    import gzip

    from mbert_retrieval.training.data import load_train_data

    rows = [_mldr_row(0, 3), _mldr_row(1, 1), _mldr_row(2, 2)]
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    one = training.mldr(path)
    assert one.column_names == ["query", "positive", "negative_1"] and len(one) == 3
    assert one[0] == {
        "query": "question 0",
        "positive": rows[0]["positive_passages"][0]["text"],
        "negative_1": "other article 0.0",
    }
    two = training.mldr(path, num_negatives=2)
    assert len(two) == 2 and two["negative_2"] == ["other article 0.1", "other article 2.1"]  # row 1 left out

    recipe = tmp_path / "r.yaml"
    recipe.write_text(BASE.replace("{source: triples, path: data.tsv}", f"{{source: mldr, path: {path}, max_rows: 2}}"))
    assert len(load_train_data(load_recipe(recipe))) == 2
    assert load_recipe_by_name("mldr").data.train.source == "mldr"

    bad = tmp_path / "bad.jsonl"
    broken = _mldr_row(1, 1)
    broken["positive_passages"] = []
    bad.write_text(json.dumps(_mldr_row(0, 1)) + "\n" + json.dumps(broken) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'positive_passages': no positive passage"):
        training.mldr(bad)
    other = tmp_path / "other.jsonl"
    other.write_text('{"query": "q", "positive": "p"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="not MLDR train rows: no 'positive_passages'"):
        training.mldr(other)
    with pytest.raises(ConfigError, match="source 'mldr' needs path"):
        load_recipe(recipe, ["data.train.path=null"])


def test_every_nullable_key_defaults_to_null() -> None:
    """What lets ``dump_recipe(nulls=False)`` leave null keys out and still load back to the same recipe."""
    from typing import get_args

    from pydantic import BaseModel

    from mbert_retrieval.recipes import Recipe

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if type(None) in get_args(info.annotation):
                assert info.default is None and info.default_factory is None, f"{prefix}{name}"
            for arg in (info.annotation, *get_args(info.annotation)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, f"{prefix}{name}.")

    walk(Recipe, "")


@pytest.mark.parametrize("nulls", [True, False])
def test_dumped_recipes_load_back(tmp_path: Path, nulls: bool) -> None:
    from mbert_retrieval.recipes import dump_recipe

    for name in list_recipes():
        recipe = load_recipe_by_name(name)
        text = dump_recipe(recipe, nulls=nulls)
        assert nulls or "null" not in text
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
        assert load_recipe(tmp_path / f"{name}.yaml").model_dump() == recipe.model_dump(), name


def test_dry_run_prints_one_yaml_document(tmp_path: Path, capsys) -> None:
    import yaml

    (tmp_path / "data.tsv").write_text("q\tp\tn\n")
    path = tmp_path / "r.yaml"
    path.write_text(BASE)
    assert main(["train", "--dry-run", str(path), "training.num_devices=8"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert "null" not in out and "intent" not in printed and "eval" not in printed["data"]
    batch = printed.pop("batch")
    assert batch["global_batch"] == 32 and batch["in_batch_candidates_per_query"] == 32
    assert "written for 8 devices" in batch["note"]
    (tmp_path / "printed.yaml").write_text(yaml.safe_dump(printed))
    expected = load_recipe(path, ["training.num_devices=8"]).model_dump()
    assert load_recipe(tmp_path / "printed.yaml").model_dump() == expected


def _recipe_in(folder: Path, train_path: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "r.yaml"
    path.write_text(BASE.replace("path: data.tsv", f"path: {train_path}") + extra)
    return path


def test_recipe_paths_resolve_beside_the_recipe_first(tmp_path: Path, monkeypatch, capsys) -> None:
    from mbert_retrieval.recipes import check_recipe_paths

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    monkeypatch.chdir(here)
    (there / "beir").mkdir(parents=True)
    (there / "t.tsv").write_text("q\tp\tn\n")
    path = _recipe_in(there, "t.tsv")
    path.write_text(path.read_text().replace("loss:", "  eval: {beir: beir}\nloss:"))
    r = load_recipe(path)
    assert r.data.train.path == str(there / "t.tsv") and r.data.eval.beir == str(there / "beir")
    assert r.output_dir == "out/t"  # output_dir stays relative to the working directory
    check_recipe_paths(r)
    assert main(["train", "--dry-run", str(path)]) == 0
    assert f"path: {there / 't.tsv'}" in capsys.readouterr().out

    # not beside the recipe: from the working directory, as written
    (here / "w.tsv").write_text("q\tp\tn\n")
    r = load_recipe(_recipe_in(there, "w.tsv"))
    assert r.data.train.path == "w.tsv"
    check_recipe_paths(r)
    # in both places: beside the recipe wins
    (here / "t.tsv").write_text("q\tp\tn\n")
    assert load_recipe(_recipe_in(there, "t.tsv")).data.train.path == str(there / "t.tsv")
    # an override is taken from the working directory only
    r = load_recipe(_recipe_in(there, "w.tsv"), ["data.train.path=t.tsv"])
    assert r.data.train.path == "t.tsv"
    (there / "only-there.tsv").write_text("q\tp\tn\n")
    r = load_recipe(_recipe_in(there, "w.tsv"), ["data.train.path=only-there.tsv"])
    with pytest.raises(ConfigError) as err:
        check_recipe_paths(r)
    assert str(err.value) == (
        "override 'data.train.path=only-there.tsv': data.train.path: only-there.tsv: not found "
        f"(looked from the working directory: {here / 'only-there.tsv'})"
    )


def test_recipe_path_not_found_says_where_it_looked(tmp_path: Path, monkeypatch, capsys) -> None:
    here, there = tmp_path / "work" / "here", tmp_path / "there"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    path = _recipe_in(there, "../data/t.tsv")
    assert main(["train", "--dry-run", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {path}:6: data.train.path: ../data/t.tsv: not found (looked beside the recipe: "
        f"{tmp_path / 'data' / 't.tsv'}; and from the working directory: {tmp_path / 'work' / 'data' / 't.tsv'})\n"
    )
    monkeypatch.chdir(there)  # the recipe's folder is the working directory: one place
    assert main(["train", "--dry-run", str(path)]) == 1
    assert f"(looked beside the recipe and from the working directory: {tmp_path / 'data' / 't.tsv'})\n" in (
        capsys.readouterr().err
    )


def test_shipped_recipe_from_another_folder(tmp_path: Path, monkeypatch, capsys, data_dir: Path) -> None:
    """A shipped recipe's data path is written relative to the recipe file, so `train <repo>/recipes/X.yaml`
    finds SciFact from any working directory; a path that exists nowhere names both places looked at."""
    repo = REPO
    if data_dir.resolve() != (repo.parent / "shared" / "data").resolve():
        pytest.skip("the shipped recipes point at shared/data beside the repository")
    scifact = str((repo.parent / "shared" / "data" / "scifact").resolve())
    for cwd in (repo, tmp_path):
        monkeypatch.chdir(cwd)
        assert main(["train", "--dry-run", str(repo / "recipes" / "scifact-colbert.yaml")]) == 0
        assert f"path: {scifact}" in capsys.readouterr().out
    recipe = tmp_path / "r.yaml"
    recipe.write_text((repo / "recipes" / "scifact-colbert.yaml").read_text().replace("../../shared", "../nowhere"))
    assert main(["train", "--dry-run", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "r.yaml:21: data.train.path: ../nowhere/data/scifact: not found (looked beside" in err
    assert str(tmp_path.parent / "nowhere" / "data" / "scifact") in err


def test_validate_reports_every_file(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: t\nkind: [dense\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text(BASE + "traning: {epochs: 2}\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ndatasets:\n  - {name: a}\n")
    argv = ["validate", str(broken), str(good), str(tmp_path / "missing.yaml"), str(typo), str(suite)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"ok  {good}  (recipe)", f"ok  {suite}  (suite)"]
    assert captured.err.splitlines() == [
        f"error: {broken}:3: YAML syntax error: expected ',' or ']', but got '<stream end>'",
        f"error: {tmp_path / 'missing.yaml'}: file not found",
        f"error: {typo}:8: traning: unknown key; did you mean 'training'?",
    ]
    assert main(["validate", str(good), str(suite)]) == 0
