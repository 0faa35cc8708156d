"""Settings of the recommendation model server."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Folder into which the KServe storage initializer downloads ``STORAGE_URI``.
KSERVE_MODEL_DIR = "/mnt/models"

INDEX_KINDS = ("exact", "ivf")


@dataclass
class ServingConfig:
    """Settings of :class:`gfm.serving.model.RecommenderModel`.

    Args:
        model_name: the model name in request paths, as in
            ``/v1/models/{model_name}:predict``.
        bundle_uri: the serving bundle folder, local or ``gs://``. Defaults to
            ``/mnt/models``, where KServe's storage initializer downloads
            ``STORAGE_URI``.
        max_instances: maximum number of instances in one request.
        max_k: maximum ``k`` of one instance.
        default_k: ``k`` of an instance that does not set it.
        max_history: maximum number of history items used per instance. A
            longer history keeps its most recent items, and the response
            counts the rest as ``history_truncated``.
        exclude_consumed: default of the per-instance ``exclude_consumed``
            option (drop items already in the user's history).
        index: ``exact`` (one matrix product and exact top-k) or ``ivf``
            (a faiss inverted-file index, used only for products with at least
            ``ann_min_items`` items).
        ann_min_items: smallest catalog that gets the ``ivf`` index.
        ann_nprobe: number of inverted lists the ``ivf`` index searches.
        torch_threads: intra-op threads of torch (and faiss) for scoring; 0
            keeps torch's default of one per core. The default is 1 because
            one request's tensors are small, and a pool of threads that wait
            for each other slows every request when the cores are shared or
            CPU-limited. ``benchmarks/serving.py`` measured 0.4 ms against
            73 ms median latency on MovieLens-1M on 2 busy cores.
    """

    model_name: str = "gfm"
    bundle_uri: str = KSERVE_MODEL_DIR
    max_instances: int = 64
    max_k: int = 500
    default_k: int = 10
    max_history: int = 200
    exclude_consumed: bool = True
    index: str = "exact"
    ann_min_items: int = 100_000
    ann_nprobe: int = 64
    torch_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("max_instances", "max_k", "default_k", "max_history",
                     "ann_min_items", "ann_nprobe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"serving.{name} must be a positive integer, got {value!r}")
        if self.default_k > self.max_k:
            raise ValueError(
                f"serving.default_k={self.default_k} exceeds serving.max_k={self.max_k}; "
                "lower default_k or raise max_k"
            )
        if self.index not in INDEX_KINDS:
            raise ValueError(
                f"serving.index must be one of {INDEX_KINDS}, got {self.index!r}"
            )
        if self.torch_threads < 0:
            raise ValueError(
                f"serving.torch_threads must be 0 (torch default) or positive, "
                f"got {self.torch_threads}"
            )
        if not self.model_name:
            raise ValueError("serving.model_name must not be empty")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None) -> ServingConfig:
        """Build the settings from a mapping, with defaults for missing keys.

        Raises:
            ValueError: naming any key that is not a setting.
        """
        return settings_from_dict(cls, mapping, "serving")


def settings_from_dict(cls: type, mapping: Mapping[str, Any] | None, section: str) -> Any:
    """Build the settings dataclass ``cls`` from ``mapping``.

    Raises:
        ValueError: naming any key of ``mapping`` that is not a field of ``cls``.
    """
    values = dict(mapping or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown {section} settings {unknown}; expected keys among {sorted(known)}"
        )
    return cls(**values)
