"""Tests of featurize_items and featurize_dataset with the sentence-transformers
engine on CPU."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gfm import settings, storage
from gfm.data.schema import ITEMS_SCHEMA
from gfm.embeddings import ItemEmbeddings
from gfm.featurize import (
    FeaturizeConfig,
    ModelNotFoundError,
    featurize_dataset,
    featurize_items,
    render_texts,
)
from gfm.featurize.engine import SentenceTransformersEngine
from gfm.featurize.models import resolve_model
from gfm.featurize.run import EmbedOutcome, featurize_with

ST = "sentence-transformers"


def _config(**values) -> FeaturizeConfig:
    return FeaturizeConfig(engine=ST, device="cpu", batch_size=4, **values)


def _write_items(items, uri: str) -> None:
    table = pa.Table.from_pandas(items, schema=ITEMS_SCHEMA, preserve_index=False)
    storage.write_table(table, storage.join(uri, "items.parquet"))


def test_featurize_items_aligned_unit_rows(small_items):
    result = featurize_items(small_items, _config())

    assert result.item_ids == small_items["item_id"].tolist()
    assert result.item_types == small_items["item_type"].tolist()
    assert result.matrix.shape == (6, 384)
    assert result.matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.matrix, axis=1), 1.0, atol=1e-5)


def test_featurize_items_matches_engine_on_rendered_texts(small_items):
    config = _config()
    result = featurize_items(small_items, config)
    texts = render_texts(small_items, config.templates)
    with SentenceTransformersEngine(resolve_model(None), "cpu", batch_size=32) as engine:
        expected = engine.embed(texts)

    cosine = np.sum(result.matrix * expected, axis=1)
    assert cosine.min() > 0.9999


def test_featurize_items_metadata(small_items):
    result = featurize_items(small_items, _config())
    metadata = result.metadata

    assert metadata["engine"] == ST
    assert metadata["dim"] == 384
    assert metadata["max_length"] == 256
    assert metadata["template_version"] == "v1"
    assert metadata["embedded"] == 6
    assert metadata["reused"] == 0
    assert metadata["truncated"] == 0
    assert metadata["items_per_type"] == {"movie": 3, "artist": 2, "tag": 1}
    assert metadata["missing_fields"]["movie"]["genres"] == 1
    assert metadata["items_per_second"] > 0
    assert set(metadata["templates"]) == {"movie", "artist", "tag"}


def test_featurize_items_counts_truncated_texts(small_items):
    small_items.loc[0, "description"] = " ".join(["animated"] * 400)

    result = featurize_items(small_items, _config(max_length=64))

    assert result.metadata["truncated"] == 1
    assert result.metadata["max_length"] == 64


def test_featurize_items_cache_rerun_embeds_only_changes(small_items, tmp_path):
    config = _config(cache_uri=str(tmp_path / "cache"))
    first = featurize_items(small_items, config)

    again = featurize_items(small_items, config)
    small_items.loc[4, "title"] = "John Coltrane"
    changed = featurize_items(small_items, config)

    assert again.metadata["embedded"] == 0
    assert again.metadata["reused"] == 6
    assert again.metadata["engine"].startswith("none")
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert changed.metadata["embedded"] == 1
    assert changed.metadata["reused"] == 5
    np.testing.assert_array_equal(changed.matrix[:4], first.matrix[:4])
    assert float(changed.matrix[4] @ first.matrix[4]) < 0.99


def test_featurize_items_template_change_misses_cache(small_items, tmp_path):
    cache_uri = str(tmp_path / "cache")
    featurize_items(small_items, _config(cache_uri=cache_uri))

    result = featurize_items(small_items, _config(
        cache_uri=cache_uri, templates={**FeaturizeConfig().templates, "tag": "Tag: {title}"}))

    assert result.metadata["embedded"] == 1
    assert result.metadata["reused"] == 5


def test_featurize_recovers_from_damaged_cache(small_items, tmp_path, gfm_logs):
    config = _config(cache_uri=str(tmp_path / "cache"))
    first = featurize_items(small_items, config)
    [shard] = glob.glob(str(tmp_path / "cache" / "*" / "part-*.parquet"))
    table = pq.read_table(shard)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    vectors[0] = np.nan
    vectors[1] *= 7
    pq.write_table(pa.table({"key": table.column("key"), "embedding":
                             pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), 384)}),
                   shard)

    repaired = featurize_items(small_items, config)
    with open(shard, "r+b") as handle:
        handle.truncate(100)
    pq.write_table(pa.table({"key": ["k"]}), shard.replace("part-", "part-0"))
    after_truncation = featurize_items(small_items, config)

    assert repaired.metadata["cache_invalid"] == 2
    assert repaired.metadata["embedded"] == 2
    assert repaired.metadata["reused"] == 4
    np.testing.assert_allclose(np.linalg.norm(repaired.matrix, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(repaired.matrix, first.matrix, atol=1e-5)
    assert after_truncation.metadata["cache_skipped_shards"] == 2
    assert after_truncation.metadata["reused"] == 2
    assert after_truncation.metadata["embedded"] == 4
    np.testing.assert_allclose(after_truncation.matrix, first.matrix, atol=1e-5)
    assert f"skipping unreadable shard {shard}" in gfm_logs.text


def _fake_backend(dim: int, calls: list[int]):
    def backend(texts, model, config) -> EmbedOutcome:
        calls.append(len(texts))
        matrix = np.zeros((len(texts), dim), dtype=np.float32)
        matrix[:, 0] = 1.0
        return EmbedOutcome(matrix=matrix, engine="fake", load_seconds=0.0,
                            embed_seconds=1.0, extra={})
    return backend


def test_featurize_cache_of_other_dim_embeds_again(small_items, tmp_path, gfm_logs):
    config = _config(cache_uri=str(tmp_path / "cache"))
    featurize_with(small_items, config, _fake_backend(8, []))
    small_items.loc[0, "title"] = "Toy Story 2"
    calls: list[int] = []

    result = featurize_with(small_items, config, _fake_backend(4, calls))

    assert calls == [1, 6]
    assert result.dim == 4
    assert result.metadata["embedded"] == 6
    assert result.metadata["reused"] == 0
    assert result.metadata["cache_invalid"] == 5
    assert "contains rows of dim 8 but the engine returns dim 4" in gfm_logs.text


def _copy_default_model(folder) -> str:
    shutil.copytree(settings.default_embedding_model(), folder)
    return str(folder)


def test_featurize_model_change_misses_cache(small_items, tmp_path):
    from safetensors.numpy import load_file, save_file

    cache_uri = str(tmp_path / "cache")
    base = _copy_default_model(tmp_path / "base")
    perturbed = _copy_default_model(tmp_path / "perturbed")
    weights = Path(perturbed, "model.safetensors")
    size = weights.stat().st_size
    rng = np.random.default_rng(0)
    tensors = {name: tensor + rng.normal(0, 0.05, tensor.shape).astype(tensor.dtype)
               for name, tensor in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    cls_pooling = _copy_default_model(tmp_path / "cls-pooling")
    pooling_file = Path(cls_pooling, "1_Pooling", "config.json")
    pooling = json.loads(pooling_file.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling_file.write_text(json.dumps(pooling))

    featurize_items(small_items, _config(model=base, cache_uri=cache_uri))
    after_weights = featurize_items(small_items, _config(model=perturbed, cache_uri=cache_uri))
    after_pooling = featurize_items(small_items, _config(model=cls_pooling,
                                                         cache_uri=cache_uri))

    assert weights.stat().st_size == size
    assert after_weights.metadata["embedded"] == 6
    assert after_weights.metadata["reused"] == 0
    assert after_pooling.metadata["embedded"] == 6
    assert after_pooling.metadata["reused"] == 0


def test_featurize_dataset_gcs_with_cache(small_items, gcs_emulator):
    bucket = gcs_emulator.create_bucket("gfm-featurize-run")
    dataset_uri, output_uri = f"{bucket}/dataset", f"{bucket}/llm"
    _write_items(small_items, dataset_uri)
    config = _config(cache_uri=f"{bucket}/cache")

    written = featurize_dataset(dataset_uri, output_uri, config)
    rerun = featurize_dataset(dataset_uri, f"{bucket}/llm-2", config)
    loaded = ItemEmbeddings.load(output_uri)

    assert loaded.item_ids == small_items["item_id"].tolist()
    np.testing.assert_array_equal(loaded.matrix, written.matrix)
    assert loaded.metadata["embedded"] == 6
    assert rerun.metadata["reused"] == 6
    np.testing.assert_array_equal(rerun.matrix, written.matrix)


def test_featurize_missing_model_raises_before_loading(small_items, tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        featurize_items(small_items, _config(model=str(tmp_path / "missing-model")))


def test_featurize_bad_catalogs_raise(small_items):
    with pytest.raises(ValueError, match="items table is empty"):
        featurize_items(small_items.iloc[:0], _config())
    with pytest.raises(ValueError, match="occur more than once"):
        featurize_items(small_items.iloc[[0, 0]], _config())
    mixed_ids = small_items.iloc[:2].copy()
    mixed_ids["item_id"] = pd.Series([1, "1"], dtype=object)
    with pytest.raises(ValueError, match=r"collide: \{'1': \[1, '1'\]\}"):
        featurize_items(mixed_ids, _config())
    small_items.loc[0, "item_type"] = "podcast"
    with pytest.raises(ValueError, match="no template for item type 'podcast'"):
        featurize_items(small_items, _config())


def test_featurize_empty_text_policy(small_items):
    small_items.loc[5, "title"] = ""
    with pytest.raises(ValueError, match="render to an empty text"):
        featurize_items(small_items, _config())

    result = featurize_items(small_items, _config(empty_text="item_type"))

    assert result.metadata["empty_texts"] == {"tag": 1}
    assert len(result) == 6
