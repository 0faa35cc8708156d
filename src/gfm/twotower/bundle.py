"""The serving bundle: every product's model plus what serving needs to score.

Layout below the bundle folder (local or ``gs://``):

* ``bundle.json``: ``format_version``, ``model_version``, product names,
  the embedding folders present, creation time and code version. It is
  written last, so an interrupted export leaves no loadable bundle.
* ``histories.parquet``: ``user_id``, ``item_id``, ``timestamp`` of the
  interactions before the test period (``export_products`` writes the
  split's train and valid parts by default), sorted by user and then time;
  a known user's vector is computed from it.
* ``users.parquet``: user features, when the dataset has them.
* ``hgnn/`` and ``llm/``: ``ItemEmbeddings`` of every catalog item.
* ``products/<product>/``: a :class:`ProductModel` folder without its own
  history embeddings, plus ``model_card.json``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from gfm import __version__, storage
from gfm.embeddings import ItemEmbeddings
from gfm.model_cards import model_card_problem
from gfm.twotower.features import is_missing
from gfm.twotower.product_model import ProductModel

logger = logging.getLogger(__name__)

BUNDLE_FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
HISTORIES_FILE = "histories.parquet"
USERS_FILE = "users.parquet"
PRODUCTS_DIR = "products"
MODEL_CARD_FILE = "model_card.json"
EMBEDDING_DIRS = ("hgnn", "llm")


class BundleError(ValueError):
    """A serving bundle is missing a file or its parts disagree."""


def code_version() -> dict[str, str | None]:
    """Return ``gfm.__version__`` and the git commit of the source tree, if any.

    The commit comes from ``GFM_GIT_COMMIT`` when set (container images set
    it at build time), else from ``git rev-parse`` in the source folder.
    """
    commit = os.environ.get("GFM_GIT_COMMIT")
    if not commit:
        try:
            result = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                capture_output=True, text=True, timeout=10, check=True)
            commit = result.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"gfm": __version__, "git_commit": commit}


def export_bundle(
    uri: str | os.PathLike,
    products: Mapping[str, ProductModel],
    *,
    histories: pd.DataFrame,
    users: pd.DataFrame | None,
    hgnn: ItemEmbeddings | None,
    llm: ItemEmbeddings | None,
    model_version: str,
    model_cards: Mapping[str, Mapping[str, Any]],
) -> None:
    """Write the serving bundle of trained products.

    Args:
        uri: the bundle folder, local or ``gs://``.
        products: trained models by product name.
        histories: interactions (``user_id``, ``item_id``, optional
            ``timestamp``) from which known users' vectors are computed.
        users: user features (``user_id`` plus feature columns), or ``None``.
        hgnn: HGNN embeddings of every catalog item, or ``None`` when no
            product uses them.
        llm: LLM embeddings of every catalog item, or ``None``.
        model_version: the version served models report.
        model_cards: per product, card entries (such as ``data``: dataset
            name, counts and split settings) merged over the generated
            ones (``settings``, ``metrics``, ``code_version``, ``inputs``).

    Raises:
        BundleError: if a product name disagrees with its model, a card names
            an unknown product, or a product's history embeddings are not
            the ``hgnn``/``llm`` given here.
        ValueError: if ``histories`` lacks ``user_id`` or ``item_id``.
    """
    embeddings = dict(zip(EMBEDDING_DIRS, (hgnn, llm)))
    _check_export(products, embeddings, model_cards, model_version)
    missing = [c for c in ("user_id", "item_id") if c not in histories.columns]
    if missing:
        raise ValueError(f"histories table lacks column(s) {missing}; it has "
                         f"{list(histories.columns)}")
    logger.info("exporting serving bundle %s (version %s) with products %s",
                uri, model_version, sorted(products))

    present = [name for name, table in embeddings.items() if table is not None]
    for name in present:
        embeddings[name].save(storage.join(uri, name))
    storage.write_table(_histories_table(histories, embeddings), storage.join(uri, HISTORIES_FILE))
    if users is not None:
        table = pa.Table.from_pandas(users.assign(user_id=users["user_id"].astype(str)),
                                     preserve_index=False)
        storage.write_table(table, storage.join(uri, USERS_FILE))

    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    version = code_version()
    for name, model in products.items():
        folder = storage.join(uri, PRODUCTS_DIR, name)
        model.save(folder, include_history=False)
        card = {
            "product": name,
            "item_types": model.item_types,
            "model_version": model_version,
            "created_at": created,
            "settings": model.config.to_dict(),
            "metrics": model.metrics,
            "code_version": version,
            "inputs": {
                "history_source": model.encoder.source,
                **{n: dict(embeddings[n].metadata, dim=embeddings[n].dim) for n in present},
            },
        }
        card.update(model_cards.get(name, {}))
        storage.write_json(storage.join(folder, MODEL_CARD_FILE), card)

    storage.write_json(storage.join(uri, BUNDLE_FILE), {
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_version": model_version,
        "products": sorted(products),
        "embeddings": present,
        "has_users": users is not None,
        "created_at": created,
        "code_version": version,
    })
    logger.info("exported serving bundle %s", uri)


def _check_export(
    products: Mapping[str, ProductModel],
    embeddings: Mapping[str, ItemEmbeddings | None],
    model_cards: Mapping[str, Mapping[str, Any]],
    model_version: str,
) -> None:
    if not products:
        raise BundleError("no products to export; train at least one product model")
    if not model_version:
        raise BundleError("model_version is empty; pass the version serving reports")
    unknown = sorted(set(model_cards) - set(products))
    if unknown:
        raise BundleError(f"model cards for unknown product(s) {unknown}; products "
                          f"are {sorted(products)}")
    for name, model in products.items():
        if model.product != name:
            raise BundleError(f"product key {name!r} contains the model of product "
                              f"{model.product!r}; key each model by its own name")
        source = model.encoder.source
        table = embeddings[source]
        if table is None:
            raise BundleError(f"product {name!r} takes history means over {source} "
                              f"embeddings, but {source}=None was passed")
        own = model.encoder.history
        if own.item_ids != table.item_ids or not np.array_equal(own.matrix, table.matrix):
            raise BundleError(f"product {name!r} was trained on other {source} "
                              f"embeddings than the ones passed; export the same artifact")


def _histories_table(histories: pd.DataFrame, embeddings: Mapping[str, Any]) -> pa.Table:
    frame = histories[[c for c in ("user_id", "item_id", "timestamp") if c in histories]]
    frame = frame.astype({"user_id": str, "item_id": str})
    if "timestamp" not in frame:
        frame = frame.assign(timestamp=pd.NaT)
    # Sorted first, so a repeated pair keeps its latest time.
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["user_id", "item_id"], keep="last")
    known = set()
    for table in embeddings.values():
        if table is not None:
            known.update(table.item_ids)
    unknown = int((~frame["item_id"].isin(known)).sum())
    if unknown:
        logger.warning("%d history rows name items without any embedding; user vectors "
                       "ignore them", unknown)
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


class Bundle:
    """A loaded serving bundle, checked for consistency.

    Use :meth:`load`; the constructor takes already-loaded parts.
    """

    def __init__(
        self,
        uri: str,
        manifest: Mapping[str, Any],
        products: dict[str, ProductModel],
        embeddings: dict[str, ItemEmbeddings],
        histories: pd.DataFrame,
        users: pd.DataFrame | None,
        model_cards: dict[str, dict],
    ) -> None:
        self.uri = uri
        self.manifest = dict(manifest)
        self.model_version: str = manifest["model_version"]
        self.format_version: int = manifest["format_version"]
        self.products = products
        self.embeddings = embeddings
        self.item_index = next(iter(embeddings.values())).index()
        self._model_cards = model_cards

        # Bundle.load sorts histories by user, so each user's rows are one span.
        user_ids = histories["user_id"].to_numpy()
        self._history_items = histories["item_id"].to_numpy()
        self._history_span: dict[str, tuple[int, int]] = {}
        if len(user_ids):
            starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
            bounds = list(starts) + [len(user_ids)]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                self._history_span[user_ids[start]] = (start, stop)
        self._users = None if users is None else users.set_index("user_id")

    @classmethod
    def load(cls, uri: str | os.PathLike) -> "Bundle":
        """Read and check a bundle written by :func:`export_bundle`.

        Raises:
            BundleError: naming the file or product at fault, when a file is
                missing or unreadable, the format version is not supported,
                dimensions or id maps disagree, product names differ between
                ``bundle.json``, the ``products/`` folders, the models and the
                model cards, or a card has another ``model_version``.
        """
        uri = str(uri)
        manifest = _read_manifest(uri)
        embeddings = {}
        for name in manifest["embeddings"]:
            embeddings[name] = _load_part(uri, name, lambda: ItemEmbeddings.load(
                storage.join(uri, name)))
        if not embeddings:
            raise BundleError(f"bundle {uri} lists no embeddings in {BUNDLE_FILE}")
        if "hgnn" in embeddings and "llm" in embeddings:
            if set(embeddings["hgnn"].item_ids) != set(embeddings["llm"].item_ids):
                raise BundleError(f"bundle {uri}: hgnn/ and llm/ embeddings cover "
                                  f"different item ids")

        names = list(manifest["products"])
        folders = _product_folders(uri)
        if sorted(names) != folders:
            raise BundleError(f"bundle {uri}: {BUNDLE_FILE} lists products {sorted(names)} "
                              f"but {PRODUCTS_DIR}/ contains {folders}")
        item_ids = set(next(iter(embeddings.values())).item_ids)
        products, cards = {}, {}
        for name in names:
            products[name], cards[name] = _load_product(uri, name, embeddings, item_ids,
                                                        manifest["model_version"])

        histories = _load_part(uri, HISTORIES_FILE, lambda: storage.read_table(
            storage.join(uri, HISTORIES_FILE)).to_pandas())
        histories = _checked_histories(uri, histories, item_ids)
        users = None
        if manifest.get("has_users"):
            users = _load_part(uri, USERS_FILE, lambda: storage.read_table(
                storage.join(uri, USERS_FILE)).to_pandas())
        logger.info("loaded serving bundle %s (version %s): products %s, %d items, "
                    "%d users with history", uri, manifest["model_version"], names,
                    len(item_ids), histories["user_id"].nunique())
        return cls(uri, manifest, products, embeddings, histories, users, cards)

    def history(self, user_id: str) -> list[str] | None:
        """Return the history item ids of a known user, oldest first.

        The history is what the bundle was exported with, by default the
        split's train and valid parts (``export_products``).

        Returns:
            The item ids, or ``None`` when the user has no history here.
        """
        span = self._history_span.get(str(user_id))
        if span is None:
            return None
        return self._history_items[span[0]:span[1]].tolist()

    def user_features(self, user_id: str) -> dict | None:
        """Return the user's feature values (missing ones as ``None``), or ``None``."""
        if self._users is None or str(user_id) not in self._users.index:
            return None
        row = self._users.loc[str(user_id)].to_dict()
        return {name: None if is_missing(value) else value for name, value in row.items()}

    def popularity(self, product: str) -> np.ndarray:
        """Return int64 ``[num_items]`` training interactions per item of ``product``.

        Raises:
            KeyError: if the bundle has no such product.
        """
        return self._product(product).popularity

    def model_card(self, product: str) -> dict:
        """Return the model card of ``product``.

        Raises:
            KeyError: if the bundle has no such product.
        """
        self._product(product)
        return self._model_cards[product]

    def _product(self, product: str) -> ProductModel:
        if product not in self.products:
            raise KeyError(f"no product {product!r} in bundle {self.uri}; it has "
                           f"{sorted(self.products)}")
        return self.products[product]


def _load_part(uri: str, part: str, read):
    try:
        return read()
    except FileNotFoundError as error:
        raise BundleError(f"bundle {uri} is missing {part}: {error}") from error
    except (ValueError, KeyError, OSError) as error:
        raise BundleError(f"bundle {uri} has an unreadable {part}: {error}") from error


def _read_manifest(uri: str) -> dict[str, Any]:
    if not storage.exists(storage.join(uri, BUNDLE_FILE)):
        raise BundleError(f"{uri} is not a serving bundle: {BUNDLE_FILE} is missing "
                          f"(an interrupted export writes it last)")
    manifest = _load_part(uri, BUNDLE_FILE, lambda: storage.read_json(
        storage.join(uri, BUNDLE_FILE)))
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle {uri}: {BUNDLE_FILE} must contain a JSON object, got "
                          f"{type(manifest).__name__}; export the bundle again")
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"bundle {uri} has format_version {version!r}; this code reads "
                          f"version {BUNDLE_FORMAT_VERSION}, so export the bundle again")
    missing = [k for k in ("model_version", "products", "embeddings") if k not in manifest]
    if missing:
        raise BundleError(f"bundle {uri}: {BUNDLE_FILE} lacks key(s) {missing}")
    model_version = manifest["model_version"]
    if not isinstance(model_version, str) or not model_version:
        raise BundleError(f"bundle {uri}: {BUNDLE_FILE} has model_version "
                          f"{model_version!r}; expected a non-empty string")
    products = manifest["products"]
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        raise BundleError(f"bundle {uri}: {BUNDLE_FILE} has products {products!r}; "
                          "expected a list of product names")
    embeddings = manifest["embeddings"]
    if not isinstance(embeddings, list) or not set(embeddings) <= set(EMBEDDING_DIRS):
        raise BundleError(f"bundle {uri}: {BUNDLE_FILE} has embeddings {embeddings!r}; "
                          f"expected a list of folder names among {list(EMBEDDING_DIRS)}")
    return manifest


def _product_folders(uri: str) -> list[str]:
    root = storage.join(uri, PRODUCTS_DIR)
    prefix = root.rstrip("/") + ("/" if storage.is_gcs(root) else os.sep)
    return sorted({path[len(prefix):].replace(os.sep, "/").split("/", 1)[0]
                   for path in storage.list_files(root)})


def _load_product(
    uri: str, name: str, embeddings: Mapping[str, ItemEmbeddings], item_ids: set[str],
    model_version: str,
) -> tuple[ProductModel, dict]:
    folder = storage.join(uri, PRODUCTS_DIR, name)
    part = f"product {name!r}"
    config = _load_part(uri, f"{part} config", lambda: storage.read_json(
        storage.join(folder, "config.json")))
    source = config.get("encoder", {}).get("history_source")
    if source not in embeddings:
        raise BundleError(f"bundle {uri}: {part} takes history means over {source!r} "
                          f"embeddings, which the bundle lacks (it has {sorted(embeddings)})")
    model = _load_part(uri, part, lambda: ProductModel.load(folder, history=embeddings[source]))
    if model.product != name:
        raise BundleError(f"bundle {uri}: folder {PRODUCTS_DIR}/{name} contains the model of "
                          f"product {model.product!r}")
    unknown = [i for i in model.item_ids if i not in item_ids]
    if unknown:
        raise BundleError(f"bundle {uri}: {part} has {len(unknown)} items missing from the "
                          f"bundle's embeddings, first {unknown[0]!r}")
    card = _load_part(uri, f"{part} {MODEL_CARD_FILE}", lambda: storage.read_json(
        storage.join(folder, MODEL_CARD_FILE)))
    problem = model_card_problem(card, name, model_version)
    if problem:
        raise BundleError(f"bundle {uri}: {PRODUCTS_DIR}/{name}/{MODEL_CARD_FILE} {problem}; "
                          "export the bundle again")
    return model, card


def _checked_histories(uri: str, histories: pd.DataFrame, item_ids: set[str]) -> pd.DataFrame:
    """Return the history rows sorted by user and then time, as the exporter writes them.

    A file written in another order is sorted here, with a warning, because
    ``Bundle`` reads each user's history as one contiguous span of rows.

    Raises:
        BundleError: if ``user_id`` or ``item_id`` is missing.
    """
    missing = [c for c in ("user_id", "item_id") if c not in histories.columns]
    if missing:
        raise BundleError(f"bundle {uri}: {HISTORIES_FILE} lacks column(s) {missing}; it "
                          f"has {list(histories.columns)}, so export the bundle again")
    histories = histories.astype({"user_id": str, "item_id": str})
    if not _sorted_by_user_and_time(histories):
        logger.warning("bundle %s: %s is not sorted by user_id and timestamp; sorting "
                       "%d rows at load", uri, HISTORIES_FILE, len(histories))
        order = ["user_id", "timestamp"] if "timestamp" in histories else ["user_id"]
        histories = histories.sort_values(order, kind="stable").reset_index(drop=True)
    unknown = int((~histories["item_id"].isin(item_ids)).sum())
    if unknown:
        logger.warning("bundle %s: %d %s rows name items without an embedding; requests "
                       "ignore them and report them in unknown_items", uri, unknown,
                       HISTORIES_FILE)
    return histories


def _sorted_by_user_and_time(histories: pd.DataFrame) -> bool:
    users = histories["user_id"].to_numpy()
    if len(users) < 2:
        return True
    if (users[1:] < users[:-1]).any():
        return False
    if "timestamp" not in histories:
        return True
    same_user = users[1:] == users[:-1]
    times = histories["timestamp"].reset_index(drop=True)
    missing = times.isna().to_numpy()
    # Comparisons with a missing time are false, and the exporter sorts
    # missing times last within a user, as pandas does.
    earlier = (times.iloc[1:].to_numpy() < times.iloc[:-1].to_numpy())
    backwards = earlier | (missing[:-1] & ~missing[1:])
    return not (backwards & same_user).any()
