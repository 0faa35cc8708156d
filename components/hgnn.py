"""KFP component that trains the HGNN on Ray Train."""

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("train"))
def train_hgnn(
    graph: dsl.Input[dsl.Artifact],
    model: dsl.Output[dsl.Model],
    embeddings: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    config: dict = {},
    warm_start_uri: str = "",
):
    """Train the heterogeneous GraphSAGE on a graph folder.

    Reads ``graph.pt`` of ``graph``. ``model`` receives ``model.pt``,
    ``config.json``, ``metrics.json`` (per-epoch loss and validation
    metrics) and, with ``launcher: local`` and no ``storage_path``, the
    last Ray Train checkpoint in ``checkpoint/``. ``embeddings`` receives
    the ``ItemEmbeddings`` of every catalog item. ``config`` is the ``hgnn`` section of the run's settings
    (``HGNNConfig.from_dict``), and an empty one means defaults. Its
    ``launcher`` picks a local Ray cluster, a KubeRay ``RayJob`` or a
    running RayCluster.
    ``warm_start_uri`` names a previous model, HGNN output or Ray checkpoint
    folder to start from (empty starts from scratch). ``metrics`` and the
    outputs' ``metadata`` get the best validation AUC and HR@K, the epochs
    run and the item counts. ``metrics.json`` stores NaN and infinite
    values as null, and ``metrics`` leaves them out, as happens to the
    validation metrics of a graph without validation pairs.
    """
    import logging
    import math
    import shutil
    import tempfile

    from gfm import storage
    from gfm.components import decode_parameter
    from gfm.hgnn import HGNNConfig
    from gfm.hgnn import train_hgnn as run_training
    from gfm.hgnn.train import CHECKPOINT_DIR, keep_checkpoint
    from gfm.logging_setup import configure_logging

    configure_logging()
    logger = logging.getLogger("gfm.components.hgnn")
    hgnn_config = HGNNConfig.from_dict(decode_parameter(config))
    local = hgnn_config.launcher == "local"
    # A remote Ray cluster reads and writes the artifacts' gs:// URIs; a
    # local run trains into a scratch folder and copies the results.
    scratch = tempfile.mkdtemp(prefix="gfm-hgnn-") if local else None
    out_uri = scratch if local else storage.join(model.uri, "run")
    graph_uri = graph.path if local else graph.uri
    try:
        result = run_training(
            graph_uri, out_uri, hgnn_config, resume_from=warm_start_uri or None
        )
        model_uri = model.path if local else model.uri
        embeddings_uri = embeddings.path if local else embeddings.uri
        storage.copy_tree(storage.join(out_uri, "model"), model_uri)
        storage.copy_tree(storage.join(out_uri, "embeddings"), embeddings_uri)
        if local and hgnn_config.storage_path is None:
            # The Ray Train run folder lies in the scratch folder, which is
            # deleted below. Only its last checkpoint (one state.pt) moves
            # into the model artifact, because a warm start reads nothing
            # else and the older checkpoints would only grow the artifact.
            # It goes to model.uri (gs:// under a GCS pipeline_root) rather
            # than the mounted model.path, so a remote Ray cluster can read it.
            result = keep_checkpoint(result, storage.join(model.uri, CHECKPOINT_DIR))
        # train_hgnn has replaced NaN and infinity with None, which JSON
        # writes as null.
        storage.write_json(storage.join(model_uri, "metrics.json"), result.metrics)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    summary = result.metrics["summary"]
    counts = {
        "best_val_auc": summary["best_val_auc"],
        "best_val_hr": summary["best_val_hr"],
        "best_epoch": summary["best_epoch"],
        "epochs": summary["epochs"],
        "attempts": summary["attempts"],
        "train_seconds": summary["train_time_s"],
        "num_items": len(result.embeddings),
    }
    skipped = []
    for name, value in counts.items():
        if value is None or not math.isfinite(value):
            skipped.append(name)
            continue
        metrics.log_metric(name, value)
    if skipped:
        logger.warning(
            "left %s out of the KFP Metrics artifact because they have no finite "
            "value, as the validation metrics do when no relation has validation "
            "pairs",
            skipped,
        )
    per_type = result.embeddings.metadata["items_per_type"]
    model.metadata.update(
        counts, hr_k=summary["hr_k"], checkpoint_uri=result.checkpoint_uri
    )
    embeddings.metadata.update(
        num_items=len(result.embeddings),
        dim=result.embeddings.dim,
        items_per_type=per_type,
        items_without_edges=result.embeddings.metadata["items_without_edges"],
    )
