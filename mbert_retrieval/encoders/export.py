"""Export a multi-vector (ColBERT) model to the layout PyLate 1.6 reads.

PyLate 1.6.0 (its newest release) pins sentence-transformers 5.3.0, which cannot read a
sentence-transformers 6 save: ``pylate.models.ColBERT(<st6 save>)`` stops with
``ModuleNotFoundError: No module named 'sentence_transformers.base'`` (modules.json names
``sentence_transformers.base.modules.transformer.Transformer``, a module path 5.3 does not have).
``export_pylate`` writes what PyLate itself saves: the backbone (config, weights, tokenizer) at the
root, ``sentence_transformers.models.Transformer`` + ``pylate.models.Dense.Dense`` in modules.json,
and the ColBERT options (prefixes, lengths, query expansion, skiplist) in
config_sentence_transformers.json, so that PyLate computes the same token vectors as
sentence-transformers 6 does on the original model.

What PyLate cannot express is refused with a one-line ``ConfigError`` naming it, never exported
approximately. ``import mbert_retrieval.encoders.export`` is light: torch and sentence-transformers load when
``export_pylate`` runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import ConfigError, OutputExistsError, OutputWriteError
from mbert_retrieval.core.io import WRITE_ERRNOS, remove_stale_staging, staging_dir
from mbert_retrieval.core.lock import output_lock

# The layout written is sentence-transformers 5.3's (PyLate 1.6 pins sentence-transformers==5.3.0).
PYLATE_ST_VERSION = "5.3.0"
TRANSFORMER_REF = "sentence_transformers.models.Transformer"
DENSE_REF = "pylate.models.Dense.Dense"
# Texts on which a prompt is checked to tokenize as PyLate's prefix insertion does.
_PROBES = ("hello world", "Sorting a list in Python.", "x", "A-b, c! 42", "")

EXPORT_HELP = """\
Write MODEL (any multi-vector checkpoint sentence-transformers 6 reads: its own saves, PyLate,
Stanford ColBERT) as a PyLate 1.6 ColBERT folder at DIR, loadable with
pylate.models.ColBERT(DIR). PyLate 1.6 cannot read sentence-transformers 6 saves. The token
vectors PyLate computes from DIR equal those of sentence-transformers 6 on MODEL (PyLate strips
leading and trailing whitespace from texts; sentence-transformers 6 does not). A model PyLate
cannot express (a token-pooling module, a 'min' query expansion, a query-side skiplist, a prompt
that is not one token of the tokenizer, ...) is refused with the reason. DIR must not exist or be
empty, unless --overwrite (it replaces a model folder only, once the new one is complete)."""


def export_pylate(model: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a PyLate 1.6 ColBERT folder at ``out``; return ``out``.

    ``model``: a local folder or hub id of a multi-vector checkpoint that
    ``sentence_transformers.MultiVectorEncoder`` reads (a sentence-transformers 6 save, a PyLate or a
    Stanford ColBERT checkpoint). The folder written holds what PyLate's own ``save`` writes:

    - the backbone's ``config.json``, weights and tokenizer files at the root, and
      ``sentence_bert_config.json`` (``max_seq_length``, ``do_lower_case``);
    - ``modules.json``: ``sentence_transformers.models.Transformer`` then one
      ``pylate.models.Dense.Dense`` per projection (``N_Dense/config.json`` and
      ``N_Dense/model.safetensors``, keys ``linear.weight`` [+ ``linear.bias``, ``residual.weight``]);
    - ``config_sentence_transformers.json``: ``model_type`` ColBERT, ``query_prefix`` /
      ``document_prefix`` (the model's query / document prompts, each one token of the tokenizer),
      ``query_length``, ``document_length``, ``do_query_expansion``, ``attend_to_expansion_tokens``,
      ``skiplist_words``, empty ``prompts`` and ``similarity_fn_name`` MaxSim;
    - ``README.md``: a short model card.

    The folder is written beside ``out`` and renamed into place when complete.

    Raises:
        ConfigError: ``model`` cannot be loaded, is not a multi-vector model, or holds something
            PyLate cannot express (the message names it).
        OutputExistsError: ``out`` exists and is not an empty folder, and ``overwrite`` is false
            (or ``out`` is not a model folder, or is ``model`` itself).
        OutputWriteError: the disk refused a write.
    """
    out = Path(out)
    source = str(model)
    if Path(source).exists() and out.exists() and Path(source).resolve() == out.resolve():
        raise OutputExistsError(f"{out} is the model folder itself; choose another output folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise OutputWriteError(out, e) from e
        raise
    with output_lock(out, "export"):  # one writer: the staging folders of another export are not ours to remove
        _check_output(out, overwrite)
        mve = _load(source)
        plan = _plan(mve, source)
        _write(plan, out)
    return out


def _check_output(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another output folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not (out / "modules.json").is_file() and not (out / "config.json").is_file():
        raise OutputExistsError(f"{out} is not a model folder (no modules.json or config.json); refusing to replace it")


def _load(source: str) -> Any:
    from mbert_retrieval.encoders.colbert import multivector_layout

    if multivector_layout(source) is None:
        raise ConfigError(
            f"{source}: not a multi-vector (ColBERT) checkpoint; train or build a ColBERT model first, then export it"
        )
    from sentence_transformers import MultiVectorEncoder

    try:
        return MultiVectorEncoder(source, device="cpu")
    except (OSError, ValueError, ImportError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{source}: cannot load as a multi-vector model: {first}") from e


def _refuse(source: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: cannot export to PyLate: {what}")


def _plan(mve: Any, source: str) -> dict[str, Any]:
    """Check that PyLate expresses ``mve`` exactly; return what to write."""
    import sentence_transformers

    transformer, denses, mask = _split_modules(mve, source)
    tokenizer = transformer.tokenizer
    dense_dicts = [_dense(d, i, source) for i, d in enumerate(denses, start=1)]
    _check_encoder_options(mve, dense_dicts, source)
    query_prefix = _prefix(mve, tokenizer, "query", source)
    document_prefix = _prefix(mve, tokenizer, "document", source)
    query_length, do_expansion, attend = _query_options(transformer, tokenizer, source)
    max_seq_length = transformer.max_seq_length
    document_length = transformer.document_length or max_seq_length
    if document_length is None:
        raise _refuse(source, "no document length (Transformer.document_length and max_seq_length are unset)")
    skiplist = _document_skiplist(mask, tokenizer, source)
    st_config = {
        "model_type": "ColBERT",
        "__version__": _versions(),
        "prompts": {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "MaxSim",
        "query_prefix": query_prefix,
        "document_prefix": document_prefix,
        "query_length": int(query_length),
        "document_length": int(document_length),
        "attend_to_expansion_tokens": attend,
        "skiplist_words": skiplist,
        "do_query_expansion": do_expansion,
    }
    sbert_config: dict[str, Any] = {"do_lower_case": False}
    if max_seq_length is not None:
        sbert_config = {"max_seq_length": int(max_seq_length), **sbert_config}
    return {
        "source": source,
        "transformer": transformer,
        "denses": dense_dicts,
        "st_config": st_config,
        "sbert_config": sbert_config,
        "st_version": sentence_transformers.__version__,
    }


def _split_modules(mve: Any, source: str) -> tuple[Any, list[Any], Any]:
    """The model's modules as PyLate's pipeline: ``(transformer, [dense, ...], mask)``, checked to be
    Transformer -> Dense... -> MultiVectorMask + Normalize (of the token embeddings)."""
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    modules = list(mve)
    names = [type(m).__name__ for m in modules]
    if not modules or type(modules[0]) is not Transformer:
        raise _refuse(source, f"the first module is {names[0] if names else 'missing'}, not a Transformer")
    transformer = modules[0]
    _check_transformer(transformer, source)

    denses = []
    rest = modules[1:]
    while rest and type(rest[0]) is Dense:
        denses.append(rest.pop(0))
    if not denses:
        raise _refuse(source, "no Dense projection follows the Transformer (PyLate needs at least one)")
    kinds = sorted(type(m).__name__ for m in rest)
    if kinds != ["MultiVectorMask", "Normalize"] or not all(type(m) in (MultiVectorMask, Normalize) for m in rest):
        found = " -> ".join(names)
        missing = "; a Normalize of the token embeddings is missing (PyLate always L2-normalises them)"
        raise _refuse(
            source,
            f"modules {found}: PyLate expresses only Transformer -> Dense... -> MultiVectorMask + Normalize"
            + (missing if "Normalize" not in kinds else ""),
        )
    mask = next(m for m in rest if type(m) is MultiVectorMask)
    norm = next(m for m in rest if type(m) is Normalize)
    if norm.module_input_name != "token_embeddings" or norm.module_output_name != "token_embeddings":
        raise _refuse(source, f"Normalize works on {norm.module_input_name!r}, not the token embeddings")
    return transformer, denses, mask


def _check_encoder_options(mve: Any, dense_dicts: list[dict[str, Any]], source: str) -> None:
    """Token pooling and the similarity PyLate cannot express are refused; a ``truncate_dim`` is folded
    into the last projection."""
    if getattr(mve, "token_pooling", None) is not None:
        raise _refuse(source, "token pooling is set (PyLate pools only at encode time, with pool_factor)")
    similarity = str(mve.similarity_fn_name or "maxsim").lower()
    if similarity != "maxsim":
        raise _refuse(source, f"similarity {mve.similarity_fn_name!r} (PyLate scores with MaxSim only)")
    truncate_dim = getattr(mve, "truncate_dim", None)
    if truncate_dim is not None and truncate_dim < dense_dicts[-1]["config"]["out_features"]:
        _truncate(dense_dicts[-1], int(truncate_dim), source)


def _query_options(transformer: Any, tokenizer: Any, source: str) -> tuple[int, bool, bool]:
    """``(query_length, do_query_expansion, attend_to_expansion_tokens)`` in PyLate's terms. PyLate pads
    queries (with expansion) with the mask token, else the EOS token."""
    expansion = transformer.query_expansion
    if expansion is None:
        query_length = transformer.query_length or transformer.max_seq_length
        if query_length is None:
            raise _refuse(source, "no query length (Transformer.query_length and max_seq_length are unset)")
        return query_length, False, False
    if expansion["strategy"] != "fixed":
        raise _refuse(
            source,
            f"query expansion strategy {expansion['strategy']!r} (PyLate pads every query to exactly "
            "query_length: strategy 'fixed')",
        )
    pad_token = tokenizer.mask_token if tokenizer.mask_token_id is not None else tokenizer.eos_token
    if pad_token is None:
        raise _refuse(source, "query expansion without a mask or EOS token (PyLate pads queries with one)")
    token = expansion.get("token")
    if token is not None and tokenizer.convert_tokens_to_ids(token) != tokenizer.convert_tokens_to_ids(pad_token):
        raise _refuse(source, f"query expansion token {token!r} (PyLate expands queries with {pad_token!r} only)")
    return expansion["length"], True, bool(expansion["attend"])


def _document_skiplist(mask: Any, tokenizer: Any, source: str) -> list[str]:
    """The mask's skiplist as PyLate's ``skiplist_words`` (documents only; a query-side one is refused)."""
    if mask.keep_only_token_ids:
        raise _refuse(source, "MultiVectorMask keeps only some token ids (keep_only_token_ids)")
    if "query" in mask.skiplist_tasks and mask.skiplist_words:
        raise _refuse(source, "the skiplist applies to queries (PyLate applies it to documents only)")
    return _skiplist(mask, tokenizer) if "document" in mask.skiplist_tasks else []


def _versions() -> dict[str, str]:
    """The ``__version__`` block PyLate's own save writes (sentence-transformers as PyLate 1.6 pins it)."""
    from importlib.metadata import version

    import torch

    return {
        "sentence_transformers": PYLATE_ST_VERSION,
        "transformers": version("transformers"),
        "pytorch": torch.__version__,
    }


def _check_transformer(transformer: Any, source: str) -> None:
    if transformer.transformer_task != "feature-extraction":
        raise _refuse(source, f"Transformer task {transformer.transformer_task!r} (PyLate: feature-extraction)")
    text = {"method": "forward", "method_output_name": "last_hidden_state"}
    if dict(transformer.modality_config) != {"text": text} or transformer.module_output_name != "token_embeddings":
        raise _refuse(
            source,
            f"Transformer modality config {transformer.modality_config!r} (PyLate: text only, the last hidden state)",
        )
    if transformer.processing_kwargs:
        raise _refuse(source, f"Transformer processing_kwargs {transformer.processing_kwargs!r}")
    processor = transformer.processor  # a transformers tokenizer (duck-typed: transformers is not imported here)
    if not all(hasattr(processor, a) for a in ("get_vocab", "convert_tokens_to_ids", "save_pretrained", "tokenize")):
        raise _refuse(source, f"its processor is a {type(transformer.processor).__name__}, not a tokenizer")


def _dense(dense: Any, index: int, source: str) -> dict[str, Any]:
    from sentence_transformers.util import fullname
    from torch import nn

    where = f"Dense {index}"
    if dense.module_input_name != "token_embeddings" or dense.module_output_name != "token_embeddings":
        raise _refuse(source, f"{where} maps {dense.module_input_name!r}, not the token embeddings")
    act = dense.activation_function
    ok = (
        isinstance(act, nn.Module)
        and type(act).__module__.startswith("torch.nn.")
        and not list(act.parameters())
        and not list(act.buffers())
    )
    if ok:
        try:
            ok = repr(type(act)()) == repr(act)
        except TypeError:
            ok = False
    if not ok:
        raise _refuse(source, f"{where} activation {act!r} (PyLate rebuilds it as its class with default arguments)")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in dense.state_dict().items()}
    config = {
        "in_features": int(dense.in_features),
        "out_features": int(dense.out_features),
        "bias": bool(dense.bias),
        "activation_function": fullname(act),
        "use_residual": bool(dense.use_residual),
    }
    return {"path": f"{index}_Dense", "config": config, "state": state}


def _truncate(dense: dict[str, Any], dim: int, source: str) -> None:
    """Fold the model's ``truncate_dim`` into its last projection: keep its first ``dim`` outputs
    (PyLate normalises after, as sentence-transformers normalises the truncated vectors)."""
    if dense["config"]["activation_function"] != "torch.nn.modules.linear.Identity":
        raise _refuse(source, f"truncate_dim {dim} with an activation on the last Dense")
    dense["config"]["out_features"] = dim
    dense["state"] = {k: v[:dim].clone() for k, v in dense["state"].items()}


def _effective_prompt(mve: Any, name: str) -> str:
    """The prompt ``encode_query`` / ``encode_document`` prepend (see ``MultiVectorEncoder``)."""
    prompts = mve.prompts or {}
    if name in prompts:
        return prompts[name] or ""
    if mve.default_prompt_name is not None:
        return prompts.get(mve.default_prompt_name) or ""
    return ""


def _prefix(mve: Any, tokenizer: Any, name: str, source: str) -> str:
    """The model's ``name`` prompt as PyLate's prefix: PyLate inserts its token id after the first
    token instead of prepending text, so it must be one token and tokenize as that insertion does."""
    prompt = _effective_prompt(mve, name)
    if not prompt:
        return ""
    refusal = _refuse(
        source,
        f"the {name} prompt {prompt!r} is not a single token of the tokenizer (PyLate inserts its "
        f"{name}_prefix as one token id)",
    )
    token_id = tokenizer.convert_tokens_to_ids(prompt)
    if token_id is None or (token_id == tokenizer.unk_token_id and prompt != tokenizer.unk_token):
        raise refusal
    if prompt not in tokenizer.get_vocab() or tokenizer.tokenize(prompt) != [prompt]:
        raise refusal
    for probe in _PROBES:
        theirs = list(tokenizer(probe)["input_ids"])
        pylate = [*theirs[:1], token_id, *theirs[1:]]
        if list(tokenizer(prompt + probe)["input_ids"]) != pylate:
            raise refusal
    return prompt


def _skiplist(mask: Any, tokenizer: Any) -> list[str]:
    """The skiplist words as sentence-transformers uses them: words that are no token of the
    vocabulary are dropped (PyLate would map them to the unknown token and skip that)."""
    unk_id, unk = tokenizer.unk_token_id, tokenizer.unk_token
    return [
        w for w in mask.skiplist_words if unk_id is None or w == unk or tokenizer.convert_tokens_to_ids(w) != unk_id
    ]


def _card(plan: dict[str, Any]) -> str:
    c = plan["st_config"]
    dim = plan["denses"][-1]["config"]["out_features"]
    return f"""---
tags:
- ColBERT
- PyLate
- sentence-transformers
library_name: PyLate
---

# ColBERT (PyLate layout)

Exported by mbert-retrieval from `{plan["source"]}` (sentence-transformers {plan["st_version"]}) for
PyLate 1.6 (sentence-transformers {PYLATE_ST_VERSION}). Token vectors: {dim} dimensions, scored with MaxSim.

- query prefix {c["query_prefix"]!r}, query length {c["query_length"]}, query expansion {c["do_query_expansion"]}
  (attended: {c["attend_to_expansion_tokens"]})
- document prefix {c["document_prefix"]!r}, document length {c["document_length"]},
  {len(c["skiplist_words"])} skiplist words

```python
from pylate import models

model = models.ColBERT("path/to/this/folder")
queries = model.encode(["a query"], is_query=True)
documents = model.encode(["a document"], is_query=False)
```
"""


def _write(plan: dict[str, Any], out: Path) -> None:
    """Write the planned folder in a temporary sibling of ``out``, renamed onto it when complete (an
    existing ``out`` is kept until then: ``core.io.staging_dir``)."""
    from safetensors.torch import save_file

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        with staging_dir(out) as tmp:
            transformer = plan["transformer"]
            transformer.auto_model.save_pretrained(str(tmp), safe_serialization=True)
            transformer.tokenizer.save_pretrained(str(tmp))
            modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_REF}]
            for i, dense in enumerate(plan["denses"], start=1):
                folder = tmp / dense["path"]
                folder.mkdir()
                _json(folder / "config.json", dense["config"])
                save_file(dense["state"], str(folder / "model.safetensors"), metadata={"format": "pt"})
                modules.append({"idx": i, "name": str(i), "path": dense["path"], "type": DENSE_REF})
            _json(tmp / "modules.json", modules)
            _json(tmp / "sentence_bert_config.json", plan["sbert_config"])
            _json(tmp / "config_sentence_transformers.json", plan["st_config"])
            (tmp / "README.md").write_text(_card(plan), encoding="utf-8")
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise OutputWriteError(out, e) from e
        raise


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
