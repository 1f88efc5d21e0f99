"""The dense encoder on a tiny ModernBERT (built in-process) and on real MiniLM weights."""

from __future__ import annotations

import numpy as np
import pytest

from mbert_retrieval.core.errors import ConfigError, MbertRetrievalError
from mbert_retrieval.encoders import backend
from mbert_retrieval.encoders.dense import DenseEncoder


@pytest.fixture(scope="module")
def tiny(tiny_modernbert: str) -> DenseEncoder:
    return DenseEncoder(tiny_modernbert, batch_size=4, show_progress=False)


def test_describe_reports_length_attention_and_shape(tiny: DenseEncoder) -> None:
    d = tiny.describe()
    assert d["model_type"] == "modernbert"
    assert d["attn_implementation"] == "sdpa" and d["device"] == "cpu" and d["dtype"] == "float32"
    # the tiny model has 512 positions: its full length is used, not a silent 512/256 default cut
    assert d["max_seq_length"] == d["max_position_embeddings"] == 512
    assert d["dim"] == 64 and d["normalize"] is True
    assert d["unpadded"] == "sdpa"  # ModernBERT inference runs the unpadded forward (docs/encoding.md)


def test_unpad_switch_from_config_and_process_default(tiny_modernbert: str, minilm_path: str) -> None:
    from mbert_retrieval.config import EncoderConfig
    from mbert_retrieval.encoders import encoder_from_config

    off = encoder_from_config(EncoderConfig(model=tiny_modernbert, unpad=False), progress=False)
    assert off.describe()["unpadded"] is None
    backend.set_unpad_default(False)
    try:
        assert DenseEncoder(tiny_modernbert, show_progress=False).unpadded_path is None
        assert DenseEncoder(tiny_modernbert, show_progress=False, unpad=True).unpadded_path == "sdpa"
    finally:
        backend.set_unpad_default(True)
    # not ModernBERT: nothing to unpad, transformers' forward
    assert DenseEncoder(minilm_path, show_progress=False).unpadded_path is None


def test_embeddings_are_normalised_and_order_independent(tiny: DenseEncoder) -> None:
    texts = ["short", "a much longer text " * 20, "medium length text here", ""]
    emb = tiny.encode_documents(texts)
    assert emb.shape == (4, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the encoder sorts by length internally; results come back in input order
    one_by_one = np.stack([tiny.encode_documents([t])[0] for t in texts])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-5)


def test_prompts_change_embeddings_and_fingerprint(tiny_modernbert: str, tiny: DenseEncoder) -> None:
    prompted = DenseEncoder(tiny_modernbert, query_prompt="search_query: ", show_progress=False)
    a = tiny.encode_queries(["sort a list"])
    b = prompted.encode_queries(["sort a list"])
    c = tiny.encode_queries(["search_query: sort a list"])
    np.testing.assert_allclose(b, c, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)
    assert prompted.fingerprint() != tiny.fingerprint()
    assert DenseEncoder(tiny_modernbert, show_progress=False).fingerprint() == tiny.fingerprint()


def test_max_seq_length_is_honoured_and_truncation_counted(tiny_modernbert: str) -> None:
    short = DenseEncoder(tiny_modernbert, max_seq_length=16, show_progress=False)
    assert short.describe()["max_seq_length"] == 16
    long_text = "word " * 100
    assert short.count_truncated([long_text, "two words"]) == 1
    # truncation really happens at 16 tokens: text past that point does not change the embedding
    ids = short.model.tokenizer(long_text)["input_ids"]
    assert len(ids) > 16
    np.testing.assert_allclose(
        short.encode_documents([long_text]), short.encode_documents([long_text + " extra tail"]), atol=1e-6
    )
    with pytest.raises(ConfigError, match="exceeds the model's 512 positions"):
        DenseEncoder(tiny_modernbert, max_seq_length=4096, show_progress=False)


def test_attention_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    monkeypatch.setattr(backend, "flash_attn_available", lambda: True)
    assert backend.choose_backend("modernbert") == backend.Backend("cuda", "flash_attention_2", "bfloat16")
    assert backend.choose_backend("modernbert", "cpu") == backend.Backend("cpu", "sdpa", "float32")
    assert backend.choose_backend("bert") == backend.Backend("cuda", None, "float32")
    monkeypatch.setattr(backend, "flash_attn_available", lambda: False)
    assert backend.choose_backend("modernbert") == backend.Backend("cuda", "sdpa", "float32")
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert backend.choose_backend("modernbert") == backend.Backend("cpu", "sdpa", "float32")


def test_bad_model_paths(tmp_path) -> None:
    with pytest.raises(ConfigError, match="model path does not exist"):
        DenseEncoder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MbertRetrievalError, match="cannot load model"):
        DenseEncoder(str(tmp_path / "empty"))


def test_real_minilm_weights(minilm_path: str) -> None:
    enc = DenseEncoder(minilm_path, show_progress=False)
    d = enc.describe()
    assert (d["dim"], d["max_seq_length"], d["model_type"]) == (384, 256, "bert")
    q = enc.encode_queries(["How do I sort a list in Python?"])
    docs = enc.encode_documents(
        ["Use sorted(my_list) or my_list.sort() to order the items of a list.", "The Eiffel Tower is in Paris."]
    )
    sims = (q @ docs.T)[0]
    assert sims[0] > 0.5 > sims[1]


@pytest.fixture(scope="module")
def mlm_checkpoint(tiny_modernbert: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny ModernBERT saved with a masked-LM head: loading it as an encoder makes transformers
    print its load report (the head's weights UNEXPECTED)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-mlm")
    AutoModelForMaskedLM.from_pretrained(tiny_modernbert).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_modernbert).save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("kind", ["dense", "colbert"])
def test_python_api_loads_quietly(mlm_checkpoint: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From Python (no CLI, set_quiet untouched) transformers' load chatter stays out, and its settings are
    restored after the load; set_quiet(False) shows it (the CLI's -v)."""
    import logging

    from transformers.utils import logging as hf_logging

    from mbert_retrieval.encoders import load_encoder

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    hf_logger = logging.getLogger("transformers")  # propagate=False: caplog would not see it
    handler = Keep()
    hf_logger.addHandler(handler)
    monkeypatch.setattr(backend, "_QUIET", None)  # the Python default (CLI tests set it for the process)
    before = hf_logging.get_verbosity()
    try:
        hf_logging.set_verbosity_warning()
        load_encoder(mlm_checkpoint, kind, show_progress=False)
        assert not [r for r in records if "LOAD REPORT" in r.getMessage()]
        assert hf_logging.get_verbosity() == logging.WARNING  # left as found
        backend.set_quiet(False)
        load_encoder(mlm_checkpoint, kind, show_progress=False)
        assert [r for r in records if "LOAD REPORT" in r.getMessage()]  # the check above is not vacuous
    finally:
        hf_logger.removeHandler(handler)
        hf_logging.set_verbosity(before)
