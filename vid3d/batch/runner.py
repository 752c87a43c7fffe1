"""The batch (:func:`run_batch`): plans the jobs, skips the finished videos, runs the
others with the local or the Ray scheduler, and keeps the summary files current."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vid3d.batch.gpus import prepare_gpu_workers
from vid3d.batch.jobs import BatchResult, BatchSpec, Job, Ledger, now, plan_batch
from vid3d.batch.local import run_local
from vid3d.batch.monitor import BatchMonitor, NullMonitor
from vid3d.batch.on_ray import run_ray
from vid3d.transaction import claim_results


def run_batch(
    spec: BatchSpec,
    *,
    jobs: int | None = None,
    fail_fast: bool = False,
    ray: bool = False,
    ray_address: str | None = None,
    ray_cpus: float | None = None,
    ray_gpus: float | None = None,
    monitor: BatchMonitor | None = None,
) -> BatchResult:
    """Reconstruct every video of a folder, one workspace each; resumable, failures isolated.

    See :mod:`vid3d.batch` for the workspace names, the configuration precedence and
    what resuming does. Finished videos are skipped without starting a worker; a failed
    video is recorded (``status`` ``failed`` with its error) and the batch goes on,
    unless ``fail_fast``. ``summary.csv`` and ``summary.json`` are rewritten after
    every video, so they are current even if the batch is killed.

    Args:
        spec: The videos, the output folder and the configuration (:class:`BatchSpec`).
        jobs: Videos at a time. Local default: :func:`vid3d.batch.default_jobs`. On Ray:
            most tasks in flight (default: as many as there are videos; Ray schedules by
            resources).
        fail_fast: Stop at the first failure; the running videos are stopped and the rest
            are ``cancelled``. Default: False.
        ray: Run one Ray task per video: connects to the cluster in ``RAY_ADDRESS`` or a
            running local one, else starts a local instance; a Ray already initialised in
            this process is used as it is. Default: False.
        ray_address: Ray cluster address (``ray://head:10001``, ``head:6379``, ``auto``);
            implies ``ray``. Default: None.
        ray_cpus: CPUs a Ray task asks for. Default: 4 (2 with a GPU), at most the
            largest node's.
        ray_gpus: GPUs a Ray task asks for. Default: per video, by its configuration's
            device (:func:`vid3d.batch.ray_gpu_request`): 1 for ``cuda`` or ``cuda:N``, or
            ``auto`` when the cluster has GPUs; else 0.
        monitor: Progress display. Default: none.

    Returns:
        The rows, in the order of the videos, and the summary paths.

    Raises:
        InputError: No folder or no videos. ConfigError: a bad preset, override or
        override file. Vid3dError: Ray asked for but not installed. KeyboardInterrupt
        is re-raised after the workers are stopped and the summary is written.
    """
    out = spec.out
    plan = plan_batch(spec)
    use_ray = ray or ray_address is not None
    monitor = monitor or NullMonitor()
    claim_results(out)
    backend = "ray" if use_ray else "local"
    meta = {
        "folder": str(spec.folder),
        "out": str(out),
        "preset": spec.preset,
        "overrides": list(spec.overrides),
        "started": now(),
        "backend": backend,
    }
    ledger = Ledger(plan, out, meta, monitor, fail_fast)
    todo = ledger.skip_finished()
    monitor.start(plan, len(todo), backend)
    with _sigterm_interrupts():
        try:
            ledger.show_skipped()
            if todo:
                meta["backend"] = _run_todo(todo, ledger, use_ray, jobs, ray_address, ray_cpus, ray_gpus)
        except KeyboardInterrupt:
            ledger.cancel_unfinished(todo, "interrupted")
            raise
        finally:
            monitor.stop()
    ledger.cancel_unfinished(todo, "not run: --fail-fast stopped the batch")
    return BatchResult(ledger.ordered(), out, out / "summary.csv", out / "summary.json", meta["backend"])


def _run_todo(
    todo: list[Job],
    ledger: Ledger,
    use_ray: bool,
    jobs: int | None,
    ray_address: str | None,
    ray_cpus: float | None,
    ray_gpus: float | None,
) -> str:
    """Prepare the GPU kernels and run the jobs on a scheduler; returns its description."""
    monitor = ledger.monitor
    kernels = prepare_gpu_workers(todo, monitor)
    if kernels is not None:
        ledger.meta["cuda_kernels"] = {k: kernels.get(k) for k in ("state", "detail", "how", "seconds")}
    if use_ray:
        return run_ray(todo, ray_address, jobs, ray_cpus, ray_gpus, monitor, ledger.started, ledger.finished)
    cuda_ok = kernels is not None and kernels["state"] == "loaded"
    return run_local(todo, jobs, monitor, ledger.started, ledger.finished, cuda_ok=cuda_ok)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM (kill, a job scheduler's stop) end the batch as Ctrl-C does (only
    possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler from outside Python, which cannot be set back
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
