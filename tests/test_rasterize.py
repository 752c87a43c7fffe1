"""Tests of vid3d.splats.rasterize: projection and SH against gsplat's PyTorch
reference functions, the torch tile compositor against a brute-force per-pixel
composite, the native kernel against the torch compositor (images, alphas,
depths and every gradient), gradcheck, and gsplat's DefaultStrategy on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _spherical_harmonics
from gsplat.strategy import DefaultStrategy

from tests.conftest import GARDEN
from vid3d.errors import TrainingError
from vid3d.splats import _cpu_kernel
from vid3d.splats._projection import isect_tiles, project_gaussians, quat_scale_to_matrix, spherical_harmonics
from vid3d.splats.rasterize import kernel_status, rasterize, resolve_backend


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """3D covariances ``R S S^T R^T`` [N, 3, 3] from quaternions [N, 4] and scales [N, 3]."""
    M = quat_scale_to_matrix(quats, scales)  # [N, 3, 3]
    return M @ M.transpose(-1, -2)


PARAMS = ("means", "quats", "scales", "opacities", "colors")


def make_scene(
    n, width, height, n_cams=1, sh_degree=None, dim=3, dtype=torch.float32, seed=0, opacity_scale=1.0
):
    """Random Gaussians in front of ``n_cams`` cameras, footprints of 1 to 10 px."""
    g = torch.Generator().manual_seed(seed)
    f = float(max(width, height))
    depth = 2.0 + 4.0 * torch.rand(n, generator=g)
    size = torch.tensor([width, height])
    pix = torch.rand(n, 2, generator=g) * size * 1.2 - 0.1 * size  # [N, 2], some off screen
    means = torch.stack(
        [(pix[:, 0] - width / 2) / f * depth, (pix[:, 1] - height / 2) / f * depth, depth], -1
    )
    sigma_px = torch.exp(torch.empty(n).uniform_(0.0, 1.6, generator=g))
    aniso = torch.exp(torch.empty(n, 3).uniform_(-0.5, 0.5, generator=g))
    scales = (sigma_px * depth / f)[:, None] * aniso
    if sh_degree is None:
        colors = torch.rand(n, dim, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    viewmats = torch.eye(4).repeat(n_cams, 1, 1)
    for c in range(1, n_cams):  # small sideways moves and rotations
        angle = 0.05 * c
        cos, sin = math.cos(angle), math.sin(angle)
        viewmats[c, :3, :3] = torch.tensor([[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]])
        viewmats[c, 0, 3] = 0.1 * c
    K = torch.tensor([[f, 0, width / 2], [0, f * 1.05, height / 2 + 1.5], [0, 0, 1]])
    scene = dict(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        scales=scales,
        opacities=torch.rand(n, generator=g) * opacity_scale,
        colors=colors,
        viewmats=viewmats,
        Ks=K.repeat(n_cams, 1, 1),
    )
    return {k: v.to(dtype) for k, v in scene.items()}


def project(scene, width, height, bound=True):
    """:func:`project_gaussians` of a :func:`make_scene` scene; with ``bound``, its opacities
    tighten the radii."""
    opacities = scene["opacities"] if bound else None
    geometry = (scene[k] for k in ("means", "quats", "scales", "viewmats", "Ks"))
    return project_gaussians(*geometry, width, height, opacities=opacities)


def render_and_grads(scene, width, height, backend, **kwargs):
    """Render, backprop a fixed random weighting of colours and alphas; return
    outputs, the gradients of every tensor input and of info["means2d"]."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in scene.items()}
    bg = kwargs.pop("backgrounds", None)
    if bg is not None:
        bg = bg.detach().clone().requires_grad_()
    colors, alphas, info = rasterize(
        *(leaves[k] for k in PARAMS),
        leaves["viewmats"],
        leaves["Ks"],
        width,
        height,
        backgrounds=bg,
        backend=backend,
        **kwargs,
    )
    g = torch.Generator().manual_seed(123)
    loss = (colors * torch.rand(colors.shape, generator=g, dtype=colors.dtype)).sum()
    loss = loss + (alphas * torch.rand(alphas.shape, generator=g, dtype=alphas.dtype)).sum()
    loss.backward()
    grads = {k: leaves[k].grad for k in PARAMS}
    grads["means2d"] = info["means2d"].grad
    if bg is not None:
        grads["backgrounds"] = bg.grad
    return colors.detach(), alphas.detach(), info, grads


def assert_close(actual, expected, rtol, name=""):
    """Max abs error within ``rtol`` of the largest magnitude of ``expected``."""
    scale = expected.abs().max().item() + 1e-12
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f"{name}: max error {err:.3g} vs scale {scale:.3g}"


# --------------------------------------------------------------------- projection, SH


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_matches_gsplat_reference(seed):
    scene = make_scene(3000, 160, 120, n_cams=2, seed=seed)
    scene["means"][:50, 2] *= -1  # some behind the camera
    scene["scales"][50:80] *= 30  # some huge ones
    ours = project(scene, 160, 120, bound=False)
    covars = quat_scale_to_covar(scene["quats"], scene["scales"])
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        scene["means"], covars, scene["viewmats"], scene["Ks"], 160, 120
    )
    valid = (radii > 0).all(-1)
    assert 0.5 < valid.float().mean() < 0.99  # culling happens, most are visible
    assert (ours.radii == radii).float().mean() > 0.999  # ceil() may flip on a rounding tie
    torch.testing.assert_close(ours.means2d[valid], means2d[valid])
    torch.testing.assert_close(ours.conics[valid], conics[valid], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.depths, depths)
    assert ours.radii.dtype == torch.int32 and ours.radii.shape == (2, 3000, 2)


def test_projection_opacity_bound_and_no_nan_gradients():
    scene = make_scene(500, 64, 48, dtype=torch.float64)
    scene["means"][:20, 2] = 0.0  # on the camera plane
    scene["opacities"][20:30] = 0.001  # invisible
    means = scene["means"].requires_grad_()
    proj = project(scene, 64, 48)
    loose = project(scene, 64, 48, bound=False)
    assert (proj.radii[0, :20] == 0).all() and (proj.radii[0, 20:30] == 0).all()
    assert (proj.radii <= loose.radii).all() and (proj.radii < loose.radii).any()
    (proj.means2d.sum() + proj.conics.sum()).backward()
    assert torch.isfinite(means.grad).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_sh_matches_gsplat_reference(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(200, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(200, 25, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        spherical_harmonics(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs)
    )


@pytest.mark.parametrize("tile_size", [16, 8])
def test_native_tile_lists_equal_torch(tile_size):
    scene = make_scene(2000, 100, 70, n_cams=3, seed=4)
    proj = project(scene, 100, 70)
    tw, th = math.ceil(100 / tile_size), math.ceil(70 / tile_size)
    expected = isect_tiles(proj.means2d, proj.radii, proj.depths, tile_size, tw, th)
    actual = _cpu_kernel.isect_tiles(proj.means2d, proj.radii, proj.depths, tile_size, tw, th)
    assert len(expected.flatten_ids) > 2000
    for name, a, e in zip(expected._fields, actual, expected):
        assert torch.equal(a, e), name


# --------------------------------------------------------------------- torch reference


def brute_force_composite(scene, width, height, bg):
    """Per pixel: every visible Gaussian by depth, gsplat's compositing rules, float64."""
    proj = project(scene, width, height)
    vis = torch.nonzero((proj.radii[0] > 0).all(-1))[:, 0]
    vis = vis[torch.argsort(proj.depths[0, vis].float(), stable=True)]
    image = torch.zeros(height, width, 3, dtype=torch.float64)
    alphas = torch.zeros(height, width, 1, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            T, out = 1.0, torch.zeros(3, dtype=torch.float64)
            for i in vis.tolist():
                dx, dy = proj.means2d[0, i] - torch.tensor([x + 0.5, y + 0.5], dtype=torch.float64)
                a, b, c = proj.conics[0, i]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(0.999, float(scene["opacities"][i] * torch.exp(-sigma)))
                if sigma < 0 or alpha < 1 / 255:
                    continue
                if T * (1 - alpha) <= 1e-4:
                    break
                out += scene["colors"][i] * alpha * T
                T *= 1 - alpha
            image[y, x] = out + T * bg
            alphas[y, x] = 1 - T
    return image, alphas


@pytest.mark.parametrize("opacity_scale", [0.6, 8.0])  # 8.0: opacities up to 1, early stops
def test_torch_reference_matches_brute_force(opacity_scale):
    scene = make_scene(60, 21, 13, dtype=torch.float64, seed=3)
    scene["scales"] *= 3.0
    scene["opacities"] = scene["opacities"].mul(opacity_scale).clamp(max=1.0)
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    expected, expected_alpha = brute_force_composite(scene, 21, 13, bg)
    colors, alphas, _ = rasterize(
        *(scene[k] for k in PARAMS),
        scene["viewmats"],
        scene["Ks"],
        21,
        13,
        backgrounds=bg[None],
        tile_size=8,
        backend="torch",
    )
    torch.testing.assert_close(colors[0], expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(alphas[0], expected_alpha, rtol=1e-10, atol=1e-10)
    assert expected_alpha.max() > 0.9


# --------------------------------------------------------------------- native kernel


CASES = {
    "rgb-sh3": dict(kwargs=dict(sh_degree=3)),
    "rgb+ed-bg-2cams": dict(n_cams=2, kwargs=dict(render_mode="RGB+ED", backgrounds=True)),
    "d-2cams-tile8": dict(n_cams=2, kwargs=dict(render_mode="D", tile_size=8)),
    "features5-antialiased": dict(dim=5, kwargs=dict(rasterize_mode="antialiased")),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
def test_cpu_kernel_matches_torch_reference(case, dtype):
    spec = CASES[case]
    n_cams = spec.get("n_cams", 1)
    kwargs = dict(spec["kwargs"])
    scene = make_scene(
        400,
        96,
        72,
        n_cams=n_cams,
        sh_degree=kwargs.get("sh_degree"),
        dim=spec.get("dim", 3),
        dtype=dtype,
        seed=7,
        opacity_scale=1.0,
    )
    if kwargs.get("backgrounds"):
        kwargs["backgrounds"] = torch.rand(n_cams, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ref = render_and_grads(scene, 96, 72, "torch", **dict(kwargs))
    out = render_and_grads(scene, 96, 72, "cpu", **dict(kwargs))
    rtol = 1e-9 if dtype == torch.float64 else 2e-4
    assert_close(out[0], ref[0], rtol, "colors")
    assert_close(out[1], ref[1], rtol, "alphas")
    assert ref[1].max() > 0.99 and ref[1].min() < 0.5  # some pixels saturate, some don't
    for name, grad in ref[3].items():
        if name == "colors" and kwargs.get("render_mode") == "D":
            assert grad is None and out[3][name] is None
            continue
        assert grad.abs().max() > 0, name
        assert_close(out[3][name], grad, rtol, name)


def garden_scene(n, scale, dtype):
    if not GARDEN.exists():
        pytest.skip(f"shared test data {GARDEN} is not present")
    data = np.load(GARDEN)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data["means3d"]), generator=g)[:n]
    Ks = torch.from_numpy(data["Ks"]).clone()
    Ks[:, :2] *= scale
    return (
        dict(
            means=torch.from_numpy(data["means3d"])[idx].to(dtype),
            quats=torch.tensor([1.0, 0, 0, 0], dtype=dtype).repeat(n, 1),
            scales=0.02 * torch.exp(torch.randn(n, 1, generator=g, dtype=dtype) * 0.3).expand(n, 3),
            opacities=(0.2 + 0.8 * torch.rand(n, generator=g)).to(dtype),
            colors=(torch.from_numpy(data["colors"])[idx].to(dtype) / 255.0),
            viewmats=torch.from_numpy(data["viewmats"]).to(dtype),
            Ks=Ks.to(dtype),
        ),
        int(int(data["width"]) * scale),
        int(int(data["height"]) * scale),
    )


def test_cpu_kernel_matches_torch_reference_on_garden():
    scene, width, height = garden_scene(6000, 0.4, torch.float64)  # 259 x 168, 3 cameras
    ref = render_and_grads(scene, width, height, "torch", render_mode="RGB+D")
    out = render_and_grads(scene, width, height, "cpu", render_mode="RGB+D")
    assert ref[1].mean() > 0.5
    assert_close(out[0], ref[0], 1e-9, "colors")
    assert_close(out[1], ref[1], 1e-9, "alphas")
    for name, grad in ref[3].items():
        if name == "quats":  # isotropic Gaussians: rotations do not matter
            assert grad.abs().max() < 1e-9 and out[3][name].abs().max() < 1e-9
            continue
        assert grad.abs().max() > 0, name
        assert_close(out[3][name], grad, 1e-9, name)


def test_cpu_kernel_gradcheck():
    """Finite differences of the native kernel alone and of the whole CPU rasterize()."""
    scene = make_scene(8, 20, 16, n_cams=2, sh_degree=1, dtype=torch.float64, seed=5)
    scene["scales"] *= 2.0
    proj = project(scene, 20, 16)
    # The kernel alone, first camera: every Jacobian entry (one backward per output).
    means2d, conics, depths = proj.means2d[:1].detach(), proj.conics[:1].detach(), proj.depths[:1]
    isect = isect_tiles(means2d, proj.radii[:1], depths, 8, 3, 2)
    assert len(isect.flatten_ids) > 8
    g = torch.Generator().manual_seed(2)
    inputs = (
        means2d.requires_grad_(),
        conics.requires_grad_(),
        torch.rand(1, 8, 4, generator=g, dtype=torch.float64).requires_grad_(),
        scene["opacities"][None].clone().requires_grad_(),
        torch.rand(1, 4, generator=g, dtype=torch.float64).requires_grad_(),
    )

    def kernel(means2d, conics, colors, opacities, backgrounds):
        return _cpu_kernel.rasterize_to_pixels(
            means2d, conics, colors, opacities, 20, 16, 8, isect.tile_offsets, isect.flatten_ids, backgrounds
        )

    assert torch.autograd.gradcheck(kernel, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)

    leaves = [scene[k].clone().requires_grad_() for k in PARAMS]

    def full(means, quats, scales, opacities, colors):
        out, alphas, _ = rasterize(
            means,
            quats,
            scales,
            opacities,
            colors,
            scene["viewmats"],
            scene["Ks"],
            20,
            16,
            sh_degree=1,
            render_mode="RGB+ED",
            tile_size=8,
            backend="cpu",
        )
        return out, alphas

    # fast mode: compares v^T J u for random u, v instead of every Jacobian entry
    assert torch.autograd.gradcheck(full, leaves, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_means2d_grad_and_absgrad():
    scene = make_scene(800, 64, 48)
    colors, _, info, grads = render_and_grads(scene, 64, 48, "cpu", absgrad=True)
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    visible = (info["radii"] > 0).all(-1)
    assert grad.shape == absgrad.shape == (1, 800, 2)
    assert (grad[visible].abs().sum(-1) > 0).float().mean() > 0.9
    assert (grad[~visible] == 0).all()
    assert (absgrad >= grad.abs() - 1e-6).all() and (absgrad > grad.abs() + 1e-6).any()


def test_render_modes_agree():
    scene = make_scene(600, 48, 40)
    args = [scene[k] for k in PARAMS] + [scene["viewmats"], scene["Ks"], 48, 40]
    rgb, alpha, _ = rasterize(*args, backend="cpu")
    depth, _, _ = rasterize(*args, render_mode="D", backend="cpu")
    exp_depth, _, _ = rasterize(*args, render_mode="ED", backend="cpu")
    both, _, info = rasterize(*args, render_mode="RGB+ED", backend="cpu")
    with torch.no_grad():  # rendering an orbit video needs no gradients
        rgb_no_grad, _, _ = rasterize(*args, backend="cpu")
    torch.testing.assert_close(rgb_no_grad, rgb)
    torch.testing.assert_close(both[..., :3], rgb)
    torch.testing.assert_close(exp_depth, depth / alpha.clamp(min=1e-10))
    torch.testing.assert_close(both[..., 3:], exp_depth)
    assert info["radii"].dtype == torch.int32 and info["gaussian_ids"] is None
    assert info["n_cameras"] == 1 and info["width"] == 48 and info["height"] == 40


def test_default_strategy_runs_on_cpu():
    """A few densifying training steps of gsplat's DefaultStrategy with rasterize()."""
    scene = make_scene(300, 48, 40, n_cams=2, sh_degree=1)
    params = torch.nn.ParameterDict(
        {
            "means": scene["means"],
            "scales": torch.log(scene["scales"]),
            "quats": scene["quats"],
            "opacities": torch.logit(scene["opacities"].clamp(0.05, 0.95)),
            "sh0": scene["colors"][:, :1],
            "shN": scene["colors"][:, 1:],
        }
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=2, grow_grad2d=1e-9, prune_opa=0.0)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    target = torch.rand(2, 40, 48, 3)
    for step in range(5):
        colors, _, info = rasterize(
            params["means"],
            params["quats"],
            torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]),
            torch.cat([params["sh0"], params["shN"]], 1),
            scene["viewmats"],
            scene["Ks"],
            48,
            40,
            sh_degree=1,
            backend="cpu",
        )
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (colors - target).abs().mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
    assert len(params["means"]) > 300  # duplicated / split at step 2 and 4
    assert state["grad2d"] is not None and len(state["grad2d"]) == len(params["means"])


# --------------------------------------------------------------------- backends


def test_backend_selection_and_errors():
    scene = make_scene(10, 16, 16)
    args = [scene[k] for k in PARAMS] + [scene["viewmats"], scene["Ks"], 16, 16]
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="CUDA"):
            rasterize(*args, backend="gsplat")
    with pytest.raises(TrainingError, match="Unknown rasterizer backend"):
        rasterize(*args, backend="metal")
    with pytest.raises(TrainingError, match="packed"):
        rasterize(*args, packed=True, backend="cpu")
    with pytest.raises(TrainingError, match="absgrad"):
        rasterize(*args, absgrad=True, backend="torch")
    status = kernel_status(compile=True)
    assert status["available"] and status["compiled"] and status["compile_seconds"] > 0
    assert status["error"] is None
    assert status["cache_writable"] == (status["cache_dir"] is not None)
