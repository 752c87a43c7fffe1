"""The ``vid3d`` command line: thin typer commands over :mod:`vid3d.pipeline`.

Every command parses its options, calls one library function and prints. Errors are
:class:`vid3d.errors.Vid3dError`; :func:`_errors` turns them into one line on stderr
and a non-zero exit code, in one place.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vid3d import __version__
from vid3d.config import Config, apply_overrides, load_config, load_config_file
from vid3d.console import RichBatchMonitor, RichReporter, batch_table, console, pairs_table, summary_table
from vid3d.errors import InputError, Vid3dError, os_error
from vid3d.workspace import Workspace

app = typer.Typer(
    name="vid3d",
    help="Turn a video into a 3D Gaussian splat scene and an orbit video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        "-p",
        help="Preset name (default, fast, ...) or TOML file. "
        "Default: the workspace's last configuration, else 'default'.",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one option, e.g. --set splat.steps=500 (repeatable)."),
]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
Force = Annotated[bool, typer.Option("--force", help="Run even when the outputs are up to date.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print more detail.")]
WorkspaceArg = Annotated[
    Path, typer.Argument(help="Workspace folder (made by `vid3d frames` or `vid3d reconstruct`).")
]
BatchPreset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        "-p",
        help="Preset name or TOML file for every video (default: default); "
        "vid3d.toml files next to the videos override it.",
    ),
]
Shot = Annotated[
    int | None,
    typer.Option(
        "--shot", help="Which shot of a clip with scene cuts to use (0 = first). Default: the longest."
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vid3d {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Turn a video into a 3D Gaussian splat scene and an orbit video."""


@contextmanager
def _errors() -> Iterator[None]:
    """Turn every failure into one ``error:`` line, a ``hint:`` line and an exit code.

    vid3d's own errors carry their message and hint; file-system errors (disk full,
    read-only, permissions) get theirs from :func:`vid3d.errors.os_error`; anything
    else is a bug in vid3d, said in one line (``--verbose`` shows the traceback).
    """
    try:
        yield
    except typer.Exit:
        raise
    except Vid3dError as e:
        _fail(e.message, e.hint, e.exit_code)
    except KeyboardInterrupt:
        console.print(
            "[bold red]interrupted[/]: the stage that was running was undone and "
            "finished stages are kept; run the same command again to go on",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except OSError as e:
        err = os_error(e)
        _fail(err.message, err.hint, err.exit_code)
    except Exception as e:  # noqa: BLE001 - a bug must still end in one line and an exit code
        if _VERBOSE[0]:
            console.print_exception()
        first = (str(e).strip().splitlines() or [""])[0]
        _fail(
            f"unexpected {type(e).__name__}: {first}",
            "this is a bug in vid3d; run again with --verbose for the traceback and report it",
            1,
        )


def _fail(message: str, hint: str | None, code: int) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


_VERBOSE = [False]


@dataclass(frozen=True)
class _CommonOptions:
    """The options every command that runs stages takes (see :func:`_common_options`)."""

    preset: str | None
    sets: list[str] | None
    device: str | None
    force: bool
    quiet: bool
    verbose: bool

    @property
    def level(self) -> int:
        """How much the display shows: 0 with --quiet, 2 with --verbose, else 1."""
        return 0 if self.quiet else 2 if self.verbose else 1


_COMMON = {  # parameter: (annotation, default), as _CommonOptions' fields and in their order
    "preset": (Preset, None),
    "set_": (Sets, None),
    "device": (Device, None),
    "force": (Force, False),
    "quiet": (Quiet, False),
    "verbose": (Verbose, False),
}


def _common_options(*, device: bool = True, preset: Any = Preset) -> Callable[[Callable], Callable]:
    """Give a command --preset, --set, --device, --force, --quiet and --verbose, after its
    own options, and hand them to it as one keyword argument ``common`` (a :class:`_CommonOptions`).

    Typer has no options shared between commands; this is their one definition.

    Args:
        device: Offer --device (else ``common.device`` is None). Default: True.
        preset: The --preset annotation, for another help text. Default: :data:`Preset`.
    """
    shared = {**_COMMON, "preset": (preset, None)}
    if not device:
        del shared["device"]
    kw_only = inspect.Parameter.KEYWORD_ONLY

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "common"]
        params += [inspect.Parameter(n, kw_only, default=d, annotation=a) for n, (a, d) in shared.items()]

        @functools.wraps(command)
        def with_common(**kwargs: Any) -> Any:
            values = [kwargs.pop(name, None) for name in _COMMON]
            return command(**kwargs, common=_CommonOptions(*values))

        with_common.__signature__ = own.replace(parameters=params)  # what typer reads
        return with_common

    return decorate


def _config(ws: Workspace | None, common: _CommonOptions, extra: list[str] | None = None) -> Config:
    """Workspace config (or a preset), then --set overrides, then command options."""
    overrides = list(common.sets or []) + list(extra or [])
    if common.device is not None:
        overrides.append(f'device="{common.device}"')
    if common.preset is None and ws is not None and ws.config_toml.is_file():
        return apply_overrides(load_config_file(ws.config_toml), overrides)
    return load_config(common.preset or "default", overrides)


def _reporter(common: _CommonOptions) -> RichReporter:
    _VERBOSE[0] = common.verbose
    return RichReporter(common.level)


def _existing_workspace(path: Path) -> Workspace:
    if path.is_file():
        raise InputError(
            f"{path} is a file, not a workspace folder",
            "give the folder that `vid3d reconstruct` or `vid3d frames` made",
        )
    if not path.is_dir():
        raise InputError(
            f"workspace {path} does not exist",
            "run `vid3d reconstruct VIDEO --out DIR` or `vid3d frames VIDEO --out DIR` first",
        )
    return Workspace(path)


def _run(
    ws: Workspace, cfg: Config, stages: tuple[str, ...], common: _CommonOptions, command: str, **kwargs
) -> list:
    """Run ``stages`` on ``ws`` with the progress display, then print the summary table."""
    from vid3d.pipeline import run_pipeline

    with _reporter(common) as reporter:
        outcomes = run_pipeline(
            ws, cfg, stages, reporter=reporter, command=command, force=common.force, **kwargs
        )
    if not common.quiet:
        console.print(summary_table(outcomes, title=f"vid3d · {escape(str(ws.root))}"))
        console.print(f"report: {escape(str(ws.report_json))}", highlight=False)
    return outcomes


@app.command()
@_common_options()
def reconstruct(
    video: Annotated[Path, typer.Argument(help="The input video (mp4, mov, webm, ...).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Workspace folder. Default: work/<video name>.")
    ] = None,
    shot: Shot = None,
    *,
    common: _CommonOptions,
) -> None:
    """Video -> frames -> camera poses -> splats -> orbit video, in one go."""
    with _errors():
        ws = Workspace(out or Path("work") / video.stem)
        stages = ("frames", "poses", "splat", "render")
        _run(ws, _config(ws, common), stages, common, "vid3d reconstruct", video=video, shot=shot)


@app.command()
@_common_options(device=False)
def frames(
    video: Annotated[Path, typer.Argument(help="The input video.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Workspace folder.")],
    shot: Shot = None,
    *,
    common: _CommonOptions,
) -> None:
    """Choose frames from a video into a workspace's images/ (stage 1)."""
    with _errors():
        ws = Workspace(out)
        _run(ws, _config(ws, common), ("frames",), common, "vid3d frames", video=video, shot=shot)


@app.command()
@_common_options()
def poses(workspace: WorkspaceArg, *, common: _CommonOptions) -> None:
    """Camera poses of the frames with COLMAP, into sparse/0 (stage 2)."""
    with _errors():
        ws = _existing_workspace(workspace)
        outcomes = _run(ws, _config(ws, common), ("poses",), common, "vid3d poses")
        table = pairs_table(outcomes[0].metrics)
        if table is not None and not common.quiet:
            console.print(table)


@app.command()
@_common_options()
def train(
    workspace: WorkspaceArg,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Training steps; the whole schedule (coarse phase, densification, SH "
            "degree, evaluations, checkpoints) stretches or shrinks to fit.",
        ),
    ] = None,
    *,
    common: _CommonOptions,
) -> None:
    """Train Gaussian splats on the posed frames (stage 3); resumes an interrupted run."""
    with _errors():
        ws = _existing_workspace(workspace)
        cfg = _config(ws, common)
        if steps is not None:
            cfg = apply_overrides(cfg, [f"splat.schedule_scale={steps / cfg.splat.steps!r}"])
        _run(ws, cfg, ("splat",), common, "vid3d train")


@app.command()
@_common_options()
def render(
    workspace: WorkspaceArg,
    path: Annotated[
        str | None,
        typer.Option(
            help="Camera path: auto (default: the kind that suits the clip, sized by coverage), "
            "orbit, turntable, spiral, push-in, sway, input, or a path .json file."
        ),
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Video length.")] = None,
    resolution: Annotated[
        str | None, typer.Option(help="360p, 480p, 720p, 1080p, 1440p, 2160p or WxH.")
    ] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second (24, 30, 60).")] = None,
    aspect: Annotated[str | None, typer.Option(help="16:9, 9:16 (Shorts), 1:1, 4:3 or input.")] = None,
    side_by_side: Annotated[
        bool | None,
        typer.Option(
            "--side-by-side/--no-side-by-side",
            help="Put the input clip next to the reconstruction, seen from the same cameras.",
        ),
    ] = None,
    *,
    common: _CommonOptions,
) -> None:
    """Render a video of the splats along a camera path (stage 4)."""
    with _errors():
        ws = _existing_workspace(workspace)
        extra = []
        for name, value in (
            ("path", path),
            ("seconds", seconds),
            ("resolution", resolution),
            ("fps", fps),
            ("aspect", aspect),
            ("side_by_side", side_by_side),
        ):
            if value is not None:
                extra.append(f"render.{name}={json.dumps(value)}")
        _run(ws, _config(ws, common, extra), ("render",), common, "vid3d render")


@app.command()
def export(
    workspace: WorkspaceArg,
    format: Annotated[str, typer.Option("--format", "-f", help="ply or splat.")] = "ply",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output file. Default: splats/point_cloud.ply or splats/scene.splat."
        ),
    ] = None,
    frame: Annotated[str, typer.Option(help="sfm (COLMAP's frame) or normalized.")] = "sfm",
) -> None:
    """Write the trained splats as a 3DGS PLY or a .splat file, from the checkpoint."""
    from vid3d.stages.splat import export_workspace

    with _errors():
        path = export_workspace(_existing_workspace(workspace), format, out, frame)
        console.print(f"wrote {path}", highlight=False)


@app.command()
@_common_options(preset=BatchPreset)
def batch(
    folder: Annotated[Path, typer.Argument(help="Folder of videos (mp4 mov m4v webm mkv avi).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Results: a workspace per video, summary.csv, summary.json.")
    ] = Path("results"),
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Search sub-folders.")] = False,
    glob: Annotated[
        str | None, typer.Option(help="Only videos whose relative path or name matches, e.g. '*_svd.mp4'.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Videos at a time. Default: one per GPU, else a quarter "
            "of the CPU cores. With Ray: most tasks in flight.",
        ),
    ] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failure.")] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="One Ray task per video: the cluster in RAY_ADDRESS, a running local "
            "one, or a new local one.",
        ),
    ] = False,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (implies --ray).")] = None,
    *,
    common: _CommonOptions,
) -> None:
    """Reconstruct every video in a folder: resumable, one failure does not stop the rest."""
    from vid3d.batch import BatchSpec, run_batch

    with _errors():
        overrides = list(common.sets or []) + ([f'device="{common.device}"'] if common.device else [])
        spec = BatchSpec(
            folder,
            out,
            preset=common.preset or "default",
            overrides=tuple(overrides),
            recursive=recursive,
            glob=glob,
            force=common.force,
        )
        result = run_batch(
            spec,
            monitor=RichBatchMonitor(common.level),
            jobs=jobs,
            fail_fast=fail_fast,
            ray=ray,
            ray_address=ray_address,
        )
        if not common.quiet:
            console.print(batch_table(result))
            console.print(f"summary: {result.summary_csv}", highlight=False)
    if result.failed:
        console.print(
            f"[bold red]error:[/] {len(result.failed)} of {len(result.rows)} videos "
            f"failed; see {result.summary_csv}",
            highlight=False,
            soft_wrap=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def doctor() -> None:
    """What this machine can do: torch, CUDA, gsplat, pycolmap, ffmpeg/H.264, versions."""
    from rich.table import Table

    from vid3d.doctor import run_checks

    table = Table(title=f"vid3d {__version__} · doctor", title_justify="left")
    table.add_column("")
    table.add_column("component")
    table.add_column("detail")
    failed = False
    for c in run_checks():
        mark = "[green]ok[/]" if c.ok else ("[red]missing[/]" if c.required else "[yellow]no[/]")
        failed |= c.required and not c.ok
        table.add_row(mark, c.name, c.detail)
    console.print(table)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point. SIGTERM (kill, a job scheduler) stops a run as Ctrl-C
    does: the running stage is undone."""
    import signal

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    app()
