"""Embedding model folders: where they are, how long their inputs may be, and
a fingerprint of their files for cache keys."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gfm import settings

logger = logging.getLogger(__name__)

class ModelNotFoundError(ValueError):
    """The configured embedding model is neither a folder nor a cached model."""


@dataclass(frozen=True)
class ResolvedModel:
    """An embedding model located on local disk.

    Attributes:
        name: the model as configured (folder or Hugging Face name).
        path: local folder with its config, tokenizer and weights.
        max_length: tokens per text the model accepts, special tokens included.
        fingerprint: SHA-256 hex digest of the folder's files (weights,
            configs, tokenizer), see :func:`model_fingerprint`; equal for
            copies of one model in other folders.
    """

    name: str
    path: str
    max_length: int
    fingerprint: str


def resolve_model(model: str | None, max_length: int | None = None) -> ResolvedModel:
    """Locate ``model`` on disk and settle its maximum input length.

    A value that is an existing folder is used as is. Any other value is looked
    up as a Hugging Face model in the local cache only; set ``HF_HUB_OFFLINE=0``
    to let the hub client download it.

    Args:
        model: model folder or name; None means
            ``gfm.settings.default_embedding_model()``.
        max_length: requested tokens per text; None means the model's maximum.

    Raises:
        ModelNotFoundError: if the model is not found.
        ValueError: if ``max_length`` exceeds what the model accepts.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    name = model or settings.default_embedding_model()
    path = Path(name).expanduser()
    if not path.is_dir():
        path = _cached_hub_model(name)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"model folder {str(path)!r} has no config.json; point featurize.model "
            "at a Hugging Face model folder"
        )

    model_max = model_max_length(path)
    if max_length is None:
        max_length = model_max
    elif max_length > model_max:
        raise ValueError(
            f"max_length={max_length} exceeds the {model_max} tokens model "
            f"{name!r} accepts; lower featurize.max_length or set it to None"
        )
    resolved = ResolvedModel(
        name=name, path=str(path), max_length=max_length,
        fingerprint=model_fingerprint(path),
    )
    logger.info("embedding model %s at %s, max_length %d tokens, fingerprint %s",
                name, path, max_length, resolved.fingerprint[:12])
    return resolved


def _cached_hub_model(name: str) -> Path:
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if not looks_like_path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        offline = os.environ.get("HF_HUB_OFFLINE", "1") not in ("0", "false", "")
        try:
            return Path(snapshot_download(name, local_files_only=offline))
        except (LocalEntryNotFoundError, HFValidationError, OSError) as error:
            logger.error("model %r is not in the Hugging Face cache: %s", name, error)
    raise ModelNotFoundError(
        f"embedding model {name!r} not found: it is not a folder and not a model "
        "in the local Hugging Face cache; set featurize.model (or "
        "GFM_EMBEDDING_MODEL) to a model folder that exists"
    )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def model_max_length(path: str | os.PathLike) -> int:
    """Return the tokens per text a model folder accepts.

    The result is the minimum of every limit the folder states: the
    sentence-transformers ``max_seq_length``, the usable position embeddings
    of ``config.json`` and the tokenizer's ``model_max_length``. RoBERTa-style
    models reserve the first ``pad_token_id + 1`` position embeddings, so
    514 positions give 512 usable tokens. A tokenizer without a limit stores
    a huge sentinel such as 1e30, which is ignored.

    Raises:
        ValueError: if the folder states no limit at all.
    """
    path = Path(path)
    config = _read_json(path / "config.json")
    limits = {
        "sentence_bert_config.json max_seq_length":
            _read_json(path / "sentence_bert_config.json").get("max_seq_length"),
        "config.json max_position_embeddings": _usable_positions(config),
        "tokenizer_config.json model_max_length":
            _read_json(path / "tokenizer_config.json").get("model_max_length"),
    }
    valid = {source: value for source, value in limits.items() if _is_sane_limit(value)}
    if not valid:
        raise ValueError(
            f"model folder {str(path)!r} states no maximum sequence length; set "
            "featurize.max_length"
        )
    source = min(valid, key=valid.get)
    logger.debug("model %s: max length %d from %s (limits found: %s)",
                 path, valid[source], source, valid)
    return valid[source]


# Text encoder types whose position ids start after the padding index
# (``create_position_ids_from_input_ids`` in transformers 5.19), so the first
# ``pad_token_id + 1`` of ``max_position_embeddings`` never hold a token.
_PADDING_OFFSET_MODEL_TYPES = frozenset({
    "camembert", "data2vec-text", "esm", "ibert", "longformer", "luke", "mpnet",
    "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "xmod",
})


def _usable_positions(config: dict) -> int | None:
    positions = config.get("max_position_embeddings")
    if not _is_sane_limit(positions):
        return None
    if config.get("model_type") in _PADDING_OFFSET_MODEL_TYPES:
        pad_token_id = config.get("pad_token_id")
        offset = pad_token_id + 1 if isinstance(pad_token_id, int) else 2
        return positions - offset
    return positions


def _is_sane_limit(value: object) -> bool:
    # bool is an int subclass; 1_000_000 excludes the "no limit" sentinels.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000


# Files that neither engine reads: exports for other runtimes (ONNX,
# OpenVINO, TensorFlow, Flax, rust-bert), Python bytecode and Markdown docs.
_SKIPPED_FOLDERS = frozenset({"onnx", "openvino", "__pycache__"})
_SKIPPED_SUFFIXES = frozenset({".onnx", ".h5", ".msgpack", ".ot", ".tflite", ".md"})

# Bytes read per step while hashing, so multi-gigabyte weights need little memory.
_HASH_CHUNK_BYTES = 8 * 1024 * 1024

# SHA-256 of file contents by (real path, size, mtime in ns), so a process
# hashes each weight file once.
_file_digests: dict[tuple[str, int, int], str] = {}


def model_fingerprint(path: str | os.PathLike) -> str:
    """Hash the relative path and bytes of every file of a model folder.

    Covers the weights, ``config.json``, every sentence-transformers module
    folder (``1_Pooling/config.json``, ``2_Dense/...``), the tokenizer files
    and remote code. Skipped are hidden files and folders, Markdown files,
    licenses and exports for other runtimes (``onnx/``, ``openvino/``,
    ``*.onnx``, ``*.h5``, ``*.msgpack``, ``*.ot``, ``*.tflite``). Copies of one
    model in other folders get the same fingerprint.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in _fingerprinted_files(root):
        relative = file.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(relative).to_bytes(8, "little"))
        digest.update(relative)
        digest.update(bytes.fromhex(_file_digest(file)))
    return digest.hexdigest()


def _fingerprinted_files(root: Path) -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = sorted(
            name for name in subfolders
            if not name.startswith(".") and name not in _SKIPPED_FOLDERS
        )
        for name in names:
            file = Path(folder, name)
            if name.startswith(".") or name.upper().startswith(("LICENSE", "NOTICE")):
                continue
            if file.suffix.lower() in _SKIPPED_SUFFIXES or not file.is_file():
                continue
            files.append(file)
    return sorted(files, key=lambda file: file.relative_to(root).as_posix())


def _file_digest(file: Path) -> str:
    real = os.path.realpath(file)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    if key not in _file_digests:
        started = time.monotonic()
        digest = hashlib.sha256()
        with open(real, "rb") as handle:
            for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
        _file_digests[key] = digest.hexdigest()
        seconds = time.monotonic() - started
        if seconds > 1.0:
            logger.info("hashed %s (%.1f GB) in %.1f s for the model fingerprint",
                        file, stat.st_size / 1e9, seconds)
    return _file_digests[key]
