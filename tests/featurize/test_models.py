"""Tests of model resolution and fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gfm import settings
from gfm.featurize.models import (
    ModelNotFoundError,
    model_fingerprint,
    model_max_length,
    resolve_model,
)


def _fake_model(folder: Path, weights: bytes = b"0123", max_positions: int = 512,
                seq_length: int | None = 128) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": max_positions}))
    if seq_length is not None:
        (folder / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": seq_length}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_resolve_default_model():
    model = resolve_model(None)

    assert model.name == settings.default_embedding_model()
    assert Path(model.path, "config.json").is_file()
    assert model.max_length == 256
    assert len(model.fingerprint) == 64


def test_resolve_lower_max_length_and_reject_higher():
    assert resolve_model(None, max_length=64).max_length == 64
    with pytest.raises(ValueError, match="max_length=1000 exceeds the 256 tokens"):
        resolve_model(None, max_length=1000)


def test_resolve_missing_folder_raises(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model(str(tmp_path / "no" / "such" / "model"))


def test_resolve_unknown_hub_name_raises_offline():
    with pytest.raises(ModelNotFoundError, match="'gfm-test/no-such-model' not found"):
        resolve_model("gfm-test/no-such-model")


def test_resolve_folder_without_config_raises(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_fingerprint_ignores_folder_and_tracks_weights(tmp_path):
    first = _fake_model(tmp_path / "a")
    copy = _fake_model(tmp_path / "b" / "nested")
    other = _fake_model(tmp_path / "c", weights=b"012345")

    assert model_fingerprint(first) == model_fingerprint(copy)
    assert model_fingerprint(first) != model_fingerprint(other)


def test_max_length_prefers_sentence_transformers_setting(tmp_path):
    assert model_max_length(_fake_model(tmp_path / "a", seq_length=128)) == 128
    assert model_max_length(_fake_model(tmp_path / "b", seq_length=None)) == 512
    assert model_max_length(_fake_model(tmp_path / "c", seq_length=1024,
                                        max_positions=512)) == 512


def test_max_length_missing_raises(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    with pytest.raises(ValueError, match="states no maximum sequence length"):
        model_max_length(folder)
