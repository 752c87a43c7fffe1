"""The stage runner alone, with small fake stages: skip, re-run, force, undo, lock, copies.

The fake stages write files the way the real ones do (a new file renamed into place) and
record each call, so these tests run in milliseconds and need no video.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vid3d import pipeline
from vid3d.config import apply_overrides, load_config, load_config_file
from vid3d.errors import InputError, WorkspaceBusyError, WorkspaceError
from vid3d.transaction import journal_stage, locked, recover, stage_transaction
from vid3d.workspace import Workspace, atomic_dir, write_text

CALLS: list[str] = []


class Boom(Exception):
    pass


def _fake_stages(fail: str | None = None):
    def frames(video, ws, cfg, reporter, shot=None):
        CALLS.append("frames")
        with atomic_dir(ws.images) as d:
            for i in range(3):
                (d / f"{i:03d}.jpg").write_bytes(
                    Path(video).read_bytes() + bytes([i, cfg.frames.jpeg_quality])
                )
        write_text(ws.frames_json, json.dumps({"q": cfg.frames.jpeg_quality}))
        return {"kept": 3}

    def poses(ws, cfg, reporter):
        CALLS.append("poses")
        with atomic_dir(ws.sparse0) as d:
            (d / "cameras.bin").write_bytes(
                b"".join(p.read_bytes() for p in sorted(ws.images.iterdir())) + bytes([cfg.poses.seed])
            )
        write_text(ws.poses_json, json.dumps({"seed": cfg.poses.seed}))
        if fail == "poses":
            raise Boom("poses failed half way")
        return {"registered": 3}

    def splat(ws, cfg, reporter, force=False):
        CALLS.append("splat")
        for path in (ws.ckpt, ws.ply, ws.splat_file):
            write_text(path, f"{cfg.splat.seed} {(ws.sparse0 / 'cameras.bin').read_bytes()!r}")
        if fail == "splat":
            raise Boom("training failed")
        return {"psnr": float("nan"), "steps": 1}

    def render(ws, cfg, reporter):
        CALLS.append("render")
        with atomic_dir(ws.renders) as d:
            (d / "orbit.mp4").write_text(ws.ckpt.read_text() + str(cfg.render.crf))
        return {"outputs": ["renders/orbit.mp4"]}

    return {"frames": frames, "poses": poses, "splat": splat, "render": render}


@pytest.fixture()
def fake(monkeypatch, tmp_path):
    CALLS.clear()
    stages = {"fail": None}
    monkeypatch.setattr(pipeline, "_stage_function", lambda s: _fake_stages(stages["fail"])[s])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"a video")
    return stages, video


def snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".vid3d/lock" not in p.as_posix()
    }


def run(video, ws, *sets, force=False):
    cfg = load_config("default", list(sets))
    return [o.status for o in pipeline.reconstruct(video, ws, cfg, force=force)]


@pytest.fixture()
def reconstructed(fake, tmp_path):
    """A workspace after a first full run of the fake stages: ``(stages, video, ws)``, with
    ``CALLS`` cleared."""
    stages, video = fake
    ws = Workspace(tmp_path / "ws")
    run(video, ws)
    CALLS.clear()
    return stages, video, ws


def test_first_run_runs_all_and_second_run_writes_nothing(fake, tmp_path):
    _, video = fake
    ws = Workspace(tmp_path / "ws")
    assert run(video, ws) == ["ran"] * 4
    before = snapshot(ws.root)
    CALLS.clear()
    assert run(video, ws) == ["skipped"] * 4 and CALLS == []
    assert snapshot(ws.root) == before  # not even the report is rewritten
    # a stage's figures survive in strict JSON: NaN became null
    report = json.loads(ws.report_json.read_text(), parse_constant=pytest.fail)
    assert report["stages"]["splat"]["metrics"]["psnr"] is None


def test_a_changed_section_reruns_its_stage_and_those_after(reconstructed):
    _, video, ws = reconstructed
    assert run(video, ws, "splat.seed=5") == ["skipped", "skipped", "ran", "ran"]
    assert CALLS == ["splat", "render"]
    assert load_config_file(ws.config_toml).splat.seed == 5
    CALLS.clear()
    # a re-run whose outputs are byte-identical leaves the next stages alone
    assert run(video, ws, "splat.seed=5", force=False) == ["skipped"] * 4
    CALLS.clear()
    assert run(video, ws, "splat.seed=5", "render.crf=20") == ["skipped"] * 3 + ["ran"]


def test_a_changed_input_reruns_the_stage_that_reads_it(reconstructed):
    _, video, ws = reconstructed
    (ws.images / "001.jpg").write_bytes(b"edited by hand")
    # frames notices its output changed and runs again; it writes the same bytes as
    # before, so the stages after it (which fingerprint contents) have nothing to redo
    assert run(video, ws) == ["ran", "skipped", "skipped", "skipped"]
    (ws.sparse0 / "cameras.bin").write_bytes(b"another model")
    assert run(video, ws) == ["skipped", "ran", "skipped", "skipped"]
    # a different video (by content, not by name) runs everything
    video.write_bytes(b"another video")
    CALLS.clear()
    assert run(video, ws) == ["ran"] * 4


def test_force_runs_every_stage(reconstructed):
    _, video, ws = reconstructed
    assert run(video, ws, force=True) == ["ran"] * 4 and len(CALLS) == 4


def test_a_failing_stage_is_undone_and_its_options_are_not_kept(reconstructed):
    stages, video, ws = reconstructed
    before = snapshot(ws.root)
    stages["fail"] = "poses"
    with pytest.raises(Boom):
        run(video, ws, "poses.seed=9", "splat.seed=9")
    assert snapshot(ws.root) == before
    assert load_config_file(ws.config_toml).poses.seed == 0
    stages["fail"] = None
    CALLS.clear()
    assert run(video, ws) == ["skipped"] * 4


def test_stages_before_a_failure_stay_done(reconstructed):
    stages, video, ws = reconstructed
    stages["fail"] = "splat"
    with pytest.raises(Boom):
        run(video, ws, "poses.seed=3", "splat.seed=3")
    saved = load_config_file(ws.config_toml)
    assert saved.poses.seed == 3 and saved.splat.seed == 0  # poses succeeded, splat did not
    stages["fail"] = None
    CALLS.clear()
    assert run(video, ws, "poses.seed=3") == ["skipped", "skipped", "ran", "ran"]


def test_a_failed_first_run_leaves_no_folder(fake, tmp_path):
    stages, video = fake
    stages["fail"] = "poses"
    ws = Workspace(tmp_path / "new")
    with pytest.raises(Boom):
        run(video, ws)
    # frames finished, so the folder stays with it
    assert (ws.meta / "frames.json").is_file() and not ws.sparse0.exists()
    ws2 = Workspace(tmp_path / "new2")
    with pytest.raises(InputError, match="does not exist"):
        run(tmp_path / "missing.mp4", ws2)
    assert not ws2.root.exists()


def test_a_journal_left_by_a_killed_process_is_undone_first(reconstructed):
    _, video, ws = reconstructed
    before = snapshot(ws.root)
    # what a process killed inside the render stage leaves behind
    with locked(ws):
        ctx = stage_transaction(ws, "render")
        ctx.__enter__()
        shutil.rmtree(ws.renders)
        write_text(ws.renders / "half.mp4", "half a video")
        write_text(ws.root / ".orbit.mp4.tmp-1234", "temp")
        assert journal_stage(ws) == "render"
        # (the process dies here: the journal stays)
    assert recover(ws) is True
    assert snapshot(ws.root) == before
    assert journal_stage(ws) is None and recover(ws) is False


def test_copied_workspace_skips_everything(reconstructed, tmp_path):
    _, video, ws = reconstructed
    copy = Workspace(tmp_path / "elsewhere" / "copy")
    shutil.copytree(ws.root, copy.root, copy_function=shutil.copy)  # new inodes and times
    moved_video = tmp_path / "renamed.mp4"
    shutil.copy(video, moved_video)
    CALLS.clear()
    assert run(moved_video, copy) == ["skipped"] * 4 and CALLS == []


def test_lock_is_reentrant_in_a_process_and_exclusive_across_processes(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.meta.mkdir(parents=True)
    with locked(ws, "vid3d test"):
        with locked(ws, "vid3d test"):  # a batch worker holds it around reconstruct
            pass
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
            "from vid3d.transaction import locked\nfrom vid3d.workspace import Workspace\n"
            "from vid3d.errors import WorkspaceBusyError\n"
            f"try:\n    locked(Workspace({str(ws.root)!r})).__enter__()\n"
            "except WorkspaceBusyError as e:\n    print(e.message)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert "in use by `vid3d test`" in out.stdout, out.stdout + out.stderr
    # released: another process takes it
    with open(ws.lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_only_empty_folders_and_workspaces_are_written(fake, tmp_path):
    _, video = fake
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="not a vid3d workspace"):
        run(video, Workspace(tmp_path / "mine"))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert run(video, Workspace(tmp_path / "empty")) == ["ran"] * 4
    # an older vid3d's workspace (manifests, no marker) is recognised and marked
    old = Workspace(tmp_path / "old")
    shutil.copytree(tmp_path / "empty", old.root)
    old.marker.unlink()
    CALLS.clear()
    assert run(video, old) == ["skipped"] * 4 and old.marker.is_file()


def test_busy_workspace_is_refused(reconstructed):
    _, video, ws = reconstructed
    code = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "from vid3d.transaction import locked\nfrom vid3d.workspace import Workspace\n"
        f"with locked(Workspace({str(ws.root)!r}), 'vid3d train'):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusyError, match="in use by `vid3d train`"):
            run(video, ws, "render.crf=30")
    finally:
        holder.kill()
        holder.wait()
    cfg = apply_overrides(load_config("default"), ["render.crf=30"])
    assert [o.status for o in pipeline.reconstruct(video, ws, cfg)][-1] == "ran"
