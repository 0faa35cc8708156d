"""The evaluation context: one product's candidates, histories and positives.

The context indexes, once, everything a scorer may use. That is the
catalogue, every user's history at test time as a sparse matrix over all
item types, the product's candidate items with their history popularity,
and the test positives of the evaluated users. Scorers fit on the context and never see
the test interactions except through the user ids they are asked to score.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gfm.data.validate import check_user_ids
from gfm.embeddings import ItemEmbeddings
from gfm.evaluation.config import EvaluationConfig

logger = logging.getLogger(__name__)


@dataclass
class EvaluationContext:
    """Indexed inputs of one product's evaluation.

    Attributes:
        product: product name, for example ``movie`` or ``artist``.
        item_types: item types that make up the product.
        all_item_ids: ``[num_all_items]`` every catalogue item, any type.
        all_item_types: ``[num_all_items]`` the type of each catalogue item.
        product_columns: ``[num_items]`` row of each product item in
            ``all_item_ids``.
        user_ids: ``[num_users]`` every user with history or test
            interactions; rows of ``history``.
        history: ``[num_users, num_all_items]`` CSR matrix, the number of
            history interactions of each user with each item.
        eval_user_ids: ``[num_eval_users]`` users with at least one test
            positive in this product, sorted.
        eval_user_rows: ``[num_eval_users]`` row of each evaluated user in
            ``user_ids``.
        positives: ``[num_eval_users, num_items]`` CSR matrix, 1 where the
            user has a test positive on the item.
        popularity: ``[num_items]`` distinct history users per product item.
        cold_items: ``[num_items]`` True for items of the cold-item split.
        users: user features (``user_id`` plus feature columns), or None.
        embeddings: item embeddings by name (``llm``, ``hgnn``).
        config: the evaluation settings.
        report: counts of what building the context dropped, by reason.
    """

    product: str
    item_types: list[str]
    all_item_ids: list[str]
    all_item_types: list[str]
    product_columns: np.ndarray
    user_ids: list[str]
    history: sp.csr_matrix
    eval_user_ids: list[str]
    eval_user_rows: np.ndarray
    positives: sp.csr_matrix
    popularity: np.ndarray
    cold_items: np.ndarray
    users: pd.DataFrame | None
    embeddings: dict[str, ItemEmbeddings]
    config: EvaluationConfig
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._user_index = {user_id: row for row, user_id in enumerate(self.user_ids)}

    @property
    def item_ids(self) -> list[str]:
        """The product's candidate item ids, the columns of every score matrix."""
        return [self.all_item_ids[c] for c in self.product_columns]

    @property
    def num_items(self) -> int:
        return int(len(self.product_columns))

    def user_rows(self, user_ids: list[str]) -> np.ndarray:
        """Return the rows of ``user_ids`` in ``history``.

        Raises:
            KeyError: naming the first user id that the context does not know.
        """
        index = self._user_index
        missing = [u for u in user_ids if u not in index]
        if missing:
            raise KeyError(f"{len(missing)} user ids are unknown, first {missing[0]!r}")
        return np.fromiter((index[u] for u in user_ids), dtype=np.int64,
                           count=len(user_ids))

    def product_history(self, rows: np.ndarray) -> sp.csr_matrix:
        """Return ``[len(rows), num_items]``, the history restricted to the product."""
        return self.history[rows][:, self.product_columns]


def build_context(
    product: str,
    item_types: list[str],
    items: pd.DataFrame,
    history: pd.DataFrame,
    test: pd.DataFrame,
    users: pd.DataFrame | None = None,
    cold_item_ids: list[str] | None = None,
    embeddings: dict[str, ItemEmbeddings] | None = None,
    config: EvaluationConfig | None = None,
) -> EvaluationContext:
    """Index one product's evaluation inputs.

    Test interactions become positives when they fall on a product item,
    weigh at least ``config.positive_min_weight`` and are not already in the
    user's history (those items are removed from the candidates, so they
    could never be hit). History interactions on unknown items or on cold
    items are dropped, because a cold item has no interactions by
    definition. Every dropped row is counted by reason in ``report``.

    Args:
        product: product name.
        item_types: item types of the product's candidates.
        items: the catalogue, with ``item_id`` and ``item_type``.
        history: interactions a user has at test time (train, maybe valid).
        test: test interactions.
        users: user features, or None.
        cold_item_ids: items of the cold-item split, or None.
        embeddings: item embeddings by name, or None.
        config: evaluation settings (defaults when None).

    Returns:
        The indexed context.

    Raises:
        ValueError: if the catalogue repeats an item id, a cold item is not
            in it, the users table repeats a user id, ``positive_min_weight``
            is set but ``test`` has no ``weight`` column, or the product has
            no items or no test positives.
    """
    config = config or EvaluationConfig()
    if users is not None:
        check_user_ids(users)
    item_types = list(item_types)
    all_item_ids = items["item_id"].astype(str).tolist()
    all_item_types = items["item_type"].astype(str).tolist()
    item_index = {item_id: i for i, item_id in enumerate(all_item_ids)}
    if len(item_index) != len(all_item_ids):
        raise ValueError(
            f"the catalogue lists {len(all_item_ids) - len(item_index)} item ids "
            f"more than once; pass a validated items table (one row per item)"
        )
    type_array = np.asarray(all_item_types)
    product_columns = np.flatnonzero(np.isin(type_array, item_types))
    if product_columns.size == 0:
        raise ValueError(
            f"product {product!r} has no items of types {item_types}; the "
            f"catalogue has types {sorted(set(all_item_types))}"
        )
    column_of = np.full(len(all_item_ids), -1, dtype=np.int64)
    column_of[product_columns] = np.arange(product_columns.size)

    cold_set = set(cold_item_ids or [])
    unknown_cold = [i for i in cold_set if i not in item_index]
    if unknown_cold:
        raise ValueError(
            f"{len(unknown_cold)} cold items are not in the catalogue, first "
            f"{unknown_cold[0]!r}; pass the split that belongs to this dataset"
        )
    cold_all = np.zeros(len(all_item_ids), dtype=bool)
    cold_all[[item_index[i] for i in cold_set]] = True

    report: dict[str, dict[str, int]] = {"history_dropped": {}, "test_dropped": {}}
    history = _clean_history(history, item_index, cold_all, report["history_dropped"])
    test = test.assign(item_id=test["item_id"].astype(str),
                       user_id=test["user_id"].astype(str))

    user_ids = sorted(set(history["user_id"]) | set(test["user_id"]))
    user_index = {u: i for i, u in enumerate(user_ids)}
    history_rows = history["user_id"].map(user_index).to_numpy(np.int64)
    history_cols = history["item_id"].map(item_index).to_numpy(np.int64)
    history_matrix = sp.csr_matrix(
        (np.ones(len(history), dtype=np.float32), (history_rows, history_cols)),
        shape=(len(user_ids), len(all_item_ids)),
    )
    history_matrix.sum_duplicates()

    eval_user_ids, positives = _test_positives(
        test, item_index, column_of, user_index, history_matrix, config,
        report["test_dropped"],
    )
    if not eval_user_ids:
        raise ValueError(
            f"product {product!r} has no test positives after filtering "
            f"(dropped: {report['test_dropped']}); check the split and "
            f"positive_min_weight={config.positive_min_weight}"
        )

    product_history = history_matrix[:, product_columns]
    popularity = np.asarray((product_history > 0).sum(axis=0)).ravel().astype(np.float32)

    report["counts"] = {
        "catalogue_items": len(all_item_ids),
        "product_items": int(product_columns.size),
        "cold_items": int(cold_all[product_columns].sum()),
        "history_interactions": int(len(history)),
        "users": len(user_ids),
        "eval_users": len(eval_user_ids),
        "test_positives": int(positives.nnz),
    }
    logger.info(
        "evaluation context for product %s: %d candidate items (%d cold), %d "
        "evaluated users, %d test positives; dropped history %s, test %s",
        product, product_columns.size, report["counts"]["cold_items"],
        len(eval_user_ids), positives.nnz, report["history_dropped"],
        report["test_dropped"],
    )
    return EvaluationContext(
        product=product,
        item_types=item_types,
        all_item_ids=all_item_ids,
        all_item_types=all_item_types,
        product_columns=product_columns,
        user_ids=user_ids,
        history=history_matrix,
        eval_user_ids=eval_user_ids,
        eval_user_rows=np.asarray([user_index[u] for u in eval_user_ids], np.int64),
        positives=positives,
        popularity=popularity,
        cold_items=cold_all[product_columns],
        users=users,
        embeddings=dict(embeddings or {}),
        config=config,
        report=report,
    )


def _clean_history(
    history: pd.DataFrame,
    item_index: dict[str, int],
    cold_all: np.ndarray,
    dropped: dict[str, int],
) -> pd.DataFrame:
    history = history.assign(item_id=history["item_id"].astype(str),
                             user_id=history["user_id"].astype(str))
    known = history["item_id"].isin(item_index.keys())
    dropped["unknown_item"] = int((~known).sum())
    history = history[known]
    rows = history["item_id"].map(item_index).to_numpy(np.int64)
    on_cold = cold_all[rows]
    dropped["cold_item"] = int(on_cold.sum())
    if dropped["cold_item"]:
        logger.warning(
            "dropped %d history interactions on cold items, which must have "
            "none at evaluation time", dropped["cold_item"],
        )
    return history[~on_cold]


def _test_positives(
    test: pd.DataFrame,
    item_index: dict[str, int],
    column_of: np.ndarray,
    user_index: dict[str, int],
    history_matrix: sp.csr_matrix,
    config: EvaluationConfig,
    dropped: dict[str, int],
) -> tuple[list[str], sp.csr_matrix]:
    reasons: Counter[str] = Counter()
    known = test["item_id"].isin(item_index.keys())
    reasons["unknown_item"] = int((~known).sum())
    test = test[known]

    columns = column_of[test["item_id"].map(item_index).to_numpy(np.int64)]
    in_product = columns >= 0
    reasons["other_product"] = int((~in_product).sum())
    test, columns = test[in_product], columns[in_product]

    if config.positive_min_weight is not None:
        if "weight" not in test.columns:
            raise ValueError(
                f"positive_min_weight={config.positive_min_weight} needs a 'weight' "
                f"column in the test interactions, which have only "
                f"{list(test.columns)}; add the column or set positive_min_weight "
                f"to null"
            )
        strong = test["weight"].to_numpy(np.float64) >= config.positive_min_weight
        reasons["below_min_weight"] = int((~strong).sum())
        test, columns = test[strong], columns[strong]

    pairs = pd.DataFrame({"user": test["user_id"].map(user_index).to_numpy(np.int64),
                          "item": test["item_id"].map(item_index).to_numpy(np.int64),
                          "column": columns})
    before = len(pairs)
    pairs = pairs.drop_duplicates(["user", "item"])
    reasons["duplicate_pair"] = before - len(pairs)

    seen = np.zeros(len(pairs), dtype=bool)
    if len(pairs):
        lookup = history_matrix[pairs["user"].to_numpy(), pairs["item"].to_numpy()]
        seen = np.asarray(lookup).ravel() > 0
    reasons["already_in_history"] = int(seen.sum())
    pairs = pairs[~seen]

    dropped.update(reasons)
    eval_rows = np.unique(pairs["user"].to_numpy())
    position = {row: i for i, row in enumerate(eval_rows)}
    inverse_users = {i: u for u, i in user_index.items()}
    eval_user_ids = [inverse_users[row] for row in eval_rows]
    positives = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32),
         (pairs["user"].map(position).to_numpy(np.int64), pairs["column"].to_numpy())),
        shape=(len(eval_rows), column_of.max() + 1),
    )
    return eval_user_ids, positives
