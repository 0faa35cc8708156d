"""LLM featurization: render each item to text and embed it.

Typical use::

    from gfm.featurize import FeaturizeConfig, featurize_items

    embeddings = featurize_items(items, FeaturizeConfig.from_dict({"batch_size": 128}))
    embeddings.save("gs://bucket/run/llm-embeddings")

See ``docs/featurize.md`` for the template syntax, the engines and the cache.
"""

from gfm.featurize.config import FeaturizeConfig, RayOptions, VLLMOptions
from gfm.featurize.distributed import featurize_items_ray
from gfm.featurize.engine import (
    EmbeddingEngine,
    SentenceTransformersEngine,
    create_engine,
)
from gfm.featurize.models import ModelNotFoundError, ResolvedModel, resolve_model
from gfm.featurize.run import featurize_dataset, featurize_items
from gfm.featurize.templates import DEFAULT_TEMPLATES, TemplateError, render_texts
from gfm.featurize.engine_process import EngineProcessError
from gfm.featurize.vllm_engine import VLLMEngine

__all__ = [
    "DEFAULT_TEMPLATES",
    "EmbeddingEngine",
    "EngineProcessError",
    "FeaturizeConfig",
    "ModelNotFoundError",
    "RayOptions",
    "ResolvedModel",
    "SentenceTransformersEngine",
    "TemplateError",
    "VLLMEngine",
    "VLLMOptions",
    "create_engine",
    "featurize_dataset",
    "featurize_items",
    "featurize_items_ray",
    "render_texts",
    "resolve_model",
]
