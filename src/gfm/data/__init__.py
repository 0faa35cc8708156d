"""The data contract: canonical tables, validation, loaders and splits."""

from gfm.data.dataset import Dataset
from gfm.data.loaders import DATASET_NAMES, load_dataset, loader_options

__all__ = ["DATASET_NAMES", "Dataset", "load_dataset", "loader_options"]
