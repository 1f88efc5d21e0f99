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

Written against transformers 5.3 and checked unchanged on 5.24 (``TRANSFORMERS_VERSION``, the pinned one);
``check_version`` warns on another.
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

TRANSFORMERS_VERSION = "5.24"  # the ModernBertModel layout this forward reads (layers, attn.Wqkv, rotary_emb, ...)
_VERSION_CHECKED = False


def check_version() -> bool:
    """True when the installed transformers is the one this forward was written and tested against."""
    global _VERSION_CHECKED
    import transformers

    ok = transformers.__version__.startswith(TRANSFORMERS_VERSION + ".")
    if not ok and not _VERSION_CHECKED:
        log.warning(
            "unpadded ModernBERT forward was tested with transformers %s.x, found %s; "
            "outputs are checked against HF's forward by tests/encoders/test_unpadded.py",
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
    """Blocked sliding-window attention over the packed token stream, built once per batch.

    The packed tokens (all sequences back to back) are cut into ``n_blocks`` blocks of ``block``
    queries; block ``i`` attends to the ``block + 2 * window`` stream positions around it,
    ``[i*block - window, (i+1)*block + window)``, read as a strided view of a buffer with
    ``window`` zero rows before the tokens (no gather). ``mask`` keeps the pairs of one sequence
    with ``|q - k| <= window``; padding rows attend only to padding (never a fully masked row).
    """

    n_blocks: int
    block: int
    window: int
    mask: torch.Tensor  # [n_blocks, 1, block, block + 2 * window] bool: attend

    @property
    def rows(self) -> int:
        """Rows of the qkv buffer: ``window`` margin, the blocks, ``window`` margin."""
        return self.n_blocks * self.block + 2 * self.window


def band_plan(lengths: list[int], window: int, block: int | None = None, device: Any = "cpu") -> BandPlan:
    """The blocks and mask for ``|i - j| <= window`` attention inside each sequence."""
    block = block or max(window, 1)
    total = sum(lengths)
    n_blocks = max(1, -(-total // block))
    rows = n_blocks * block + 2 * window
    seq = torch.full((rows,), -1, dtype=torch.long)  # -1: padding (margins, tail)
    seq[window : window + total] = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    span = block + 2 * window
    starts = torch.arange(n_blocks) * block  # buffer row of each block's first key
    q_seq = seq[window : window + n_blocks * block].view(n_blocks, block)
    k_seq = seq[starts[:, None] + torch.arange(span)[None, :]]  # [n_blocks, span]
    rel = (torch.arange(span)[None, :] - window - torch.arange(block)[:, None]).abs() <= window  # [block, span]
    mask = (q_seq[:, :, None] == k_seq[:, None, :]) & rel[None]
    return BandPlan(n_blocks, block, window, mask[:, None].to(device))


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attend-mask as SDPA's additive float mask (0 / -inf): faster than a bool mask on CPU."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def attention_band(buffer: torch.Tensor, plan: BandPlan, total: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sliding-window attention of the tokens in ``buffer [plan.rows, 3, heads, dim]`` (rows
    ``window .. window + total`` hold the packed q, k, v); returns ``[total, heads, dim]``.
    ``mask``: ``plan.mask`` already made additive (``additive``), to build it once per batch."""
    _, _, heads, dim = buffer.shape
    nb, b, w = plan.n_blocks, plan.block, plan.window
    span = b + 2 * w
    q = buffer[w : w + nb * b, 0].reshape(nb, b, heads, dim).transpose(1, 2)
    row = 3 * heads * dim
    kv = []
    for j in (1, 2):
        base = buffer[:, j]
        kv.append(
            base.as_strided((nb, span, heads, dim), (b * row, row, dim, 1), base.storage_offset()).transpose(1, 2)
        )
    attn_mask = mask if mask is not None else additive(plan.mask, buffer.dtype)
    o = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=attn_mask)  # [nb, heads, b, dim]
    return o.transpose(1, 2).reshape(nb * b, heads, dim)[:total]


# ------------------------------------------------------------------------------------------------
# The forward


def interleave_rows(head_dim: int) -> torch.Tensor:
    """Order of q/k features within a head that puts HF's RoPE pairs ``(i, i + half)`` next to each
    other, so RoPE is one complex multiply; q·k is unchanged when both are reordered alike."""
    half = head_dim // 2
    return torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)


def _rope_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """RoPE in place on ``x [..., dim]``: ``x * cos + rotate_half(x) * sin`` as HF computes it.
    ``cos``/``sin`` hold the first half of HF's (HF's are two equal halves)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    new1 = torch.addcmul(x1 * cos, x2, sin, value=-1)
    new2 = torch.addcmul(x2 * cos, x1, sin)
    x1.copy_(new1)
    x2.copy_(new2)


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
        self._interleaved: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def interleaved_qkv(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per layer, ``Wqkv`` weight (and bias) with q and k rows in ``interleave_rows`` order
        (fp32 path; copied once per instance, the model's own weights are untouched)."""
        if self._interleaved is None:
            perm = interleave_rows(self.head_dim)
            width = self.heads * self.head_dim
            order = torch.arange(3 * width).view(3, self.heads, self.head_dim)
            order[:2] = order[:2, :, perm]
            order = order.reshape(-1)
            self._interleaved = []
            for layer in self.model.layers:
                w, b = layer.attn.Wqkv.weight, layer.attn.Wqkv.bias
                idx = order.to(w.device)
                self._interleaved.append(
                    (w.index_select(0, idx).t(), b.index_select(0, idx) if b is not None else None)
                )
        return self._interleaved

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
        total = packed.input_ids.shape[0]
        heads, dim = self.heads, self.head_dim
        hidden = model.embeddings(input_ids=packed.input_ids)
        path = self.attention_path(device)
        complex_rope = hidden.dtype == torch.float32
        rope = {}
        for layer_type in set(self.layer_types):
            cos, sin = model.rotary_emb(hidden, packed.positions[None], layer_type)
            cos, sin = cos[0, :, None, : dim // 2].float(), sin[0, :, None, : dim // 2].float()  # HF's halves are equal
            # fp32: one complex multiply on interleaved pairs; else HF's fp32 rotation, rounded back
            rope[layer_type] = torch.complex(cos, sin) if complex_rope else (cos[:, None], sin[:, None])
        plan = mask = None
        offset = 0
        if path == "sdpa" and "sliding_attention" in self.layer_types and packed.max_seqlen > self.window + 1:
            plan = band_plan(packed.lengths, self.window, self.block, device)
            mask = additive(plan.mask, hidden.dtype)
            offset = plan.window
        rows = plan.rows if plan is not None else total
        # q, k, v of every layer are written into one buffer (zero margins for the band's key views)
        buffer = hidden.new_zeros(rows, 3, heads, dim)
        qkv = buffer[offset : offset + total]
        weights = self.interleaved_qkv() if complex_rope else None
        for i, layer in enumerate(model.layers):
            attn = layer.attn
            w, bias = weights[i] if weights is not None else (attn.Wqkv.weight.t(), attn.Wqkv.bias)
            torch.matmul(layer.attn_norm(hidden), w, out=qkv.view(total, 3 * heads * dim))
            if bias is not None:
                qkv.view(total, -1).add_(bias)
            if complex_rope:  # q and k rows interleaved: (x_i, x_{i+half}) * (cos + i sin)
                pairs = torch.view_as_complex(qkv[:, :2].reshape(total, 2 * heads, dim // 2, 2))
                pairs.mul_(rope[layer.attention_type])
            else:
                cos, sin = rope[layer.attention_type]
                qk = qkv[:, :2].float()
                _rope_(qk, cos, sin)
                qkv[:, :2] = qk.to(qkv.dtype)
            window = self.window if layer.attention_type == "sliding_attention" else None
            q, k, v = qkv.unbind(1)
            if path == "flash_attn_varlen":
                o = self._flash(q, k, v, packed, window)
            elif window is None or plan is None:
                o = attention_per_sequence(q, k, v, packed.lengths)
            else:
                o = attention_band(buffer, plan, total, mask)
            hidden = self._linear_residual(hidden, o.reshape(total, -1), attn.Wo)
            mlp = layer.mlp
            x, gate = mlp.Wi(layer.mlp_norm(hidden)).chunk(2, dim=-1)
            hidden = self._linear_residual(hidden, mlp.act(x).mul_(gate), mlp.Wo)
        return model.final_norm(hidden)

    @staticmethod
    def _linear_residual(hidden: torch.Tensor, x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
        """``hidden + linear(x)`` with the add fused into the matmul (dropout is off in inference)."""
        out = torch.addmm(hidden, x, linear.weight.t())
        return out.add_(linear.bias) if linear.bias is not None else out

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
