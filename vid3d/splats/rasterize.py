"""One rasterizer entry point for every backend: ``gsplat`` (CUDA), ``cpu``, ``torch``.

:func:`rasterize` takes the arguments of ``gsplat.rasterization`` (1.5.3) that
vid3d uses and returns the same ``(render_colors, render_alphas, info)``, with
the ``info`` keys gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` read
(``packed=False``), so the strategies work with every backend.

- ``gsplat``: ``gsplat.rasterization`` itself; CUDA tensors only, and only once gsplat's
  CUDA kernels are loaded (:func:`prepare_cuda_backend`; the gsplat wheel on PyPI has
  none and compiles them with ``nvcc`` on first use).
- ``cpu``: vectorised PyTorch projection and SH (autograd), then the native
  numba tile kernel of :mod:`vid3d.splats._cpu_kernel` for compositing and
  its backward.
- ``torch``: the same projection, then the pure-PyTorch tile compositor of
  :mod:`vid3d.splats._torch_rasterizer`; slow, kept as the test oracle.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from vid3d.errors import TrainingError
from vid3d.splats import _cpu_kernel
from vid3d.splats._projection import isect_tiles, project_gaussians, spherical_harmonics
from vid3d.splats._torch_rasterizer import rasterize_to_pixels_torch

Backend = Literal["auto", "gsplat", "cpu", "torch"]
BACKENDS = ("auto", "gsplat", "cpu", "torch")
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def kernel_status(compile: bool = False) -> dict[str, object]:
    """State of the native CPU kernel, for ``vid3d doctor``.

    Args:
        compile: Compile the kernels (or load them from numba's cache) first,
            so that the compile time is known. Default: False.

    Returns:
        A dict with ``available`` (numba imports), ``compiled`` (compiled or
        loaded in this process), ``from_cache`` (loaded from the on-disk
        cache), ``compile_seconds`` (time to compile or load, None before),
        ``cache_dir`` and ``cache_writable`` (where compiled code is cached,
        None when it cannot be), and ``error`` (None, or why the kernel is
        unavailable, failed to compile or is not cached).
    """
    return _cpu_kernel.kernel_status(compile=compile)


# --------------------------------------------------------------------- gsplat's CUDA kernels

GSPLAT_WHEEL_INDEX = "https://docs.gsplat.studio/whl"
"""gsplat's own index of prebuilt wheels (with compiled CUDA kernels), one folder per
``pt<torch>cu<cuda>`` tag."""
GSPLAT_PREBUILT_TAGS = (
    "pt20cu118",
    "pt21cu118",
    "pt21cu121",
    "pt22cu118",
    "pt22cu121",
    "pt23cu118",
    "pt23cu121",
    "pt24cu118",
    "pt24cu121",
    "pt24cu124",
)
"""The tags gsplat 1.5.3 has prebuilt wheels for on :data:`GSPLAT_WHEEL_INDEX`, all for
CPython 3.10 on Linux x86_64 (the index as of gsplat 1.5.3)."""
NO_BUILD_ENV = "VID3D_GSPLAT_NO_BUILD"
"""Set to "1" in a batch's worker processes: they load the kernels the parent process
loaded or compiled, and never start a compile of their own (gsplat removes its build
folder before compiling, so workers compiling at once break each other's builds)."""
_BACKEND_MODULE = "gsplat.cuda._backend"
_EXTENSION = "gsplat_cuda"  # the name gsplat's JIT build uses
_prepared: dict[str, Any] = {}  # this process's load: how, seconds, error, prebuilt_error


def cuda_kernels_hint(
    torch_version: str | None = None, cuda_version: str | None = None, python: tuple[int, int] | None = None
) -> str:
    """How to get gsplat's CUDA kernels for this torch build, in one sentence.

    Args:
        torch_version: Default: ``torch.__version__``.
        cuda_version: CUDA version of the torch build. Default: ``torch.version.cuda``.
        python: (major, minor). Default: this interpreter's.
    """
    tv = (torch_version or torch.__version__).split("+")[0]
    cu = cuda_version if cuda_version is not None else torch.version.cuda
    py = python or sys.version_info[:2]
    if not cu:
        return (
            f"torch {tv} is a CPU build: install a CUDA build of PyTorch first "
            "(e.g. `pip install torch` from PyPI on Linux), or use --device cpu"
        )
    tag = "pt{}{}cu{}".format(*tv.split(".")[:2], cu.replace(".", ""))
    compile_ = (
        f"install a CUDA {cu} toolkit (nvcc) with a C++ compiler and "
        "`pip install ninja`, then run `vid3d doctor` once to compile them"
    )
    if tag in GSPLAT_PREBUILT_TAGS and tuple(py) == (3, 10):
        return (
            f"install gsplat's prebuilt kernels with `pip install gsplat==1.5.3 "
            f"--index-url {GSPLAT_WHEEL_INDEX}/{tag}`, or {compile_}; or use --device cpu"
        )
    return (
        f"gsplat's prebuilt kernels ({GSPLAT_WHEEL_INDEX}) exist only for torch 2.0-2.4 on "
        f"Python 3.10, none for torch {tv} + CUDA {cu} on Python {py[0]}.{py[1]}: "
        f"{compile_}; or use --device cpu"
    )


def _nvcc() -> str | None:
    """The nvcc gsplat would compile with (its own lookup: CUDA_HOME, then PATH)."""
    try:
        from torch.utils.cpp_extension import _find_cuda_home

        home = _find_cuda_home()
    except Exception:  # noqa: BLE001 - a private torch helper; absent means no toolkit
        home = None
    if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def _build_dir() -> str | None:
    """torch's JIT build folder of gsplat's kernels (where a compiled .so is cached)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return _get_build_directory(_EXTENSION, verbose=False)
    except Exception:  # noqa: BLE001 - e.g. a cache folder that cannot be created
        return None


def _has_build(build_dir: str | None) -> bool:
    return bool(build_dir) and any(
        os.path.exists(os.path.join(build_dir, f"{_EXTENSION}{ext}")) for ext in (".so", ".lib")
    )


def _kernels_loaded() -> bool:
    mod = sys.modules.get(_BACKEND_MODULE)
    return mod is not None and getattr(mod, "_C", None) is not None


def cuda_backend_status() -> dict[str, Any]:
    """State of gsplat's CUDA kernels in this process, found without compiling anything.

    Nothing of gsplat's CUDA code is imported here: without a CUDA GPU the answer is
    "no-cuda", and otherwise it comes from what is installed and on disk.

    Returns:
        A dict with ``state``, one of

        - "no-cuda": PyTorch sees no CUDA GPU (gsplat's kernels are not looked at);
        - "loaded": loaded in this process (``how`` and ``seconds`` say how, when vid3d
          loaded them);
        - "failed": gsplat tried and has no kernels (``gsplat.cuda._backend._C`` is None,
          or the import or compile raised);
        - "prebuilt": gsplat ships compiled kernels (``gsplat.csrc``), not loaded yet;
        - "built": compiled by an earlier run into torch's extension folder (``build_dir``),
          not loaded yet: loading takes seconds with the toolkit they were built with
          (gsplat needs one to load them; torch rebuilds them for another one);
        - "compile": none compiled, but nvcc, ninja and a C++ compiler are there: the first
          use compiles them (minutes); ``usable`` False where :data:`NO_BUILD_ENV` forbids
          it (a batch worker);
        - "missing": none compiled, and nothing to compile them with;

        ``usable`` (True: loaded; False: "no-cuda", "failed", "missing"; None: not known
        before loading), ``detail`` (one sentence), ``hint`` (how to fix it, or None),
        ``how``, ``seconds``, ``build_dir``, ``nvcc``.
    """
    st: dict[str, Any] = {
        "state": "no-cuda",
        "usable": False,
        "hint": None,
        "how": None,
        "seconds": None,
        "build_dir": None,
        "nvcc": None,
    }
    if not torch.cuda.is_available():
        cpu_build = " (this torch is a CPU build)" if not torch.version.cuda else ""
        return {**st, "detail": f"PyTorch sees no CUDA GPU{cpu_build}"}
    mod = sys.modules.get(_BACKEND_MODULE)
    if mod is not None and getattr(mod, "_C", None) is not None:
        how, secs = _prepared.get("how"), _prepared.get("seconds")
        took = f" ({how} in {secs:.1f} s)" if how and secs is not None else ""
        return {
            **st,
            "state": "loaded",
            "usable": True,
            "how": how,
            "seconds": secs,
            "detail": f"gsplat's CUDA kernels are loaded{took}",
        }
    error = _prepared.get("error")
    if mod is not None or error:
        why = (
            error
            or _prepared.get("prebuilt_error")
            or (
                "the gsplat wheel from PyPI has none, and gsplat found no CUDA toolkit to compile "
                "them (gsplat.cuda._backend._C is None)"
            )
        )
        return {
            **st,
            "state": "failed",
            "hint": cuda_kernels_hint(),
            "detail": f"gsplat's CUDA kernels did not load: {why}",
        }
    try:
        prebuilt = importlib.util.find_spec("gsplat.csrc") is not None
    except (ImportError, ValueError):
        prebuilt = False
    build_dir = _build_dir()
    built = _has_build(build_dir)
    nvcc = _nvcc()
    st.update(build_dir=build_dir, nvcc=nvcc, usable=None)
    if prebuilt:
        return {
            **st,
            "state": "prebuilt",
            "detail": "gsplat ships prebuilt CUDA kernels (gsplat.csrc), not loaded yet",
        }
    if built and nvcc:
        return {
            **st,
            "state": "built",
            "detail": f"gsplat's CUDA kernels were compiled before (in {build_dir}), not loaded yet",
        }
    if built:  # gsplat looks for its JIT build only where it finds a toolkit
        return {
            **st,
            "state": "missing",
            "usable": False,
            "hint": cuda_kernels_hint(),
            "detail": f"gsplat's CUDA kernels were compiled (in {build_dir}), but gsplat "
            "loads them only through the CUDA toolkit (nvcc) they were built with, "
            "and none is found: set CUDA_HOME to it",
        }
    from torch.utils.cpp_extension import is_ninja_available

    lacking = [
        what
        for what, ok in (
            ("nvcc (a CUDA toolkit)", nvcc is not None),
            ("ninja", is_ninja_available()),
            ("a C++ compiler", shutil.which(os.environ.get("CXX", "c++")) is not None),
        )
        if not ok
    ]
    if not lacking and os.environ.get(NO_BUILD_ENV) == "1":
        return {
            **st,
            "state": "compile",
            "usable": False,
            "hint": cuda_kernels_hint(),
            "detail": "gsplat's CUDA kernels are not compiled, and this process may not "
            f"compile them ({NO_BUILD_ENV}=1: a batch worker, whose parent "
            "process had none to load either)",
        }
    if not lacking:
        return {
            **st,
            "state": "compile",
            "detail": f"gsplat's CUDA kernels are not compiled yet; the first use compiles "
            f"them with {nvcc} (a few minutes, once)",
        }
    return {
        **st,
        "state": "missing",
        "usable": False,
        "hint": cuda_kernels_hint(),
        "detail": "gsplat's CUDA kernels are not installed: the gsplat wheel from PyPI has "
        f"none, and {', '.join(lacking)} to compile them is missing",
    }


def prepare_cuda_backend(*, build: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load gsplat's CUDA kernels into this process, compiling them first if needed.

    Call it once before CUDA work: ``resolve_device`` and the trainer do, and
    :func:`vid3d.batch.run_batch` calls it in the parent process before any worker starts,
    so the workers only load what it compiled. Never imports gsplat's CUDA code without a
    CUDA GPU, and never raises: a failure is the returned state.

    Args:
        build: Allow a compile (minutes) when nothing compiled is there. Default: True;
            False, or :data:`NO_BUILD_ENV` set to "1", reports "compile" as unusable.
        log: Told one line before a compile starts. Default: none.

    Returns:
        :func:`cuda_backend_status` after the attempt: "loaded" (``how``: "prebuilt",
        "loaded from gsplat's build cache" or "compiled"; ``seconds``), "failed",
        "missing", "no-cuda", or "compile" with ``usable`` False when building was not
        allowed.
    """
    st = cuda_backend_status()
    if st["state"] not in ("prebuilt", "built", "compile"):
        return st
    if st["state"] == "compile" and st["usable"] is False:  # a batch worker: never compiles
        return st
    if st["state"] == "compile" and not build:
        return {
            **st,
            "usable": False,
            "hint": cuda_kernels_hint(),
            "detail": "gsplat's CUDA kernels are not compiled yet (not compiled here: build=False)",
        }
    how = {"prebuilt": "prebuilt", "built": "loaded from gsplat's build cache", "compile": "compiled"}[
        st["state"]
    ]
    if st["state"] == "prebuilt":
        try:  # gsplat swallows this error and falls back to its JIT build: keep the reason
            importlib.import_module("gsplat.csrc")
        except Exception as e:  # noqa: BLE001 - e.g. built for another torch (undefined symbol)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            _prepared["prebuilt_error"] = f"gsplat's prebuilt kernels do not load ({first})"
            if _has_build(st["build_dir"]):
                how = "loaded from gsplat's build cache"
            elif not build or os.environ.get(NO_BUILD_ENV) == "1":
                _prepared["error"] = _prepared["prebuilt_error"]  # gsplat would compile
                return cuda_backend_status()
            else:
                how = "compiled"
    if how == "compiled" and log is not None:
        log(f"compiling gsplat's CUDA kernels with {st['nvcc'] or 'nvcc'} (once; a few minutes)")
    t0 = time.perf_counter()
    try:
        importlib.import_module(_BACKEND_MODULE)
    except Exception as e:  # noqa: BLE001 - a failed compile raises; gsplat must not retry
        first = (str(e).strip().splitlines() or [""])[0][:200]
        _prepared["error"] = f"{type(e).__name__}: {first}"
    _prepared.update(how=how, seconds=time.perf_counter() - t0)
    return cuda_backend_status()


def cuda_backend_error(status: dict[str, Any], cls: type = TrainingError) -> Exception:
    """The one-line error for kernels that cannot be used, with the fix as its hint."""
    return cls(f"{status['detail']}.", status.get("hint") or cuda_kernels_hint())


def require_cuda_backend(log: Callable[[str], None] | None = None) -> None:
    """Make sure gsplat's CUDA kernels are loaded (loading or compiling them once).

    Raises:
        TrainingError: They cannot be loaded; the hint says how to install them.
    """
    if _kernels_loaded():  # the per-call fast path
        return
    st = prepare_cuda_backend(log=log)
    if st["state"] != "loaded":
        raise cuda_backend_error(st)


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """The concrete backend ``rasterize`` uses for tensors on ``device``.

    Args:
        backend: "auto", "gsplat", "cpu" or "torch".
        device: Device of the Gaussians.

    Returns:
        "gsplat", "cpu" or "torch".

    Raises:
        TrainingError: An unknown backend, or one that cannot run on ``device``; for CUDA
            tensors, gsplat's CUDA kernels that cannot be loaded (the hint says how to
            install them; :func:`vid3d.device.choose_device` falls back to the CPU for
            ``device="auto"`` before it comes to this).
    """
    if backend not in BACKENDS:
        raise TrainingError(
            f"Unknown rasterizer backend {backend!r}.", hint=f"Use one of {', '.join(BACKENDS)}."
        )
    if backend == "auto":
        if device.type == "cuda":
            require_cuda_backend()
            return "gsplat"
        return "cpu" if _cpu_kernel.available() else "torch"
    if backend == "gsplat":
        if not (torch.cuda.is_available() and device.type == "cuda"):
            raise TrainingError(
                "The gsplat rasterizer needs CUDA tensors and a CUDA build of PyTorch.",
                hint="Use backend='cpu' (or 'auto') on a machine without an NVIDIA GPU.",
            )
        require_cuda_backend()
    if backend in ("cpu", "torch") and device.type != "cpu":
        raise TrainingError(
            f"The {backend!r} rasterizer runs on CPU tensors, got {device.type}.",
            hint="Use backend='gsplat' (or 'auto') for CUDA tensors.",
        )
    if backend == "cpu" and not _cpu_kernel.available():
        raise TrainingError(
            f"The native CPU rasterizer is unavailable: {_cpu_kernel.kernel_status()['error']}.",
            hint="Install numba (pip install numba) or use backend='torch'.",
        )
    return backend


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D], [C, N, D], [N, K, 3] or [C, N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D]
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    packed: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    tile_size: int = 16,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, dict]:
    """Rasterize 3D Gaussians into C pinhole images, like ``gsplat.rasterization``.

    Args:
        means: Gaussian centres, world frame. [N, 3]
        quats: Rotations (w, x, y, z), normalised here. [N, 4]
        scales: Scales (not log). [N, 3]
        opacities: Opacities in [0, 1] (not logits). [N]
        colors: Colours or features [N, D] / [C, N, D] when ``sh_degree`` is
            None, else SH coefficients [N, K, 3] / [C, N, K, 3] with
            ``(sh_degree + 1)**2 <= K``, evaluated towards each camera centre,
            plus 0.5 and clamped at 0.
        viewmats: World-to-camera transforms (OpenCV axes). [C, 4, 4]
        Ks: Pixel intrinsics. [C, 3, 3]
        width: Image width in pixels.
        height: Image height in pixels.
        near_plane: Near clipping depth. Default: 0.01.
        far_plane: Far clipping depth. Default: 1e10.
        radius_clip: Gaussians whose 2D radii are both at most this many
            pixels are skipped. Default: 0.0.
        eps2d: Dilation added to the 2D covariance diagonal. Default: 0.3.
        sh_degree: SH degree to evaluate, or None for plain colours.
            Default: None.
        backgrounds: Background colours. [C, D] Default: None (black).
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth),
            "RGB+D" or "RGB+ED"; depth is appended as the last channel.
            Default: "RGB".
        packed: gsplat's packed mode; only the ``gsplat`` backend supports
            True. Default: False.
        absgrad: Also compute ``info["means2d"].absgrad`` in the backward pass
            (``gsplat`` and ``cpu`` backends). Default: False.
        rasterize_mode: "classic" or "antialiased" (opacities scaled by the
            Mip-Splatting compensation factor). Default: "classic".
        tile_size: Tile side in pixels. Default: 16.
        backend: "auto", "gsplat", "cpu" or "torch". "auto" is gsplat for
            CUDA tensors (its CUDA kernels must load: :func:`require_cuda_backend`),
            else the native CPU kernel when numba works, else torch. Default: "auto".

    Returns:
        A tuple:

        - **render_colors**: [C, height, width, X], X = D for "RGB", 1 for
          "D"/"ED", D + 1 for "RGB+D"/"RGB+ED".
        - **render_alphas**: [C, height, width, 1]
        - **info**: dict with gsplat's keys: "means2d" [C, N, 2] (gradient
          retained), "radii" [C, N, 2] int32, "depths" [C, N], "conics"
          [C, N, 3], "opacities" [C, N], "width", "height", "n_cameras",
          "n_batches", "tile_size", "tile_width", "tile_height",
          "tiles_per_gauss" [C, N], "isect_ids", "flatten_ids",
          "isect_offsets" [C, tile_height, tile_width], and "batch_ids",
          "camera_ids", "gaussian_ids" (None).
    """
    if render_mode not in RENDER_MODES:
        raise TrainingError(
            f"Unknown render_mode {render_mode!r}.", hint=f"Use one of {', '.join(RENDER_MODES)}."
        )
    if rasterize_mode not in ("classic", "antialiased"):
        raise TrainingError(
            f"Unknown rasterize_mode {rasterize_mode!r}.", hint="Use 'classic' or 'antialiased'."
        )
    chosen = resolve_backend(backend, means.device)
    if chosen == "gsplat":
        import gsplat

        render_colors, render_alphas, info = gsplat.rasterization(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            near_plane=near_plane,
            far_plane=far_plane,
            radius_clip=radius_clip,
            eps2d=eps2d,
            sh_degree=sh_degree,
            packed=packed,
            tile_size=tile_size,
            backgrounds=backgrounds,
            render_mode=render_mode,
            absgrad=absgrad,
            rasterize_mode=rasterize_mode,
        )
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()
        return render_colors, render_alphas, info
    if packed:
        raise TrainingError(f"The {chosen!r} rasterizer has no packed mode.", hint="Pass packed=False.")
    if absgrad and chosen == "torch":
        raise TrainingError(
            "The 'torch' rasterizer cannot compute absgrad.", hint="Use backend='cpu' or absgrad=False."
        )

    C, N = viewmats.shape[0], means.shape[0]
    proj = project_gaussians(
        means,
        quats,
        scales,
        viewmats,
        Ks,
        width,
        height,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        opacities=opacities,
        calc_compensations=rasterize_mode == "antialiased",
    )
    opacities_c = opacities[None, :].expand(C, N)  # [C, N]
    if proj.compensations is not None:
        opacities_c = opacities_c * proj.compensations

    if sh_degree is None:
        colors_c = colors if colors.dim() == 3 else colors[None].expand(C, N, -1)  # [C, N, D]
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
        shs = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        colors_c = torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)

    if render_mode in ("RGB+D", "RGB+ED"):
        colors_c = torch.cat([colors_c, proj.depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors_c = proj.depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)

    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    isect_fn = _cpu_kernel.isect_tiles if chosen == "cpu" else isect_tiles
    isect = isect_fn(proj.means2d, proj.radii, proj.depths, tile_size, tile_width, tile_height)

    means2d = proj.means2d  # [C, N, 2]
    if means2d.requires_grad:
        means2d.retain_grad()
    # the two CPU backends take the same arguments; only the numba kernel has absgrad
    composite, extra = (
        (_cpu_kernel.rasterize_to_pixels, {"absgrad": absgrad})
        if chosen == "cpu"
        else (rasterize_to_pixels_torch, {})
    )
    render_colors, render_alphas = composite(
        means2d,
        proj.conics,
        colors_c,
        opacities_c,
        width,
        height,
        tile_size,
        isect.tile_offsets,
        isect.flatten_ids,
        backgrounds=backgrounds,
        **extra,
    )
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )

    info = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii,
        "means2d": means2d,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opacities_c,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": isect.tiles_per_gauss,
        "isect_ids": isect.isect_ids,
        "flatten_ids": isect.flatten_ids,
        "isect_offsets": isect.tile_offsets[:-1].reshape(C, tile_height, tile_width),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": C,
    }
    return render_colors, render_alphas, info
