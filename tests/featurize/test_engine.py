"""Tests of engine choice and the sentence-transformers engine."""

from __future__ import annotations

import numpy as np
import pytest

from gfm.featurize import engine as engine_module
from gfm.featurize.engine import (
    SentenceTransformersEngine,
    choose_engine,
    l2_normalize,
    resolve_device,
)
from gfm.featurize.models import resolve_model


@pytest.fixture(scope="module")
def st_engine():
    engine = SentenceTransformersEngine(resolve_model(None, max_length=32), device="cpu",
                                        batch_size=16)
    yield engine
    engine.close()


def test_choose_engine_auto_without_vllm(monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_installed", lambda: False)

    name, reason = choose_engine("auto", "cuda")

    assert name == "sentence-transformers"
    assert "not installed" in reason


def test_choose_engine_auto_with_vllm(monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_installed", lambda: True)

    assert choose_engine("auto", "cpu")[0] == "sentence-transformers"
    assert choose_engine("auto", "cuda")[0] == "vllm"
    assert choose_engine("vllm", "cpu") == ("vllm", "requested")
    assert choose_engine("sentence-transformers", "cuda") == ("sentence-transformers",
                                                              "requested")


def test_choose_engine_vllm_not_installed_raises(monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_installed", lambda: False)

    with pytest.raises(ValueError, match="vLLM is not installed"):
        choose_engine("vllm", "cpu")


def test_resolve_device_cuda_without_gpu_raises(monkeypatch):
    monkeypatch.setattr(engine_module, "cuda_available", lambda: False)

    assert resolve_device(None) == "cpu"
    with pytest.raises(ValueError, match="torch finds no GPU"):
        resolve_device("cuda")


def test_sentence_transformers_embed_unit_rows(st_engine):
    matrix = st_engine.embed(["Toy Story (1995)", "Radiohead. Tags: rock", "jazz"])

    assert matrix.shape == (3, st_engine.dim)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert st_engine.embed([]).shape == (0, st_engine.dim)


def test_sentence_transformers_truncates_in_tokenizer(st_engine):
    # 32 tokens: [CLS], 30 words of one token each, [SEP].
    head = " ".join(["music"] * 30)
    long_text = head + " " + " ".join(["film"] * 200)

    # Also 32 tokens, so nothing is cut and its last word counts.
    other_end = " ".join(["music"] * 29) + " film"

    matrix = st_engine.embed([head, long_text, other_end])

    assert st_engine.max_length == 32
    assert float(matrix[0] @ matrix[1]) > 0.9999
    assert float(matrix[0] @ matrix[2]) < 0.9999


def test_l2_normalize_rejects_zero_rows():
    with pytest.raises(ValueError, match="1 embeddings are zero or not finite"):
        l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0]])), [[0.6, 0.8]])
