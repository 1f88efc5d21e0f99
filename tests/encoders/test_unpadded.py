"""The unpadded ModernBERT forward equals transformers' padded forward (fp32, 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import ModernBertConfig, ModernBertModel

from mbert_retrieval.encoders import unpadded as up

TOL = 1e-5


def _model(**overrides) -> ModernBertModel:
    """A tiny random ModernBERT: 4 layers alternating global / local, window 16 (|i - j| <= 8)."""
    cfg = dict(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=96,
        local_attention=16,
        global_attn_every_n_layers=2,
        max_position_embeddings=96,
        pad_token_id=0,
    )
    cfg.update(overrides)
    torch.manual_seed(0)
    model = ModernBertModel(ModernBertConfig(**cfg)).eval()
    # Random-init LayerNorms are the identity: give them weights so a wrong norm would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model() -> ModernBertModel:
    return _model()


def _batch(lengths: list[int], width: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    ids = torch.randint(5, 300, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


def _max_diff(model: ModernBertModel, ids: torch.Tensor, mask: torch.Tensor, **options) -> float:
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = up.UnpaddedModernBert(model, **options)(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == ref.shape
    real = mask.bool()
    assert torch.all(out[~real] == 0), "padded positions are zeros"
    return float((ref - out)[real].abs().max())


def test_window_semantics_match_transformers(model: ModernBertModel) -> None:
    # local_attention 16 -> HF masks |i - j| > 8 (config.sliding_window = local_attention // 2)
    assert model.config.sliding_window == 8
    assert up.UnpaddedModernBert(model).window == 8
    assert model.config.layer_types == ["full_attention", "sliding_attention"] * 2


# lengths around the window edge: half window 8, window 16, block 8
EDGE = [1, 2, 7, 8, 9, 10, 15, 16, 17, 18, 35, 96]


@pytest.mark.parametrize("length", EDGE)
def test_single_sequence_equals_hf(model: ModernBertModel, length: int) -> None:
    ids, mask = _batch([length])
    assert _max_diff(model, ids, mask) <= TOL


def test_mixed_batch_equals_hf(model: ModernBertModel) -> None:
    lengths = [96, 1, 17, 16, 2, 35, 9, 8, 96, 15, 18, 7]  # unsorted, repeated lengths, max-length rows
    ids, mask = _batch(lengths)
    assert _max_diff(model, ids, mask) <= TOL


@pytest.mark.parametrize("block", [1, 3, 8, 13, 32])
def test_any_block_size_gives_the_band(model: ModernBertModel, block: int) -> None:
    ids, mask = _batch([96, 40, 17, 9, 3])
    assert _max_diff(model, ids, mask, block=block) <= TOL


def test_equal_lengths_batched_and_extra_padding(model: ModernBertModel) -> None:
    ids, mask = _batch([20, 20, 20, 33, 33], width=50)  # padded past the longest row too
    assert _max_diff(model, ids, mask) <= TOL


def test_rope_thetas_and_layer_patterns() -> None:
    # every layer local but the first, different thetas, odd local window (17 // 2 = 8)
    m = _model(global_attn_every_n_layers=3, num_hidden_layers=5, local_attention=17, global_rope_theta=5000.0)
    assert m.config.rope_parameters["full_attention"]["rope_theta"] == 5000.0
    ids, mask = _batch([90, 26, 9, 1])
    assert _max_diff(m, ids, mask) <= TOL


def test_no_padding_and_no_mask(model: ModernBertModel) -> None:
    ids, _ = _batch([40, 40])
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state
        out = up.UnpaddedModernBert(model)(input_ids=ids).last_hidden_state
    assert float((ref - out).abs().max()) <= TOL


def test_falls_back_to_hf_where_packing_does_not_apply(model: ModernBertModel) -> None:
    fast = up.UnpaddedModernBert(model)
    ids, mask = _batch([12, 5])
    left = mask.flip(1)  # left padding: positions would differ
    holes = mask.clone()
    holes[0, 3] = 0
    for m in (left, holes):
        assert up.right_padded_lengths(m) is None
        with torch.no_grad():
            assert torch.equal(
                fast(input_ids=ids, attention_mask=m).last_hidden_state,
                model(input_ids=ids, attention_mask=m).last_hidden_state,
            )
    with torch.no_grad():
        out = fast(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert out.hidden_states is not None  # HF's forward served it


def test_packing() -> None:
    ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [9, 10, 11, 12]])
    mask = (ids > 0).long()
    lengths = up.right_padded_lengths(mask)
    packed = up.pack(ids, lengths)
    assert packed.input_ids.tolist() == [5, 6, 7, 8, 9, 10, 11, 12]
    assert packed.positions.tolist() == [0, 1, 2, 0, 0, 1, 2, 3]
    assert packed.cu_seqlens.tolist() == [0, 3, 4, 8] and packed.cu_seqlens.dtype == torch.int32
    assert packed.max_seqlen == 4 and packed.lengths == [3, 1, 4]
    assert packed.flat_index.tolist() == [0, 1, 2, 4, 8, 9, 10, 11]


def test_band_plan_covers_exactly_the_band() -> None:
    lengths, window = [11, 3, 20, 1], 4
    for block in (1, 3, 4, 7):
        plan = up.band_plan(lengths, window, block=block)
        total = sum(lengths)
        seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        pos = torch.cat([torch.arange(n) for n in lengths])
        span = block + 2 * window
        attended = set()
        for b, i, j in plan.mask[:, 0].nonzero().tolist():
            query, key = b * block + i, b * block + j - window  # token index in the packed stream
            assert 0 <= j < span
            if query < total:
                assert 0 <= key < total, "a real query never attends to padding"
                attended.add((query, key))
        expected = {
            (a, c) for a in range(total) for c in range(total) if seq[a] == seq[c] and abs(pos[a] - pos[c]) <= window
        }
        assert attended == expected
        assert plan.mask.any(dim=-1).all(), "no fully masked row (padding attends to itself)"


# -- the GPU branch, on CPU: a reference attention stands in for flash_attn_varlen_func ------------


def reference_varlen(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_size
):
    """flash_attn_varlen_func's contract, written plainly: per sequence, keys within
    ``[i - left, i + right]`` (``-1`` = unbounded), q/k/v ``[total, heads, dim]``."""
    assert not causal and dropout_p == 0.0
    assert torch.equal(cu_seqlens_q, cu_seqlens_k) and cu_seqlens_q.dtype == torch.int32
    lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).tolist()
    assert max_seqlen_q == max_seqlen_k == max(lens)
    reference_varlen.calls.append(tuple(window_size))
    out = torch.empty_like(q)
    for s, e in zip(cu_seqlens_q[:-1].tolist(), cu_seqlens_q[1:].tolist(), strict=True):
        n = e - s
        i = torch.arange(n)
        left, right = window_size
        allowed = torch.ones(n, n, dtype=torch.bool)
        if left >= 0:
            allowed &= (i[:, None] - i[None, :]) <= left
        if right >= 0:
            allowed &= (i[None, :] - i[:, None]) <= right
        scores = torch.einsum("qhd,khd->hqk", q[s:e], k[s:e]) * softmax_scale
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[s:e] = torch.einsum("hqk,khd->qhd", F.softmax(scores, dim=-1), v[s:e])
    return out


reference_varlen.calls = []


def test_flash_varlen_branch_with_reference_kernel(model: ModernBertModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "flash_varlen_function", lambda: reference_varlen)
    fast = up.UnpaddedModernBert(model, use_flash=True)
    assert fast.attention_path("cpu") == "flash_attn_varlen"
    reference_varlen.calls.clear()
    ids, mask = _batch([96, 1, 17, 9, 8, 35])
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = fast(input_ids=ids, attention_mask=mask).last_hidden_state
    assert float((ref - out)[mask.bool()].abs().max()) <= TOL
    # global layers unbounded, local layers HF's flash window (sliding_window, sliding_window)
    assert reference_varlen.calls == [(-1, -1), (8, 8), (-1, -1), (8, 8)]


def test_flash_is_used_on_cuda_only_unless_asked(model: ModernBertModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "flash_varlen_function", lambda: reference_varlen)
    assert up.UnpaddedModernBert(model).attention_path("cpu") == "sdpa"
    assert up.UnpaddedModernBert(model).attention_path("cuda") == "flash_attn_varlen"
    assert up.UnpaddedModernBert(model, use_flash=False).attention_path("cuda") == "sdpa"
    monkeypatch.setattr(up, "flash_varlen_function", lambda: None)
    assert up.UnpaddedModernBert(model).attention_path("cuda") == "sdpa"


# -- the context manager and the encoders -------------------------------------------------------


def test_context_manager_swaps_forward_only_inside(model: ModernBertModel) -> None:
    ids, mask = _batch([30, 4])
    before = model.state_dict()
    with up.unpadded(model) as fast:
        assert fast is not None and "forward" in model.__dict__
        with torch.no_grad():
            inside = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert "forward" not in model.__dict__
    assert inside[1, 4:].abs().sum() == 0  # zeros at padding: the unpadded forward ran
    assert model.state_dict().keys() == before.keys()
    with up.unpadded(model, enabled=False) as fast:
        assert fast is None and "forward" not in model.__dict__
    with up.unpadded(torch.nn.Linear(2, 2)) as fast:
        assert fast is None


def test_dense_encoder_same_embeddings_with_and_without(tiny_modernbert: str) -> None:
    from mbert_retrieval.encoders.dense import DenseEncoder

    on = DenseEncoder(tiny_modernbert, batch_size=4, show_progress=False, max_seq_length=512)
    off = DenseEncoder(tiny_modernbert, batch_size=4, show_progress=False, max_seq_length=512, unpad=False)
    assert on.unpadded_path == "sdpa" and off.unpadded_path is None
    assert on.describe()["unpadded"] == "sdpa"
    assert on.fingerprint() == off.fingerprint()  # same embeddings: caches are reused
    texts = ["a", "def f(x): return x", "sort a list " * 40, "read a file line by line " * 60, "x " * 3] * 2
    a, b = on.encode_documents(texts), off.encode_documents(texts)
    np.testing.assert_allclose(a, b, atol=TOL)
    np.testing.assert_allclose(on.encode_queries(texts[:3]), off.encode_queries(texts[:3]), atol=TOL)
    assert "forward" not in on.transformer_model.__dict__


def test_colbert_encoder_same_embeddings_with_and_without(tiny_modernbert: str) -> None:
    from mbert_retrieval.encoders.colbert import ColBERTEncoder

    on = ColBERTEncoder(tiny_modernbert, batch_size=4, show_progress=False, document_length=300)
    off = ColBERTEncoder(tiny_modernbert, batch_size=4, show_progress=False, document_length=300, unpad=False)
    assert on.unpadded_path == "sdpa" and off.unpadded_path is None
    assert on.fingerprint() == off.fingerprint()
    texts = ["a", "def f(x): return x", "sort a list " * 40, "read a file line by line " * 60, "x " * 3]
    for x, y in zip(on.encode_documents(texts), off.encode_documents(texts), strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=TOL)
    # queries: [MASK] expansion reads padded positions back -> HF's forward; without expansion unpadded
    assert not on._unpad_queries()
    for x, y in zip(on.encode_queries(texts[:3]), off.encode_queries(texts[:3]), strict=True):
        np.testing.assert_allclose(x, y, atol=TOL)
    plain = ColBERTEncoder(tiny_modernbert, show_progress=False, query_expansion=False)
    plain_off = ColBERTEncoder(tiny_modernbert, show_progress=False, query_expansion=False, unpad=False)
    assert plain._unpad_queries()
    for x, y in zip(plain.encode_queries(texts), plain_off.encode_queries(texts), strict=True):
        np.testing.assert_allclose(x, y, atol=TOL)


def test_bfloat16_path_follows_hf() -> None:
    """The non-fp32 path (HF's fp32 rotation rounded back, as on GPU) stays at bf16 rounding of HF."""
    m = _model().to(torch.bfloat16)
    ids, mask = _batch([96, 17, 9, 2])
    with torch.no_grad():
        ref = m(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        out = up.UnpaddedModernBert(m)(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    real = mask.bool()
    assert float((ref - out)[real].abs().max()) <= 0.1
    assert float((ref - out)[real].abs().mean()) <= 0.01
