"""The CUDA path on a GPU: gsplat's rasterizer against the CPU kernel, training against
CPU training, resume across devices, rendering, host syncs per step and speed.

Every test here is marked ``cuda`` and skipped, with the reason, where PyTorch sees no
CUDA GPU or gsplat's CUDA kernels do not load. On a GPU machine:

    python -m pytest -q -m cuda tests/test_cuda.py

(``bash benchmarks/gpu_check.sh`` installs what that needs and runs it.) The scenes are
small and synthetic, so the file runs in a minute or two.
"""

from __future__ import annotations

import collections
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import RESUME, Interrupt, Recorder, small_config, train_until_stopped
from vid3d.config import SplatConfig
from vid3d.splats.rasterize import RENDER_MODES, prepare_cuda_backend, rasterize


def _skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU: PyTorch sees no CUDA device"
    st = prepare_cuda_backend()  # loads gsplat's kernels (compiles them once if needed)
    if st["state"] != "loaded":
        return f"needs gsplat's CUDA kernels: {st['detail']} ({st['hint']})"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
PARAMS = ("means", "quats", "scales", "opacities", "colors")


# ------------------------------------------------------------------ rasterize(): gsplat vs cpu

W, H = 123, 77  # neither a multiple of the 16-pixel tiles


def _render(scene, bg, device, backend, **kwargs):
    """Render on ``device``, backprop a fixed random weighting of colours and alphas;
    outputs and gradients come back on the CPU, ``info`` as the backend returned it."""
    leaves = {k: v.detach().clone().to(device) for k, v in scene.items()}
    for k in PARAMS:
        leaves[k].requires_grad_()
    bgl = bg.detach().clone().to(device).requires_grad_()
    colors, alphas, info = rasterize(
        *(leaves[k] for k in PARAMS),
        leaves["viewmats"],
        leaves["Ks"],
        W,
        H,
        backgrounds=bgl,
        backend=backend,
        **kwargs,
    )
    g = torch.Generator().manual_seed(123)
    wc = torch.rand(colors.shape, generator=g).to(device)
    wa = torch.rand(alphas.shape, generator=g).to(device)
    ((colors * wc).sum() + (alphas * wa).sum()).backward()
    grads = {k: leaves[k].grad for k in PARAMS}
    grads["means2d"] = info["means2d"].grad
    grads["backgrounds"] = bgl.grad
    cpu = {k: None if v is None else v.detach().cpu() for k, v in grads.items()}
    return colors.detach().cpu(), alphas.detach().cpu(), info, cpu


def _fraction_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> float:
    return ((a - b).abs() <= atol + rtol * b.abs()).float().mean().item()


@pytest.mark.parametrize("render_mode", RENDER_MODES)
@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_gsplat_backend_agrees_with_the_cpu_kernel(sh_degree, rasterize_mode, render_mode):
    """~2k Gaussians, 2 cameras, 123x77 pixels, a background: colours and alphas within
    1e-4 on 99.9% of the pixels, radii equal on 99.9% (never off by more than 1), every
    gradient within 1e-3 of its largest magnitude on 99.9% of its entries, and the same
    ``info`` keys, dtypes and shapes."""
    from tests.test_rasterize import make_scene

    scene = make_scene(2000, W, H, n_cams=2, sh_degree=sh_degree, seed=sh_degree)
    bg = torch.rand(2, 3, generator=torch.Generator().manual_seed(1))
    kw = dict(sh_degree=sh_degree, rasterize_mode=rasterize_mode, render_mode=render_mode)
    c_cpu, a_cpu, info_cpu, g_cpu = _render(scene, bg, CPU, "cpu", **kw)
    c_gpu, a_gpu, info_gpu, g_gpu = _render(scene, bg, CUDA, "gsplat", **kw)

    assert c_gpu.shape == c_cpu.shape and a_gpu.shape == a_cpu.shape
    assert c_gpu.dtype == c_cpu.dtype == torch.float32
    assert a_cpu.max() > 0.9  # the scene covers most pixels
    # depths are 2-6 units: tolerance relative to the value as well
    assert _fraction_close(c_gpu, c_cpu, 1e-4, 1e-4) >= 0.999, (c_gpu - c_cpu).abs().max()
    assert _fraction_close(a_gpu, a_cpu, 1e-4) >= 0.999, (a_gpu - a_cpu).abs().max()

    r_cpu, r_gpu = info_cpu["radii"], info_gpu["radii"].cpu()
    assert (r_gpu == r_cpu).float().mean() >= 0.999
    assert (r_gpu.long() - r_cpu.long()).abs().max() <= 1

    for name, ref in g_cpu.items():
        got = g_gpu[name]
        if ref is None or got is None:
            assert ref is None and got is None, name  # e.g. colours in "D" mode
            continue
        assert got.shape == ref.shape, name
        scale = ref.abs().max().item()
        assert scale > 0, name
        frac = _fraction_close(got, ref, 1e-3 * scale)
        assert frac >= 0.999, (
            f"{name}: {frac:.4f} close, max error {(got - ref).abs().max():.3g} vs scale {scale:.3g}"
        )

    assert set(info_gpu) == set(info_cpu)
    for key, ref in info_cpu.items():
        got = info_gpu[key]
        if torch.is_tensor(ref):
            assert torch.is_tensor(got) and got.dtype == ref.dtype, key
            if key in ("isect_ids", "flatten_ids"):  # one entry per tile hit: radii ties
                assert got.dim() == ref.dim() == 1
                assert abs(len(got) - len(ref)) <= 0.01 * len(ref), key
            else:
                assert got.shape == ref.shape, key
        else:
            assert got == ref, key


# ------------------------------------------------------------------ training


def _cfg(**kw) -> SplatConfig:
    """The CPU tests' short run made longer and plainer: 200 steps, half resolution for the
    first 50 and SH degree 1 from step 50, no densification or opacity reset; ``kw``
    overrides any field."""
    longer = dict(steps=200, sh_degree_interval=50, coarse_steps=50)
    no_refinement = dict(refine_start=0, refine_stop=0, refine_every=100, reset_every=10_000)
    return small_config(**{**longer, **no_refinement, **kw})


def _train(scene, cfg: SplatConfig, device: torch.device, path: Path, **kw):
    from vid3d.splats.trainer import train

    return train(scene, cfg, path, device=device, config_hash="t", **kw)


def test_auto_picks_the_gpu_and_gsplat():
    from vid3d.device import choose_device
    from vid3d.doctor import gpu_checks
    from vid3d.splats.rasterize import resolve_backend

    choice = choose_device("auto")
    assert choice.device.type == "cuda" and choice.reason is None
    assert resolve_backend("auto", choice.device) == "gsplat"
    details = {c.name: c.detail for c in gpu_checks()}
    assert "CUDA rasterizer in use" in details["gsplat"]
    assert "gsplat CUDA kernels" not in details


def test_training_without_refinement_matches_the_cpu(scene, tmp_path):
    """200 steps: the final loss within 1% and held-out PSNR within 0.1 dB of the CPU's."""
    _, m_cpu = _train(scene, _cfg(), CPU, tmp_path / "cpu.pt")
    _, m_gpu = _train(scene, _cfg(), CUDA, tmp_path / "gpu.pt")
    assert (m_cpu["backend"], m_gpu["backend"]) == ("cpu", "gsplat")
    assert m_gpu["device"].startswith("cuda") and m_gpu["test_images"] > 0
    assert m_gpu["gaussians"] == m_cpu["gaussians"]
    assert abs(m_gpu["final_loss"] - m_cpu["final_loss"]) <= 0.01 * m_cpu["final_loss"], (
        m_gpu["final_loss"],
        m_cpu["final_loss"],
    )
    assert abs(m_gpu["psnr"] - m_cpu["psnr"]) <= 0.1, (m_gpu["psnr"], m_cpu["psnr"])


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_training_with_refinement_matches_the_cpu(scene, tmp_path, strategy):
    """Both strategies: Gaussian counts within 10%, PSNR within 0.5 dB; MCMC's relocation
    and noise go through gsplat's CUDA ops on CUDA and the PyTorch versions on the CPU."""
    from gsplat.strategy import ops

    from vid3d.splats.strategies import install_cpu_fallbacks

    install_cpu_fallbacks()
    cfg = _cfg(
        strategy=strategy,
        refine_start=20,
        refine_every=20,
        refine_stop=160,
        grow_grad2d=2e-5,
        max_gaussians=20_000 if strategy == "default" else 1_000,
    )
    calls = {}
    runs = {}
    for device in (CPU, CUDA):
        for op in (ops.compute_relocation, ops.quat_scale_to_covar_preci):
            op.calls.clear()
        _, runs[device.type] = _train(scene, cfg, device, tmp_path / f"{device.type}.pt")
        calls[device.type] = {
            op.__name__: dict(op.calls) for op in (ops.compute_relocation, ops.quat_scale_to_covar_preci)
        }
    m_cpu, m_gpu = runs["cpu"], runs["cuda"]
    assert m_gpu["gaussians"] > m_gpu["gaussians_initial"]  # refinement added Gaussians
    assert abs(m_gpu["gaussians"] - m_cpu["gaussians"]) <= 0.1 * m_cpu["gaussians"]
    assert abs(m_gpu["psnr"] - m_cpu["psnr"]) <= 0.5, (m_gpu["psnr"], m_cpu["psnr"])
    if strategy == "mcmc":
        for name in ("compute_relocation", "quat_scale_to_covar_preci"):
            assert calls["cuda"][name].get("cuda", 0) > 0, calls
            assert calls["cuda"][name].get("cpu", 0) == 0, calls
            assert calls["cpu"][name].get("cpu", 0) > 0 and not calls["cpu"][name].get("cuda")


# ------------------------------------------------------------------ resume and checkpoints


@pytest.mark.parametrize("first,then", [("cuda", "cuda"), ("cpu", "cuda")])
def test_training_resumes_on_cuda(scene, tmp_path, first, then):
    """An interrupted CUDA run resumes on CUDA; an interrupted CPU run trains on with CUDA.
    The resume file loads on the CPU (RNG states and optimizer moments included)."""
    from vid3d.splats.model import load_checkpoint

    # tests/test_training.py's interrupted run, with the SH schedule and no reset of _cfg
    cfg = small_config(**RESUME, sh_degree_interval=50, reset_every=10_000)
    resume, ckpt = tmp_path / "resume.pt", tmp_path / "ckpt.pt"
    _, straight = _train(scene, cfg, torch.device(first), tmp_path / "straight.pt")
    with pytest.raises(Interrupt):
        train_until_stopped(scene, cfg, ckpt, resume, 33, device=torch.device(first))
    state = load_checkpoint(resume)
    assert (state.step, state.finished) == (30, False)
    assert state.state["torch_rng"].device.type == "cpu"
    moments = [
        v
        for o in state.state["optimizers"].values()
        for s in o["state"].values()
        for v in s.values()
        if torch.is_tensor(v)
    ]
    assert moments and all(v.device.type == "cpu" for v in moments)

    rec = Recorder()
    trainer, m = _train(scene, cfg, torch.device(then), ckpt, resume_path=resume, reporter=rec)
    assert m["resumed_from"] == 30 and m["steps"] == 60 and not rec.warnings
    assert m["device"].startswith(then) and trainer.splats["means"].is_cuda
    assert all(s["exp_avg"].is_cuda for o in trainer.optimizers.values() for s in o.state.values())
    assert math.isfinite(m["psnr"]) and abs(m["psnr"] - straight["psnr"]) <= 0.5
    assert abs(m["gaussians"] - straight["gaussians"]) <= 0.1 * straight["gaussians"]
    assert not resume.exists() and load_checkpoint(ckpt, require_finished=True).step == 60


@pytest.fixture(scope="module")
def cuda_trained(scene, tmp_path_factory):
    """A finished CUDA training run with refinement: (trainer, metrics, ckpt path)."""
    path = tmp_path_factory.mktemp("cuda_run") / "ckpt.pt"
    trainer, metrics = _train(
        scene,
        _cfg(steps=150, refine_start=20, refine_every=20, refine_stop=120, grow_grad2d=2e-5),
        CUDA,
        path,
    )
    return trainer, metrics, path


def _frames(splats, sh_degree, scene, device) -> np.ndarray:
    from vid3d.camera_paths import CameraPath
    from vid3d.stages.render import render_frames

    cameras = CameraPath(scene.camtoworlds, scene.Ks, scene.width, scene.height)
    return np.stack(list(render_frames(splats, sh_degree, cameras, device=device))).astype(float)


def test_a_cuda_checkpoint_renders_on_the_cpu(cuda_trained):
    """The finished CUDA checkpoint loads and renders with device "cpu", and the frames
    agree with CUDA's within one grey level on average."""
    from vid3d.splats.model import load_checkpoint

    trainer, _, path = cuda_trained
    ckpt = load_checkpoint(path, "cpu", require_finished=True)
    assert all(v.device.type == "cpu" for v in ckpt.splats.values())
    scene = trainer.data.scene  # the splats' (normalised) frame
    on_cpu = _frames(ckpt.splats, ckpt.sh_degree, scene, "cpu")
    on_gpu = _frames(ckpt.splats, ckpt.sh_degree, scene, "cuda")
    assert on_cpu.mean() > 10  # not blank
    assert np.abs(on_cpu - on_gpu).mean() <= 1.0


def test_render_on_cuda_agrees_with_the_cpu(cuda_trained):
    """An orbit of the trained splats at another size than the training frames: the CUDA
    frames are within one grey level of the CPU frames on average."""
    from vid3d.camera_paths import make_path

    trainer, _, _ = cuda_trained
    s = trainer.data.scene
    path = make_path("orbit", s.camtoworlds, s.Ks, s.width, s.height, 96, 54, 12, points=s.points)
    splats = {k: v.detach() for k, v in trainer.splats.items()}
    from vid3d.stages.render import render_frames

    def frames(device):
        return np.stack(list(render_frames(splats, trainer.cfg.sh_degree, path, device=device))).astype(float)

    on_gpu, on_cpu = frames("cuda"), frames("cpu")
    assert on_gpu.shape == (12, 54, 96, 3) and on_cpu.mean() > 5
    assert np.abs(on_gpu - on_cpu).mean() <= 1.0


# ------------------------------------------------------------------ syncs and speed


def _steady(steps: int, **kw) -> SplatConfig:
    """A run of ``steps`` that a test never finishes, every step alike: full resolution and
    SH degree from the start, the strategy's statistics updated every step, no refinement."""
    return _cfg(
        steps=steps,
        coarse_steps=0,
        sh_degree_interval=0,
        refine_start=0,
        refine_stop=steps,
        refine_every=steps,
        **kw,
    )


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_at_most_five_host_syncs_per_training_step(scene, strategy):
    """Counted with torch.cuda.set_sync_debug_mode("warn") over 20 steps whose strategy
    updates its statistics (DefaultStrategy) or adds position noise (MCMC) every step."""
    from vid3d.splats.trainer import Trainer, load_train_data

    cfg = _steady(10_000, strategy=strategy, max_gaussians=1_000)
    trainer = Trainer(load_train_data(scene, 8, CUDA), cfg.scaled(), CUDA)
    for _ in range(5):  # warm-up: kernels loaded, first allocations made
        trainer.step()
    torch.cuda.synchronize()
    steps = 20
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
    assert len(syncs) <= 5 * steps, f"{len(syncs) / steps:.1f} syncs per step: {where}"


def test_training_speed_is_within_1_5x_of_a_bare_gsplat_loop(tmp_path_factory):
    """Steps per second of vid3d's trainer (exposure, strategy statistics, scheduler) vs a
    bare loop on the same Gaussians and frames: gsplat.rasterization, the same L1 + SSIM
    loss, Adam per parameter, the loss read every step (as gsplat's simple_trainer does)."""
    import gsplat

    from tests.synthetic import make_scene
    from vid3d.splats.losses import photometric_loss
    from vid3d.splats.trainer import Trainer, learning_rates, load_train_data

    big = make_scene(tmp_path_factory.mktemp("big"), n_views=10, width=320, height=240, n_gaussians=60_000)
    data = load_train_data(big, 8, CUDA)
    cfg = _steady(100_000, sh_degree=3).scaled()
    trainer = Trainer(data, cfg, CUDA)
    init = {k: v.detach().clone() for k, v in trainer.splats.items()}

    def rate(step, n=50, rounds=3) -> float:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
        best = 0.0
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            torch.cuda.synchronize()
            best = max(best, n / (time.perf_counter() - t0))
        return best

    vid3d_rate = rate(trainer.step)

    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    lrs = learning_rates(cfg, trainer.scene_scale)
    opts = [torch.optim.Adam([params[k]], lr=lr, eps=1e-15) for k, lr in lrs.items()]
    targets = data.images.float() / 255.0  # [N, H, W, 3]
    bg = torch.zeros(1, 3, device=CUDA)
    ids = list(data.train_ids)
    it = iter(range(10**9))

    def bare_step():
        i = ids[next(it) % len(ids)]
        colors = torch.cat([params["sh0"], params["shN"]], 1)
        out, _, _ = gsplat.rasterization(
            params["means"],
            params["quats"],
            torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]),
            colors,
            data.viewmats[i : i + 1],
            data.Ks[i : i + 1],
            data.width,
            data.height,
            sh_degree=3,
            backgrounds=bg,
            packed=False,
        )  # as vid3d renders
        loss = photometric_loss(out, targets[i : i + 1], None, cfg.ssim_lambda)
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        return loss.item()

    bare_rate = rate(bare_step)
    print(
        f"\ntraining steps/s at {data.width}x{data.height}, {len(init['means'])} Gaussians: "
        f"vid3d {vid3d_rate:.1f}, bare gsplat loop {bare_rate:.1f} "
        f"({bare_rate / vid3d_rate:.2f}x)"
    )
    assert vid3d_rate * 1.5 >= bare_rate, (vid3d_rate, bare_rate)
