"""One entry point, :func:`load_dataset`, over every dataset loader."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from gfm.data.dataset import Dataset

DATASET_NAMES = ("movielens-1m", "lastfm-2k", "files")


def _loader(name: str) -> Callable[..., Dataset]:
    if name == "movielens-1m":
        from gfm.data.movielens import load_movielens_1m

        return load_movielens_1m
    if name == "lastfm-2k":
        from gfm.data.lastfm import load_lastfm_2k

        return load_lastfm_2k
    raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASET_NAMES)}")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 strict: bool = False, **options: Any) -> Dataset:
    """Load a dataset by name into the data contract.

    Args:
        name: ``movielens-1m``, ``lastfm-2k`` or ``files`` (contract tables
            in a folder, given by the ``path`` option).
        data_dir: Folder of raw dataset folders for the named datasets;
            defaults to ``GFM_DATA_DIR``. Ignored by ``files``.
        strict: Raise instead of dropping any row.
        **options: Loader options, for example ``path`` for ``files`` or
            ``tag_min_date`` for ``lastfm-2k``.

    Returns:
        The validated dataset.

    Raises:
        ValueError: if the name or an option is unknown.
    """
    if name == "files":
        from gfm.data.files import load_files

        if "path" not in options:
            raise ValueError("dataset 'files' needs the path option: "
                             "load_dataset('files', path='gs://bucket/tables')")
        return _call(load_files, name, strict=strict, **options)
    return _call(_loader(name), name, data_dir, strict=strict, **options)


def loader_options(name: str, files_uri: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Return the :func:`load_dataset` options of a dataset name and folder.

    ``files_uri`` (the run settings' ``dataset.uri``) is the ``path`` of the
    ``files`` dataset. The named datasets read ``GFM_DATA_DIR`` instead.

    Raises:
        ValueError: if ``files_uri`` is set for a named dataset.
    """
    options = dict(options or {})
    if name == "files":
        options["path"] = files_uri
    elif files_uri:
        raise ValueError(f"files_uri {files_uri!r} (dataset.uri in the run settings) is "
                         f"only read by the 'files' dataset, not {name!r}; leave it empty")
    return options


def _call(loader: Callable[..., Dataset], name: str, *args: Any, **options: Any) -> Dataset:
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - {"data_dir", "strict"})
        raise ValueError(f"unknown options {unknown} for dataset {name!r}; it accepts "
                         f"{allowed}")
    return loader(*args, **options)
