"""``mbert-retrieval doctor`` runs offline and reports libraries, paths and pitfalls."""

from __future__ import annotations

import json

import pytest

from mbert_retrieval.cli import app as cli
from mbert_retrieval.encoders import backend


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["doctor", *args]) == 0
    return capsys.readouterr().out


def test_doctor_prints_the_key_lines(capsys: pytest.CaptureFixture[str], tiny_modernbert: str) -> None:
    out = _run(capsys, "--model", tiny_modernbert)
    for needle in ("CUDA: ", "torch ", "transformers ", "flash-attn ", "faiss-cpu ", "fast-plaid ", "mteb ", "bm25s "):
        assert needle in out, needle
    assert "unpadded inference (default)             sdpa per sequence + blocked sliding window" in out
    assert "model_type                               modernbert" in out
    assert "dtype                                    float32" in out
    assert "fp16 with query expansion" in out and "8192 positions" in out and "torch threads" in out


def test_doctor_json_and_gpu_plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    r = json.loads(_run(capsys, "--json"))
    assert r["libraries"]["torch"]["importable"] and r["paths"]["modernbert"]["dtype"] == "float32"
    assert r["model"] is None and r["pitfalls"]
    # a GPU with flash-attn: bf16, flash_attention_2 for padded batches, the varlen kernel unpadded
    monkeypatch.setattr(backend, "flash_attn_available", lambda: True)
    r = json.loads(_run(capsys, "--json", "--device", "cuda"))
    plan = r["paths"]["modernbert"]
    assert plan["dtype"] == "bfloat16" and plan["padded attention (unpad off, training)"] == "flash_attention_2"
    assert plan["unpadded inference (default)"].startswith("flash_attn_varlen")
    assert r["paths"]["other (bert, ...)"]["dtype"] == "float32"


def test_doctor_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--help"])
    assert "examples:" in capsys.readouterr().out
