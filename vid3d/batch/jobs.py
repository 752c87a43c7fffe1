"""The jobs of a batch and their results: :class:`Job`, the statuses, a video's summary
row (:class:`VideoResult`, :func:`job_result`), what to batch (:class:`BatchSpec`) and
its plan (:func:`plan_batch`), the summary files (:func:`write_summary`) and the
:class:`Ledger` that keeps them current while a batch runs."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vid3d import __version__
from vid3d.batch.configs import video_config
from vid3d.batch.discovery import VIDEO_SUFFIXES, find_videos, workspace_name
from vid3d.config import Config
from vid3d.errors import InputError, Vid3dError
from vid3d.pipeline import STAGES, is_up_to_date, stage_inputs
from vid3d.workspace import Workspace, write_json, write_text

if TYPE_CHECKING:
    from vid3d.batch.monitor import BatchMonitor

SUMMARY_FIELDS = (
    "video",
    "workspace",
    "status",
    "frames",
    "registered",
    "psnr",
    "gaussians",
    "seconds",
    "error",
    "hint",
)
"""Columns of ``summary.csv``."""

# statuses of a video in a batch
QUEUED, RUNNING = "queued", "running"  # only in summaries written while the batch runs
DONE = "done"  # reconstructed (or finished) by this run
SKIPPED = "skipped"  # already finished before this run
FAILED = "failed"
BUSY = "busy"  # another batch holds the workspace's lock
CANCELLED = "cancelled"  # not run or stopped: --fail-fast or an interruption


@dataclass
class Job:
    """One video of a batch: what a worker needs to reconstruct it."""

    video: Path
    """Absolute path of the video (the frames stage fingerprints it by this path)."""
    rel: str
    """Path relative to the batch folder, as shown and written in the summary."""
    name: str
    """Workspace folder name (:func:`vid3d.batch.workspace_name`); also the job's key."""
    workspace: Path
    """Absolute path of the workspace."""
    config: Config
    config_files: list[str] = field(default_factory=list)
    force: bool = False


@dataclass
class VideoResult:
    """One row of the summary."""

    video: str
    """Path of the video relative to the batch folder."""
    workspace: str
    """Workspace folder name, under the output folder."""
    status: str
    """done, skipped, failed, busy or cancelled (queued, running while the batch runs)."""
    frames: int | None = None
    """Frames kept by the frames stage."""
    registered: int | None = None
    """Frames that structure from motion registered."""
    psnr: float | None = None
    """Held-out PSNR after training, dB."""
    gaussians: int | None = None
    """Gaussians of the trained scene."""
    seconds: float | None = None
    """Time of the finished stages (from their manifests), whichever run did them."""
    error: str | None = None
    """What went wrong, one line, when failed."""
    hint: str | None = None
    """What to try, with a vid3d error."""
    error_type: str | None = None
    traceback: str | None = None
    """Traceback of an unexpected (non-vid3d) error."""
    wall_seconds: float = 0.0
    """Time this run spent on the video."""
    stages_finished: list[str] = field(default_factory=list)
    stages_skipped: list[str] = field(default_factory=list)
    """Stages that were already up to date when this run started the video."""
    orbit: str | None = None
    """The rendered video, relative to the workspace."""
    config_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BatchResult:
    """What a batch did: one row per video, in the order of :func:`vid3d.batch.find_videos`."""

    rows: list[VideoResult]
    out: Path
    summary_csv: Path
    summary_json: Path
    backend: str

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def failed(self) -> list[VideoResult]:
        """The videos that failed."""
        return [r for r in self.rows if r.status == FAILED]

    @property
    def ok(self) -> bool:
        """No video failed or was cancelled."""
        return not any(r.status in (FAILED, CANCELLED) for r in self.rows)


def finished_stages(job: Job) -> dict[str, dict[str, Any]]:
    """The manifests of the stages that are up to date in a job's workspace, in order.

    Stops at the first stage that is not: later manifests may be stale.
    """
    ws = Workspace(job.workspace)
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        try:
            inputs = stage_inputs(ws, stage, job.config, job.video)
            if not is_up_to_date(ws, stage, job.config, inputs):
                break
        except (Vid3dError, OSError):
            break
        out[stage] = ws.read_manifest(stage) or {}
    return out


def job_result(
    job: Job,
    status: str,
    *,
    error: str | None = None,
    hint: str | None = None,
    error_type: str | None = None,
    tb: str | None = None,
    wall: float = 0.0,
    skipped: Sequence[str] = (),
) -> VideoResult:
    """A summary row for a job, with the figures of its up-to-date stages."""
    try:
        done = finished_stages(job)
    except Exception:  # noqa: BLE001 - a row must come out even if the workspace is unreadable
        done = {}
    m = {s: d.get("metrics", {}) for s, d in done.items()}
    return VideoResult(
        video=job.rel,
        workspace=job.name,
        status=status,
        frames=m.get("frames", {}).get("kept"),
        registered=m.get("poses", {}).get("registered"),
        psnr=m.get("splat", {}).get("psnr"),
        gaussians=m.get("splat", {}).get("gaussians"),
        seconds=(round(sum(float(d.get("seconds", 0.0)) for d in done.values()), 3) if done else None),
        error=error,
        hint=hint,
        error_type=error_type,
        traceback=tb,
        wall_seconds=round(wall, 3),
        stages_finished=list(done),
        stages_skipped=list(skipped),
        orbit=m.get("render", {}).get("video"),
        config_files=job.config_files,
    )


@dataclass(frozen=True)
class BatchSpec:
    """What a batch reconstructs: which videos, where their workspaces go, and how each
    is configured. ``folder`` and ``out`` are made absolute when the spec is made."""

    folder: Path
    """Folder of videos (mp4, mov, m4v, webm, mkv, avi)."""
    out: Path
    """Output folder: a workspace per video (``out/<workspace_name>``), ``summary.csv``,
    ``summary.json``."""
    preset: str = "default"
    """Batch preset: bundled name or TOML file."""
    overrides: tuple[str, ...] = ()
    """``SECTION.FIELD=VALUE`` strings applied to every video, last."""
    recursive: bool = False
    """Search sub-folders."""
    glob: str | None = None
    """Keep only videos whose relative path or name matches (see
    :func:`vid3d.batch.find_videos`); None: all."""
    force: bool = False
    """Run every stage even when up to date."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder).resolve())
        object.__setattr__(self, "out", Path(self.out).resolve())
        object.__setattr__(self, "overrides", tuple(self.overrides))


def plan_batch(spec: BatchSpec) -> list[Job]:
    """The jobs of a batch: one per video found, with its workspace and configuration.

    Raises:
        InputError: No videos in ``spec.folder``. ConfigError: a bad preset, override
        or override file.
    """
    folder, out = spec.folder, spec.out
    videos = find_videos(folder, recursive=spec.recursive, glob=spec.glob, exclude=[out])
    if not videos:
        where = "" if spec.recursive else " (sub-folders are searched only with --recursive)"
        raise InputError(
            f"no videos in {folder}{where}",
            f"videos end in {', '.join(VIDEO_SUFFIXES)}; check --glob and --recursive",
        )
    jobs = []
    for v in videos:
        cfg, files = video_config(v, folder, spec.preset, spec.overrides)
        name = workspace_name(v, folder)
        jobs.append(
            Job(
                video=v,
                rel=v.relative_to(folder).as_posix(),
                name=name,
                workspace=out / name,
                config=cfg,
                config_files=[f.relative_to(folder).as_posix() for f in files],
                force=spec.force,
            )
        )
    return jobs


def write_summary(
    rows: Sequence[VideoResult], out: Path, meta: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.json`` into ``out`` atomically.

    Args:
        rows: One per video.
        out: The batch's output folder.
        meta: More top-level fields of the JSON (the batch's settings). Default: none.

    Returns:
        The two paths.
    """
    out = Path(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_FIELDS)
    for r in rows:
        d = r.to_dict()
        d["psnr"] = None if r.psnr is None else f"{r.psnr:.3f}"
        d["seconds"] = None if r.seconds is None else f"{r.seconds:.1f}"
        w.writerow(["" if d[k] is None else d[k] for k in SUMMARY_FIELDS])
    counts = {s: sum(r.status == s for r in rows) for s in dict.fromkeys(r.status for r in rows)}
    csv_path, json_path = out / "summary.csv", out / "summary.json"
    write_text(csv_path, buf.getvalue())
    write_json(
        json_path,
        {
            "vid3d_version": __version__,
            **(meta or {}),
            "counts": counts,
            "videos": [r.to_dict() for r in rows],
        },
    )
    return csv_path, json_path


def now() -> str:
    """The local time, as ``summary.json`` records when a batch started and finished."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Ledger:
    """The rows of a running batch, by job key; every change rewrites the summary files.

    Args:
        plan: Every job of the batch, in order.
        out: The output folder.
        meta: The batch's settings, written into ``summary.json``.
        monitor: Told about started and finished jobs.
        fail_fast: A failure stops the batch.
    """

    def __init__(
        self, plan: list[Job], out: Path, meta: dict[str, Any], monitor: BatchMonitor, fail_fast: bool
    ):
        self.plan, self.out, self.meta = plan, out, meta
        self.monitor, self.fail_fast = monitor, fail_fast
        self.rows: dict[str, VideoResult] = {j.name: VideoResult(j.rel, j.name, QUEUED) for j in plan}

    def ordered(self) -> list[VideoResult]:
        return [self.rows[j.name] for j in self.plan]

    def save(self) -> None:
        write_summary(self.ordered(), self.out, self.meta)

    def skip_finished(self) -> list[Job]:
        """Mark the videos whose stages are all up to date ``skipped``; returns the others."""
        todo = []
        for job in self.plan:
            ws = Workspace(job.workspace)
            if (
                not job.force
                and all(ws.manifest_path(s).is_file() for s in STAGES)
                and len(finished_stages(job)) == len(STAGES)
            ):
                self.rows[job.name] = job_result(job, SKIPPED, skipped=STAGES)
            else:
                todo.append(job)
        self.save()
        return todo

    def show_skipped(self) -> None:
        for job in self.plan:
            if self.rows[job.name].status == SKIPPED:
                self.monitor.job_finished(job, self.rows[job.name])

    def started(self, job: Job) -> None:
        self.rows[job.name] = dataclasses.replace(self.rows[job.name], status=RUNNING)
        self.monitor.job_started(job)
        self.save()

    def finished(self, job: Job, result: VideoResult) -> bool:
        """Record a result; True when the batch must stop (fail fast)."""
        self.rows[job.name] = result
        self.monitor.job_finished(job, result)
        self.save()
        return self.fail_fast and result.status == FAILED

    def cancel_unfinished(self, todo: list[Job], error: str) -> None:
        """Mark the jobs still queued or running ``cancelled``; the batch has ended."""
        for job in todo:
            if self.rows[job.name].status in (QUEUED, RUNNING):
                self.rows[job.name] = job_result(job, CANCELLED, error=error)
        self.meta["finished"] = now()
        self.save()
