"""KFP components of the data stage: ingest a dataset, then split it."""

# No "from __future__ import annotations": KFP reads the artifact types
# from the live annotations of the function signature.
from typing import Optional

from kfp import dsl

from gfm import settings


@dsl.component(base_image=settings.image("base"))
def ingest(
    dataset_name: str,
    files_uri: str,
    strict: bool,
    dataset: dsl.Output[dsl.Dataset],
    config: Optional[dict] = None,  # noqa: UP045 (KFP parses Optional, not X | None)
):
    """Load, validate and write one dataset in the Dataset folder layout.

    ``dataset_name`` is a loader of ``gfm.data.load_dataset``
    (``movielens-1m``, ``lastfm-2k`` or ``files``). ``files_uri`` is the
    folder of contract tables for ``files`` and must be empty otherwise.
    ``config`` contains loader options (None or empty = defaults), for example
    ``{"tag_min_date": "2004-01-01"}`` for ``lastfm-2k``. ``strict`` turns
    every row the validation would drop into an error. The artifact's
    metadata gets the row counts and the dropped rows.
    """
    from gfm.components import decode_parameter
    from gfm.data import load_dataset, loader_options
    from gfm.logging_setup import configure_logging

    configure_logging()
    options = loader_options(dataset_name, files_uri, decode_parameter(config))
    loaded = load_dataset(dataset_name, strict=strict, **options)
    loaded.save(dataset.path)

    report = loaded.report
    dropped = sum(sum(reasons.values()) for reasons in report["dropped"].values())
    dataset.metadata.update(
        name=loaded.name,
        item_types=loaded.item_types,
        items=len(loaded.items),
        interactions=len(loaded.interactions),
        users=0 if loaded.users is None else len(loaded.users),
        dropped_rows=dropped,
    )


@dsl.component(base_image=settings.image("base"))
def split(
    dataset: dsl.Input[dsl.Dataset],
    config: dict,
    split: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
):
    """Split a Dataset folder into train, valid and test in the Split layout.

    ``config`` contains ``gfm.data.splits.SplitConfig`` settings (empty dict =
    defaults). ``metrics`` logs interactions, users and items per part, the
    number of cold items and the rows dropped by each reason. The split's
    metadata gets the same part sizes.
    """
    from gfm.components import decode_parameter
    from gfm.data import Dataset
    from gfm.data.splits import SplitConfig, split_dataset
    from gfm.logging_setup import configure_logging

    configure_logging()
    result = split_dataset(Dataset.load(dataset.path), SplitConfig.from_dict(decode_parameter(config)))
    result.save(split.path)

    counts = result.report["counts"]
    for part, values in counts.items():
        for key, value in values.items():
            metrics.log_metric(f"{part}_{key}", value)
    metrics.log_metric("cold_items", len(result.cold_items))
    for reason, value in result.report["dropped"].items():
        metrics.log_metric(f"dropped_{reason}", value)
    split.metadata.update(
        protocols=result.report["protocols"],
        cold_items=len(result.cold_items),
        **{part: values["interactions"] for part, values in counts.items()},
    )
