"""Tests of model resolution and fingerprints."""

from __future__ import annotations

import json
import os
import shutil
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


def test_fingerprint_tracks_weight_bytes_of_equal_size(tmp_path):
    first = _fake_model(tmp_path / "a", weights=b"0123")
    perturbed = _fake_model(tmp_path / "b", weights=b"0124")

    assert model_fingerprint(first) != model_fingerprint(perturbed)


@pytest.mark.parametrize("relative", [
    "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors",
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
    "config_sentence_transformers.json",
])
def test_fingerprint_tracks_module_and_tokenizer_files(tmp_path, relative):
    base = _fake_model(tmp_path / "a")
    changed = _fake_model(tmp_path / "b")
    for folder, content in ((base, "one"), (changed, "two")):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(content)

    assert model_fingerprint(base) != model_fingerprint(changed)


@pytest.mark.parametrize("relative", [
    "README.md", ".gitattributes", ".git/HEAD", "onnx/model.onnx", "openvino/model.bin",
    "LICENSE",
])
def test_fingerprint_skips_docs_and_other_runtimes(tmp_path, relative):
    base = _fake_model(tmp_path / "a")
    before = model_fingerprint(base)
    (base / relative).parent.mkdir(parents=True, exist_ok=True)
    (base / relative).write_text("not read by either engine")

    assert model_fingerprint(base) == before


def test_fingerprint_sees_rewrite_in_same_process(tmp_path):
    folder = _fake_model(tmp_path / "a", weights=b"0123")
    before = model_fingerprint(folder)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"9876")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    assert model_fingerprint(folder) != before


def test_max_length_is_minimum_of_stated_limits(tmp_path):
    assert model_max_length(_fake_model(tmp_path / "a", seq_length=128)) == 128
    assert model_max_length(_fake_model(tmp_path / "b", seq_length=None)) == 512
    assert model_max_length(_fake_model(tmp_path / "c", seq_length=1024,
                                        max_positions=512)) == 512


def test_max_length_uses_tokenizer_limit_below_positions(tmp_path):
    folder = _fake_model(tmp_path / "a", max_positions=1024, seq_length=None)
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 300}))

    assert model_max_length(folder) == 300


def test_max_length_ignores_tokenizer_sentinel(tmp_path):
    folder = _fake_model(tmp_path / "a", max_positions=512, seq_length=None)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 1000000000000000019884624838656}))

    assert model_max_length(folder) == 512


def test_max_length_subtracts_roberta_padding_offset(tmp_path):
    folder = _fake_model(tmp_path / "a", max_positions=514, seq_length=None)
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}))

    assert model_max_length(folder) == 512


def test_roberta_folder_embeds_long_text(tmp_path, small_items):
    from transformers import RobertaConfig, RobertaModel

    from gfm.featurize import FeaturizeConfig, featurize_items

    folder = tmp_path / "roberta-tiny"
    folder.mkdir()
    default = Path(settings.default_embedding_model())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(default / name, folder)
    # 514 position embeddings and no sentence_bert_config.json, as roberta-base.
    config = RobertaConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=514, pad_token_id=1)
    RobertaModel(config).save_pretrained(folder)
    items = small_items.iloc[:2].copy()
    items.loc[0, "description"] = "word " * 2000

    result = featurize_items(items, FeaturizeConfig(
        model=str(folder), engine="sentence-transformers", device="cpu"))

    assert resolve_model(str(folder)).max_length == 512
    assert result.dim == 48
    assert result.metadata["max_length"] == 512
    assert result.metadata["truncated"] == 1


def test_max_length_missing_raises(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    with pytest.raises(ValueError, match="states no maximum sequence length"):
        model_max_length(folder)
