"""Batch reconstruction: every video of a folder, one workspace each, resumable.

``vid3d batch videos/ --out results/`` finds the videos, gives each a workspace
under ``results/``, and runs :func:`vid3d.pipeline.reconstruct` on each, in parallel
worker processes on this machine or as tasks on a Ray cluster. Reads the videos and
any ``vid3d.toml`` override files next to them; writes::

    <out>/<workspace name>/        one workspace per video (see vid3d.workspace)
    <out>/<workspace name>/.vid3d/logs/batch.log   what the video's worker printed
    <out>/summary.csv              one row per video: status, figures, error
    <out>/summary.json             the same rows with more detail, and the batch's settings

Workspace names (:func:`workspace_name`) are ``<stem>-<hash>``: the video's file
name without its extension, and 8 hex digits of a hash of its path relative to the
batch folder. They depend on nothing else, so they are stable from run to run and
two videos never share one (``clip.mp4`` and ``clip.mov``, ``a/clip.mp4`` and
``b/clip.mp4``).

Resuming: a video whose four stages are up to date (by their manifests, as
:mod:`vid3d.pipeline` decides) is skipped without starting a worker; any other
video runs again and its up-to-date stages are skipped, so an interrupted video
continues where it stopped. A video that failed before is tried again.

Isolation: locally every video runs in its own process (``spawn``), so a crash or an
out-of-memory kill ends that video only; it is recorded as failed with the cause and
the batch goes on. Workers die with the batch (``PR_SET_PDEATHSIG`` on Linux, and a
watchdog), so a killed batch leaves no orphan writing into a workspace. A workspace
is locked while a worker runs in it (``<ws>/.vid3d/lock``, :func:`vid3d.transaction.locked`):
a second batch over the same output folder, or a ``vid3d`` command on it, finds it
``busy``. The output folder must be new, empty, or a batch's (``<out>/.vid3d-batch``).

Per-video configuration, weakest first:

1. the batch preset (``--preset``, default ``default``);
2. every ``vid3d.toml`` in the folders from the batch folder down to the video's
   folder, outer to inner (a folder's file applies to every video under it, so a
   ``vid3d.toml`` next to a video applies to the videos of that folder);
3. ``<stem>.vid3d.toml`` next to the video (``clip.vid3d.toml`` for ``clip.mp4``):
   that video only;
4. ``--set`` overrides from the command line, then ``--device``.

The files are partial configurations, like presets (only the fields they change);
a top-level ``preset = "quality"`` in one of them replaces the batch preset as the
base (the most specific file that names one wins), and the other files still apply
on top of it.

The modules, in the order a batch uses them:

- :mod:`.discovery`: finding the videos, naming their workspaces;
- :mod:`.configs`: the override files and each video's configuration;
- :mod:`.jobs`: jobs, result rows, statuses, what to batch, the plan and the summary files;
- :mod:`.runner`: :func:`run_batch`, which ties the rest together;
- :mod:`.monitor`: what a batch tells its display (the CLI's is
  :class:`vid3d.console.RichBatchMonitor`);
- :mod:`.gpus`: GPUs and CPUs, how many videos at a time, what a Ray task asks for;
- :mod:`.local` and :mod:`.on_ray`: the two schedulers;
- :mod:`.worker`: what runs in a worker process or a Ray task.
"""

from vid3d.batch.configs import OVERRIDE_NAME, override_files, video_config
from vid3d.batch.discovery import VIDEO_SUFFIXES, find_videos, workspace_name
from vid3d.batch.gpus import default_jobs, gpu_for_slot, prepare_gpu_workers, ray_gpu_request, visible_gpus
from vid3d.batch.jobs import (
    BUSY,
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    SKIPPED,
    SUMMARY_FIELDS,
    BatchResult,
    BatchSpec,
    Job,
    VideoResult,
    finished_stages,
    job_result,
    plan_batch,
    write_summary,
)
from vid3d.batch.monitor import BatchMonitor, NullMonitor
from vid3d.batch.runner import run_batch
from vid3d.batch.worker import EVENT_INTERVAL, EventReporter, run_job

__all__ = [
    "BUSY",
    "CANCELLED",
    "DONE",
    "EVENT_INTERVAL",
    "FAILED",
    "OVERRIDE_NAME",
    "QUEUED",
    "RUNNING",
    "SKIPPED",
    "SUMMARY_FIELDS",
    "VIDEO_SUFFIXES",
    "BatchMonitor",
    "BatchResult",
    "BatchSpec",
    "EventReporter",
    "Job",
    "NullMonitor",
    "VideoResult",
    "default_jobs",
    "find_videos",
    "finished_stages",
    "gpu_for_slot",
    "job_result",
    "override_files",
    "plan_batch",
    "prepare_gpu_workers",
    "ray_gpu_request",
    "run_batch",
    "run_job",
    "video_config",
    "visible_gpus",
    "workspace_name",
    "write_summary",
]
