"""GPUs and CPUs of a batch: which GPUs a worker may use, how many videos run at a time
(:func:`default_jobs`), what a Ray task asks for, and loading gsplat's CUDA kernels once
in the parent (:func:`prepare_gpu_workers`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from vid3d.batch.jobs import Job
from vid3d.batch.monitor import BatchMonitor, NullMonitor


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _torch_gpu_count() -> int:
    """GPUs PyTorch sees in this process (0 without a usable CUDA build)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable torch CUDA: CPU
        return 0


def visible_gpus(count: int | None = None) -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    Under a mask the parent was given (SLURM, a container: ``"2,3"``, or UUIDs
    ``"GPU-..."``/``"MIG-..."``), its entries as they are, so a worker's mask names the
    same physical GPU; without one, ``"0"`` to ``"count - 1"``.

    Args:
        count: GPUs PyTorch sees. Default: asks PyTorch (0 without CUDA).
    """
    if count is None:
        count = _torch_gpu_count()
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return [str(i) for i in range(count)]
    # CUDA stops at the first entry it cannot use; PyTorch's count says how many it took
    return [e.strip() for e in mask.split(",") if e.strip()][:count]


def gpu_for_slot(slot: int, gpus: Sequence[str]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of the worker in ``slot``: the GPUs in turn."""
    return gpus[slot % len(gpus)]


def spreads_over_gpus(device: str) -> bool:
    """Whether a job of this device takes whichever GPU its worker is given ("auto",
    "cuda"); "cuda:N" names its GPU (the worker keeps the parent's mask), "cpu" none."""
    return device in ("auto", "cuda")


def _cuda_count(device: str | Sequence[str]) -> int:
    """GPUs that jobs of these devices may run on here (0 when all are "cpu")."""
    devices = [device] if isinstance(device, str) else list(device)
    if all(d == "cpu" for d in devices):
        return 0
    return len(visible_gpus())


def default_jobs(device: str | Sequence[str] = "auto") -> int:
    """Parallel videos on this machine: one per GPU for jobs that take any GPU ("auto",
    "cuda"), one per named GPU for "cuda:N" jobs; else (no GPU, or all jobs "cpu") a
    quarter of the CPU cores (training uses several threads each), at most one per 8 GiB
    of memory.

    Args:
        device: The jobs' ``Config.device`` values (one, or one per job). Default: "auto".
    """
    devices = [device] if isinstance(device, str) else list(device)
    gpus = _cuda_count(devices)
    if gpus:
        if any(spreads_over_gpus(d) for d in devices):
            return gpus
        named = {d for d in devices if d.startswith("cuda:")}
        if named:
            return len(named)
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = 8.0
    return max(1, min(cpu_count() // 4, int(mem_gib // 8)))


def ray_gpu_request(device: str, cluster_gpus: float, requested: float | None = None) -> float:
    """GPUs a Ray task for a job of ``device`` asks for.

    Args:
        device: The job's ``Config.device``: "cpu" asks for none, "cuda" and "cuda:N" for
            one (Ray then gives the task its GPU as ``cuda:0``), "auto" for one when the
            cluster has GPUs.
        cluster_gpus: GPUs of the cluster's live nodes.
        requested: ``--ray-gpus``: used for every task when given. Default: None.
    """
    if requested is not None:
        return requested
    if device == "cpu":
        return 0
    if device.startswith("cuda"):
        return 1
    return 1 if cluster_gpus > 0 else 0


def prepare_gpu_workers(jobs: Sequence[Job], monitor: BatchMonitor | None = None) -> dict[str, Any] | None:
    """Load (compiling once, if needed) gsplat's CUDA kernels in this, the parent, process
    before any worker starts, so workers load them instead of all compiling at once.

    Returns:
        The kernels' state (:func:`vid3d.splats.rasterize.prepare_cuda_backend`), or None
        when no job may use a GPU or PyTorch sees none here (then nothing is imported).
        A state other than "loaded" is reported as a warning to ``monitor``: "auto" jobs
        then train on the CPU, "cuda" jobs fail with the fix in their error.
    """
    if all(j.config.device == "cpu" for j in jobs) or not _torch_gpu_count():
        return None
    from vid3d.splats.rasterize import prepare_cuda_backend

    shown = NullMonitor() if monitor is None else monitor

    def log(message: str) -> None:
        shown.event(("batch", "log", "info", message))

    st = prepare_cuda_backend(log=log)
    if st["state"] != "loaded":
        shown.event(
            ("batch", "log", "warn", f"{st['detail']}: jobs with device auto run on the CPU ({st['hint']})")
        )
    return st
