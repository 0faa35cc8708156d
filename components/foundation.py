"""KFP component that publishes a run's foundation layer for later runs."""

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("base"))
def publish_foundation(
    llm_embeddings: dsl.Input[dsl.Artifact],
    hgnn_embeddings: dsl.Input[dsl.Artifact],
    target_uri: str,
    run_name: str,
    published: dsl.Output[dsl.Artifact],
):
    """Copy the LLM and HGNN item embeddings to ``target_uri``.

    Runs whose ``reuse_foundation`` is true import ``<target_uri>/llm`` and
    ``<target_uri>/hgnn`` instead of featurizing and training the HGNN.
    ``published`` records the manifest (``foundation.json``) of the copy.
    """
    import os

    from gfm import storage
    from gfm.logging_setup import configure_logging
    from gfm.pipelines.foundation import MANIFEST_FILE, publish_foundation

    configure_logging()
    manifest = publish_foundation(
        llm_embeddings.path, hgnn_embeddings.path, target_uri, run_name=run_name
    )
    os.makedirs(published.path, exist_ok=True)
    storage.write_json(os.path.join(published.path, MANIFEST_FILE), manifest)
    published.metadata.update(
        target_uri=target_uri,
        num_items=manifest["num_items"],
        llm_dim=manifest["llm_dim"],
        hgnn_dim=manifest["hgnn_dim"],
    )
