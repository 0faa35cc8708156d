"""Approximate maximum inner product search with a faiss inverted-file index.

Exact scoring reads the whole item matrix for every query, so its cost grows
with the catalog. With one thread on 2 shared CPU cores, one 128-dimensional
query took a median of about 18 ms over 100,000 items and 190 ms over
1,000,000 (``benchmarks/serving.py``, ``docs/benchmarks/serving.md``). An
``IndexIVFFlat`` clusters the items into ``nlist`` inverted lists and scans
only the ``nprobe`` lists nearest to the query. It trades some recall for a
scan of roughly ``nprobe / nlist`` of the catalog.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)

# faiss warns below 39 training points per list; a small sample keeps the
# k-means training of a 1M-item index to seconds.
TRAINING_POINTS_PER_LIST = 40


class IVFIndex:
    """An inner-product ``faiss.IndexIVFFlat`` over one product's items.

    Args:
        item_vectors: ``[num_items, dim]`` float32, L2-normalized.
        nprobe: number of inverted lists searched per query.
        nlist: number of inverted lists; 0 picks ``sqrt(num_items)``.
        seed: seed of the training sample.
        threads: OpenMP threads of faiss; 0 keeps faiss's default.

    Raises:
        ImportError: when faiss-cpu is not installed.
    """

    def __init__(self, item_vectors: np.ndarray, nprobe: int, nlist: int = 0,
                 seed: int = 0, threads: int = 0):
        try:
            import faiss
        except ImportError as error:
            raise ImportError(
                "serving.index='ivf' needs faiss: pip install 'faiss-cpu>=1.9' "
                "(it is in the gfm[serve] extra), or set serving.index='exact'"
            ) from error

        started = time.perf_counter()
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        num_items, dim = vectors.shape
        if threads:
            faiss.omp_set_num_threads(threads)
        self.nlist = nlist or max(1, int(math.sqrt(num_items)))
        self.nprobe = min(nprobe, self.nlist)

        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        sample_size = min(num_items, self.nlist * TRAINING_POINTS_PER_LIST)
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(num_items, sample_size, replace=False))]
        index.train(sample)
        index.add(vectors)
        index.nprobe = self.nprobe
        self._index = index
        self._quantizer = quantizer
        logger.info(
            "built IVF index over %d items (dim %d, nlist %d, nprobe %d) in %.2f s",
            num_items, dim, self.nlist, self.nprobe, time.perf_counter() - started,
        )

    def search(self, user_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find about the ``k`` items of highest inner product per query.

        Args:
            user_vectors: ``[batch, dim]`` float32 queries.
            k: candidates per query.

        Returns:
            ``(scores, rows)``, both ``[batch, k]``, best first. Slots the
            probed lists could not fill have row ``-1`` and score ``-inf``.
        """
        queries = np.ascontiguousarray(user_vectors, dtype=np.float32)
        scores, rows = self._index.search(queries, k)
        scores[rows < 0] = -np.inf
        return scores, rows
