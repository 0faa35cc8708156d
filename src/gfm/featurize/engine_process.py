"""An embedding engine in a child process, and the protocol between the two.

The parent sends requests over a ``multiprocessing`` pipe. The child writes
each request's embeddings to a ``.npy`` file by an atomic rename, then
replies ``done``. A renamed file is complete, so the parent accepts it even
when the child dies before replying or aborts later at exit.

Messages from the child are dicts with ``status`` ``ready`` (plus ``dim``),
``done`` (plus ``id``) or ``error`` (plus ``error`` and ``traceback``).
Requests from the parent are ``{"op": "embed", "id", "texts", "path"}`` and
``{"op": "stop"}``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gfm import storage

logger = logging.getLogger(__name__)

# Seconds the parent waits for the child to exit after asking it to stop.
STOP_TIMEOUT_S = 60.0

# Seconds between liveness checks of the child while waiting for a message.
POLL_INTERVAL_S = 1.0


class EngineProcessError(RuntimeError):
    """The engine's child process failed, or exited before returning a result."""


class EngineProcessClient:
    """Parent side of an engine child process.

    Args:
        process: the started child (a ``multiprocessing`` process).
        conn: the parent's end of the pipe to the child.
        workdir: folder for result files; removed by :meth:`stop`.
        request_timeout_s: seconds to wait for one request's result.
    """

    def __init__(self, process: Any, conn: Connection, workdir: str | Path,
                 request_timeout_s: float) -> None:
        self._process = process
        self._conn = conn
        self._workdir = Path(workdir)
        self._request_timeout_s = request_timeout_s
        self._next_request = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the child's ``ready`` message and return it.

        Raises:
            EngineProcessError: if the child fails, exits or times out first;
                the child is then killed.
        """
        try:
            return self._receive(timeout_s, "loading the model")
        except BaseException:
            self.kill()
            raise

    def request(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in the child.

        Returns:
            The child's float32 ``[len(texts), dim]`` matrix, unnormalized.

        Raises:
            EngineProcessError: if the child is closed, fails, exits or times
                out without a complete result file. The child is then killed,
                because a late reply would be taken for the next request's.
        """
        if self._process is None:
            raise EngineProcessError("the engine process is closed")
        request = self._next_request
        self._next_request += 1
        result_path = self._workdir / f"result-{request}.npy"
        self._conn.send({"op": "embed", "id": request, "texts": list(texts),
                         "path": str(result_path)})
        try:
            self._receive(self._request_timeout_s, f"embedding request {request}")
        except EngineProcessError:
            if not result_path.is_file():
                self.kill()
                raise
            logger.warning("engine process %s died after writing request %d; using its "
                           "complete result file", self.pid, request)
        matrix = np.load(result_path, allow_pickle=False)
        result_path.unlink()
        if matrix.shape[0] != len(texts):
            raise EngineProcessError(
                f"engine process returned {matrix.shape[0]} rows for request "
                f"{request} of {len(texts)} texts"
            )
        return matrix

    def stop(self) -> None:
        """Ask the child to stop, wait for it, and remove the result folder.

        A nonzero exit after the stop request is logged and ignored, because
        every result was received before it.
        """
        process, self._process = self._process, None
        if process is None:
            return
        try:
            self._conn.send({"op": "stop"})
        except (BrokenPipeError, OSError):
            pass  # The child is gone already; its exit code is logged below.
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            logger.error("engine process %d did not stop in %.0f s; killing it",
                         process.pid, STOP_TIMEOUT_S)
            _kill_process_tree(process)
        elif process.exitcode != 0:
            logger.warning("engine process %d exited with code %s after its last "
                           "result; ignored", process.pid, process.exitcode)
        self._close_files()
        logger.info("engine process %d stopped", process.pid)

    def kill(self) -> None:
        """Kill the child at once, with its process group if it leads one,
        and remove the result folder."""
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            logger.warning("killing engine process %d", process.pid)
            _kill_process_tree(process)
        self._close_files()

    def _close_files(self) -> None:
        self._conn.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        message = None
        while message is None:
            if self._conn.poll(POLL_INTERVAL_S):
                try:
                    message = self._conn.recv()
                except EOFError:
                    message = None
                if message is not None:
                    break
            if not self._process.is_alive():
                self._process.join()
                raise EngineProcessError(
                    f"engine process {self._process.pid} exited with code "
                    f"{self._process.exitcode} while {what}; see its log above"
                )
            if time.monotonic() > deadline:
                raise EngineProcessError(
                    f"engine process {self._process.pid} timed out after "
                    f"{timeout_s:.0f} s while {what}; raise the featurize.vllm "
                    "timeouts if the machine is slow"
                )
        if message.get("status") == "error":
            raise EngineProcessError(
                f"engine process {self._process.pid} failed while {what}: "
                f"{message['error']}\n{message['traceback']}"
            )
        return message


def _kill_process_tree(process: Any) -> None:
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        leads_group = False
    if leads_group:
        # The group contains the engine's own helper processes as well.
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.join()


def send_error(conn: Connection, error: BaseException) -> None:
    """Report a caught exception to the parent (child side)."""
    conn.send({"status": "error", "error": repr(error),
               "traceback": traceback.format_exc()})


def serve_requests(conn: Connection, embed: Callable[[list[str]], np.ndarray]) -> None:
    """Serve embedding requests until the parent sends stop (child side).

    Args:
        conn: the child's end of the pipe.
        embed: turns ``[n]`` texts into a float32 ``[n, dim]`` matrix.
    """
    while True:
        try:
            request = conn.recv()
        except EOFError:
            logger.error("engine process lost its parent; stopping")
            return
        if request["op"] == "stop":
            return
        try:
            matrix = np.asarray(embed(request["texts"]), dtype=np.float32)
            storage.write_array(request["path"], matrix)
        except Exception as error:  # Sent to the parent, which raises it.
            send_error(conn, error)
            continue
        conn.send({"status": "done", "id": request["id"]})
