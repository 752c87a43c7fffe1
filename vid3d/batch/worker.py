"""What runs in a worker: one video's reconstruction (:func:`run_job`), its progress as
events (:class:`EventReporter`), and the entry points of a local worker process
(:func:`local_worker`) and of a Ray task (:func:`ray_worker`)."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vid3d import __version__
from vid3d.batch.jobs import BUSY, DONE, FAILED, Job, VideoResult, job_result
from vid3d.errors import Vid3dError, WorkspaceBusyError
from vid3d.transaction import claim, locked
from vid3d.workspace import Workspace

EVENT_INTERVAL = 0.25  # seconds between two progress updates of one task sent by a worker


class _EventTask:
    """A task of :class:`EventReporter`: sends its state, at most every EVENT_INTERVAL."""

    def __init__(self, owner: EventReporter, tid: int, total: float | None):
        self.owner, self.tid = owner, tid
        self.completed, self.total, self.info = 0.0, total, ""
        self._sent = 0.0

    def advance(self, n: float = 1) -> None:
        self.completed += n
        self._send()

    def update(self, *, completed=None, total=None, info=None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        urgent = info is not None and info != self.info
        if info is not None:
            self.info = info
        self._send(force=urgent)

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._sent >= EVENT_INTERVAL:
            self._sent = now
            self.owner.emit("update", self.tid, self.completed, self.total, self.info)


class EventReporter:
    """A :class:`vid3d.progress.Reporter` that turns progress into events for the batch.

    Every event is a tuple ``(key, kind, *payload)`` given to ``send``:
    ``("open", tid, description, total)``, ``("update", tid, completed, total, info)``,
    ``("close", tid)``, ``("log", level, message)`` with level ``info``, ``debug`` or
    ``warn``. Errors of ``send`` are ignored: progress is best effort.

    Args:
        key: The job's key (its workspace name).
        send: Delivers one event (a pipe to the parent process, a Ray queue...).
    """

    def __init__(self, key: str, send: Callable[[tuple], None]):
        self.key, self._send = key, send
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.warnings: list[str] = []

    def emit(self, kind: str, *payload: Any) -> None:
        try:
            with self._lock:
                self._send((self.key, kind, *payload))
        except Exception:  # noqa: BLE001 - a lost progress event must not fail the video
            pass

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_EventTask]:
        tid = next(self._ids)
        self.emit("open", tid, description, total)
        t = _EventTask(self, tid, total)
        try:
            yield t
        finally:
            self.emit("close", tid)

    def log(self, message: str) -> None:
        self.emit("log", "info", message)

    def debug(self, message: str) -> None:
        self.emit("log", "debug", message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.emit("log", "warn", message)


def run_job(job: Job, reporter: EventReporter, threads: int | None = None) -> VideoResult:
    """Reconstruct one video in this process and return its summary row; never raises
    for a failure of the video (only for KeyboardInterrupt).

    Args:
        job: The video.
        reporter: Where progress goes.
        threads: CPU threads for torch. Default: torch's choice.
    """
    from vid3d.pipeline import reconstruct

    t0 = time.perf_counter()
    ws = Workspace(job.workspace)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        claim(ws, new=True)
        with locked(ws, "vid3d batch"), _output_to(ws.batch_log):
            outcomes = reconstruct(
                job.video, ws, job.config, force=job.force, reporter=reporter, command="vid3d batch"
            )
    except WorkspaceBusyError as e:
        return job_result(job, BUSY, error=e.message, wall=time.perf_counter() - t0)
    except Vid3dError as e:
        return job_result(
            job,
            FAILED,
            error=e.message,
            hint=e.hint,
            error_type=type(e).__name__,
            wall=time.perf_counter() - t0,
        )
    except Exception as e:  # noqa: BLE001 - one video's bug must not end the batch
        return job_result(
            job,
            FAILED,
            error=f"{type(e).__name__}: {e}".splitlines()[0],
            error_type=type(e).__name__,
            tb=traceback.format_exc(),
            wall=time.perf_counter() - t0,
        )
    return job_result(
        job, DONE, wall=time.perf_counter() - t0, skipped=[o.stage for o in outcomes if o.status == "skipped"]
    )


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as f:
        f.write(
            f"\n=== vid3d {__version__} batch worker {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        )
        f.flush()
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _die_with_parent(parent: int) -> None:
    """End this process when the parent ends, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(137)

    threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:
        os._exit(137)


def local_worker(job: Job, conn: Any, env: dict[str, str], threads: int, parent: int) -> None:
    """Entry point of a local worker process (started with ``spawn``, so it must stay a
    top-level function of an importable module): one video; the events and, last,
    ``(key, "result", row)`` go to the parent through ``conn``."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt ends
    os.environ.update(env)
    lock = threading.Lock()

    def send(event: tuple) -> None:
        with lock:
            conn.send(event)

    result = run_job(job, EventReporter(job.name, send), threads)
    send((job.name, "result", result.to_dict()))
    conn.close()


def ray_worker(job: Job, queue: Any, threads: int | None) -> dict[str, Any]:
    """Body of a Ray task (Ray workers import it by its module path): one video; progress
    goes to a ``ray.util.queue.Queue``, the summary row is returned as a dict."""

    def send(event: tuple) -> None:
        queue.put_nowait(event)

    return run_job(job, EventReporter(job.name, send), threads).to_dict()
