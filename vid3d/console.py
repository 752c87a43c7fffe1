"""The terminal: one rich console on stderr, one progress display, the summary table."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID,
                           TextColumn, TimeElapsedColumn)
from rich.table import Table

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
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
            console=console, transient=True, disable=verbosity == 0 or not console.is_terminal,
        )
        self.warnings: list[str] = []

    def __enter__(self) -> "RichReporter":
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
        return (f"{g('registered')}/{g('total')} frames registered, "
                f"reprojection error {g('mean_reprojection_error', '{:.2f}')} px, "
                f"{g('points')} points")
    if stage == "splat":
        scored = "PSNR on training frames" if m.get("eval_on") == "training" else "held-out PSNR"
        return (f"{g('steps')} steps, {g('gaussians')} Gaussians, {scored} "
                f"{g('psnr_initial', '{:.2f}')} -> {g('psnr', '{:.2f}')} dB"
                + (f" ({m['psnr_raw']:.2f} uncorrected)"
                   if m.get("psnr_raw") is not None and m.get("psnr_raw") != m.get("psnr") else ""))
    if stage == "render":
        outputs = m.get("outputs") or []
        main = next((o for o in outputs if str(o).endswith(".mp4")), "?")
        return f"{main}: {g('frames')} frames, {g('width')}x{g('height')} @ {g('fps')} fps"
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
    table = Table(title="consecutive frames: geometric consistency (weakest first)",
                  title_justify="left")
    for col in ("frames", "matches", "verified", "inlier ratio"):
        table.add_column(col, justify="left" if col == "frames" else "right")
    weakest = sorted(pairs, key=lambda p: (p.get("verified") or 0, p.get("inlier_ratio") or 0))
    for p in weakest[:rows]:
        table.add_row(escape(f"{p['name1']} - {p['name2']}"), str(p.get("matches")), str(p.get("verified")),
                      f"{p.get('inlier_ratio') or 0:.2f}")
    if len(pairs) > rows:
        verified = sorted(p.get("verified") or 0 for p in pairs)
        ratios = sorted(p.get("inlier_ratio") or 0 for p in pairs)
        table.add_row(f"median of {len(pairs)} pairs", "", str(verified[len(verified) // 2]),
                      f"{ratios[len(ratios) // 2]:.2f}", style="dim")
    return table
