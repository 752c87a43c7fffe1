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
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import hashlib
import io
import itertools
import os
import re
import signal
import sys
import threading
import time
import tomllib
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from . import __version__
from .config import Config, apply_data, apply_overrides, find_preset, load_config
from .errors import ConfigError, InputError, Vid3dError, WorkspaceBusyError
from .pipeline import STAGES, is_up_to_date, stage_inputs
from .transaction import claim, claim_results, locked
from .workspace import Workspace, write_json, write_text

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")
"""File extensions taken as videos (any letter case)."""
OVERRIDE_NAME = "vid3d.toml"
"""A folder's override file; ``<stem>.vid3d.toml`` is one video's."""
SUMMARY_FIELDS = ("video", "workspace", "status", "frames", "registered", "psnr", "gaussians",
                  "seconds", "error", "hint")
"""Columns of ``summary.csv``."""

# statuses of a video in a batch
QUEUED, RUNNING = "queued", "running"  # only in summaries written while the batch runs
DONE = "done"  # reconstructed (or finished) by this run
SKIPPED = "skipped"  # already finished before this run
FAILED = "failed"
BUSY = "busy"  # another batch holds the workspace's lock
CANCELLED = "cancelled"  # not run or stopped: --fail-fast or an interruption

EVENT_INTERVAL = 0.25  # seconds between two progress updates of one task sent by a worker


# ---------------------------------------------------------------------------------------
# finding videos, naming workspaces, configurations


def find_videos(folder: Path, *, recursive: bool = False, glob: str | None = None,
                exclude: Sequence[Path] = ()) -> list[Path]:
    """The videos in a folder, sorted by their path relative to it.

    Hidden files and folders, folders in ``exclude`` and vid3d workspaces (folders with
    a ``.vid3d`` manifest folder, whose renders are videos too) are left out.

    Args:
        folder: The folder to search.
        recursive: Search sub-folders too. Default: False.
        glob: Keep only videos whose path relative to ``folder`` or whose file name
            matches this pattern (fnmatch: ``*_svd.mp4``, ``scenes/*``). Default: all.
        exclude: Folders to leave out (the batch's output folder). Default: none.

    Returns:
        Paths of the videos (``folder`` joined with their relative paths).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", "give the folder that holds the videos")
    excluded = {Path(p).resolve() for p in exclude}
    found: list[Path] = []

    def visit(d: Path) -> None:
        if d.resolve() in excluded or (d / ".vid3d").is_dir():
            return
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if recursive:
                    visit(p)
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                rel = p.relative_to(folder).as_posix()
                if glob is None or fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(p.name, glob):
                    found.append(p)

    visit(folder)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def workspace_name(video: Path, folder: Path) -> str:
    """The workspace folder name of a video: ``<stem>-<8 hex digits>``.

    The digits hash the video's path relative to ``folder``, so the name is stable
    and unique within the batch; the stem keeps it readable (characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_``; at most 60 of them).
    """
    rel = Path(video).relative_to(folder).as_posix()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(video).stem).strip(".")[:60] or "video"
    return f"{stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def override_files(video: Path, folder: Path) -> list[Path]:
    """The override files that apply to a video, weakest first (see the module doc)."""
    video, folder = Path(video), Path(folder)
    rel_dir = video.parent.relative_to(folder)
    dirs = [folder] + [folder / Path(*rel_dir.parts[:i + 1]) for i in range(len(rel_dir.parts))]
    files = [d / OVERRIDE_NAME for d in dirs]
    files.append(video.parent / f"{video.stem}.{OVERRIDE_NAME}")
    return [f for f in files if f.is_file()]


def video_config(video: Path, folder: Path, preset: str = "default",
                 overrides: Sequence[str] = ()) -> tuple[Config, list[Path]]:
    """The configuration of one video of a batch.

    Args:
        video: The video.
        folder: The batch folder (override files are looked for from here down).
        preset: The batch preset: a bundled name or a TOML file. Default: "default".
        overrides: ``SECTION.FIELD=VALUE`` strings applied last.

    Returns:
        The configuration, and the override files it read (weakest first).
    """
    files = override_files(video, folder)
    layers = []
    for f in files:
        try:
            data = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{f} is not valid TOML: {e}", "fix or remove the file") from e
        if isinstance(data.get("preset"), str):
            name = data["preset"]
            if name.endswith(".toml") and not Path(name).is_absolute():
                name = str(f.parent / name)  # a preset file next to the override file
            find_preset(name)  # fail early with the file named in the message
            preset = name
        layers.append(({k: v for k, v in data.items() if k != "preset"}, f))
    cfg = load_config(preset)
    for data, f in layers:
        apply_data(cfg, data, str(f))
    return apply_overrides(cfg, list(overrides)), files


# ---------------------------------------------------------------------------------------
# jobs and results


@dataclass
class Job:
    """One video of a batch: what a worker needs to reconstruct it."""

    video: Path
    """Absolute path of the video (the frames stage fingerprints it by this path)."""
    rel: str
    """Path relative to the batch folder, as shown and written in the summary."""
    name: str
    """Workspace folder name (:func:`workspace_name`); also the job's key."""
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
    """What a batch did: one row per video, in the order of :func:`find_videos`."""

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


def job_result(job: Job, status: str, *, error: str | None = None, hint: str | None = None,
               error_type: str | None = None, tb: str | None = None, wall: float = 0.0,
               skipped: Sequence[str] = ()) -> VideoResult:
    """A summary row for a job, with the figures of its up-to-date stages."""
    try:
        done = finished_stages(job)
    except Exception:  # noqa: BLE001 - a row must come out even if the workspace is unreadable
        done = {}
    m = {s: d.get("metrics", {}) for s, d in done.items()}
    return VideoResult(
        video=job.rel, workspace=job.name, status=status,
        frames=m.get("frames", {}).get("kept"),
        registered=m.get("poses", {}).get("registered"),
        psnr=m.get("splat", {}).get("psnr"),
        gaussians=m.get("splat", {}).get("gaussians"),
        seconds=(round(sum(float(d.get("seconds", 0.0)) for d in done.values()), 3)
                 if done else None),
        error=error, hint=hint, error_type=error_type, traceback=tb,
        wall_seconds=round(wall, 3),
        stages_finished=list(done), stages_skipped=list(skipped),
        orbit=m.get("render", {}).get("video"), config_files=job.config_files,
    )


def plan_batch(folder: Path, out: Path, *, preset: str = "default",
               overrides: Sequence[str] = (), recursive: bool = False, glob: str | None = None,
               force: bool = False) -> list[Job]:
    """The jobs of a batch: one per video found, with its workspace and configuration.

    Args:
        folder: Folder of videos.
        out: Output folder; workspaces go to ``out/<workspace_name>``.
        preset: Batch preset (bundled name or TOML file). Default: "default".
        overrides: ``SECTION.FIELD=VALUE`` strings applied to every video, last.
        recursive: Search sub-folders. Default: False.
        glob: Keep only matching videos (see :func:`find_videos`). Default: all.
        force: Run every stage even when up to date. Default: False.
    """
    folder, out = Path(folder).resolve(), Path(out).resolve()
    videos = find_videos(folder, recursive=recursive, glob=glob, exclude=[out])
    if not videos:
        where = "" if recursive else " (sub-folders are searched only with --recursive)"
        raise InputError(f"no videos in {folder}{where}",
                         f"videos end in {', '.join(VIDEO_SUFFIXES)}; check --glob and --recursive")
    jobs = []
    for v in videos:
        cfg, files = video_config(v, folder, preset, overrides)
        name = workspace_name(v, folder)
        jobs.append(Job(video=v, rel=v.relative_to(folder).as_posix(), name=name,
                        workspace=out / name, config=cfg,
                        config_files=[f.relative_to(folder).as_posix() for f in files],
                        force=force))
    return jobs


def write_summary(rows: Sequence[VideoResult], out: Path,
                  meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
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
    write_json(json_path, {"vid3d_version": __version__, **(meta or {}), "counts": counts,
                           "videos": [r.to_dict() for r in rows]})
    return csv_path, json_path


# ---------------------------------------------------------------------------------------
# running one job (in a worker: a local process or a Ray task)


class _EventTask:
    """A task of :class:`EventReporter`: sends its state, at most every EVENT_INTERVAL."""

    def __init__(self, owner: "EventReporter", tid: int, total: float | None):
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


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as f:
        f.write(f"\n=== vid3d {__version__} batch worker {os.getpid()} "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
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


def run_job(job: Job, reporter: EventReporter, threads: int | None = None) -> VideoResult:
    """Reconstruct one video in this process and return its summary row; never raises
    for a failure of the video (only for KeyboardInterrupt).

    Args:
        job: The video.
        reporter: Where progress goes.
        threads: CPU threads for torch. Default: torch's choice.
    """
    from .pipeline import reconstruct

    t0 = time.perf_counter()
    ws = Workspace(job.workspace)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        claim(ws, new=True)
        with locked(ws, "vid3d batch"), _output_to(ws.batch_log):
            outcomes = reconstruct(job.video, ws, job.config, force=job.force, reporter=reporter,
                                   command="vid3d batch")
    except WorkspaceBusyError as e:
        return job_result(job, BUSY, error=e.message, wall=time.perf_counter() - t0)
    except Vid3dError as e:
        return job_result(job, FAILED, error=e.message, hint=e.hint, error_type=type(e).__name__,
                          wall=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one video's bug must not end the batch
        return job_result(job, FAILED, error=f"{type(e).__name__}: {e}".splitlines()[0],
                          error_type=type(e).__name__, tb=traceback.format_exc(),
                          wall=time.perf_counter() - t0)
    return job_result(job, DONE, wall=time.perf_counter() - t0,
                      skipped=[o.stage for o in outcomes if o.status == "skipped"])


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


def _local_worker(job: Job, conn: Any, env: dict[str, str], threads: int, parent: int) -> None:
    """Entry point of a local worker process."""
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


def _ray_worker(job: Job, queue: Any, threads: int | None) -> dict[str, Any]:
    """Body of a Ray task: one video; progress goes to a ``ray.util.queue.Queue``."""

    def send(event: tuple) -> None:
        queue.put_nowait(event)

    return run_job(job, EventReporter(job.name, send), threads).to_dict()


# ---------------------------------------------------------------------------------------
# the display


class BatchMonitor(Protocol):
    """Watches a batch: the CLI's live display, or nothing (:class:`NullMonitor`)."""

    def start(self, jobs: list[Job], todo: int, backend: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def event(self, event: tuple) -> None: ...
    def job_finished(self, job: Job, result: VideoResult) -> None: ...
    def stop(self) -> None: ...


class NullMonitor:
    """A monitor that shows nothing; keeps the warnings in ``warnings``."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, jobs, todo, backend) -> None:
        pass

    def job_started(self, job) -> None:
        pass

    def event(self, event) -> None:
        if event[1] == "log" and event[2] == "warn":
            self.warnings.append(f"{event[0]}: {event[3]}")

    def job_finished(self, job, result) -> None:
        pass

    def stop(self) -> None:
        pass


class RichBatchMonitor:
    """A live rich display: an overall bar, one line per running video, a line per result.

    Each running video's line shows its stage (the pipeline's overall task) and the
    innermost task of that stage; the bar counts stages. Without a terminal, only the
    per-video result lines are printed.

    Args:
        verbosity: 0 quiet (warnings only), 1 normal, 2 verbose (workers' log lines too).
    """

    def __init__(self, verbosity: int = 1):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from .console import console

        self.verbosity = verbosity
        self.console = console
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console, transient=True, disable=verbosity == 0 or not console.is_terminal)
        self.rows: dict[str, Any] = {}  # key -> rich task id
        # key -> task id -> [description, completed, total, info]
        self.tasks: dict[str, dict[int, list]] = {}
        self.jobs: dict[str, Job] = {}
        self.results: list[VideoResult] = []
        self.total = 0

    def start(self, jobs: list[Job], todo: int, backend: str) -> None:
        self.total = len(jobs)
        self.jobs = {j.name: j for j in jobs}
        if self.verbosity >= 1:
            done = len(jobs) - todo
            self.console.print(f"vid3d batch: {len(jobs)} videos"
                               + (f", {done} finished earlier (skipped)" if done else "")
                               + f", {todo} to run ({backend})", highlight=False)
        self.progress.start()
        self.overall = self.progress.add_task(f"batch ({backend})", total=len(jobs),
                                              count=f"0/{len(jobs)}", info="")

    def _overall(self) -> None:
        counts = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        info = " · ".join(f"{n} {s}" for s, n in counts.items())
        n = len(self.results)
        self.progress.update(self.overall, completed=n, count=f"{n}/{self.total}", info=info)

    def job_started(self, job: Job) -> None:
        self.tasks[job.name] = {}
        self.rows[job.name] = self.progress.add_task(_short(job.rel), total=len(STAGES),
                                                     count="", info="[dim]waiting[/]")

    def event(self, event: tuple) -> None:
        key, kind = event[0], event[1]
        if kind == "log":
            level, message = event[2], event[3]
            name = self.jobs[key].rel if key in self.jobs else key
            if level == "warn":
                self.progress.console.print(f"[yellow]warning:[/] {name}: {message}",
                                            highlight=False)
            elif level == "info" and self.verbosity >= 2:
                self.progress.console.print(f"[dim]·[/] {name}: {message}", highlight=False)
            return
        tasks = self.tasks.get(key)
        if tasks is None or key not in self.rows:
            return
        if kind == "open":
            tasks[event[2]] = [event[3], 0.0, event[4], ""]
        elif kind == "update" and event[2] in tasks:
            tasks[event[2]][1:] = [event[3], event[4], event[5]]
        elif kind == "close":
            tasks.pop(event[2], None)
        self._draw(key)

    def _draw(self, key: str) -> None:
        tasks = self.tasks[key]
        if not tasks:
            return
        ids = sorted(tasks)
        top = tasks[ids[0]]  # the pipeline's overall task: stage i/n
        completed, info = top[1], top[3] or top[0]
        if len(ids) > 1:
            inner = tasks[ids[-1]]
            if inner[2]:
                completed += min(1.0, inner[1] / inner[2])
                info += f" · {inner[0]} {int(inner[1])}/{int(inner[2])}"
            else:
                info += f" · {inner[0]}"
        self.progress.update(self.rows[key], completed=completed, total=top[2] or len(STAGES),
                             info=info)

    def job_finished(self, job: Job, result: VideoResult) -> None:
        self.results.append(result)
        if job.name in self.rows:
            self.progress.remove_task(self.rows.pop(job.name))
        self.tasks.pop(job.name, None)
        self._overall()
        if (self.verbosity >= 1 and result.status != SKIPPED) or self.verbosity >= 2 \
                or result.status == FAILED:
            mark = {DONE: "[green]done[/]", SKIPPED: "[dim]skipped[/]", FAILED: "[red]failed[/]",
                    BUSY: "[yellow]busy[/]"}.get(result.status, result.status)
            tail = f": {result.error}" if result.error else ""
            took = f" ({result.wall_seconds:.1f} s)" if result.status == DONE else ""
            self.progress.console.print(f"{mark} {result.video}{took}{tail}", highlight=False,
                                        soft_wrap=True)

    def stop(self) -> None:
        self.progress.stop()


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def summary_table(result: BatchResult, title: str | None = None) -> Any:
    """A rich table of the batch: video, status, frames, registered, PSNR (dB), Gaussians,
    time (of the finished stages), error."""
    from rich import box
    from rich.table import Table

    counts = ", ".join(f"{result.count(s)} {s}" for s in (DONE, SKIPPED, FAILED, BUSY, CANCELLED)
                       if result.count(s))
    table = Table(title=title or f"vid3d batch · {result.out} · {counts}", title_justify="left",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("video", overflow="fold", min_width=10, ratio=2)
    table.add_column("status", no_wrap=True)
    for name in ("frames", "registered", "PSNR", "Gaussians", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=16, ratio=3)
    style = {DONE: "[green]done[/]", SKIPPED: "[dim]skipped[/]", FAILED: "[red]failed[/]",
             BUSY: "[yellow]busy[/]", CANCELLED: "[yellow]cancelled[/]"}
    for r in result.rows:
        table.add_row(
            r.video, style.get(r.status, r.status),
            "" if r.frames is None else str(r.frames),
            "" if r.registered is None else f"{r.registered}/{r.frames}",
            "" if r.psnr is None else f"{r.psnr:.2f}",
            "" if r.gaussians is None else f"{r.gaussians:,}",
            "" if r.seconds is None else f"{r.seconds:.1f} s",
            r.error or "")
    return table


# ---------------------------------------------------------------------------------------
# the batch


def _cpu_count() -> int:
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


def _spreads_over_gpus(device: str) -> bool:
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
        if any(_spreads_over_gpus(d) for d in devices):
            return gpus
        named = {d for d in devices if d.startswith("cuda:")}
        if named:
            return len(named)
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = 8.0
    return max(1, min(_cpu_count() // 4, int(mem_gib // 8)))


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


def prepare_gpu_workers(jobs: Sequence[Job], monitor: BatchMonitor | None = None
                        ) -> dict[str, Any] | None:
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
    from .splats.rasterize import prepare_cuda_backend

    def log(message: str) -> None:
        if monitor is not None:
            monitor.event(("batch", "log", "info", message))

    st = prepare_cuda_backend(log=log)
    if st["state"] != "loaded" and monitor is not None:
        monitor.event(("batch", "log", "warn", f"{st['detail']}: jobs with device auto run on "
                                               f"the CPU ({st['hint']})"))
    return st


def run_batch(folder: Path, out: Path, *, preset: str = "default", overrides: Sequence[str] = (),
              recursive: bool = False, glob: str | None = None, jobs: int | None = None,
              fail_fast: bool = False, force: bool = False, ray: bool = False,
              ray_address: str | None = None, ray_cpus: float | None = None,
              ray_gpus: float | None = None,
              monitor: BatchMonitor | None = None) -> BatchResult:
    """Reconstruct every video of a folder, one workspace each; resumable, failures isolated.

    See the module docstring for the workspace names, the configuration precedence and
    what resuming does. Finished videos are skipped without starting a worker; a failed
    video is recorded (``status`` ``failed`` with its error) and the batch goes on,
    unless ``fail_fast``. ``summary.csv`` and ``summary.json`` are rewritten after
    every video, so they are current even if the batch is killed.

    Args:
        folder: Folder of videos (mp4, mov, m4v, webm, mkv, avi).
        out: Output folder: a workspace per video, ``summary.csv``, ``summary.json``.
        preset: Batch preset: bundled name or TOML file. Default: "default".
        overrides: ``SECTION.FIELD=VALUE`` for every video, applied last.
        recursive: Search sub-folders. Default: False.
        glob: Keep only videos whose relative path or name matches. Default: all.
        jobs: Videos at a time. Local default: :func:`default_jobs`. On Ray: most tasks
            in flight (default: as many as there are videos; Ray schedules by resources).
        fail_fast: Stop at the first failure; the running videos are stopped and the rest
            are ``cancelled``. Default: False.
        force: Run every stage even when up to date. Default: False.
        ray: Run one Ray task per video: connects to the cluster in ``RAY_ADDRESS`` or a
            running local one, else starts a local instance; a Ray already initialised in
            this process is used as it is. Default: False.
        ray_address: Ray cluster address (``ray://head:10001``, ``head:6379``, ``auto``);
            implies ``ray``. Default: None.
        ray_cpus: CPUs a Ray task asks for. Default: 4 (2 with a GPU), at most the
            largest node's.
        ray_gpus: GPUs a Ray task asks for. Default: per video, by its configuration's
            device (:func:`ray_gpu_request`): 1 for ``cuda`` or ``cuda:N``, or ``auto``
            when the cluster has GPUs; else 0.
        monitor: Progress display. Default: none.

    Returns:
        The rows, in the order of the videos, and the summary paths.

    Raises:
        InputError: No folder or no videos. ConfigError: a bad preset, override or
        override file. Vid3dError: Ray asked for but not installed. KeyboardInterrupt
        is re-raised after the workers are stopped and the summary is written.
    """
    out = Path(out).resolve()
    plan = plan_batch(folder, out, preset=preset, overrides=overrides, recursive=recursive,
                      glob=glob, force=force)
    use_ray = ray or ray_address is not None
    monitor = monitor or NullMonitor()
    claim_results(out)
    rows: dict[str, VideoResult] = {j.name: VideoResult(j.rel, j.name, QUEUED) for j in plan}
    meta = {"folder": str(Path(folder).resolve()), "out": str(out), "preset": preset,
            "overrides": list(overrides), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "backend": "ray" if use_ray else "local"}

    def save() -> None:
        write_summary([rows[j.name] for j in plan], out, meta)

    todo = []
    for job in plan:
        ws = Workspace(job.workspace)
        if (not job.force and all(ws.manifest_path(s).is_file() for s in STAGES)
                and len(finished_stages(job)) == len(STAGES)):
            rows[job.name] = job_result(job, SKIPPED, skipped=STAGES)
        else:
            todo.append(job)
    save()

    def started(job: Job) -> None:
        rows[job.name] = dataclasses.replace(rows[job.name], status=RUNNING)
        monitor.job_started(job)
        save()

    def finished(job: Job, result: VideoResult) -> bool:
        """Record a result; True when the batch must stop (fail fast)."""
        rows[job.name] = result
        monitor.job_finished(job, result)
        save()
        return fail_fast and result.status == FAILED

    monitor.start(plan, len(todo), "ray" if use_ray else "local")
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a job scheduler's stop) ends the batch as Ctrl-C does
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for job in plan:
            if rows[job.name].status == SKIPPED:
                monitor.job_finished(job, rows[job.name])
        kernels = prepare_gpu_workers(todo, monitor) if todo else None
        if kernels is not None:
            meta["cuda_kernels"] = {k: kernels.get(k) for k in ("state", "detail", "how", "seconds")}
        cuda_ok = kernels is not None and kernels["state"] == "loaded"
        if not todo:
            pass
        elif use_ray:
            meta["backend"] = _run_ray(todo, ray_address, jobs, ray_cpus, ray_gpus, monitor,
                                       started, finished)
        else:
            meta["backend"] = _run_local(todo, jobs, monitor, started, finished, cuda_ok=cuda_ok)
    except KeyboardInterrupt:
        for job in todo:
            if rows[job.name].status in (QUEUED, RUNNING):
                rows[job.name] = job_result(job, CANCELLED, error="interrupted")
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save()
        raise
    finally:
        monitor.stop()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    for job in todo:
        if rows[job.name].status in (QUEUED, RUNNING):
            rows[job.name] = job_result(job, CANCELLED,
                                        error="not run: --fail-fast stopped the batch")
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    result_rows = [rows[j.name] for j in plan]
    return BatchResult(result_rows, out, out / "summary.csv", out / "summary.json", meta["backend"])


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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


def _run_local(todo: list[Job], jobs: int | None, monitor: BatchMonitor,
               started: Callable[[Job], None],
               finished: Callable[[Job, VideoResult], bool], cuda_ok: bool = False) -> str:
    """Run the jobs in worker processes on this machine; returns a description.

    With ``cuda_ok`` (the parent loaded gsplat's CUDA kernels), a job of device "auto" or
    "cuda" is given one GPU (``CUDA_VISIBLE_DEVICES``, :func:`gpu_for_slot`), and workers
    never compile the kernels themselves (:data:`vid3d.splats.rasterize.NO_BUILD_ENV`).
    """
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from .splats.rasterize import NO_BUILD_ENV

    # "auto" jobs run on the CPU when the kernels are unusable: count them as CPU jobs
    devices = [j.config.device if cuda_ok or j.config.device.startswith("cuda") else "cpu"
               for j in todo]
    gpus = visible_gpus() if cuda_ok else []
    n = max(1, jobs or default_jobs(devices if gpus else ["cpu"]))
    threads = max(1, _cpu_count() // n)
    ctx = mp.get_context("spawn")
    pending = deque(todo)
    running: dict[str, tuple[Any, Any, Job]] = {}  # key -> (process, connection, job)
    free_slots = deque(range(n))
    slots: dict[str, int] = {}
    stop = False

    def start(job: Job) -> None:
        slot = free_slots.popleft()
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "NUMBA_NUM_THREADS": str(threads), NO_BUILD_ENV: "1"}
        if gpus and _spreads_over_gpus(job.config.device):
            env["CUDA_VISIBLE_DEVICES"] = gpu_for_slot(slot, gpus)
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_local_worker, args=(job, writer, env, threads, os.getpid()),
                        name=f"vid3d-{job.name}", daemon=True)
        p.start()
        writer.close()
        running[job.name] = (p, reader, job)
        slots[job.name] = slot
        started(job)

    def end(key: str, result: VideoResult) -> bool:
        p, reader, job = running.pop(key)
        reader.close()
        p.join(timeout=5)
        free_slots.append(slots.pop(key))
        return finished(job, result)

    try:
        while pending or running:
            while pending and free_slots and not stop:
                start(pending.popleft())
            if stop and not running:
                break
            readers = {r: key for key, (_, r, _) in running.items()}
            sentinels = {p.sentinel: key for key, (p, _, _) in running.items()}
            ready = wait(list(readers) + list(sentinels), timeout=0.5)
            results: dict[str, VideoResult] = {}
            for obj in ready:
                if obj in readers:
                    key = readers[obj]
                    try:
                        while obj.poll():
                            event = obj.recv()
                            if event[1] == "result":
                                results[key] = VideoResult(**event[2])
                            else:
                                monitor.event(event)
                    except (EOFError, OSError):
                        pass
            for obj in ready:
                if obj in sentinels:
                    key = sentinels[obj]
                    if key in results or key not in running:
                        continue
                    p, reader, job = running[key]
                    try:  # anything left in the pipe after the exit
                        while reader.poll(0.2):
                            event = reader.recv()
                            if event[1] == "result":
                                results[key] = VideoResult(**event[2])
                    except (EOFError, OSError):
                        pass
                    if key not in results:
                        p.join(timeout=5)
                        results[key] = job_result(job, FAILED, error=_crash_message(p.exitcode),
                                                  error_type="WorkerCrash")
            for key, result in results.items():
                if key in running and end(key, result):
                    stop = True
            if stop:
                for key in list(running):
                    running[key][0].terminate()
                for key in list(running):
                    p, _, job = running[key]
                    p.join(timeout=10)
                    end(key, job_result(job, CANCELLED, error="stopped: --fail-fast"))
    finally:
        for p, reader, _ in running.values():  # an interruption: stop the workers
            p.terminate()
        for p, reader, _ in running.values():
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
            reader.close()
    used = len(gpus) if any(_spreads_over_gpus(d) for d in devices) else 0
    return f"local, {n} job{'s' if n > 1 else ''}" + (f", {used} GPU{'s' if used > 1 else ''}"
                                                      if used else f", {threads} threads each")


def _run_ray(todo: list[Job], address: str | None, jobs: int | None, cpus: float | None,
             gpus: float | None, monitor: BatchMonitor, started: Callable[[Job], None],
             finished: Callable[[Job, VideoResult], bool]) -> str:
    """Run the jobs as Ray tasks; returns a description."""
    try:
        import ray
        from ray.util.queue import Empty, Queue
    except ImportError as e:
        raise Vid3dError("Ray is not installed", "pip install 'vid3d[ray]'") from e
    import logging

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise Vid3dError(f"cannot connect to the Ray cluster at {address or 'auto'}: {e}",
                             "start it with `ray start --head` or check --ray-address") from e
    try:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        max_cpu = max((r.get("CPU", 0) for r in nodes), default=1) or 1
        cluster_gpus = sum(r.get("GPU", 0) for r in nodes)
        remote_fn = ray.remote(_ray_worker)
        requests: dict[str, tuple[float, float]] = {}  # job key -> (CPUs, GPUs)
        for job in todo:  # every job's own device: override files may set it per video
            g = ray_gpu_request(job.config.device, cluster_gpus, gpus)
            requests[job.name] = (cpus if cpus is not None else min(2 if g else 4, max_cpu), g)
        wanting = [j.rel for j in todo if requests[j.name][1] > cluster_gpus]
        if wanting:  # Ray would keep such a task pending for ever
            raise ConfigError(
                f"{len(wanting)} video{'s' if len(wanting) > 1 else ''} ({wanting[0]}"
                f"{', ...' if len(wanting) > 1 else ''}) ask{'s' if len(wanting) == 1 else ''} "
                f"for {max(requests[j.name][1] for j in todo):g} GPU per task, and the Ray "
                f"cluster has {cluster_gpus:g}",
                "use --device auto or cpu (or a vid3d.toml device), a smaller --ray-gpus, or "
                "add GPU nodes")

        def submit(job: Job) -> Any:
            c, g = requests[job.name]
            if g and job.config.device.startswith("cuda:"):
                # Ray masks the task to the GPU it assigns, which the task sees as cuda:0
                job = dataclasses.replace(job, config=dataclasses.replace(job.config,
                                                                           device="cuda"))
            remote = remote_fn.options(num_cpus=c, num_gpus=g, max_retries=1, name="vid3d-batch")
            return remote.remote(job, queue, max(1, int(c)))

        queue = Queue(actor_options={"num_cpus": 0})
        pending = deque(todo)
        refs: dict[Any, Job] = {}
        limit = jobs or len(todo)
        stop = False

        def drain() -> None:
            while True:
                try:
                    events = queue.get_nowait_batch(max(1, queue.qsize()))
                except Empty:
                    return
                if not events:
                    return
                for event in events:
                    monitor.event(event)

        try:
            while pending or refs:
                while pending and len(refs) < limit and not stop:
                    job = pending.popleft()
                    refs[submit(job)] = job
                    started(job)
                if stop and not refs:
                    break
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.3)
                drain()
                for ref in ready:
                    job = refs.pop(ref)
                    try:
                        result = VideoResult(**ray.get(ref))
                    except ray.exceptions.RayError as e:
                        text = str(e).strip()
                        message = text.splitlines()[0] if text else type(e).__name__
                        result = job_result(job, FAILED, error=f"Ray: {message}",
                                            error_type=type(e).__name__)
                    stop |= finished(job, result)
                if stop:
                    for ref, job in list(refs.items()):
                        ray.cancel(ref, force=True)
                        finished(job, job_result(job, CANCELLED, error="stopped: --fail-fast"))
                    refs.clear()
        finally:
            for ref in refs:  # an interruption
                ray.cancel(ref, force=True)
            try:
                drain()
                ray.kill(queue.actor)
            except Exception:  # noqa: BLE001 - cleaning up
                pass
        kinds = sorted(set(requests.values()), key=lambda r: (r[1], r[0]))
        return "ray, " + " or ".join(f"{c:g} CPU" + (f" + {g:g} GPU" if g else "")
                                     for c, g in kinds) + " per video"
    finally:
        if started_here:
            ray.shutdown()
