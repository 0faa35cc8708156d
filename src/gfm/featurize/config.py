"""Settings of the featurize stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from gfm.featurize.templates import DEFAULT_TEMPLATES, parse_templates

ENGINES = ("auto", "vllm", "sentence-transformers")
DEVICES = ("cpu", "cuda")
EMPTY_TEXT_POLICIES = ("error", "item_type")


def _check_keys(cls: type, mapping: Mapping[str, Any], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} settings must be a mapping, got {mapping!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValueError(
            f"unknown {where} setting(s) {unknown}; known settings are {sorted(known)}"
        )


@dataclass
class VLLMOptions:
    """Settings of the vLLM engine.

    Attributes:
        gpu_memory_utilization: fraction of the accelerator's memory vLLM may
            take, in (0, 1]. vLLM's default of 0.92 fails on CPU.
        dtype: model dtype; None means ``float32`` on CPU and ``auto`` on GPU.
        start_timeout_s: seconds to wait for the engine process to load the
            model.
        request_timeout_s: seconds to wait for one batch's embeddings.
    """

    gpu_memory_utilization: float = 0.2
    dtype: str | None = None
    start_timeout_s: float = 900.0
    request_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"vllm.gpu_memory_utilization={self.gpu_memory_utilization} is "
                "outside (0, 1]; use for example 0.2"
            )
        for name in ("start_timeout_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"vllm.{name}={getattr(self, name)} must be positive")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "VLLMOptions":
        """Build from a mapping, raising ValueError on unknown keys."""
        _check_keys(cls, mapping, "featurize.vllm")
        return cls(**mapping)


@dataclass
class RayOptions:
    """Settings of the Ray Data scale-out (:func:`featurize_items_ray`).

    Attributes:
        enabled: whether the pipeline step embeds on Ray instead of in
            its own process.
        num_actors: size of the actor pool, each holding one engine.
        num_cpus_per_actor: CPUs Ray reserves per actor; also the actor's
            torch thread count.
        num_gpus_per_actor: GPUs Ray reserves per ``map_batches`` actor;
            0 on device cuda means 1. ``ray.data.llm`` reserves one GPU per
            vLLM engine itself.
        address: cluster to join; ``"local"`` starts a private one, ``"auto"``
            joins a running cluster, as with ``ray.init(address=...)``.
        num_cpus: CPUs of a cluster this stage starts; None means all.
        temp_dir: Ray's session folder for a cluster this stage starts. Unix
            sockets live below it, so keep it short.
    """

    enabled: bool = False
    num_actors: int = 2
    num_cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0
    address: str = "local"
    num_cpus: int | None = None
    temp_dir: str = "/tmp/gfm-ray"

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise ValueError(f"ray.num_actors={self.num_actors} must be at least 1")
        if self.num_cpus_per_actor <= 0:
            raise ValueError(
                f"ray.num_cpus_per_actor={self.num_cpus_per_actor} must be positive"
            )
        if self.num_gpus_per_actor < 0:
            raise ValueError(
                f"ray.num_gpus_per_actor={self.num_gpus_per_actor} must not be negative"
            )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "RayOptions":
        """Build from a mapping, raising ValueError on unknown keys."""
        _check_keys(cls, mapping, "featurize.ray")
        return cls(**mapping)


@dataclass
class FeaturizeConfig:
    """Settings of the featurize stage.

    Attributes:
        model: embedding model folder or Hugging Face name; None means
            ``gfm.settings.default_embedding_model()``.
        engine: ``"vllm"``, ``"sentence-transformers"`` or ``"auto"`` (vLLM
            when it is installed and a GPU is present).
        device: ``"cpu"`` or ``"cuda"``; None means cuda when torch finds a GPU.
        batch_size: texts per engine call.
        max_length: tokens kept per text, special tokens included; the
            tokenizer truncates longer texts. None means the model's own
            maximum sequence length.
        templates: template per item type. :meth:`from_dict` merges the given
            ones over :data:`DEFAULT_TEMPLATES`.
        template_version: label of the template set, written to the
            artifact's metadata and part of every cache key.
        cache_uri: folder (local or ``gs://``) of the incremental embedding
            cache; None disables it.
        empty_text: what to do with an item whose text is empty after
            rendering: ``"error"`` raises, ``"item_type"`` embeds the item
            type's name instead and counts the item in the metadata.
        vllm: settings of the vLLM engine.
        ray: settings of the Ray Data scale-out.
    """

    model: str | None = None
    engine: str = "auto"
    device: str | None = None
    batch_size: int = 256
    max_length: int | None = None
    templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    template_version: str = "v1"
    cache_uri: str | None = None
    empty_text: str = "error"
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {ENGINES}")
        if self.device is not None and self.device not in DEVICES:
            raise ValueError(
                f"unknown device {self.device!r}; expected one of {DEVICES} or None"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for text; use None "
                "for the model's own maximum or a token count of at least 2"
            )
        if self.empty_text not in EMPTY_TEXT_POLICIES:
            raise ValueError(
                f"unknown empty_text policy {self.empty_text!r}; expected one of "
                f"{EMPTY_TEXT_POLICIES}"
            )
        if not self.template_version:
            raise ValueError("template_version must be a non-empty label, such as 'v1'")
        parse_templates(self.templates)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "FeaturizeConfig":
        """Build settings from a mapping such as the ``featurize`` section of a
        run's YAML.

        Raises:
            ValueError: naming any unknown key, or an invalid value.
        """
        _check_keys(cls, mapping, "featurize")
        values = dict(mapping)
        if "templates" in values:
            templates = values["templates"]
            if not isinstance(templates, Mapping):
                raise ValueError(
                    f"featurize.templates must map item type to template, got "
                    f"{templates!r}"
                )
            values["templates"] = {**DEFAULT_TEMPLATES, **templates}
        if "vllm" in values:
            values["vllm"] = VLLMOptions.from_dict(values["vllm"])
        if "ray" in values:
            values["ray"] = RayOptions.from_dict(cls.ray_mapping(values["ray"]))
        return cls(**values)

    @staticmethod
    def ray_mapping(value: Any) -> dict[str, Any]:
        """Return the ``ray`` setting as a mapping.

        ``true`` or ``false`` is short for ``{"enabled": value}``. None, which
        an empty YAML key gives, means the defaults.

        Raises:
            ValueError: if ``value`` is neither a mapping, a bool nor None.
        """
        if value is None:
            return {}
        if isinstance(value, bool):
            return {"enabled": value}
        if not isinstance(value, Mapping):
            raise ValueError(
                f"featurize.ray must be a mapping of Ray settings or true/false, got "
                f"{value!r}"
            )
        return dict(value)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-ready values."""
        return dataclasses.asdict(self)
