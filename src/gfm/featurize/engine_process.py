"""An embedding engine in a child process, and the protocol between the two.

The parent sends requests over a ``multiprocessing`` pipe. The child writes
each request's embeddings to a ``.npy`` file by an atomic rename, then
replies ``done``. A renamed file is complete, so the parent accepts it even
when the child dies before replying or aborts later at exit. A child that
dies, whether before or after its result, closes the client: later
requests raise :class:`EngineProcessError` naming the exit code or signal.

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
import sys
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

# Seconds between liveness checks of the child while waiting for a message;
# the child's log is copied to stderr at the same interval.
POLL_INTERVAL_S = 1.0

# Seconds the parent waits for a child that closed its pipe to exit, before
# it reports the exit status.
EXIT_WAIT_S = 5.0

# Lines, and bytes at most, of the child's log quoted in an EngineProcessError.
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 16 * 1024


class EngineProcessError(RuntimeError):
    """The engine's child process failed, or exited before returning a result."""


class EngineProcessClient:
    """Parent side of an engine child process.

    A child that calls :func:`redirect_output` writes its stdout and stderr
    to ``log_path``. The client copies new log text to its own stderr while
    it waits for the child, and quotes the last :data:`LOG_TAIL_LINES` lines
    in every :class:`EngineProcessError`.

    Args:
        process: the started child (a ``multiprocessing`` process).
        conn: the parent's end of the pipe to the child.
        workdir: folder for result files; removed by :meth:`stop`.
        request_timeout_s: seconds to wait for one request's result.
        log_path: the child's log file, or None when the child writes to the
            parent's stdout and stderr.
    """

    def __init__(self, process: Any, conn: Connection, workdir: str | Path,
                 request_timeout_s: float, log_path: str | Path | None = None) -> None:
        self._process = process
        self._conn = conn
        self._workdir = Path(workdir)
        self._request_timeout_s = request_timeout_s
        self._next_request = 0
        self._log_path = Path(log_path) if log_path is not None else None
        self._log_offset = 0
        self._closed_reason = "it was stopped"

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
        except EngineProcessError as error:
            self._close_after(error)
            raise
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
                A child that exits after writing a complete result file is
                closed too, so the next request raises this error.
        """
        if self._process is None:
            raise EngineProcessError(f"the engine process is closed: {self._closed_reason}")
        request = self._next_request
        self._next_request += 1
        what = f"embedding request {request}"
        result_path = self._workdir / f"result-{request}.npy"
        try:
            self._conn.send({"op": "embed", "id": request, "texts": list(texts),
                             "path": str(result_path)})
            self._receive(self._request_timeout_s, what)
        except (BrokenPipeError, ConnectionResetError) as error:
            # The child closed its end of the pipe, usually by dying.
            failure = self._exit_error(what, f"{type(error).__name__}: {error}")
            self._close_after(failure)
            raise failure from error
        except EngineProcessError as error:
            if not result_path.is_file():
                self._close_after(error)
                raise
            logger.warning("engine process %s failed after writing request %d; using its "
                           "complete result file and closing the engine: %s",
                           self.pid, request, str(error).splitlines()[0])
            matrix = np.load(result_path, allow_pickle=False)
            self._close_after(error)
        else:
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
        self._relay_log()
        if process.is_alive():
            logger.error("engine process %d did not stop in %.0f s; killing it",
                         process.pid, STOP_TIMEOUT_S)
            _kill_process_tree(process)
        elif process.exitcode != 0:
            logger.warning("engine process %d %s after its last result; ignored",
                           process.pid, _exit_status(process.exitcode))
        self._close_files()
        logger.info("engine process %d stopped", process.pid)

    def kill(self) -> None:
        """Kill the child at once, with its process group if it leads one,
        and remove the result folder."""
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            logger.warning("killing engine process %d", process.pid)
            _kill_process_tree(process)
        self._relay_log()
        self._close_files()

    def _close_after(self, error: EngineProcessError) -> None:
        """Kill the child after ``error``, which later requests then quote."""
        self._closed_reason = str(error).splitlines()[0]
        self.kill()

    def _close_files(self) -> None:
        self._conn.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _relay_log(self) -> None:
        """Copy the child's log text written since the last call to stderr."""
        if self._log_path is None or not self._log_path.is_file():
            return
        with open(self._log_path, "rb") as log:
            log.seek(self._log_offset)
            text = log.read()
        if text:
            self._log_offset += len(text)
            sys.stderr.write(text.decode("utf-8", errors="replace"))
            sys.stderr.flush()

    def _log_tail(self) -> str:
        """Return the last lines of the child's log, as a message suffix."""
        if self._log_path is None or not self._log_path.is_file():
            return ""
        with open(self._log_path, "rb") as log:
            log.seek(max(0, self._log_path.stat().st_size - LOG_TAIL_BYTES))
            lines = log.read().decode("utf-8", errors="replace").splitlines()
        if not lines:
            return f"; its log {self._log_path} is empty"
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        return f"; last lines of its log:\n{tail}"

    def _exit_error(self, what: str, cause: str) -> EngineProcessError:
        """Build the error for a child that closed its pipe during ``what``."""
        self._process.join(EXIT_WAIT_S)
        if self._process.is_alive():
            status = f"closed its pipe ({cause}) but is still running"
        else:
            status = f"{_exit_status(self._process.exitcode)} ({cause})"
        return EngineProcessError(
            f"engine process {self._process.pid} {status} while {what}{self._log_tail()}"
        )

    def _receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        message = None
        while message is None:
            self._relay_log()
            if self._conn.poll(POLL_INTERVAL_S):
                try:
                    message = self._conn.recv()
                except (EOFError, ConnectionResetError):
                    message = None
                if message is not None:
                    break
            if not self._process.is_alive():
                self._process.join()
                self._relay_log()
                raise EngineProcessError(
                    f"engine process {self._process.pid} "
                    f"{_exit_status(self._process.exitcode)} while {what}{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise EngineProcessError(
                    f"engine process {self._process.pid} timed out after "
                    f"{timeout_s:.0f} s while {what}; raise the featurize.vllm "
                    f"timeouts if the machine is slow{self._log_tail()}"
                )
        self._relay_log()
        if message.get("status") == "error":
            raise EngineProcessError(
                f"engine process {self._process.pid} failed while {what}: "
                f"{message['error']}\n{message['traceback']}{self._log_tail()}"
            )
        return message


def _exit_status(exitcode: int | None) -> str:
    """Describe a ``multiprocessing`` exit code: negative means a signal."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name} (exit code {exitcode})"
    return f"exited with code {exitcode}"


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


def redirect_output(log_path: str | os.PathLike) -> None:
    """Append this process's stdout and stderr, and those of every process it
    starts later, to ``log_path`` (child side).

    Redirects file descriptors 1 and 2, so output of C++ code and of vLLM's
    own engine-core process lands in the file too, and rebinds ``sys.stdout``
    and ``sys.stderr`` to them in case something had replaced those. Call it
    before configuring logging, because handlers keep the stream they got.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)


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
