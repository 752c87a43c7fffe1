"""The terminal: one rich console on stderr, one progress display, the summary tables;
for ``vid3d batch``, the live display (:class:`RichBatchMonitor`) and its table
(:func:`batch_table`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from vid3d.batch import BatchResult, Job, VideoResult

console = Console(stderr=True)


class _RichTask:
    def __init__(self, progress: Progress, task_id: TaskID):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: float = 1) -> None:
        self.progress.advance(self.task_id, n)

    def update(self, *, completed=None, total=None, info=None) -> None:
        kwargs: dict[str, Any] = {}
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if info is not None:
            kwargs["info"] = escape(info)
        self.progress.update(self.task_id, **kwargs)


class _QuietTask:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, *, completed=None, total=None, info=None) -> None:
        pass


class RichReporter:
    """A :class:`vid3d.progress.Reporter` drawing rich progress bars.

    Args:
        verbosity: 0 quiet (warnings only), 1 normal, 2 verbose (debug lines too).
    """

    def __init__(self, verbosity: int = 1):
        self.verbosity = verbosity
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
            disable=verbosity == 0 or not console.is_terminal,
        )
        self.warnings: list[str] = []

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Any]:
        if self.verbosity == 0:
            yield _QuietTask()
            return
        task_id = self.progress.add_task(escape(description), total=total, info="")
        try:
            yield _RichTask(self.progress, task_id)
        finally:
            self.progress.remove_task(task_id)

    def log(self, message: str) -> None:
        if self.verbosity >= 1:
            self.progress.console.print(f"[dim]·[/] {escape(message)}", highlight=False)

    def debug(self, message: str) -> None:
        if self.verbosity >= 2:
            self.progress.console.print(f"[dim]  {escape(message)}[/]", highlight=False)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.progress.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def headline(stage: str, m: dict[str, Any]) -> str:
    """The figures of a stage worth one line in the summary."""

    def g(key, fmt="{}"):
        v = m.get(key)
        return fmt.format(v) if v is not None else "?"

    if stage == "frames":
        dropped = m.get("dropped") or {}
        why = "".join(f", {n} {reason.replace('_', ' ')}" for reason, n in dropped.items() if n)
        size = m.get("output_size") or [m.get("width"), m.get("height")]
        return f"{g('kept')} of {g('decoded')} frames kept{why}; {size[0]}x{size[1]}"
    if stage == "poses":
        return (
            f"{g('registered')}/{g('total')} frames registered, "
            f"reprojection error {g('mean_reprojection_error', '{:.2f}')} px, "
            f"{g('points')} points"
        )
    if stage == "splat":
        scored = "PSNR on training frames" if m.get("eval_on") == "training" else "held-out PSNR"
        return (
            f"{g('steps')} steps, {g('gaussians')} Gaussians, {scored} "
            f"{g('psnr_initial', '{:.2f}')} -> {g('psnr', '{:.2f}')} dB"
            + (
                f" ({m['psnr_raw']:.2f} uncorrected)"
                if m.get("psnr_raw") is not None and m.get("psnr_raw") != m.get("psnr")
                else ""
            )
        )
    if stage == "render":
        outputs = m.get("outputs") or []
        main = next((o for o in outputs if str(o).endswith(".mp4")), "?")
        cov = m.get("coverage") or {}
        covered = f", coverage {cov['mean']:.0%} (worst {cov['worst']:.0%})" if cov else ""
        return f"{main}: {g('frames')} frames, {g('width')}x{g('height')} @ {g('fps')} fps{covered}"
    return ""


def summary_table(outcomes: list, title: str = "vid3d") -> Table:
    """A table of stage, status, time and headline figures."""
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("result")
    for o in outcomes:
        status = "[green]ran[/]" if o.status == "ran" else "[dim]skipped (up to date)[/]"
        table.add_row(o.stage, status, f"{o.seconds:.1f} s", escape(headline(o.stage, o.metrics)))
    return table


def pairs_table(metrics: dict[str, Any], rows: int = 12) -> Table | None:
    """Geometric consistency of consecutive frames: verified matches and inlier ratio.

    Shows the weakest ``rows`` pairs (the ones that explain a broken reconstruction) and
    a median line; None when the poses metrics have no pairs.
    """
    pairs = metrics.get("pairs") or []
    if not pairs:
        return None
    table = Table(title="consecutive frames: geometric consistency (weakest first)", title_justify="left")
    for col in ("frames", "matches", "verified", "inlier ratio"):
        table.add_column(col, justify="left" if col == "frames" else "right")
    weakest = sorted(pairs, key=lambda p: (p.get("verified") or 0, p.get("inlier_ratio") or 0))
    for p in weakest[:rows]:
        table.add_row(
            escape(f"{p['name1']} - {p['name2']}"),
            str(p.get("matches")),
            str(p.get("verified")),
            f"{p.get('inlier_ratio') or 0:.2f}",
        )
    if len(pairs) > rows:
        verified = sorted(p.get("verified") or 0 for p in pairs)
        ratios = sorted(p.get("inlier_ratio") or 0 for p in pairs)
        table.add_row(
            f"median of {len(pairs)} pairs",
            "",
            str(verified[len(verified) // 2]),
            f"{ratios[len(ratios) // 2]:.2f}",
            style="dim",
        )
    return table


class RichBatchMonitor:
    """A :class:`vid3d.batch.BatchMonitor` drawing a live rich display: an overall bar,
    one line per running video, a line per result.

    Each running video's line shows its stage (the pipeline's overall task) and the
    innermost task of that stage; the bar counts stages. Without a terminal, only the
    per-video result lines are printed.

    Args:
        verbosity: 0 quiet (warnings only), 1 normal, 2 verbose (workers' log lines too).
    """

    def __init__(self, verbosity: int = 1):
        from vid3d.pipeline import STAGES

        self.verbosity = verbosity
        self.console = console
        self.stages = len(STAGES)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
            disable=verbosity == 0 or not console.is_terminal,
        )
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
            self.console.print(
                f"vid3d batch: {len(jobs)} videos"
                + (f", {done} finished earlier (skipped)" if done else "")
                + f", {todo} to run ({backend})",
                highlight=False,
            )
        self.progress.start()
        self.overall = self.progress.add_task(
            f"batch ({backend})", total=len(jobs), count=f"0/{len(jobs)}", info=""
        )

    def _overall(self) -> None:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        info = " · ".join(f"{n} {s}" for s, n in counts.items())
        n = len(self.results)
        self.progress.update(self.overall, completed=n, count=f"{n}/{self.total}", info=info)

    def job_started(self, job: Job) -> None:
        self.tasks[job.name] = {}
        self.rows[job.name] = self.progress.add_task(
            _short(job.rel), total=self.stages, count="", info="[dim]waiting[/]"
        )

    def event(self, event: tuple) -> None:
        key, kind = event[0], event[1]
        if kind == "log":
            self._log(key, event[2], event[3])
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

    def _log(self, key: str, level: str, message: str) -> None:
        name = self.jobs[key].rel if key in self.jobs else key
        if level == "warn":
            self.progress.console.print(f"[yellow]warning:[/] {name}: {message}", highlight=False)
        elif level == "info" and self.verbosity >= 2:
            self.progress.console.print(f"[dim]·[/] {name}: {message}", highlight=False)

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
        self.progress.update(self.rows[key], completed=completed, total=top[2] or self.stages, info=info)

    def job_finished(self, job: Job, result: VideoResult) -> None:
        from vid3d.batch import BUSY, DONE, FAILED, SKIPPED

        self.results.append(result)
        if job.name in self.rows:
            self.progress.remove_task(self.rows.pop(job.name))
        self.tasks.pop(job.name, None)
        self._overall()
        if (
            (self.verbosity >= 1 and result.status != SKIPPED)
            or self.verbosity >= 2
            or result.status == FAILED
        ):
            mark = {
                DONE: "[green]done[/]",
                SKIPPED: "[dim]skipped[/]",
                FAILED: "[red]failed[/]",
                BUSY: "[yellow]busy[/]",
            }.get(result.status, result.status)
            tail = f": {result.error}" if result.error else ""
            took = f" ({result.wall_seconds:.1f} s)" if result.status == DONE else ""
            self.progress.console.print(f"{mark} {result.video}{took}{tail}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self.progress.stop()


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def batch_table(result: BatchResult, title: str | None = None) -> Table:
    """A table of a batch: video, status, frames, registered, PSNR (dB), Gaussians,
    time (of the finished stages), error."""
    from vid3d.batch import BUSY, CANCELLED, DONE, FAILED, SKIPPED

    counts = ", ".join(
        f"{result.count(s)} {s}" for s in (DONE, SKIPPED, FAILED, BUSY, CANCELLED) if result.count(s)
    )
    table = Table(
        title=title or f"vid3d batch · {result.out} · {counts}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("video", overflow="fold", min_width=10, ratio=2)
    table.add_column("status", no_wrap=True)
    for name in ("frames", "registered", "PSNR", "Gaussians", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=16, ratio=3)
    style = {
        DONE: "[green]done[/]",
        SKIPPED: "[dim]skipped[/]",
        FAILED: "[red]failed[/]",
        BUSY: "[yellow]busy[/]",
        CANCELLED: "[yellow]cancelled[/]",
    }
    for r in result.rows:
        table.add_row(
            r.video,
            style.get(r.status, r.status),
            "" if r.frames is None else str(r.frames),
            "" if r.registered is None else f"{r.registered}/{r.frames}",
            "" if r.psnr is None else f"{r.psnr:.2f}",
            "" if r.gaussians is None else f"{r.gaussians:,}",
            "" if r.seconds is None else f"{r.seconds:.1f} s",
            r.error or "",
        )
    return table
