"""Stage order, skipping by manifest, and the report.

Each stage is a function in :mod:`vid3d.stages`; this module only decides which ones
run. A stage is skipped when its manifest (``<ws>/.vid3d/<stage>.json``) records the
same vid3d version, the same hash of its configuration section, the same fingerprint
of its inputs (the previous stage's outputs, or the video), and outputs that are still
as it left them. Otherwise it runs, and the stages after it see changed inputs and run
too. Writes ``vid3d.toml``, the manifests, ``report.json`` and ``report.html``; each stage as
one transaction under the workspace's lock (:mod:`vid3d.transaction`).
"""

from __future__ import annotations

import base64
import copy
import html
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vid3d import __version__, verdict
from vid3d.config import Config, dump_config, load_config_file, validate
from vid3d.errors import InputError, MissingStageError, Vid3dError
from vid3d.progress import NULL_REPORTER, Reporter
from vid3d.transaction import claim, locked, stage_transaction
from vid3d.workspace import Workspace, fingerprint_file, fingerprint_paths, json_safe, write_json, write_text

STAGES = ("frames", "poses", "splat", "render")

#: What each stage needs before it can run, and the command that makes it.
_NEEDS = {
    "poses": ("images", "vid3d frames VIDEO --out"),
    "splat": ("sparse0", "vid3d poses"),
    "render": ("ckpt", "vid3d train"),
}


def stage_outputs(ws: Workspace, stage: str) -> list[Path]:
    """The files and folders a stage leaves in the workspace."""
    return {
        "frames": [ws.images, ws.frames_json] + ([ws.masks] if ws.masks.exists() else []),
        "poses": [ws.sparse0, ws.poses_json],
        "splat": [ws.ckpt, ws.ply, ws.splat_file],
        "render": [ws.renders],
    }[stage]


def stage_inputs(
    ws: Workspace, stage: str, cfg: Config, video: Path | None = None, shot: int | None = None
) -> dict[str, Any]:
    """A fingerprint of what a stage reads."""
    if stage == "frames":  # the video's content, not its path: a moved clip is the same clip
        return {"content": fingerprint_file(video), "shot": shot}
    attr, command = _NEEDS[stage]
    path = getattr(ws, attr)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        raise MissingStageError(
            f"{path} is missing, so `{stage}` cannot run", f"run `{command} {ws.root}` first"
        )
    prev = STAGES[STAGES.index(stage) - 1]
    inputs = {"previous": fingerprint_paths([p for p in stage_outputs(ws, prev) if p.exists()])}
    if stage == "render" and cfg.render.path.endswith(".json"):  # a user-edited camera path
        path_file = Path(cfg.render.path)
        inputs["path_file"] = fingerprint_file(path_file) if path_file.is_file() else None
    return inputs


@dataclass
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: str  # "ran" or "skipped"
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def is_up_to_date(ws: Workspace, stage: str, cfg: Config, inputs: dict[str, Any]) -> bool:
    """Whether the stage's manifest matches its configuration, inputs and outputs."""
    m = ws.read_manifest(stage)
    if m is None:
        return False
    outputs = stage_outputs(ws, stage)
    return (
        m.get("vid3d_version") == __version__
        and m.get("config_hash") == cfg.section_hash(stage)
        and m.get("inputs") == inputs
        and all(p.exists() for p in outputs)
        and m.get("output_fingerprint") == fingerprint_paths(outputs)
    )


def _stage_function(stage: str) -> Callable[..., dict[str, Any]]:
    from vid3d.stages import frames, poses, render, splat

    return {"frames": frames.run, "poses": poses.run, "splat": splat.run, "render": render.run}[stage]


def run_stage(
    ws: Workspace,
    stage: str,
    cfg: Config,
    *,
    force: bool = False,
    video: Path | None = None,
    shot: int | None = None,
    reporter: Reporter = NULL_REPORTER,
) -> StageOutcome:
    """Run one stage unless it is up to date; write its manifest and ``vid3d.toml``.

    The stage runs as one transaction (:func:`vid3d.transaction.stage_transaction`): if
    it fails, the workspace is left exactly as it was. The caller holds the workspace
    lock (:func:`run_pipeline` does).

    Args:
        ws: The workspace.
        stage: One of :data:`STAGES`.
        cfg: The whole configuration (the stage reads its own section).
        force: Run even when up to date, afresh (training does not resume).
        video: The input video (frames stage only).
        shot: Which shot of the video to use (frames stage only; None = the longest).
    """
    inputs = stage_inputs(ws, stage, cfg, video, shot)
    if not force and is_up_to_date(ws, stage, cfg, inputs):
        reporter.log(f"{stage}: up to date, skipped")
        m = ws.read_manifest(stage) or {}
        return StageOutcome(stage, "skipped", 0.0, m.get("metrics", {}))
    fn = _stage_function(stage)
    with stage_transaction(ws, stage):
        ws.manifest_path(stage).unlink(missing_ok=True)
        t0 = time.perf_counter()
        if stage == "frames":
            metrics = fn(video, ws, cfg, reporter, shot=shot)
        elif stage == "splat":
            metrics = fn(ws, cfg, reporter, force=force)
        else:
            metrics = fn(ws, cfg, reporter)
        seconds = time.perf_counter() - t0
        outputs = stage_outputs(ws, stage)
        write_json(
            ws.manifest_path(stage),
            {
                "stage": stage,
                "vid3d_version": __version__,
                "config_hash": cfg.section_hash(stage),
                "inputs": inputs,
                "outputs": [p.relative_to(ws.root).as_posix() for p in outputs],
                "output_fingerprint": fingerprint_paths(outputs),
                "seconds": seconds,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "metrics": metrics,
            },
        )
        _save_config(ws, cfg, stage)
    return StageOutcome(stage, "ran", seconds, metrics)


def _save_config(ws: Workspace, cfg: Config, stage: str) -> None:
    """Record in ``vid3d.toml`` the configuration a stage has just succeeded with.

    The other stages' sections keep the values of their own last success, so the file
    always describes the results that are in the workspace.
    """
    saved = None
    if ws.config_toml.is_file():
        try:
            saved = load_config_file(ws.config_toml)
        except Vid3dError:
            saved = None
    merged = copy.deepcopy(saved if saved is not None else cfg)
    setattr(merged, stage, copy.deepcopy(getattr(cfg, stage)))
    merged.preset, merged.device = cfg.preset, cfg.device
    write_text(ws.config_toml, dump_config(merged))


def check_video(video: Path | None) -> Path:
    """The input video's path, or an :class:`InputError` that says what is wrong with it."""
    if video is None:
        raise InputError("no input video given", "give the video's path: vid3d frames VIDEO --out DIR")
    video = Path(video)
    if video.is_dir():
        raise InputError(
            f"{video} is a folder, not a video",
            f"to reconstruct every video in it, run `vid3d batch {video}`",
        )
    if not video.exists():
        raise InputError(f"video {video} does not exist", "check the path")
    if not video.is_file():
        raise InputError(f"{video} is not a regular file", "give the path of a video file")
    try:
        with open(video, "rb"):
            pass
    except OSError as e:
        raise InputError(f"cannot read {video}: {e.strerror}", "check the file's permissions") from e
    return video


def run_pipeline(
    ws: Workspace,
    cfg: Config,
    stages: tuple[str, ...] = STAGES,
    *,
    video: Path | None = None,
    shot: int | None = None,
    force: bool = False,
    reporter: Reporter = NULL_REPORTER,
    command: str | None = None,
) -> list[StageOutcome]:
    """Run stages in order, skipping those that are up to date, then write the report.

    The configuration is validated before anything runs. A workspace that is up to date
    is not written at all. Otherwise the run holds the workspace's lock; each stage is a
    transaction, so a failure leaves the stages before it done and the rest of the
    workspace as it was; a failed run that created the folder removes it again.

    Args:
        command: How the lock names this run to a second writer. Default: the stages.

    Raises:
        Vid3dError: A bad input or configuration, a busy or foreign folder, a stage failure.
    """
    validate(cfg)
    if "frames" in stages:
        video = check_video(video)
    existed = ws.root.exists()
    claim(ws, new="frames" in stages)
    if not force and ws.report_json.is_file() and not ws.journal.exists():
        outcomes = _skipped_if_up_to_date(ws, cfg, stages, video, shot)
        if outcomes is not None:
            for o in outcomes:
                reporter.log(f"{o.stage}: up to date, skipped")
            return outcomes
    outcomes: list[StageOutcome] = []
    try:
        with locked(ws, command or f"vid3d {' '.join(stages)}"):
            try:
                with reporter.task("vid3d", total=len(stages)) as overall:
                    for i, stage in enumerate(stages):
                        overall.update(info=f"stage {i + 1}/{len(stages)}: {stage}")
                        outcomes.append(
                            run_stage(ws, stage, cfg, force=force, video=video, shot=shot, reporter=reporter)
                        )
                        overall.advance()
            except BaseException:
                if any(o.status == "ran" for o in outcomes):
                    try:  # the report shows the stages that did finish
                        write_report(ws)
                    except (OSError, Vid3dError):
                        pass
                raise
            if any(o.status == "ran" for o in outcomes) or not ws.report_json.is_file():
                write_report(ws)
    except BaseException:
        if not existed and not any(o.status == "ran" for o in outcomes):
            shutil.rmtree(ws.root, ignore_errors=True)  # made by this run, and nothing in it
        raise
    return outcomes


def _skipped_if_up_to_date(
    ws: Workspace, cfg: Config, stages: tuple[str, ...], video: Path | None, shot: int | None
) -> list[StageOutcome] | None:
    """The outcomes of a run in which every stage is up to date, else None."""
    outcomes = []
    for stage in stages:
        try:
            inputs = stage_inputs(ws, stage, cfg, video, shot)
        except Vid3dError:
            return None
        if not is_up_to_date(ws, stage, cfg, inputs):
            return None
        outcomes.append(
            StageOutcome(stage, "skipped", 0.0, (ws.read_manifest(stage) or {}).get("metrics", {}))
        )
    return outcomes


def reconstruct(
    video: Path,
    ws: Workspace,
    cfg: Config,
    *,
    shot: int | None = None,
    force: bool = False,
    reporter: Reporter = NULL_REPORTER,
    command: str | None = None,
) -> list[StageOutcome]:
    """Video in, splats and an orbit video out: every stage in order."""
    return run_pipeline(
        ws,
        cfg,
        STAGES,
        video=video,
        shot=shot,
        force=force,
        reporter=reporter,
        command=command or "vid3d reconstruct",
    )


def write_report(ws: Workspace) -> dict[str, Any]:
    """Gather the stage manifests into ``report.json`` and ``report.html``."""
    stages = {}
    for stage in STAGES:
        m = ws.read_manifest(stage)
        if m is not None:
            stages[stage] = {"seconds": m["seconds"], "finished": m["finished"], "metrics": m["metrics"]}
    report = json_safe(
        {
            "vid3d_version": __version__,
            "workspace": ws.root.name,
            "stages": stages,
            "total_seconds": sum(s["seconds"] for s in stages.values()),
            "verdict": verdict.combine(
                *(stages.get(st, {}).get("metrics", {}).get("verdict") for st in ("frames", "poses"))
            ),
        }
    )
    write_json(ws.report_json, report)
    sheets = {}
    for name in _rendered_videos(report):
        sheet = ws.renders / Path(name).with_suffix(".sheet.png")
        if sheet.is_file():  # inlined: the page stays one file
            sheets[name] = base64.b64encode(sheet.read_bytes()).decode("ascii")
    write_text(ws.report_html, _report_html(report, sheets))
    return report


def _report_html(report: dict[str, Any], sheets: dict[str, str] | None = None) -> str:
    """The page: verdict, videos with their contact sheets (``sheets``: video name ->
    base64 PNG), training curve, the stages' figures and report.json."""
    sheets = sheets or {}
    rows = []
    for stage, s in report["stages"].items():
        shown = {k: v for k, v in s["metrics"].items() if not isinstance(v, (list, dict))}
        cells = "<br>".join(f"<b>{html.escape(str(k))}</b>: {html.escape(_fmt(v))}" for k, v in shown.items())
        rows.append(f"<tr><td>{stage}</td><td>{s['seconds']:.1f} s</td><td>{cells}</td></tr>")
    videos = "".join(
        f'<video src="renders/{p}" controls loop muted width="640"></video>'
        + (
            f'<p><img alt="frames of {html.escape(p)}" style="max-width:100%" '
            f'src="data:image/png;base64,{sheets[p]}"></p>'
            if p in sheets
            else ""
        )
        for p in _rendered_videos(report)
    )
    videos += _path_line(report["stages"].get("render", {}).get("metrics", {}))
    v = report.get("verdict") or {"level": "ok", "reasons": []}
    said = "".join(f"<li>{html.escape(r['message'])}</li>" for r in v["reasons"])
    videos = f"<p><b>Verdict: {html.escape(v['level'])}</b></p><ul>{said}</ul>" + videos
    history = report["stages"].get("splat", {}).get("metrics", {}).get("history") or []
    videos += _training_curve(history)
    return f"""<!doctype html><meta charset="utf-8"><title>vid3d report</title>
<style>body{{font-family:sans-serif;margin:2em}}
td{{vertical-align:top;padding:.4em;border-bottom:1px solid #ddd}}</style>
<h1>vid3d report</h1><p>{html.escape(report["workspace"])} · vid3d {report["vid3d_version"]} ·
{report["total_seconds"]:.1f} s</p>{videos}
<table><tr><th>stage</th><th>time</th><th>figures</th></tr>{"".join(rows)}</table>
<details><summary>report.json</summary>
<pre>{html.escape(json.dumps(report, indent=1)[:200000])}</pre></details>
"""


def _path_line(render: dict[str, Any]) -> str:
    """The camera path the video took and how well the clip covers it, in one paragraph."""
    choice, cov = render.get("choice") or {}, render.get("coverage") or {}
    said = []
    if choice:
        said.append(
            f"Camera path: {choice.get('kind')}, {choice.get('amount', 1):.0%} of full size "
            f"({choice.get('reason')})"
        )
    if cov:
        said.append(
            f"coverage {cov['mean']:.0%} of the pixels on average, {cov['worst']:.0%} in the "
            f"worst frame ({cov['worst_frame']}): the share the clip observed well"
        )
    return f"<p>{html.escape('; '.join(said))}.</p>" if said else ""


def _training_curve(history: list[dict[str, Any]]) -> str:
    """An inline SVG of held-out PSNR over the training steps, and the numbers under it."""
    points = [h for h in history if isinstance(h.get("psnr"), (int, float))]
    if len(points) < 2:
        return ""
    W, H, pad = 640, 220, 40
    steps = [h["step"] for h in points]
    series = {"held-out PSNR": [h["psnr"] for h in points]}
    if any(h.get("psnr_raw") not in (None, h["psnr"]) for h in points):
        series["uncorrected"] = [h.get("psnr_raw", h["psnr"]) for h in points]
    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    lo, hi = math.floor(lo), math.ceil(hi) + (1 if math.ceil(hi) == math.floor(lo) else 0)
    x = lambda st: pad + (W - 2 * pad) * st / max(steps[-1], 1)  # noqa: E731
    y = lambda v: H - pad - (H - 2 * pad) * (v - lo) / (hi - lo)  # noqa: E731
    lines = []
    for (name, vals), colour in zip(series.items(), ("#1f77b4", "#aaaaaa")):
        pts = " ".join(f"{x(st):.1f},{y(v):.1f}" for st, v in zip(steps, vals))
        lines.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{name}</title></polyline>"
        )
    axes = (
        f'<text x="{pad}" y="{pad - 10}">{hi} dB</text><text x="{pad}" y="{H - pad + 15}">'
        f'{lo} dB</text><text x="{W - pad}" y="{H - pad + 15}" text-anchor="end">step '
        f'{steps[-1]}</text><rect x="{pad}" y="{pad}" width="{W - 2 * pad}" '
        f'height="{H - 2 * pad}" fill="none" stroke="#ddd"/>'
    )
    rows = "".join(
        f"<tr><td>{h['step']}</td><td>{_fmt(h['psnr'])}</td><td>{_fmt(h.get('psnr_raw', ''))}</td>"
        f"<td>{_fmt(h.get('ssim', ''))}</td><td>{_fmt(h.get('loss', ''))}</td>"
        f"<td>{h.get('gaussians', '')}</td><td>{_fmt(h.get('seconds', ''))}</td></tr>"
        for h in points
    )
    return (
        f'<h2>Training</h2><svg width="{W}" height="{H}" font-size="12" '
        f'font-family="sans-serif">{axes}{"".join(lines)}</svg>'
        f"<table><tr><th>step</th><th>held-out PSNR</th><th>uncorrected</th><th>SSIM</th>"
        f"<th>loss</th><th>Gaussians</th><th>seconds</th></tr>{rows}</table>"
    )


def _rendered_videos(report: dict[str, Any]) -> list[str]:
    render = report["stages"].get("render", {}).get("metrics", {})
    return [Path(p).name for p in render.get("outputs", []) if str(p).endswith(".mp4")]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
