"""The foundation layer's published copy, which daily runs import.

2T-HGNN splits the model into a foundation layer (LLM item features and
HGNN item embeddings, refreshed rarely because they are costly) and the
product layer (one two-tower model per product, retrained often). A full
run publishes its two embedding artifacts to a fixed location. A run with
``reuse_foundation`` imports them from there with ``dsl.importer`` and
retrains only the two-tower models. The layout under the location:

* ``llm/`` and ``hgnn/``: ``ItemEmbeddings`` folders;
* ``foundation.json``: the run that published them, when, and their sizes.
  It is written last, so its presence means both copies are complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Any

from gfm import __version__, storage
from gfm.embeddings import METADATA_FILE, ItemEmbeddings

logger = logging.getLogger(__name__)

LLM_FOLDER = "llm"
HGNN_FOLDER = "hgnn"
MANIFEST_FILE = "foundation.json"


def foundation_uris(foundation_uri: str) -> tuple[str, str]:
    """Return the LLM and HGNN embedding folders below ``foundation_uri``."""
    return (
        storage.join(foundation_uri, LLM_FOLDER),
        storage.join(foundation_uri, HGNN_FOLDER),
    )


def publish_foundation(
    llm_uri: str | os.PathLike,
    hgnn_uri: str | os.PathLike,
    target_uri: str,
    *,
    run_name: str,
) -> dict[str, Any]:
    """Copy a run's LLM and HGNN item embeddings to the published location.

    Args:
        llm_uri: folder of the featurize step's ``ItemEmbeddings``.
        hgnn_uri: folder of the HGNN step's ``ItemEmbeddings``.
        target_uri: the published location, local or ``gs://``.
        run_name: the publishing run, recorded in ``foundation.json``.

    Returns:
        The manifest written to ``foundation.json``.

    Raises:
        ValueError: if the two artifacts do not cover the same items.
        FileNotFoundError: if either folder is missing.
    """
    start = time.perf_counter()
    llm = ItemEmbeddings.load(llm_uri)
    hgnn = ItemEmbeddings.load(hgnn_uri)
    if set(llm.item_ids) != set(hgnn.item_ids):
        missing = sorted(set(llm.item_ids) - set(hgnn.item_ids))[:5]
        extra = sorted(set(hgnn.item_ids) - set(llm.item_ids))[:5]
        raise ValueError(
            f"the LLM ({len(llm)} items) and HGNN ({len(hgnn)} items) embeddings "
            f"cover different items (first without an HGNN row: {missing}, first "
            f"without an LLM row: {extra}); publish the outputs of one run"
        )

    # A reader that finds no manifest treats the location as unpublished, so
    # the old manifest goes first and the new one is written after the copies.
    storage.delete(storage.join(target_uri, MANIFEST_FILE))
    llm_target, hgnn_target = foundation_uris(target_uri)
    for source, target in ((llm_uri, llm_target), (hgnn_uri, hgnn_target)):
        storage.delete(target)
        storage.copy_tree(source, target)

    manifest = {
        "run_name": run_name,
        "published_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "code_version": __version__,
        "num_items": len(llm),
        "llm_dim": llm.dim,
        "hgnn_dim": hgnn.dim,
        "llm_metadata": storage.read_json(storage.join(llm_uri, METADATA_FILE)),
        "hgnn_metadata": storage.read_json(storage.join(hgnn_uri, METADATA_FILE)),
    }
    storage.write_json(storage.join(target_uri, MANIFEST_FILE), manifest)
    logger.info(
        "published the foundation layer of run %s (%d items, LLM dim %d, HGNN dim "
        "%d) to %s in %.1f s",
        run_name, len(llm), llm.dim, hgnn.dim, target_uri, time.perf_counter() - start,
    )
    return manifest


def read_foundation_manifest(foundation_uri: str) -> dict[str, Any]:
    """Read ``foundation.json`` of a published location.

    Raises:
        FileNotFoundError: if nothing complete was published there, naming
            the way to publish it.
    """
    uri = storage.join(foundation_uri, MANIFEST_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"no published foundation layer at {foundation_uri} ({MANIFEST_FILE} is "
            "missing): run the pipeline once with reuse_foundation=false and "
            "publish_foundation_uri set to this location"
        )
    return storage.read_json(uri)
