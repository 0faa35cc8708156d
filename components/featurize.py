"""KFP component that embeds every catalog item with an LLM."""

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("featurize"))
def featurize(
    dataset: dsl.Input[dsl.Dataset],
    split: dsl.Input[dsl.Dataset],
    embeddings: dsl.Output[dsl.Artifact],
    config: dict = {},
    templates: dict = {},
):
    """Render each item of ``dataset`` to text and embed it.

    Item tag text built from tag applications (Last.fm artists) uses only
    the applications of ``split``'s training part
    (``gfm.data.item_text.items_for_split``), so the features carry nothing
    of the validation and test periods.

    ``embeddings`` receives an ``ItemEmbeddings`` folder (``embeddings.npy``
    float32 ``[num_items, dim]``, ``items.parquet``, ``metadata.json``).
    ``config`` is the ``featurize`` section of the run's settings
    (``FeaturizeConfig.from_dict``; empty means defaults). The engine is
    picked per ``config["engine"]``, so the GPU this task is given decides
    between vLLM and sentence-transformers under ``"auto"``. ``templates``
    maps item types to templates that replace those of ``config`` (the
    pipeline's ``templates`` parameter; empty keeps them).
    """
    from gfm.components import decode_parameter
    from gfm.featurize import FeaturizeConfig, featurize_dataset
    from gfm.logging_setup import configure_logging

    configure_logging()
    featurize_settings = dict(decode_parameter(config))
    if templates:
        featurize_settings["templates"] = {
            **featurize_settings.get("templates", {}), **templates
        }
    result = featurize_dataset(dataset.path, embeddings.path,
                               FeaturizeConfig.from_dict(featurize_settings), split.path)
    metadata = result.metadata
    embeddings.metadata.update(
        num_items=len(result),
        dim=result.dim,
        embedded=metadata["embedded"],
        reused=metadata["reused"],
        cache_invalid=metadata["cache_invalid"],
        cache_skipped_shards=metadata["cache_skipped_shards"],
        truncated=metadata["truncated"],
        engine=metadata["engine"],
        model=metadata["model"],
        template_version=metadata["template_version"],
        items_per_second=metadata["items_per_second"],
        items_per_type=metadata["items_per_type"],
    )
