"""The gfm Kubeflow pipeline: from raw interactions to a deployed model.

Steps, after 2T-HGNN (arXiv 2403.05185):

1. ``ingest`` loads and validates the dataset; ``split`` cuts train, valid,
   test and cold items.
2. The foundation layer: ``featurize`` embeds every item with an LLM
   (vLLM), taking item tag text from the training split only.
   ``build_graph`` counts item co-interactions into a ``HeteroData`` graph,
   and ``train_hgnn`` trains a heterogeneous GraphSAGE on Ray Train and
   embeds every item. With ``reuse_foundation`` the run
   instead imports the embeddings a previous run published
   (``dsl.importer``), so a daily run skips the costly layer and a weekly
   run refreshes it.
3. The product layer (:func:`product_layer`): ``dsl.ParallelFor`` over the
   products trains one two-tower model each, ``export_bundle`` collects them
   into the serving bundle, ``evaluate`` compares them with the baselines,
   and ``deploy`` runs after the evaluation, gates the bundle on its model
   cards' validation recall against the deployed bundle and rolls it out.

The product layer is one nested pipeline called from both branches of the
``dsl.If``. The branches cannot be joined with ``dsl.OneOf`` instead:
``kfp.local`` (kfp 2.17) rejects a ``OneOf`` of artifacts.
"""

# No "from __future__ import annotations": KFP reads the artifact types of
# the nested pipeline's signature from live annotations.
import logging
from typing import Any, Callable

from kfp import dsl

from gfm.pipelines.placement import Placement, apply_task_policy

logger = logging.getLogger(__name__)

PIPELINE_NAME = "gfm-2t-hgnn"
PRODUCT_LAYER_NAME = "gfm-product-layer"

# The parameter defaults below are placeholders that make the signature
# complete; `gfm compile` replaces them with the values of a run settings
# file (see gfm.pipelines.compile.pipeline_arguments).
DEFAULT_PRODUCTS = [{"product": "movies", "item_types": ["movie"]}]


def build_pipeline(
    placement: Placement | None = None,
    *,
    max_parallel_products: int = 4,
    cache_ingest: bool = False,
) -> Callable[..., Any]:
    """Build the pipeline, with or without cluster placement.

    Args:
        placement: resources, GPUs, node selectors, tolerations and
            ``/dev/shm`` per step, for compiling to a cluster; None for
            ``kfp.local`` runs, which ignore them.
        max_parallel_products: how many two-tower trainings run at once
            (``ParallelFor`` parallelism).
        cache_ingest: let the ingest step hit the cache, for dataset
            sources that never change under the same name and URI (see
            ``apply_task_policy``).

    Returns:
        The ``@dsl.pipeline`` function (a KFP ``GraphComponent``).
    """
    if max_parallel_products < 1:
        raise ValueError(
            f"max_parallel_products={max_parallel_products} must be at least 1"
        )

    from gfm.components.data import ingest, split
    from gfm.components.deploy import deploy
    from gfm.components.evaluate import evaluate
    from gfm.components.featurize import featurize
    from gfm.components.foundation import publish_foundation
    from gfm.components.graph import build_graph
    from gfm.components.hgnn import train_hgnn
    from gfm.components.twotower import export_bundle, train_two_tower

    def place(task: Any, step: str) -> Any:
        apply_task_policy(task, step, cache_ingest=cache_ingest)
        if placement is not None:
            placement.apply(task, step)
        return task

    @dsl.pipeline(
        name=PRODUCT_LAYER_NAME,
        description="Train one two-tower model per product, export, evaluate, deploy.",
    )
    def product_layer(
        dataset: dsl.Input[dsl.Dataset],
        splits: dsl.Input[dsl.Dataset],
        llm_embeddings: dsl.Input[dsl.Artifact],
        hgnn_embeddings: dsl.Input[dsl.Artifact],
        products: list,
        twotower_config: dict,
        evaluation_config: dict,
        deploy_config: dict,
        model_version: str,
    ):
        with dsl.ParallelFor(
            products, parallelism=max_parallel_products, name="products"
        ) as product:
            trained = place(
                train_two_tower(
                    dataset=dataset,
                    split=splits,
                    llm_embeddings=llm_embeddings,
                    hgnn_embeddings=hgnn_embeddings,
                    product=product.product,
                    item_types=product.item_types,
                    config=twotower_config,
                ),
                "train_two_tower",
            )

        bundle = place(
            export_bundle(
                models=dsl.Collected(trained.outputs["model"]),
                dataset=dataset,
                split=splits,
                llm_embeddings=llm_embeddings,
                hgnn_embeddings=hgnn_embeddings,
                model_version=model_version,
                evaluation_config=evaluation_config,
            ),
            "export_bundle",
        )
        report = place(
            evaluate(
                dataset=dataset,
                split=splits,
                llm_embeddings=llm_embeddings,
                hgnn_embeddings=hgnn_embeddings,
                models=dsl.Collected(trained.outputs["model"]),
                config=evaluation_config,
            ),
            "evaluate",
        )
        # The gate compares model cards, not the report, but a bundle is
        # rolled out only after its evaluation has run.
        place(
            deploy(bundle=bundle.outputs["bundle"], config=deploy_config),
            "deploy",
        ).after(report)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "2T-HGNN recommender: LLM item features, item co-interaction graph, "
            "heterogeneous GraphSAGE, one two-tower model per product, KServe."
        ),
    )
    def gfm_pipeline(
        dataset_name: str = "movielens-1m",
        dataset_uri: str = "",
        strict: bool = False,
        dataset_options: dict = {},
        products: list = DEFAULT_PRODUCTS,
        templates: dict = {},
        split_config: dict = {},
        featurize_config: dict = {},
        graph_config: dict = {},
        hgnn_config: dict = {},
        twotower_config: dict = {},
        evaluation_config: dict = {},
        deploy_config: dict = {},
        reuse_foundation: bool = False,
        foundation_llm_uri: str = "",
        foundation_hgnn_uri: str = "",
        publish_foundation_uri: str = "",
        hgnn_warm_start_uri: str = "",
    ):
        data = place(
            ingest(
                dataset_name=dataset_name, files_uri=dataset_uri, strict=strict,
                config=dataset_options,
            ),
            "ingest",
        )
        parts = place(
            split(dataset=data.outputs["dataset"], config=split_config), "split"
        )
        layer_inputs = dict(
            dataset=data.outputs["dataset"],
            splits=parts.outputs["split"],
            products=products,
            twotower_config=twotower_config,
            evaluation_config=evaluation_config,
            deploy_config=deploy_config,
            model_version=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )

        with dsl.If(reuse_foundation == True, name="reuse-foundation"):  # noqa: E712
            # reimport: the published location is overwritten by every full
            # run, so each import must record the artifact anew.
            llm = dsl.importer(
                artifact_uri=foundation_llm_uri, artifact_class=dsl.Artifact,
                reimport=True,
            )
            llm.set_display_name("import-llm-embeddings")
            hgnn = dsl.importer(
                artifact_uri=foundation_hgnn_uri, artifact_class=dsl.Artifact,
                reimport=True,
            )
            hgnn.set_display_name("import-hgnn-embeddings")
            product_layer(
                llm_embeddings=llm.output, hgnn_embeddings=hgnn.output, **layer_inputs
            ).set_display_name("product-layer")

        with dsl.Else(name="refresh-foundation"):
            features = place(
                featurize(
                    dataset=data.outputs["dataset"], split=parts.outputs["split"],
                    config=featurize_config, templates=templates,
                ),
                "featurize",
            )
            graph = place(
                build_graph(
                    dataset=data.outputs["dataset"],
                    split=parts.outputs["split"],
                    llm_embeddings=features.outputs["embeddings"],
                    config=graph_config,
                ),
                "build_graph",
            )
            hgnn_task = place(
                train_hgnn(
                    graph=graph.outputs["graph"], config=hgnn_config,
                    warm_start_uri=hgnn_warm_start_uri,
                ),
                "train_hgnn",
            )
            with dsl.If(publish_foundation_uri != "", name="publish"):
                place(
                    publish_foundation(
                        llm_embeddings=features.outputs["embeddings"],
                        hgnn_embeddings=hgnn_task.outputs["embeddings"],
                        target_uri=publish_foundation_uri,
                        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    ),
                    "publish_foundation",
                )
            product_layer(
                llm_embeddings=features.outputs["embeddings"],
                hgnn_embeddings=hgnn_task.outputs["embeddings"],
                **layer_inputs,
            ).set_display_name("product-layer")

    return gfm_pipeline
