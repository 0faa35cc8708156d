"""A run's settings: one YAML document with one section per pipeline stage.

The shipped documents live in ``gfm/configs/<name>.yaml``. Sections:

* ``dataset``: ``name`` (a loader of ``gfm.data.load_dataset``), ``uri``
  (files for the ``files`` loader, empty otherwise), ``strict`` and
  ``options`` (loader options);
* ``split``, ``featurize``, ``graph``, ``hgnn``, ``evaluation``,
  ``serving``, ``deploy``: the settings of that stage's dataclass;
* ``twotower``: ``products`` (a mapping from product name to its item
  types) plus the settings of ``TwoTowerConfig``.

Each stage section is checked against its settings dataclass before a run
starts (:meth:`RunConfig.validate`), so a misspelt key fails in seconds
rather than after featurization.
"""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

logger = logging.getLogger(__name__)

# Section name -> "module:Class" of the settings dataclass that reads it.
STAGE_SETTINGS = {
    "split": "gfm.data.splits:SplitConfig",
    "featurize": "gfm.featurize.config:FeaturizeConfig",
    "graph": "gfm.graph.config:GraphConfig",
    "hgnn": "gfm.hgnn.config:HGNNConfig",
    "twotower": "gfm.twotower.config:TwoTowerConfig",
    "evaluation": "gfm.evaluation.config:EvaluationConfig",
    "serving": "gfm.serving.config:ServingConfig",
    "deploy": "gfm.serving.deploy_config:DeployConfig",
}
SECTIONS = ("dataset", *STAGE_SETTINGS)
DATASET_KEYS = ("name", "uri", "strict", "options")

# Product names become folder names and parts of KFP task and Kubernetes
# object names, so they follow the DNS label rules.
_PRODUCT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass
class Product:
    """A product: a name and the item types it recommends.

    Args:
        name: lower-case DNS label, for example ``movies``.
        item_types: the item types of the product's catalog.
    """

    name: str
    item_types: list[str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PRODUCT_NAME.match(self.name):
            raise ValueError(
                f"product name {self.name!r} is invalid: use lower-case letters, "
                "digits and '-' (at most 63 characters), for example 'movies'"
            )
        types = self.item_types
        if isinstance(types, str) or not types or not all(isinstance(t, str) for t in types):
            raise ValueError(
                f"product {self.name!r} needs a non-empty list of item types, "
                f"got {types!r}"
            )
        if len(set(types)) != len(types):
            raise ValueError(f"product {self.name!r} lists an item type twice: {types}")
        self.item_types = list(types)

    def to_parameter(self) -> dict[str, Any]:
        """Return the product as one element of the pipeline's ``products``.

        The key is ``product``, not ``name``: inside ``dsl.ParallelFor`` the
        loop item's ``.name`` is the loop channel's own name, so a ``name``
        key cannot be read as a field.
        """
        return {"product": self.name, "item_types": list(self.item_types)}


@dataclass
class RunConfig:
    """The settings of one pipeline run, one mapping per stage.

    Stage sections stay plain mappings because they travel to the KFP
    components as ``config: dict`` parameters; each component builds its
    settings dataclass from its mapping.

    Args:
        dataset: ``name``, ``uri``, ``strict`` and ``options`` of the
            ingest step.
        products: the products, each trained as its own two-tower model.
        split, featurize, graph, hgnn, twotower, evaluation, serving, deploy:
            stage settings; an empty mapping means the stage's defaults.
        source: where the settings were read from, for logs.
    """

    dataset: dict[str, Any]
    products: list[Product]
    split: dict[str, Any] = field(default_factory=dict)
    featurize: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    hgnn: dict[str, Any] = field(default_factory=dict)
    twotower: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.dataset) - set(DATASET_KEYS))
        if unknown:
            raise ValueError(
                f"unknown dataset setting(s) {unknown} in {self.source}; "
                f"known settings are {list(DATASET_KEYS)}"
            )
        if not self.dataset.get("name"):
            raise ValueError(f"dataset.name is missing in {self.source}")
        if not self.products:
            raise ValueError(f"twotower.products is empty in {self.source}")
        names = [p.name for p in self.products]
        if len(set(names)) != len(names):
            raise ValueError(f"product names repeat in {self.source}: {names}")
        for section in STAGE_SETTINGS:
            value = getattr(self, section)
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"section {section!r} in {self.source} must be a mapping, "
                    f"got {type(value).__name__}"
                )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], source: str = "<memory>") -> "RunConfig":
        """Build the run settings from a parsed YAML document.

        Raises:
            ValueError: naming an unknown section, a missing dataset name, an
                empty or invalid product list.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError(f"run settings in {source} must be a mapping of sections")
        unknown = sorted(set(mapping) - set(SECTIONS))
        if unknown:
            raise ValueError(
                f"unknown section(s) {unknown} in {source}; known sections are "
                f"{list(SECTIONS)}"
            )
        sections = {name: copy.deepcopy(dict(mapping.get(name) or {})) for name in SECTIONS}
        products = sections["twotower"].pop("products", None)
        if not isinstance(products, Mapping):
            raise ValueError(
                f"twotower.products in {source} must map each product name to its "
                "item types, for example {movies: [movie]}"
            )
        return cls(
            products=[Product(name, types) for name, types in products.items()],
            source=source,
            **sections,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as the YAML document they came from."""
        result: dict[str, Any] = {"dataset": copy.deepcopy(self.dataset)}
        for section in STAGE_SETTINGS:
            result[section] = copy.deepcopy(getattr(self, section))
        result["twotower"] = {
            "products": {p.name: list(p.item_types) for p in self.products},
            **result["twotower"],
        }
        return result

    @property
    def item_types(self) -> list[str]:
        """The item types that some product recommends, in product order."""
        seen: list[str] = []
        for product in self.products:
            seen.extend(t for t in product.item_types if t not in seen)
        return seen

    def validate(self) -> None:
        """Build every stage's settings dataclass from its section.

        A stage whose package cannot be imported in this environment is
        skipped with a warning, and its step checks the section when it
        starts. The ``gfm-base`` image that submits runs has no torch, for
        example.

        Raises:
            ValueError: from the first stage whose ``from_dict`` rejects its
                section (an unknown key or an invalid value), prefixed with
                the section name and the source.
        """
        for section, target in STAGE_SETTINGS.items():
            try:
                settings_class = _import_object(target)
            except ImportError as error:
                logger.warning(
                    "cannot check section %r of %s here (%s); its step checks it "
                    "when it starts", section, self.source, error,
                )
                continue
            try:
                settings_class.from_dict(getattr(self, section))
            except (TypeError, ValueError) as error:
                raise ValueError(f"section {section!r} of {self.source}: {error}") from error
        logger.info(
            "run settings from %s are valid: dataset %s, products %s",
            self.source, self.dataset["name"], [p.name for p in self.products],
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RunConfig":
        """Return a copy with dotted keys replaced, e.g. ``{"hgnn.max_epochs": 2}``.

        Raises:
            ValueError: if a key does not start with a known section.
        """
        document = self.to_dict()
        for dotted, value in overrides.items():
            section, _, rest = dotted.partition(".")
            if section not in SECTIONS or not rest:
                raise ValueError(
                    f"invalid override key {dotted!r}: use SECTION.KEY with SECTION "
                    f"one of {list(SECTIONS)}"
                )
            target = document[section]
            *parents, leaf = rest.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
                if not isinstance(target, dict):
                    raise ValueError(f"override {dotted!r} goes through a non-mapping value")
            target[leaf] = value
        return RunConfig.from_dict(document, source=f"{self.source} with overrides")


def _import_object(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def shipped_configs() -> dict[str, Path]:
    """Return the run settings shipped in ``gfm/configs``, by name."""
    folder = importlib.resources.files("gfm") / "configs"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def load_run_config(name_or_path: str | Path) -> RunConfig:
    """Read run settings from a YAML file or a shipped name (``movielens-1m``).

    Raises:
        FileNotFoundError: if it is neither a file nor a shipped name.
        ValueError: if the document is invalid (see :meth:`RunConfig.from_dict`).
    """
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_configs()
        if str(name_or_path) not in shipped:
            raise FileNotFoundError(
                f"run settings {str(name_or_path)!r} not found: give a YAML file or "
                f"one of the shipped names {sorted(shipped)}"
            )
        path = shipped[str(name_or_path)]
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    return RunConfig.from_dict(document or {}, source=str(path))

