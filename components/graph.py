"""KFP component that builds the item co-interaction graph."""

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("train"))
def build_graph(
    dataset: dsl.Input[dsl.Dataset],
    split: dsl.Input[dsl.Dataset],
    llm_embeddings: dsl.Input[dsl.Artifact],
    graph: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    config: dict = {},
):
    """Count item co-interactions of the training split into a ``HeteroData``.

    Reads ``items.parquet`` of ``dataset`` (every catalog item becomes a
    node), ``train.parquet`` of ``split`` (the interactions that make edges)
    and the ``ItemEmbeddings`` folder ``llm_embeddings`` (the node features).
    ``graph`` receives ``graph.pt`` and ``stats.json``. ``config`` is the
    ``graph`` section of the run's settings (``GraphConfig.from_dict``; empty
    means defaults). ``metrics`` and ``graph.metadata`` get the node and edge
    counts per type and relation, the isolated nodes and the drops per rule.
    """
    from gfm import storage
    from gfm.components import decode_parameter
    from gfm.embeddings import ItemEmbeddings
    from gfm.graph import GraphConfig, save_graph
    from gfm.graph import build_graph as build_co_interaction_graph
    from gfm.logging_setup import configure_logging

    configure_logging()
    graph_config = GraphConfig.from_dict(decode_parameter(config))
    items = storage.read_table(
        storage.join(dataset.path, "items.parquet"), columns=["item_id", "item_type"]
    ).to_pandas()
    result = build_co_interaction_graph(
        storage.join(split.path, "train.parquet"),
        items,
        ItemEmbeddings.load(llm_embeddings.path),
        graph_config,
    )
    save_graph(result, graph.path)

    stats = result.stats
    counts = {}
    for node_type, count in stats["nodes"].items():
        counts[f"nodes_{node_type}"] = count
        counts[f"isolated_{node_type}"] = stats["isolated_nodes"][node_type]
    for relation, count in stats["edges"].items():
        counts[f"edges_{relation}"] = count
    for rule, count in stats["co_occurrences_dropped"].items():
        counts[f"co_occurrences_dropped_{rule}"] = count
    for rule, count in stats["item_pairs_dropped"].items():
        counts[f"item_pairs_dropped_{rule}"] = count
    counts["interactions_dropped_unknown_item"] = stats["interactions_dropped"][
        "unknown_item"
    ]
    counts["build_seconds"] = stats["duration_s"]
    for name, value in counts.items():
        metrics.log_metric(name, value)
    graph.metadata.update(
        counts,
        node_types=list(stats["nodes"]),
        relations=stats["relations"],
        empty_relations=stats["empty_relations"],
    )
