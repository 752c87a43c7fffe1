"""The local scheduler (:func:`run_local`): one ``spawn`` worker process per video, a few
at a time on this machine, each given its share of the CPU threads and, with CUDA, a GPU."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from vid3d.batch.gpus import cpu_count, default_jobs, gpu_for_slot, spreads_over_gpus, visible_gpus
from vid3d.batch.jobs import CANCELLED, FAILED, Job, VideoResult, job_result
from vid3d.batch.monitor import BatchMonitor
from vid3d.batch.worker import local_worker


def run_local(
    todo: list[Job],
    jobs: int | None,
    monitor: BatchMonitor,
    started: Callable[[Job], None],
    finished: Callable[[Job, VideoResult], bool],
    cuda_ok: bool = False,
) -> str:
    """Run the jobs in worker processes on this machine; returns a description.

    With ``cuda_ok`` (the parent loaded gsplat's CUDA kernels), a job of device "auto" or
    "cuda" is given one GPU (``CUDA_VISIBLE_DEVICES``, :func:`vid3d.batch.gpu_for_slot`),
    and workers never compile the kernels themselves
    (:data:`vid3d.splats.rasterize.NO_BUILD_ENV`).

    Args:
        todo: The jobs to run.
        jobs: Worker processes at a time. Default: :func:`vid3d.batch.default_jobs`.
        monitor: Gets the workers' progress events.
        started: Called when a job's worker starts.
        finished: Called with each job's result; True stops the batch (fail fast): the
            running workers are stopped, their jobs ``cancelled``.
        cuda_ok: gsplat's CUDA kernels are usable. Default: False.
    """
    # "auto" jobs run on the CPU when the kernels are unusable: count them as CPU jobs
    devices = [j.config.device if cuda_ok or j.config.device.startswith("cuda") else "cpu" for j in todo]
    gpus = visible_gpus() if cuda_ok else []
    n = max(1, jobs or default_jobs(devices if gpus else ["cpu"]))
    threads = max(1, cpu_count() // n)
    workers = _Workers(n, threads, gpus, started, finished)
    pending = deque(todo)
    stop = False
    try:
        while pending or workers.running:
            while pending and workers.free_slots and not stop:
                workers.start(pending.popleft())
            if stop and not workers.running:
                break
            for key, result in workers.wait(monitor).items():
                if key in workers.running and workers.end(key, result):
                    stop = True
            if stop:
                workers.cancel_all()
    finally:
        workers.close()  # an interruption: stop the workers
    used = len(gpus) if any(spreads_over_gpus(d) for d in devices) else 0
    return f"local, {n} job{'s' if n > 1 else ''}" + (
        f", {used} GPU{'s' if used > 1 else ''}" if used else f", {threads} threads each"
    )


class _Workers:
    """The running worker processes, one per job, each in a slot (``n`` of them); a
    worker's slot chooses its GPU.

    Args:
        n: Slots: workers at a time.
        threads: CPU threads of each worker.
        gpus: ``CUDA_VISIBLE_DEVICES`` entries to spread "auto" and "cuda" jobs over;
            none: the workers keep this process's mask.
        started, finished: As for :func:`run_local`.
    """

    def __init__(
        self,
        n: int,
        threads: int,
        gpus: list[str],
        started: Callable[[Job], None],
        finished: Callable[[Job, VideoResult], bool],
    ):
        self.threads, self.gpus = threads, gpus
        self.started, self.finished = started, finished
        self.ctx = mp.get_context("spawn")
        self.running: dict[str, tuple[Any, Any, Job]] = {}  # key -> (process, connection, job)
        self.free_slots = deque(range(n))
        self.slots: dict[str, int] = {}

    def _env(self, job: Job, slot: int) -> dict[str, str]:
        from vid3d.splats.rasterize import NO_BUILD_ENV

        t = str(self.threads)
        env = {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "NUMBA_NUM_THREADS": t, NO_BUILD_ENV: "1"}
        if self.gpus and spreads_over_gpus(job.config.device):
            env["CUDA_VISIBLE_DEVICES"] = gpu_for_slot(slot, self.gpus)
        return env

    def start(self, job: Job) -> None:
        """Start a worker for ``job`` in a free slot."""
        slot = self.free_slots.popleft()
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(
            target=local_worker,
            args=(job, writer, self._env(job, slot), self.threads, os.getpid()),
            name=f"vid3d-{job.name}",
            daemon=True,
        )
        p.start()
        writer.close()
        self.running[job.name] = (p, reader, job)
        self.slots[job.name] = slot
        self.started(job)

    def end(self, key: str, result: VideoResult) -> bool:
        """Forget a finished worker and record its result; True: stop the batch."""
        p, reader, job = self.running.pop(key)
        reader.close()
        p.join(timeout=5)
        self.free_slots.append(self.slots.pop(key))
        return self.finished(job, result)

    def wait(self, monitor: BatchMonitor, timeout: float = 0.5) -> dict[str, VideoResult]:
        """Wait up to ``timeout`` s for events; pass progress to ``monitor`` and return the
        results that came, by job key, a crashed worker's as a failure."""
        readers = {r: key for key, (_, r, _) in self.running.items()}
        sentinels = {p.sentinel: key for key, (p, _, _) in self.running.items()}
        ready = wait(list(readers) + list(sentinels), timeout=timeout)
        results: dict[str, VideoResult] = {}
        for obj in ready:
            if obj in readers:
                result = _receive(obj, monitor)
                if result is not None:
                    results[readers[obj]] = result
        for obj in ready:
            if obj in sentinels:
                key = sentinels[obj]
                if key not in results and key in self.running:
                    results[key] = self._exit_result(key)
        return results

    def _exit_result(self, key: str) -> VideoResult:
        """The result of a worker that exited: the one left in its pipe, else a crash."""
        p, reader, job = self.running[key]
        result = _receive(reader, None, timeout=0.2)  # anything left in the pipe after the exit
        if result is None:
            p.join(timeout=5)
            result = job_result(job, FAILED, error=_crash_message(p.exitcode), error_type="WorkerCrash")
        return result

    def cancel_all(self) -> None:
        """Stop every running worker (fail fast); their jobs are ``cancelled``."""
        for p, _, _ in self.running.values():
            p.terminate()
        for key in list(self.running):
            p, _, job = self.running[key]
            p.join(timeout=10)
            self.end(key, job_result(job, CANCELLED, error="stopped: --fail-fast"))

    def close(self) -> None:
        """Stop the workers still running (killed if they do not end in 10 s)."""
        for p, _, _ in self.running.values():
            p.terminate()
        for p, reader, _ in self.running.values():
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
            reader.close()


def _receive(conn: Any, monitor: BatchMonitor | None, timeout: float = 0.0) -> VideoResult | None:
    """Read what waits in a worker's pipe: progress events go to ``monitor`` (dropped
    without one); returns the worker's result if it came."""
    result = None
    try:
        while conn.poll(timeout):
            event = conn.recv()
            if event[1] == "result":
                result = VideoResult(**event[2])
            elif monitor is not None:
                monitor.event(event)
    except (EOFError, OSError):
        pass
    return result


def _crash_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == 9 else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with code {exitcode} before reporting a result"
