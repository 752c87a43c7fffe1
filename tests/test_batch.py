"""Batch reconstruction: finding videos, naming workspaces, per-video configuration, and
whole batches of real clips run locally, killed and resumed, and on a local Ray instance."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import data_path
from vid3d.batch import (
    BUSY,
    CANCELLED,
    DONE,
    FAILED,
    SKIPPED,
    BatchSpec,
    NullMonitor,
    VideoResult,
    find_videos,
    plan_batch,
    run_batch,
    video_config,
    workspace_name,
    write_summary,
)
from vid3d.cli import app
from vid3d.errors import ConfigError, InputError

runner = CliRunner()
GOOD = ("re10k/videos/0bf152ef84195293.mp4", "re10k/videos/0c11dbe781b1c11c.mp4")  # 16 frames
# The smallest run that still goes through every stage.
SETS = [
    "splat.steps=30",
    "splat.eval_every=30",
    "render.seconds=1",
    "render.fps=4",
    "render.resolution=128x72",
]
OPTIONS = ["--preset", "fast", "--device", "cpu"] + [a for s in SETS for a in ("--set", s)]
STAGES = ("frames", "poses", "splat", "render")


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _clips(folder: Path, broken: bool = True) -> Path:
    """Two good 16-frame clips and, with ``broken``, a text file named .mp4."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in zip(("a.mp4", "b.mp4"), GOOD):
        shutil.copy(data_path(src), folder / name)
    if broken:
        _touch(folder / "broken.mp4", "this is not a video\n")
    return folder


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _manifests(ws: Path) -> dict[str, int]:
    return {
        s: (ws / ".vid3d" / f"{s}.json").stat().st_mtime_ns
        for s in STAGES
        if (ws / ".vid3d" / f"{s}.json").is_file()
    }


def _ws(out: Path, video: str) -> Path:
    (ws,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(Path(video).stem + "-")]
    return ws


# --------------------------------------------------------------------------- fast unit tests


def test_find_videos(tmp_path: Path):
    d = tmp_path / "videos"
    top = ["a.mp4", "b.MOV", "c.m4v", "d.webm", "e.mkv", "f.avi"]  # one of each suffix
    sub = ["sub/deeper/h.mov", "sub/g.mp4"]
    for name in (
        *top,
        *sub,
        "notes.txt",
        ".hidden.mp4",
        ".cache/i.mp4",
        "ws/renders/orbit.mp4",
        "results/x-1234abcd/renders/orbit.mp4",
    ):
        _touch(d / name)
    (d / "ws" / ".vid3d").mkdir()  # a workspace inside the folder: its renders are not inputs

    def rel(paths):
        return [p.relative_to(d).as_posix() for p in paths]

    assert rel(find_videos(d)) == top
    assert rel(find_videos(d, recursive=True, exclude=[d / "results"])) == top + sub
    assert rel(find_videos(d, recursive=True, glob="sub/*")) == sub
    assert rel(find_videos(d, recursive=True, glob="*.mov")) == ["sub/deeper/h.mov"]
    with pytest.raises(InputError):
        find_videos(tmp_path / "missing")


def test_workspace_names_are_stable_and_unique(tmp_path: Path):
    d = tmp_path
    videos = [
        d / "clip.mp4",
        d / "clip.mov",
        d / "a" / "clip.mp4",
        d / "b" / "clip.mp4",
        d / "my clip (1).mp4",
    ]
    names = [workspace_name(v, d) for v in videos]
    assert len(set(names)) == len(names)
    assert all(n.startswith("clip-") for n in names[:4]) and names[4].startswith("my_clip__1_-")
    # a name depends only on the video's path relative to the batch folder
    assert workspace_name(d / "a" / "clip.mp4", d) == names[2]
    elsewhere = tmp_path / "elsewhere"
    assert workspace_name(elsewhere / "a" / "clip.mp4", elsewhere) == names[2]


def test_per_video_config_precedence(tmp_path: Path):
    d = tmp_path
    for name in ("top.mp4", "sub/one.mp4", "sub/two.mp4", "sub/deep/three.mp4"):
        _touch(d / name)
    _touch(d / "vid3d.toml", "[splat]\nsteps = 100\n[frames]\nmax_size = 400\n")
    _touch(d / "sub" / "vid3d.toml", "[splat]\nsteps = 200\n")
    _touch(d / "sub" / "one.vid3d.toml", "[splat]\nsteps = 300\n")
    _touch(d / "sub" / "deep" / "vid3d.toml", 'preset = "fast"\n')

    def cfg(name, overrides=()):
        return video_config(d / name, d, "default", list(overrides))[0]

    assert (cfg("top.mp4").splat.steps, cfg("top.mp4").frames.max_size) == (100, 400)
    assert cfg("sub/two.mp4").splat.steps == 200  # inner folder over outer folder
    assert cfg("sub/one.mp4").splat.steps == 300  # the video's own file over its folder's
    assert cfg("sub/one.mp4", ["splat.steps=5"]).splat.steps == 5  # --set over every file
    # a file naming a preset replaces the base; the outer files still apply on top of it
    three, files = video_config(d / "sub/deep/three.mp4", d, "default", [])
    assert three.preset == "fast" and three.splat.sh_degree == 1  # from fast.toml
    assert three.splat.steps == 200 and three.frames.max_size == 400
    assert [f.relative_to(d).as_posix() for f in files] == [
        "vid3d.toml",
        "sub/vid3d.toml",
        "sub/deep/vid3d.toml",
    ]

    _touch(d / "sub" / "two.vid3d.toml", "[splat]\nstepz = 1\n")
    with pytest.raises(ConfigError, match="two.vid3d.toml"):
        cfg("sub/two.mp4")
    _touch(d / "sub" / "two.vid3d.toml", "[splat\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg("sub/two.mp4")


def test_plan_and_summary_files(tmp_path: Path):
    d = tmp_path / "videos"
    _touch(d / "x.mp4", "?")
    _touch(d / "y.mov", "?")
    jobs = plan_batch(BatchSpec(d, tmp_path / "out", preset="fast", overrides=("splat.steps=7",)))
    assert [j.rel for j in jobs] == ["x.mp4", "y.mov"]
    assert all(j.config.splat.steps == 7 and j.workspace.parent == (tmp_path / "out").resolve() for j in jobs)
    rows = [
        VideoResult("x.mp4", jobs[0].name, DONE, 16, 15, 25.5, 1000, 12.0),
        VideoResult("y.mov", jobs[1].name, FAILED, error='bad, "quoted"', hint="try"),
    ]
    csv_path, json_path = write_summary(rows, tmp_path / "out", {"preset": "fast"})
    got = _rows(tmp_path / "out")
    assert [r["status"] for r in got] == [DONE, FAILED] and got[1]["error"] == 'bad, "quoted"'
    assert got[0]["registered"] == "15" and got[0]["psnr"] == "25.500"
    data = json.loads(json_path.read_text())
    assert data["counts"] == {DONE: 1, FAILED: 1} and len(data["videos"]) == 2
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


def test_no_videos_is_one_error_line(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: no videos in {(tmp_path / 'empty').resolve()} (sub-folders are searched only "
        "with --recursive)"
    ]


def test_a_workspace_locked_by_another_batch_is_busy(tmp_path: Path):
    folder, out = tmp_path / "videos", tmp_path / "out"
    _touch(folder / "x.mp4", "not a video")
    ws = out / workspace_name(folder / "x.mp4", folder)
    (ws / ".vid3d").mkdir(parents=True)
    (ws / ".vid3d" / "workspace.json").write_text("{}")
    with open(ws / ".vid3d" / "lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another vid3d process would
        result = run_batch(BatchSpec(folder, out, overrides=('device="cpu"',)), jobs=1)
    assert [r.status for r in result.rows] == [BUSY] and result.ok
    assert not (ws / "frames.json").exists()


# --------------------------------------------------------------------------- real batches

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def local_batch(tmp_path_factory) -> tuple[Path, Path, object, list[dict[str, str]]]:
    """Two good clips and a broken file, two jobs at a time; and the summary's rows."""
    root = tmp_path_factory.mktemp("batch")
    folder, out = _clips(root / "videos"), root / "results"
    t0 = time.perf_counter()
    result = runner.invoke(app, ["batch", str(folder), "--out", str(out), "--jobs", "2", *OPTIONS])
    print(f"local batch: {time.perf_counter() - t0:.1f} s")
    return folder, out, result, _rows(out) if (out / "summary.csv").is_file() else []


@slow
def test_batch_isolates_the_broken_video(local_batch):
    folder, out, result, _ = local_batch
    assert result.exit_code == 1, result.output
    rows = {r["video"]: r for r in _rows(out)}
    assert list(rows) == ["a.mp4", "b.mp4", "broken.mp4"]
    for name in ("a.mp4", "b.mp4"):
        r = rows[name]
        assert r["status"] == DONE and r["error"] == "", r
        assert int(r["frames"]) >= 14 and int(r["registered"]) >= 14
        assert float(r["psnr"]) > 0 and int(r["gaussians"]) > 100
        ws = out / r["workspace"]
        assert set(_manifests(ws)) == set(STAGES)
        assert (ws / "renders" / "orbit.mp4").is_file() and (ws / "report.json").is_file()
    bad = rows["broken.mp4"]
    assert bad["status"] == FAILED and "video" in bad["error"].lower() and bad["frames"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {DONE: 2, FAILED: 1}
    assert summary["videos"][2]["error_type"] == "VideoError"
    # the table and the failure line
    assert "2 done, 1 failed" in result.output
    assert "error: 1 of 3 videos failed" in result.output


@slow
def test_second_run_skips_finished_videos(local_batch):
    folder, out, _, _ = local_batch
    before = {n: _manifests(_ws(out, n)) for n in ("a.mp4", "b.mp4")}
    result = runner.invoke(app, ["batch", str(folder), "--out", str(out), *OPTIONS])
    assert result.exit_code == 1, result.output  # the broken file fails again
    assert [r["status"] for r in _rows(out)] == [SKIPPED, SKIPPED, FAILED]
    assert {n: _manifests(_ws(out, n)) for n in ("a.mp4", "b.mp4")} == before
    # --fail-fast: the first failure stops the batch (here the only video left to run)
    result = runner.invoke(app, ["batch", str(folder), "--out", str(out), "--fail-fast", *OPTIONS])
    assert result.exit_code == 1 and [r["status"] for r in _rows(out)] == [SKIPPED, SKIPPED, FAILED]


@slow
def test_copied_results_and_videos_rerun_nothing(local_batch, tmp_path: Path):
    folder, out, _, _ = local_batch
    # the whole project moves to another disk: videos and results, without file times
    folder2, out2 = tmp_path / "videos", tmp_path / "results"
    shutil.copytree(folder, folder2, copy_function=shutil.copy)
    shutil.copytree(out, out2, copy_function=shutil.copy)
    before = {n: _manifests(_ws(out2, n)) for n in ("a.mp4", "b.mp4")}
    result = runner.invoke(app, ["batch", str(folder2), "--out", str(out2), *OPTIONS])
    assert result.exit_code == 1, result.output  # the broken file fails again
    assert [r["status"] for r in _rows(out2)] == [SKIPPED, SKIPPED, FAILED]
    assert {n: _manifests(_ws(out2, n)) for n in ("a.mp4", "b.mp4")} == before


def test_batch_refuses_an_output_folder_of_other_files(tmp_path: Path):
    folder, out = tmp_path / "videos", tmp_path / "out"
    _touch(folder / "x.mp4", "not a video")
    _touch(out / "thesis.tex", "mine")
    result = runner.invoke(app, ["batch", str(folder), "--out", str(out)])
    assert result.exit_code == 2 and "thesis.tex" in result.output
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@slow
def test_fail_fast_cancels_the_rest(tmp_path: Path):
    folder = tmp_path / "videos"
    _touch(folder / "0-broken.mp4", "not a video")
    shutil.copy(data_path(GOOD[0]), folder / "1-good.mp4")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["batch", str(folder), "--out", str(out), "--jobs", "1", "--fail-fast", *OPTIONS]
    )
    assert result.exit_code == 1, result.output
    assert [(r["status"], r["error"][:7]) for r in _rows(out)] == [
        (FAILED, "0-broke"),
        (CANCELLED, "not run"),
    ]
    assert not (out / workspace_name(folder / "1-good.mp4", folder)).exists()


class _Killer(NullMonitor):
    """Kills the worker process of one video at its first progress event."""

    def __init__(self, victim: str):
        super().__init__()
        self.victim, self.killed = victim, False

    def event(self, event) -> None:
        if event[0].startswith(self.victim) and not self.killed:
            for pid in _worker_pids():
                os.kill(pid, signal.SIGKILL)
                self.killed = True


def _worker_pids() -> list[int]:
    """This process's multiprocessing children."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"spawn_main" in cmd:
            pids.append(int(stat.parent.name))
    return pids


@slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find workers")
def test_a_crashed_worker_is_a_failure_and_the_batch_goes_on(tmp_path: Path):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(data_path(GOOD[0]), folder / "a.mp4")
    _touch(folder / "broken.mp4", "not a video")
    monitor = _Killer("a-")
    spec = BatchSpec(folder, tmp_path / "out", preset="fast", overrides=(*SETS, 'device="cpu"'))
    result = run_batch(spec, jobs=1, monitor=monitor)
    assert monitor.killed
    a, broken = result.rows
    assert a.status == FAILED and a.error_type == "WorkerCrash" and "SIGKILL" in a.error
    assert broken.status == FAILED and broken.error_type == "VideoError"
    assert not result.ok and [r["status"] for r in _rows(tmp_path / "out")] == [FAILED, FAILED]


def _lock_is_free(ws: Path) -> bool:
    with open(ws / ".vid3d" / "batch.lock", "a+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.lockf(f, fcntl.LOCK_UN)
        return True


@slow
def test_killed_batch_resumes(tmp_path: Path):
    folder, out = _clips(tmp_path / "videos", broken=False), tmp_path / "results"
    cmd = [sys.executable, "-m", "vid3d", "batch", str(folder), "--out", str(out), "--jobs", "1", *OPTIONS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    b_frames = out / workspace_name(folder / "b.mp4", folder) / ".vid3d" / "frames.json"
    try:  # kill the batch (only the batch process) once a is done and b is half-way
        while time.monotonic() < deadline and proc.poll() is None:
            if b_frames.is_file() and DONE in [r["status"] for r in _rows(out)]:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the batch ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    statuses = {r["video"]: r["status"] for r in _rows(out)}
    assert statuses == {"a.mp4": DONE, "b.mp4": "running"}, statuses
    first, second = _ws(out, "a.mp4"), _ws(out, "b.mp4")
    before = _manifests(first)
    partial = _manifests(second)  # stages b finished before the kill
    # the worker died with the batch: nothing holds b's workspace any more
    deadline = time.monotonic() + 10
    while not _lock_is_free(second):
        assert time.monotonic() < deadline, "the killed batch's worker is still running"
        time.sleep(0.2)

    result = runner.invoke(app, ["batch", str(folder), "--out", str(out), *OPTIONS])
    assert result.exit_code == 0, result.output
    rows = {r["video"]: r for r in _rows(out)}
    assert rows["a.mp4"]["status"] == SKIPPED and rows["b.mp4"]["status"] == DONE
    assert _manifests(first) == before
    after = _manifests(second)
    assert set(after) == set(STAGES)
    assert {s: after[s] for s in partial} == partial  # finished stages were not run again
    b = json.loads((out / "summary.json").read_text())["videos"][1]
    assert b["stages_skipped"] == list(partial)


@slow
def test_same_batch_on_ray(local_batch, tmp_path: Path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vid3d[ray]')")
    folder, local_out, _, local_rows = local_batch
    out = tmp_path / "results"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        result = runner.invoke(app, ["batch", str(folder), "--out", str(out), "--ray", *OPTIONS])
        print(f"ray batch: {time.perf_counter() - t0:.1f} s")
    finally:
        ray.shutdown()
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"].startswith("ray")
    ray_rows = _rows(out)
    same = ("video", "workspace", "status", "frames", "registered", "error")
    assert [{k: r[k] for k in same} for r in ray_rows] == [{k: r[k] for k in same} for r in local_rows]
    for lr, rr in zip(local_rows, ray_rows):
        if lr["status"] == DONE:  # training on a different number of threads: close, not equal
            assert abs(float(lr["psnr"]) - float(rr["psnr"])) < 1.5
            assert abs(int(lr["gaussians"]) - int(rr["gaussians"])) <= 0.1 * int(lr["gaussians"])
            assert set(_manifests(out / rr["workspace"])) == set(STAGES)
