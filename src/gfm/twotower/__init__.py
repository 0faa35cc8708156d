"""Two-tower retrieval model per product, trained on HGNN and LLM item embeddings.

Each product (a name and the item types it recommends) gets its own model:
a user tower over per-type history means and user features, an item tower
over the item's embeddings and categorical fields, trained with in-batch
negatives and a logQ correction. :mod:`gfm.twotower.bundle` packs the
trained products into the serving bundle.
"""

from gfm.twotower.config import TwoTowerConfig
from gfm.twotower.product_model import ProductModel
from gfm.twotower.train import train_two_tower

__all__ = ["ProductModel", "TwoTowerConfig", "train_two_tower"]
