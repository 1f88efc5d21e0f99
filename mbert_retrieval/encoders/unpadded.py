"""Unpadded ("varlen") inference forward for ModernBERT checkpoints, with real sliding-window attention.

transformers 5.3 runs ModernBERT on padded ``[B, L]`` batches and its local layers compute the full
``L x L`` attention under a band mask. This forward reuses a loaded ``ModernBertModel``'s own modules
and weights and runs:

- embeddings, linears, GeGLU MLP and norms on the packed real tokens ``[total_tokens, hidden]``;
- RoPE with positions counted inside each sequence (the padded row index, as HF does), with the
  layer type's own theta (global 160k / local 10k in ModernBERT-base);
- global layers: attention within each sequence;
- local layers: only the band ``|i - j| <= local_attention // 2`` (HF's ``config.sliding_window``),
  in blocks of ``block`` queries against their ``block + 2 * window`` neighbours, so the cost grows
  linearly with length;
- on CUDA with flash-attn: ``flash_attn_varlen_func`` with ``cu_seqlens`` / ``max_seqlen`` and
  ``window_size=(w, w)`` (the window HF passes to flash-attn); otherwise PyTorch SDPA.

It returns HF's ``last_hidden_state`` for every real token (equal within fp32 rounding, tested to
1e-5); padded positions are zeros (HF leaves values there that nothing downstream reads). Anything
it does not cover (left padding, holes in the mask, explicit ``position_ids``, ``inputs_embeds``,
hidden states or attentions requested, training mode) goes to HF's own forward.

Written against transformers 5.3 (``TRANSFORMERS_VERSION``); ``check_version`` warns on another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

TRANSFORMERS_VERSION = "5.3"  # the ModernBertModel layout this forward reads (layers, attn.Wqkv, rotary_emb, ...)
_VERSION_CHECKED = False


def check_version() -> bool:
    """True when the installed transformers is the one this forward was written and tested against."""
    global _VERSION_CHECKED
    import transformers

    ok = transformers.__version__.startswith(TRANSFORMERS_VERSION + ".")
    if not ok and not _VERSION_CHECKED:
        log.warning(
            "unpadded ModernBERT forward was tested with transformers %s.x, found %s; "
            "outputs are checked against HF's forward by tests/test_unpadded.py",
            TRANSFORMERS_VERSION,
            transformers.__version__,
        )
    _VERSION_CHECKED = True
    return ok


def is_modernbert(model: Any) -> bool:
    """True for a transformers ``ModernBertModel`` (the bare encoder sentence-transformers and PyLate hold)."""
    from transformers import ModernBertModel

    return isinstance(model, ModernBertModel)


def flash_varlen_function() -> Callable[..., torch.Tensor] | None:
    """``flash_attn.flash_attn_varlen_func`` when flash-attn imports, else ``None``."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


# ------------------------------------------------------------------------------------------------
# Packing


@dataclass
class Packed:
    """Real tokens of a right-padded batch, packed: ``cu_seqlens`` are the sequence boundaries."""

    input_ids: torch.Tensor  # [total] long
    positions: torch.Tensor  # [total] long, 0..len-1 inside each sequence
    lengths: list[int]
    cu_seqlens: torch.Tensor  # [B + 1] int32
    max_seqlen: int
    flat_index: torch.Tensor  # [total] index into the flattened [B * L] padded batch


def right_padded_lengths(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Per-row lengths when every row is ``1 … 1 0 … 0`` with at least one token, else ``None``."""
    mask = attention_mask.bool()
    if mask.ndim != 2 or mask.shape[1] == 0:
        return None
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        return None
    expected = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not bool(torch.equal(expected, mask)):
        return None
    return lengths


def pack(input_ids: torch.Tensor, lengths: torch.Tensor) -> Packed:
    """Pack the first ``lengths[b]`` tokens of each row of ``input_ids [B, L]``."""
    batch, width = input_ids.shape
    device = input_ids.device
    lens = [int(x) for x in lengths.tolist()]
    mask = torch.arange(width, device=device)[None, :] < lengths[:, None]
    flat_index = mask.reshape(-1).nonzero().squeeze(1)
    positions = torch.cat([torch.arange(n, device=device) for n in lens])
    cu = torch.zeros(batch + 1, dtype=torch.int32, device=device)
    cu[1:] = torch.cumsum(lengths.to(device), 0).to(torch.int32)
    return Packed(input_ids.reshape(-1)[flat_index], positions, lens, cu, max(lens), flat_index)


# ------------------------------------------------------------------------------------------------
# Attention on packed tokens. q, k, v: [total, heads, head_dim]; output [total, heads, head_dim].


def attention_per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Full (global) attention inside each sequence, one SDPA call per run of equal lengths."""
    out = torch.empty_like(q)
    qh, kh, vh = (t.transpose(0, 1) for t in (q, k, v))  # [heads, total, d] views
    start = 0
    i = 0
    n = len(lengths)
    while i < n:
        length = lengths[i]
        j = i
        while j + 1 < n and lengths[j + 1] == length:
            j += 1
        count = j - i + 1
        end = start + count * length
        if count == 1:
            o = F.scaled_dot_product_attention(qh[None, :, start:end], kh[None, :, start:end], vh[None, :, start:end])
            out[start:end] = o[0].transpose(0, 1)
        else:  # equal lengths: one batched call
            shape = (count, length, *q.shape[1:])
            qs, ks, vs = (t[start:end].reshape(shape).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(qs, ks, vs)
            out[start:end] = o.transpose(1, 2).reshape((count * length, *q.shape[1:]))
        start = end
        i = j + 1
    return out


@dataclass
class BandPlan:
    """Gather indices for blocked sliding-window attention over a packed batch.

    Queries are cut into blocks of ``block`` tokens (per sequence, the last block padded); block
    ``i`` of a sequence attends to the keys at positions ``[i*block - window, (i+1)*block + window)``
    of the same sequence, masked to ``|q - k| <= window`` and to real keys.
    """

    q_index: torch.Tensor  # [n_blocks * block] into packed tokens + 1 zero row (index = total)
    q_valid: torch.Tensor  # [n_blocks * block] bool: a real query
    k_index: torch.Tensor  # [n_blocks, block + 2 * window]
    mask: torch.Tensor  # [n_blocks, 1, block, block + 2 * window] bool: attend
    block: int


def band_plan(lengths: list[int], window: int, block: int | None = None, device: Any = "cpu") -> BandPlan:
    """Indices and masks for ``|i - j| <= window`` attention in blocks (built once per batch)."""
    block = block or max(window, 1)
    span = block + 2 * window
    q_idx, q_ok, k_idx, masks = [], [], [], []
    offsets = torch.arange(block)[:, None]  # query offset inside its block
    kofs = torch.arange(span)[None, :] - window  # key offset relative to the block start
    start = 0
    for length in lengths:
        n_blocks = -(-length // block)
        qpos = torch.arange(n_blocks * block)
        q_ok.append(qpos < length)
        q_idx.append(torch.where(qpos < length, start + qpos, -1))
        bstart = torch.arange(n_blocks)[:, None] * block
        kpos = bstart + kofs  # [n_blocks, span]
        kreal = (kpos >= 0) & (kpos < length)
        k_idx.append(torch.where(kreal, start + kpos, -1))
        rel = (kofs - offsets).abs() <= window  # [block, span]: |q - k| <= window
        masks.append(rel[None] & kreal[:, None, :])
        start += length
    total = start
    q_index = torch.cat(q_idx)
    k_index = torch.cat(k_idx)
    q_index = torch.where(q_index < 0, total, q_index)
    k_index = torch.where(k_index < 0, total, k_index)
    return BandPlan(
        q_index.to(device),
        torch.cat(q_ok).to(device),
        k_index.to(device),
        torch.cat(masks)[:, None].to(device),
        block,
    )


def attention_band(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: BandPlan) -> torch.Tensor:
    """Sliding-window attention computing only the blocks around the band (one SDPA call)."""
    zero = q.new_zeros((1, *q.shape[1:]))
    qz, kz, vz = (torch.cat([t, zero]) for t in (q, k, v))
    n_blocks = plan.k_index.shape[0]
    qb = qz[plan.q_index].view(n_blocks, plan.block, *q.shape[1:]).transpose(1, 2)  # [nb, h, block, d]
    kb = kz[plan.k_index].transpose(1, 2)  # [nb, h, span, d]
    vb = vz[plan.k_index].transpose(1, 2)
    o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=plan.mask)
    o = o.transpose(1, 2).reshape(-1, *q.shape[1:])
    return o[plan.q_valid]


# ------------------------------------------------------------------------------------------------
# The forward


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as HF applies it (``x * cos + rotate_half(x) * sin``, in fp32)."""
    dtype = x.dtype
    x = x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class UnpaddedModernBert:
    """Runs a ``ModernBertModel``'s weights on packed tokens (inference only; holds the model).

    Args:
        model: a loaded transformers ``ModernBertModel``.
        use_flash: ``None`` = flash-attn varlen on CUDA when it imports; ``False`` = SDPA always;
            ``True`` = the varlen kernel on any device (tests run it on CPU with a reference kernel).
        flash_fn: the varlen kernel (tests pass a reference implementation).
        block: query block of the local layers (default the half window).
    """

    def __init__(
        self,
        model: Any,
        *,
        use_flash: bool | None = None,
        flash_fn: Callable[..., torch.Tensor] | None = None,
        block: int | None = None,
    ) -> None:
        if not is_modernbert(model):
            raise TypeError(f"not a ModernBertModel: {type(model).__name__}")
        check_version()
        self.model = model
        config = model.config
        self.window = int(config.sliding_window)  # |i - j| <= local_attention // 2
        self.layer_types = list(config.layer_types)
        self.heads = int(config.num_attention_heads)
        self.head_dim = int(config.hidden_size) // self.heads
        self.block = block
        self.flash_fn = flash_fn
        self.use_flash = use_flash

    def attention_path(self, device: torch.device | str | None = None) -> str:
        """``"flash_attn_varlen"`` or ``"sdpa"`` for inputs on ``device``."""
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        if self.use_flash is False or (self.use_flash is None and device.type != "cuda"):
            return "sdpa"
        fn = self.flash_fn or flash_varlen_function()
        return "flash_attn_varlen" if fn is not None else "sdpa"

    # -- the HF-compatible entry point ---------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Same arguments and ``BaseModelOutput`` as ``ModernBertModel.forward``; falls back to it
        for anything the packed path does not cover."""
        from transformers.modeling_outputs import BaseModelOutput

        hf = type(self.model).forward.__get__(self.model)
        wants_more = kwargs.get("output_hidden_states") or kwargs.get("output_attentions")
        wants_more = wants_more or self.model.config.output_hidden_states or self.model.config.output_attentions
        lengths = None
        if input_ids is not None and inputs_embeds is None and position_ids is None and not self.model.training:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if not isinstance(attention_mask, dict):
                lengths = right_padded_lengths(attention_mask)
        if lengths is None or wants_more:
            return hf(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        with torch.no_grad():
            packed = pack(input_ids, lengths)
            hidden = self.forward_packed(packed)
            batch, width = input_ids.shape
            out = hidden.new_zeros(batch * width, hidden.shape[-1])
            out[packed.flat_index] = hidden
        return BaseModelOutput(last_hidden_state=out.view(batch, width, -1))

    __call__ = forward

    # -- packed tokens ------------------------------------------------------------------------
    @torch.no_grad()
    def forward_packed(self, packed: Packed) -> torch.Tensor:
        """``last_hidden_state`` of the packed real tokens, ``[total, hidden]``."""
        model = self.model
        device = packed.input_ids.device
        hidden = model.embeddings(input_ids=packed.input_ids)
        path = self.attention_path(device)
        rope = {}
        for layer_type in set(self.layer_types):
            cos, sin = model.rotary_emb(hidden, packed.positions[None], layer_type)
            rope[layer_type] = (cos[0, :, None, :], sin[0, :, None, :])  # [total, 1, d]; HF's dtype
        plan = None
        if path == "sdpa" and "sliding_attention" in self.layer_types:
            plan = band_plan(packed.lengths, self.window, self.block, device)
        for layer in model.layers:
            kind = layer.attention_type
            attn = layer.attn
            qkv = attn.Wqkv(layer.attn_norm(hidden)).view(-1, 3, self.heads, self.head_dim)
            cos, sin = rope[kind]
            q = _rope(qkv[:, 0], cos, sin)
            k = _rope(qkv[:, 1], cos, sin)
            v = qkv[:, 2]
            window = self.window if kind == "sliding_attention" else None
            if path == "flash_attn_varlen":
                o = self._flash(q, k, v, packed, window)
            elif window is None or packed.max_seqlen <= window + 1:
                o = attention_per_sequence(q, k, v, packed.lengths)
            else:
                o = attention_band(q, k, v, plan)
            hidden = hidden + attn.out_drop(attn.Wo(o.reshape(o.shape[0], -1)))
            hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
        return model.final_norm(hidden)

    def _flash(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: Packed, window: int | None
    ) -> torch.Tensor:
        fn = self.flash_fn or flash_varlen_function()
        assert fn is not None
        return fn(
            q,
            k,
            v,
            cu_seqlens_q=packed.cu_seqlens,
            cu_seqlens_k=packed.cu_seqlens,
            max_seqlen_q=packed.max_seqlen,
            max_seqlen_k=packed.max_seqlen,
            dropout_p=0.0,
            softmax_scale=self.head_dim**-0.5,
            causal=False,
            window_size=(window, window) if window is not None else (-1, -1),
        )


@contextlib.contextmanager
def unpadded(model: Any, enabled: bool = True, **options: Any) -> Iterator[UnpaddedModernBert | None]:
    """Inside the block, calls of ``model`` (a ``ModernBertModel``) run the unpadded forward.

    Yields the ``UnpaddedModernBert`` in use, or ``None`` when disabled or not ModernBERT (then
    nothing changes). The model's weights and ``state_dict`` are untouched; the instance's
    ``forward`` is swapped only for the duration of the block.
    """
    if not enabled or model is None or not is_modernbert(model):
        yield None
        return
    fast = UnpaddedModernBert(model, **options)
    previous = model.__dict__.get("forward")
    model.forward = fast.forward
    try:
        yield fast
    finally:
        if previous is None:
            del model.forward
        else:
            model.forward = previous


__all__ = [
    "TRANSFORMERS_VERSION",
    "BandPlan",
    "Packed",
    "UnpaddedModernBert",
    "attention_band",
    "attention_per_sequence",
    "band_plan",
    "check_version",
    "flash_varlen_function",
    "is_modernbert",
    "pack",
    "right_padded_lengths",
    "unpadded",
]
