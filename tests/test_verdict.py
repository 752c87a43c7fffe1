"""The verdict on a clip (vid3d.verdict): its checks on figures, and on real clips."""

from __future__ import annotations

import json

import pytest

from tests.conftest import data_path
from vid3d import verdict
from vid3d.config import Config, load_config
from vid3d.errors import NoParallaxError, NotEnoughFramesError, NotEnoughMotionError, TooMuchMotionError
from vid3d.pipeline import run_pipeline
from vid3d.progress import NULL_REPORTER, CollectingReporter
from vid3d.stages import frames
from vid3d.workspace import Workspace

DRONE = "edge/drone_with_scene_cut.mp4"  # a flight around high-rises, a cut to a beach at 9.17 s
COGVIDEO = "ai_video/cogvideox_suv_dirt_road.mp4"

GOOD = {
    "travel": 0.3,
    "frames": 40,
    "shot_seconds": 6.0,
    "shots": 1,
    "parallax_score": 0.6,
    "rotation_only": 0.0,
}


def judge(**changes):
    reporter = CollectingReporter(NULL_REPORTER)
    return verdict.judge_frames({**GOOD, **changes}, Config().frames, reporter), reporter.warnings


def test_a_good_clip_is_ok_with_its_figures():
    v, warnings = judge()
    assert v == {"level": "ok", "reasons": [], "figures": GOOD} and warnings == []


def test_hopeless_clips_stop_with_what_would_work():
    with pytest.raises(NotEnoughMotionError, match="barely moves") as e:
        judge(travel=0.001)
    assert "travels around" in e.value.hint
    with pytest.raises(NoParallaxError, match="homography explains 90%") as e:
        judge(rotation_only=0.9, parallax_score=0.02)
    assert "not a pan" in e.value.hint
    with pytest.raises(NotEnoughFramesError, match="only 2 distinct frames") as e:
        judge(frames=2)
    assert "longer clip" in e.value.hint


def test_doubtful_clips_go_on_with_a_warning_each():
    v, warnings = judge(frames=8, shot_seconds=1.0, shots=3)
    assert v["level"] == "doubtful"
    assert [(r["check"], r["level"]) for r in v["reasons"]] == [("short", "doubtful"), ("cuts", "note")]
    assert len(warnings) == 1 and "short" in warnings[0]  # a cut is only noted
    v, _ = judge(rotation_only=0.4)  # a minority of pairs without parallax is fine
    assert v["level"] == "ok"


def test_moving_share_is_judged_against_the_limit():
    fc = Config().frames  # max_moving_fraction 0.5
    v = verdict.new()
    verdict.judge_motion(v, {"mean": 0.1, "max": 0.3}, fc, NULL_REPORTER)
    assert v["level"] == "ok" and v["figures"] == {"moving_mean": 0.1, "moving_max": 0.3}
    verdict.judge_motion(v, {"mean": 0.3, "max": 0.6}, fc, NULL_REPORTER)
    assert v["level"] == "doubtful" and v["reasons"][0]["check"] == "moving"
    with pytest.raises(TooMuchMotionError, match="moves on its own"):
        verdict.judge_motion(v, {"mean": 0.6, "max": 0.9}, fc, NULL_REPORTER)


def poses_metrics(focal: float, calibrated: float, pairs: int = 50, registered: int = 49) -> dict:
    return {
        "registered": registered,
        "total": 49,
        "registered_fraction": registered / 49,
        "focal_px": focal,
        "fov_deg": 60.0,
        "calibration": {"focal": calibrated, "pairs": pairs},
    }


def test_poses_focal_drift_and_missing_frames_are_doubtful():
    # the CogVideoX clip's first run: bundle adjustment took the focal from 533 px to 229
    v = verdict.judge_poses(poses_metrics(229.4, 533.2), NULL_REPORTER)
    assert v["level"] == "doubtful" and [r["check"] for r in v["reasons"]] == ["focal"]
    assert v["figures"]["focal_drift"] == pytest.approx(533.2 / 229.4, abs=1e-3)
    assert verdict.judge_poses(poses_metrics(560, 533.2), NULL_REPORTER)["level"] == "ok"
    # a self-calibration on few pairs is not trusted against bundle adjustment
    assert verdict.judge_poses(poses_metrics(229.4, 533.2, pairs=5), NULL_REPORTER)["level"] == "ok"
    # an earlier bundled example: the pairs implied 157 px, below the plausible range, so mapping
    # started from the range's edge (192 px) and reached the true 351 px: no doubt
    m = poses_metrics(351.25, 156.65, pairs=233)
    m["calibration"]["initial_focal"] = 192.0
    assert verdict.judge_poses(m, NULL_REPORTER)["level"] == "ok"
    m["calibration"]["initial_focal"] = 156.65  # a calibration that was used: doubtful
    assert verdict.judge_poses(m, NULL_REPORTER)["level"] == "doubtful"
    v = verdict.judge_poses(poses_metrics(533, 533, registered=30), NULL_REPORTER)
    assert [r["check"] for r in v["reasons"]] == ["registered"] and "30/49" in v["reasons"][0]["message"]


def test_combine_keeps_the_worst_level_and_every_reason():
    a, _ = judge(shots=2)
    b = verdict.judge_poses(poses_metrics(229.4, 533.2), NULL_REPORTER)
    v = verdict.combine(a, None, b)
    assert v["level"] == "doubtful" and [r["check"] for r in v["reasons"]] == ["cuts", "focal"]
    assert v["figures"]["travel"] == 0.3 and v["figures"]["focal_drift"] > 2


# ----------------------------------------------------------------------------- real clips


def test_drone_flight_is_ok_and_its_cut_noted_in_the_report(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (outcome,) = run_pipeline(ws, load_config("fast"), ("frames",), video=data_path(DRONE))
    v = outcome.metrics["verdict"]
    assert v["level"] == "ok" and [r["check"] for r in v["reasons"]] == ["cuts"]
    assert v["figures"]["parallax_score"] > 0.3 and v["figures"]["rotation_only"] < 0.2  # measured 0.64, 0.08
    assert json.loads(ws.frames_json.read_text())["summary"]["verdict"] == v
    report = json.loads(ws.report_json.read_text())
    assert report["verdict"] == v  # the poses stage has not run: the frames verdict alone
    assert "Verdict: ok" in ws.report_html.read_text() and "2 shots" in ws.report_html.read_text()


def test_beach_shot_from_high_above_has_no_parallax(tmp_path):
    # 0.8 s of a drone high above a beach: one plane, a homography explains every pair
    with pytest.raises(NoParallaxError):
        frames.run(data_path(DRONE), Workspace(tmp_path / "ws"), load_config("fast"), shot=1)
    assert not (tmp_path / "ws").exists()


def test_generated_clip_is_ok(tmp_path):
    m = frames.run(data_path(COGVIDEO), Workspace(tmp_path / "ws"), load_config("fast"))
    assert m["verdict"]["level"] == "ok" and m["verdict"]["figures"]["parallax_score"] > 0.3  # measured 0.50
