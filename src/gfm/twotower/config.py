"""Settings of the per-product two-tower model and its training loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class TwoTowerConfig:
    """Settings of one product's two-tower model.

    The defaults train MovieLens-1M (about 800k training interactions) in
    one to two minutes on 2 CPU cores; ``docs/benchmarks/twotower.md`` has
    the measurements.

    Args:
        tower_dims: widths of each tower's MLP layers; the last one is the
            output dimension. The 2T-HGNN paper uses ``(512, 256, 128)``.
        dropout: dropout probability after each hidden layer.
        use_hgnn: feed HGNN embeddings to the item tower, and use them for
            the user's per-type history means.
        use_llm: feed LLM embeddings to the item tower. With ``use_hgnn``
            off, the history means are taken over LLM embeddings instead.
        item_fields: item table columns embedded as categorical features of
            the item tower. List columns such as ``genres`` become bags of
            tokens, and ``release_year`` becomes its decade.
        use_user_features: feed the users table's feature columns to the
            user tower, when a users table is given.
        user_fields: the user feature columns to use; ``None`` uses every
            column of the users table except ``user_id``.
        categorical_dim: embedding width of each categorical field.
        min_category_count: values seen fewer times than this share the
            out-of-vocabulary embedding.
        temperature: the dot product of the unit-norm tower outputs is
            divided by this before the softmax.
        logq_correction: subtract ``log q(item)``, the item's share of the
            training interactions, from each in-batch logit, so popular
            items are not over-penalized as negatives.
        exclude_target_from_history: leave the target item out of the user's
            history mean in each training example, so the model cannot
            learn to find the target inside its own input.
        positive_min_weight: only interactions with at least this ``weight``
            (a MovieLens rating of 4, say) are training and validation
            targets; ``None`` makes every interaction a target. History
            means always use every training interaction.
        batch_size: training examples per step; the other positives of a
            batch are each example's negatives.
        learning_rate: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        max_epochs: upper bound on passes over the training interactions.
        patience: epochs without a better validation recall before
            training stops; the best epoch's weights are kept.
        eval_k: the K of the Recall@K used for early stopping.
        seed: seed of weight initialization and batch shuffling.
        num_threads: torch intra-op threads during training; ``None`` uses
            the CPUs of the process's affinity mask, capped by its cgroup
            CPU quota (a Kubernetes CPU limit).
    """

    tower_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.0
    use_hgnn: bool = True
    use_llm: bool = True
    item_fields: tuple[str, ...] = ("genres",)
    use_user_features: bool = True
    user_fields: tuple[str, ...] | None = None
    categorical_dim: int = 16
    min_category_count: int = 5
    temperature: float = 0.05
    logq_correction: bool = True
    exclude_target_from_history: bool = True
    positive_min_weight: float | None = None
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 8
    patience: int = 2
    eval_k: int = 20
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.tower_dims = _integer_tuple("tower_dims", self.tower_dims)
        self.item_fields = _name_tuple("item_fields", self.item_fields)
        if self.user_fields is not None:
            self.user_fields = _name_tuple("user_fields", self.user_fields)
        self._validate()

    def _validate(self) -> None:
        for name in ("dropout", "temperature", "learning_rate", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not self.tower_dims or any(d <= 0 for d in self.tower_dims):
            raise ValueError(
                f"tower_dims must be a non-empty list of positive widths, got "
                f"{list(self.tower_dims)}"
            )
        if not self.use_hgnn and not self.use_llm:
            raise ValueError(
                "use_hgnn and use_llm are both false, so the towers have no item "
                "input; enable at least one of them"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        positive = {
            "categorical_dim": self.categorical_dim,
            "min_category_count": self.min_category_count,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "eval_k": self.eval_k,
        }
        for name, value in positive.items():
            if not _is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be at least 2 for in-batch negatives, got "
                f"{self.batch_size}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.positive_min_weight is not None and (
                isinstance(self.positive_min_weight, bool)
                or not isinstance(self.positive_min_weight, (int, float))):
            raise ValueError(
                f"positive_min_weight must be a number or null, got "
                f"{self.positive_min_weight!r}"
            )
        if self.num_threads is not None and (not _is_integer(self.num_threads)
                                             or self.num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or null, got "
                             f"{self.num_threads!r}")

    @property
    def history_source(self) -> str:
        """Which embeddings the user's history means are taken over."""
        return "hgnn" if self.use_hgnn else "llm"

    @property
    def output_dim(self) -> int:
        """Dimension of the user and item vectors."""
        return self.tower_dims[-1]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "TwoTowerConfig":
        """Build the settings from a mapping, such as a YAML section.

        Raises:
            ValueError: if a key is not a field of this class, or a value is
                out of range.
        """
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown two-tower setting(s) {unknown}; valid keys are {sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values (tuples become lists)."""
        values = dataclasses.asdict(self)
        for name, value in values.items():
            if isinstance(value, tuple):
                values[name] = list(value)
        return values


def _is_integer(value: Any) -> bool:
    # bool is an int subclass, and YAML's 2.0 is a float: both are rejected so
    # that a mistyped setting fails here instead of deep inside training.
    return isinstance(value, int) and not isinstance(value, bool)


def _integer_tuple(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"{name} must be a list of integers, got {values!r}; write "
                         f"[{values}] for a single value")
    if not all(_is_integer(value) for value in values):
        raise ValueError(f"{name} must be a list of integers, got {list(values)!r}")
    return tuple(values)


def _name_tuple(name: str, values: Any) -> tuple[str, ...]:
    # A bare string would otherwise become a tuple of its characters.
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ValueError(f"{name} must be a list of column names, got {values!r}; "
                         f"write [{values}] for a single column")
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{name} must be a list of column names, got {list(values)!r}")
    return tuple(values)
