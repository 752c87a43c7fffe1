"""The Ray scheduler (:func:`run_ray`): one Ray task per video, sized by the video's
device, with the tasks' progress coming back through a Ray queue."""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vid3d.batch.gpus import ray_gpu_request
from vid3d.batch.jobs import CANCELLED, FAILED, Job, VideoResult, job_result
from vid3d.batch.monitor import BatchMonitor
from vid3d.batch.worker import ray_worker
from vid3d.errors import ConfigError, Vid3dError

Requests = dict[str, tuple[float, float]]  # job key -> (CPUs, GPUs) of its task


def run_ray(
    todo: list[Job],
    address: str | None,
    jobs: int | None,
    cpus: float | None,
    gpus: float | None,
    monitor: BatchMonitor,
    started: Callable[[Job], None],
    finished: Callable[[Job, VideoResult], bool],
) -> str:
    """Run the jobs as Ray tasks; returns a description.

    Args:
        todo: The jobs to run.
        address: Ray cluster address; None: ``RAY_ADDRESS``, a running local one, or a
            new local instance. A Ray already initialised in this process is used as it is.
        jobs: Most tasks in flight. Default: all.
        cpus: CPUs per task. Default: 4 (2 with a GPU), at most the largest node's.
        gpus: GPUs per task. Default: per job (:func:`vid3d.batch.ray_gpu_request`).
        monitor: Gets the tasks' progress events.
        started: Called when a job's task is submitted.
        finished: Called with each job's result; True stops the batch (fail fast): the
            tasks in flight are cancelled, their jobs ``cancelled``.

    Raises:
        Vid3dError: Ray is not installed, or the cluster cannot be reached.
        ConfigError: a task asks for more GPUs than the cluster has.
    """
    ray = _import_ray()
    with _connected(ray, address):
        requests = _task_requests(ray, todo, cpus, gpus)
        tasks = _Tasks(ray, requests, monitor)
        pending = deque(todo)
        limit = jobs or len(todo)
        stop = False
        try:
            while pending or tasks.refs:
                while pending and len(tasks.refs) < limit and not stop:
                    job = pending.popleft()
                    tasks.submit(job)
                    started(job)
                if stop and not tasks.refs:
                    break
                for job, result in tasks.wait():
                    stop |= finished(job, result)
                if stop:
                    tasks.cancel_all(finished)
        finally:
            tasks.close()  # an interruption: cancel the tasks in flight
        kinds = sorted(set(requests.values()), key=lambda r: (r[1], r[0]))
        return (
            "ray, "
            + " or ".join(f"{c:g} CPU" + (f" + {g:g} GPU" if g else "") for c, g in kinds)
            + " per video"
        )


def _import_ray() -> Any:
    try:
        import ray
        import ray.util.queue  # noqa: F401 - the progress queue
    except ImportError as e:
        raise Vid3dError("Ray is not installed", "pip install 'vid3d[ray]'") from e
    return ray


@contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """Connect to (or start) Ray unless this process is connected; disconnect at the end
    only if it connected here."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise Vid3dError(
            f"cannot connect to the Ray cluster at {address or 'auto'}: {e}",
            "start it with `ray start --head` or check --ray-address",
        ) from e
    try:
        yield
    finally:
        ray.shutdown()


def _task_requests(ray: Any, todo: list[Job], cpus: float | None, gpus: float | None) -> Requests:
    """The CPUs and GPUs of every job's task, by its own device (override files may set
    it per video); refuses GPUs the cluster does not have (Ray would wait for ever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    max_cpu = max((r.get("CPU", 0) for r in nodes), default=1) or 1
    cluster_gpus = sum(r.get("GPU", 0) for r in nodes)
    requests: Requests = {}
    for job in todo:
        g = ray_gpu_request(job.config.device, cluster_gpus, gpus)
        requests[job.name] = (cpus if cpus is not None else min(2 if g else 4, max_cpu), g)
    wanting = [j.rel for j in todo if requests[j.name][1] > cluster_gpus]
    if wanting:
        raise ConfigError(
            f"{len(wanting)} video{'s' if len(wanting) > 1 else ''} ({wanting[0]}"
            f"{', ...' if len(wanting) > 1 else ''}) ask{'s' if len(wanting) == 1 else ''} "
            f"for {max(requests[j.name][1] for j in todo):g} GPU per task, and the Ray "
            f"cluster has {cluster_gpus:g}",
            "use --device auto or cpu (or a vid3d.toml device), a smaller --ray-gpus, or add GPU nodes",
        )
    return requests


class _Tasks:
    """The Ray tasks in flight and the queue their progress events come through.

    Args:
        ray: The ``ray`` module.
        requests: CPUs and GPUs of each job's task.
        monitor: Gets the progress events.
    """

    def __init__(self, ray: Any, requests: Requests, monitor: BatchMonitor):
        from ray.util.queue import Queue

        self.ray, self.requests, self.monitor = ray, requests, monitor
        self.remote_fn = ray.remote(ray_worker)
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.refs: dict[Any, Job] = {}  # task -> its job

    def submit(self, job: Job) -> None:
        c, g = self.requests[job.name]
        task_job = job
        if g and job.config.device.startswith("cuda:"):
            # Ray masks the task to the GPU it assigns, which the task sees as cuda:0
            task_job = dataclasses.replace(job, config=dataclasses.replace(job.config, device="cuda"))
        remote = self.remote_fn.options(num_cpus=c, num_gpus=g, max_retries=1, name="vid3d-batch")
        self.refs[remote.remote(task_job, self.queue, max(1, int(c)))] = job

    def wait(self, timeout: float = 0.3) -> list[tuple[Job, VideoResult]]:
        """Wait up to ``timeout`` s for a task to end; pass the progress events on and
        return the finished jobs with their results (a Ray error is a failure)."""
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        self.drain()
        done = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                result = VideoResult(**self.ray.get(ref))
            except self.ray.exceptions.RayError as e:
                text = str(e).strip()
                message = text.splitlines()[0] if text else type(e).__name__
                result = job_result(job, FAILED, error=f"Ray: {message}", error_type=type(e).__name__)
            done.append((job, result))
        return done

    def drain(self) -> None:
        """Pass the progress events waiting in the queue to the monitor."""
        from ray.util.queue import Empty

        while True:
            try:
                events = self.queue.get_nowait_batch(max(1, self.queue.qsize()))
            except Empty:
                return
            if not events:
                return
            for event in events:
                self.monitor.event(event)

    def cancel_all(self, finished: Callable[[Job, VideoResult], bool]) -> None:
        """Cancel the tasks in flight (fail fast); their jobs are ``cancelled``."""
        for ref, job in list(self.refs.items()):
            self.ray.cancel(ref, force=True)
            finished(job, job_result(job, CANCELLED, error="stopped: --fail-fast"))
        self.refs.clear()

    def close(self) -> None:
        """Cancel what is still in flight, pass the last events on, end the queue's actor."""
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        try:
            self.drain()
            self.ray.kill(self.queue.actor)
        except Exception:  # noqa: BLE001 - cleaning up
            pass
