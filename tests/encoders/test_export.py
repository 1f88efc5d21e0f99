"""``export_pylate``: sentence-transformers 6 multi-vector models written in PyLate 1.6's layout.

PyLate 1.6.0 pins sentence-transformers 5.3.0 and stops on a sentence-transformers 6 save with
``ModuleNotFoundError: No module named 'sentence_transformers.base'``. The offline tests check the
files written, the refusals, and that sentence-transformers 6 reads the export back to the same token
vectors; the ``network`` test installs pylate==1.6.0 in a fresh venv and checks that PyLate itself
computes the same token vectors from the export as sentence-transformers 6 from the original
(``MBERT_RETRIEVAL_PYLATE_PYTHON=/path/to/python`` uses an interpreter that already has PyLate).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from mbert_retrieval.core.errors import ConfigError, OutputExistsError
from mbert_retrieval.encoders.export import export_pylate

FIXTURE = FIXTURES / "pylate-colbert"
PYLATE_VERSION = "1.6.0"
QUERIES = [
    "sort list python",
    "how do I read a file line by line?",
    "x",
    "merge two dictionaries, keep the last value! and some more words to fill the whole query length",
]
DOCUMENTS = [
    "How to sort a list in Python with sorted().",
    "Reading a file line by line.",
    "Merge two dictionaries: {**a, **b}; the last one wins.",
    "A long document that goes beyond the document length of the tiny models, so that truncation is "
    "exercised too: one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty.",
]


@pytest.fixture(scope="module")
def st6_fixture_save(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PyLate fixture as sentence-transformers 6 saves it (the layout PyLate cannot read)."""
    from sentence_transformers import MultiVectorEncoder

    out = tmp_path_factory.mktemp("st6") / "pylate-colbert"
    MultiVectorEncoder(str(FIXTURE), device="cpu").save(str(out))
    assert json.loads((out / "modules.json").read_text())[0]["type"].startswith("sentence_transformers.base.")
    return out


def _plain_colbert(base: str, variant: str, out: Path) -> Path:
    """A ColBERT built on a plain encoder (no PyLate history), saved by sentence-transformers 6.

    ``attend``: queries expanded to 24 [MASK]-padded tokens that the encoder attends to, two
    projections (bias + Tanh, then Identity) and truncate_dim 16. ``noexp``: no query expansion
    (queries capped at 12 tokens), one projection with a residual. Both: [Q]/[D] added as tokens, a
    skiplist holding a word that is no token (sentence-transformers drops it), document length 64."""
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from torch import nn

    torch.manual_seed(0)
    if variant == "attend":
        options = {"query_expansion": {"strategy": "fixed", "attend": True, "length": 24}}
    else:
        options = {"query_length": 12}
    transformer = Transformer(base, document_length=64, **options)
    tokenizer = transformer.tokenizer
    tokenizer.add_special_tokens({"extra_special_tokens": ["[Q] ", "[D] "]}, replace_extra_special_tokens=False)
    transformer.auto_model.resize_token_embeddings(len(tokenizer))
    hidden = transformer.get_embedding_dimension()
    extra = {}
    if variant == "attend":
        denses = [
            Dense(hidden, 48, bias=True, activation_function=nn.Tanh(), module_input_name="token_embeddings"),
            Dense(48, 24, bias=False, activation_function=nn.Identity(), module_input_name="token_embeddings"),
        ]
        extra = {"truncate_dim": 16}
    else:
        denses = [
            Dense(
                hidden,
                32,
                bias=False,
                activation_function=nn.Identity(),
                module_input_name="token_embeddings",
                use_residual=True,
            )
        ]
    mask = MultiVectorMask(skiplist_words=[*".,;:!?", "no-such-token"])
    model = MultiVectorEncoder(
        modules=[transformer, *denses, mask, Normalize("token_embeddings")],
        prompts={"query": "[Q] ", "document": "[D] "},
        device="cpu",
        similarity_fn_name="maxsim",
        **extra,
    )
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def plain_saves(tiny_modernbert: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plain")
    return {v: _plain_colbert(tiny_modernbert, v, root / f"st6-{v}") for v in ("attend", "noexp")}


def _st_config(folder: Path) -> dict:
    return json.loads((folder / "config_sentence_transformers.json").read_text())


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_export_writes_pylate_layout(st6_fixture_save: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = export_pylate(st6_fixture_save, tmp_path / "pylate")
    assert out == tmp_path / "pylate"
    assert _files(out) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Dense/config.json",
        "1_Dense/model.safetensors",
    }
    _no_leftovers(tmp_path)
    assert json.loads((out / "modules.json").read_text()) == [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    # What PyLate 1.6 itself wrote for this model (the fixture), bar the version stamp.
    theirs, ours = _st_config(FIXTURE), _st_config(out)
    assert ours.pop("__version__")["sentence_transformers"] == "5.3.0"
    theirs.pop("__version__")
    assert ours == theirs
    assert json.loads((out / "1_Dense" / "config.json").read_text()) == json.loads(
        (FIXTURE / "1_Dense" / "config.json").read_text()
    )
    assert json.loads((out / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 128,
        "do_lower_case": False,
    }
    ours_w, theirs_w = (
        load_file(out / "1_Dense" / "model.safetensors"),
        load_file(FIXTURE / "1_Dense" / "model.safetensors"),
    )
    assert set(ours_w) == {"linear.weight"}
    assert ours_w["linear.weight"].shape == (32, 64)
    assert ours_w["linear.weight"].equal(theirs_w["linear.weight"])
    backbone, original = load_file(out / "model.safetensors"), load_file(FIXTURE / "model.safetensors")
    assert set(backbone) == set(original)
    assert all(backbone[k].equal(original[k]) for k in original)
    # the [Q]/[D] prefixes are tokens of the tokenizer written (PyLate must not add them and resize)
    added = {t["content"]: t["id"] for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    assert added["[Q] "] == 1000 and added["[D] "] == 1001
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1002
    assert "library_name: PyLate" in (out / "README.md").read_text()


def test_export_plain_encoder_colberts(plain_saves: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    attend = export_pylate(plain_saves["attend"], tmp_path / "attend")
    config = _st_config(attend)
    assert config["query_prefix"] == "[Q] " and config["document_prefix"] == "[D] "
    assert config["prompts"] == {"query": "", "document": ""}
    assert (config["do_query_expansion"], config["attend_to_expansion_tokens"], config["query_length"]) == (
        True,
        True,
        24,
    )
    assert config["document_length"] == 64
    assert config["skiplist_words"] == list(".,;:!?")  # the word that is no token is dropped, as ST6 does
    assert [m["path"] for m in json.loads((attend / "modules.json").read_text())] == ["", "1_Dense", "2_Dense"]
    first = json.loads((attend / "1_Dense" / "config.json").read_text())
    assert first == {
        "in_features": 64,
        "out_features": 48,
        "bias": True,
        "activation_function": "torch.nn.modules.activation.Tanh",
        "use_residual": False,
    }
    assert set(load_file(attend / "1_Dense" / "model.safetensors")) == {"linear.weight", "linear.bias"}
    # truncate_dim 16 folded into the last projection
    assert json.loads((attend / "2_Dense" / "config.json").read_text())["out_features"] == 16
    assert load_file(attend / "2_Dense" / "model.safetensors")["linear.weight"].shape == (16, 48)

    noexp = export_pylate(plain_saves["noexp"], tmp_path / "noexp")
    config = _st_config(noexp)
    assert (config["do_query_expansion"], config["attend_to_expansion_tokens"], config["query_length"]) == (
        False,
        False,
        12,
    )
    assert json.loads((noexp / "1_Dense" / "config.json").read_text())["use_residual"] is True
    assert set(load_file(noexp / "1_Dense" / "model.safetensors")) == {"linear.weight", "residual.weight"}
    _no_leftovers(tmp_path)


def _encode_st6(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from sentence_transformers import MultiVectorEncoder

    model = MultiVectorEncoder(str(path), device="cpu")
    return (
        model.encode_query(QUERIES, convert_to_numpy=True, batch_size=2),
        model.encode_document(DOCUMENTS, convert_to_numpy=True, batch_size=2),
    )


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"{what} {i}: {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6, err_msg=f"{what} {i}")


def test_sentence_transformers_reads_export_back(
    st6_fixture_save: Path, plain_saves: dict[str, Path], tmp_path: Path
) -> None:
    for name, save in {"fixture": st6_fixture_save, **plain_saves}.items():
        exported = export_pylate(save, tmp_path / name)
        want_q, want_d = _encode_st6(save)
        got_q, got_d = _encode_st6(exported)
        _assert_same(got_q, want_q, f"{name} query")
        _assert_same(got_d, want_d, f"{name} document")


def _load(path: Path):
    from sentence_transformers import MultiVectorEncoder

    return MultiVectorEncoder(str(path), device="cpu")


def _rebuild(model, modules):
    from sentence_transformers import MultiVectorEncoder

    return MultiVectorEncoder(modules=modules, prompts=dict(model.prompts), device="cpu")


def _prompt(model):
    model.prompts["query"] = "query: "
    return model


def _expansion(**change):
    def apply(model):
        model[0].query_expansion = {**model[0].query_expansion, **change}
        return model

    return apply


def _set(index, **attrs):
    def apply(model):
        for k, v in attrs.items():
            setattr(model[index], k, v)
        return model

    return apply


def _without_normalize(model):
    return _rebuild(model, list(model)[:-1])


def _with_pooling(model):
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling

    return _rebuild(model, [*list(model), HierarchicalTokenPooling(pool_factor=2)])


def _meanmaxsim(model):
    model.similarity_fn_name = "meanmaxsim"
    return model


def _leaky(model):
    from torch import nn

    model[1].activation_function = nn.LeakyReLU(0.3)
    return model


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_prompt, "the query prompt 'query: ' is not a single token of the tokenizer"),
        (_expansion(strategy="min"), "query expansion strategy 'min'"),
        (_expansion(token="[UNK]"), "query expansion token '[UNK]'"),
        (_set(2, skiplist_tasks=["query", "document"]), "the skiplist applies to queries"),
        (_set(2, keep_only_token_ids=[5]), "keep_only_token_ids"),
        (_set(1, module_input_name="sentence_embedding"), "Dense 1 maps 'sentence_embedding'"),
        (_leaky, "Dense 1 activation LeakyReLU(negative_slope=0.3)"),
        (_without_normalize, "a Normalize of the token embeddings is missing"),
        (_with_pooling, "HierarchicalTokenPooling"),
        (_meanmaxsim, "similarity 'meanmaxsim'"),
    ],
    ids=[
        "prompt",
        "min-expansion",
        "expansion-token",
        "query-skiplist",
        "keep-only",
        "dense-input",
        "activation",
        "no-normalize",
        "pooling",
        "meanmaxsim",
    ],
)
def test_refuses_what_pylate_cannot_express(st6_fixture_save: Path, change, named: str) -> None:
    from mbert_retrieval.encoders.export import _plan

    model = change(_load(st6_fixture_save))
    with pytest.raises(ConfigError) as info:
        _plan(model, "MODEL")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("MODEL: cannot export to PyLate: ")
    assert named in message


def test_refusal_writes_nothing(st6_fixture_save: Path, tiny_modernbert: str, tmp_path: Path) -> None:
    model = _load(st6_fixture_save)
    model.prompts["document"] = "passage: "
    model.save(str(tmp_path / "text-prompt"))
    with pytest.raises(ConfigError, match="the document prompt 'passage: ' is not a single token"):
        export_pylate(tmp_path / "text-prompt", tmp_path / "out")
    with pytest.raises(ConfigError, match="not a multi-vector"):
        export_pylate(tiny_modernbert, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


def test_output_folder_rules(st6_fixture_save: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    export_pylate(st6_fixture_save, out)
    before = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        export_pylate(st6_fixture_save, out)
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    (out / "stale.txt").write_text("from the previous export")
    export_pylate(st6_fixture_save, out, overwrite=True)
    assert "stale.txt" not in _files(out) and "1_Dense/model.safetensors" in _files(out)

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("not a model")
    with pytest.raises(OutputExistsError, match="not a model folder"):
        export_pylate(st6_fixture_save, other, overwrite=True)
    assert _files(other) == {"keep.txt"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is not a folder"):
        export_pylate(st6_fixture_save, tmp_path / "file")
    with pytest.raises(OutputExistsError, match="the model folder itself"):
        export_pylate(out, out, overwrite=True)
    _no_leftovers(tmp_path)


def test_import_is_light() -> None:
    code = "import sys, mbert_retrieval.encoders.export\n"
    code += "print(sorted({'torch', 'sentence_transformers'} & set(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


# Run with PyLate's interpreter: load each exported folder, encode, write the token vectors to an .npz.
PYLATE_SCRIPT = """
import json, sys
import numpy as np
import pylate, sentence_transformers
from pylate import models

jobs = json.loads(sys.argv[1])
for job in jobs:
    model = models.ColBERT(job["model"], device="cpu")
    arrays = {
        "pylate": np.array(pylate.__version__),
        "sentence_transformers": np.array(sentence_transformers.__version__),
        "tokenizer_length": np.array(len(model.tokenizer)),
        "embedding_rows": np.array(model[0].auto_model.get_input_embeddings().weight.shape[0]),
    }
    for kind, is_query in (("query", True), ("document", False)):
        vectors = model.encode(job[kind], is_query=is_query, convert_to_numpy=True, batch_size=2)
        for i, v in enumerate(vectors):
            arrays[f"{kind}_{i}"] = np.asarray(v, dtype=np.float32)
    np.savez(job["npz"], **arrays)
"""


def _pylate_python(tmp_path: Path) -> str:
    """``$MBERT_RETRIEVAL_PYLATE_PYTHON``, else a fresh venv with pylate==1.6.0 from the package registry
    (pip's cache is used when warm)."""
    given = os.environ.get("MBERT_RETRIEVAL_PYLATE_PYTHON")
    if given:
        return given
    venv = tmp_path / "pylate-venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", f"pylate=={PYLATE_VERSION}"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"pip install pylate=={PYLATE_VERSION} failed:\n{done.stderr[-4000:]}"
    print(f"fresh venv with pylate=={PYLATE_VERSION}: {time.perf_counter() - start:.0f} s")
    return str(python)


@pytest.mark.network
def test_pylate_reads_export(st6_fixture_save: Path, plain_saves: dict[str, Path], tmp_path: Path) -> None:
    saves = {"fixture": st6_fixture_save, **plain_saves}
    python = _pylate_python(tmp_path)
    jobs = [
        {
            "model": str(export_pylate(save, tmp_path / f"export-{name}")),
            "npz": str(tmp_path / f"{name}.npz"),
            "query": QUERIES,
            "document": DOCUMENTS,
        }
        for name, save in saves.items()
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    script = tmp_path / "pylate_encode.py"
    script.write_text(PYLATE_SCRIPT)
    done = subprocess.run(
        [python, str(script), json.dumps(jobs)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800
    )
    assert done.returncode == 0, f"PyLate failed on the export:\n{done.stderr[-4000:]}"
    for name, save in saves.items():
        want_q, want_d = _encode_st6(save)
        with np.load(tmp_path / f"{name}.npz") as got:
            assert str(got["pylate"]) == PYLATE_VERSION and str(got["sentence_transformers"]) == "5.3.0"
            # PyLate found the prefixes in the vocabulary: nothing added, no embedding resized
            from sentence_transformers import MultiVectorEncoder

            original = MultiVectorEncoder(str(save), device="cpu")
            assert int(got["tokenizer_length"]) == len(original.tokenizer)
            assert int(got["embedding_rows"]) == original[0].auto_model.get_input_embeddings().weight.shape[0]
            _assert_same([got[f"query_{i}"] for i in range(len(QUERIES))], want_q, f"{name} query")
            _assert_same([got[f"document_{i}"] for i in range(len(DOCUMENTS))], want_d, f"{name} document")


def test_export_command(tmp_path: Path) -> None:
    from mbert_retrieval.cli.app import main

    out = tmp_path / "pylate"
    assert main(["export", str(FIXTURE), "--format", "pylate", "--out", str(out)]) == 0
    assert json.loads((out / "config_sentence_transformers.json").read_text())["model_type"] == "ColBERT"
    assert main(["export", str(FIXTURE), "--out", str(out)]) == 1  # exists: refused in one line
    assert main(["export", str(FIXTURE), "--out", str(out), "--overwrite"]) == 0
