"""Build a small ModernBERT from scratch: a BPE tokenizer trained on given texts and a randomly
initialised ``ModernBertModel`` with the real architecture (RoPE, alternating global and local
sliding-window attention, GeGLU, pre-norm), saved as a plain transformers folder.

Used by the tests (no weights can be downloaded there) and by the offline quickstart, which trains
such a model into a retriever. Any folder written here loads with ``AutoModel`` and
``SentenceTransformer`` (mean pooling).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]

# Named sizes for ``build_modernbert(**MODEL_SIZES[name])``, keeping ModernBERT's layout: RoPE,
# GeGLU, pre-norm, sliding-window (local) attention with a global layer every n-th layer.
# (ModernBERT-base: 22 layers, hidden 768, 12 heads, local window 128, global every 3rd layer.)
MODEL_SIZES: dict[str, dict[str, int]] = {
    # 4 layers x 128, 2 heads, local window 32, global layers 0 and 2: 0.66M parameters besides
    # the 0.5M of the embeddings; a training step (batch 32, 64 tokens) takes well under a second on
    # a 2-core CPU. The quickstart's model.
    "mini": {
        "vocab_size": 4000,
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "local_attention": 32,
        "global_attn_every_n_layers": 2,
    },
}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2000, model_max_length: int = 512, *, word_level_text: bool = False
):
    """A WordPiece-style special-token BPE tokenizer (``[CLS] text [SEP]``), as a fast tokenizer.

    ``word_level_text``: lower-case the text and cut it into words at whitespace and punctuation
    (``read_file`` -> ``read``, ``_``, ``file``) before byte-level BPE, so a word is the same token
    in a docstring sentence (``Read``) and in code (``read_file``), wherever it stands. Default:
    GPT-2-style byte-level pre-tokenization, case kept, the space before a word part of its token.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    if word_level_text:
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Punctuation(),
                pre_tokenizers.Digits(individual_digits=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.normalizer = normalizers.Sequence([normalizers.NFKC()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_modernbert(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 2000,
    hidden_size: int = 64,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    intermediate_size: int = 96,
    local_attention: int = 16,
    global_attn_every_n_layers: int = 2,
    max_position_embeddings: int = 512,
    seed: int = 0,
    model_max_length: int | None = None,
    word_level_text: bool = False,
) -> Path:
    """Write a tokenizer and a randomly initialised ModernBERT to ``out_dir``; return it.

    ``model_max_length`` (default: ``max_position_embeddings``) is the tokenizer's length limit,
    which sentence-transformers takes as the model's ``max_seq_length``; ``word_level_text`` is
    :func:`train_tokenizer`'s.
    """
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(
        texts, vocab_size, model_max_length or max_position_embeddings, word_level_text=word_level_text
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        local_attention=local_attention,
        global_attn_every_n_layers=global_attn_every_n_layers,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=ids["[PAD]"],
        cls_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
    )
    torch.manual_seed(seed)
    model = ModernBertModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
