"""Two-tower retrieval model per product, trained on HGNN and LLM item embeddings.

Each product (a name and the item types it recommends) gets its own model.
Its user tower reads per-type history means and user features, and its item
tower reads the item's embeddings and categorical fields. Training uses
in-batch negatives with a logQ correction. :mod:`gfm.twotower.bundle` packs
the trained products into the serving bundle.
"""

from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.product_model import ProductModel
from gfm.twotower.train import train_two_tower

__all__ = ["ProductModel", "TwoTowerConfig", "train_two_tower"]
