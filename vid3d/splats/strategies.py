"""gsplat's densification strategies, made to run everywhere.

- :class:`DefaultStrategy`: gsplat's ``DefaultStrategy`` with the opacity reset that
  gsplat 1.5.3 never fires (``step % self.reset_every == 0 & step > 0`` parses as
  ``step % reset_every == (0 & step) > 0``), a cap on the number of Gaussians, and a
  per-step statistics update without host syncs (gsplat's boolean-mask indexing waits
  for the GPU three times a step).
- :class:`MCMCStrategy`: gsplat's ``MCMCStrategy``; its relocation and position-noise
  ops call CUDA kernels, so :func:`install_cpu_fallbacks` routes CPU tensors to the
  PyTorch versions below (CUDA tensors still take gsplat's kernels; ``calls`` on the
  routed ops counts which way each call went).
"""

from __future__ import annotations

import collections
import functools

import torch
from gsplat.strategy import DefaultStrategy as _GsplatDefault
from gsplat.strategy import MCMCStrategy as _GsplatMCMC
from gsplat.strategy.ops import reset_opa
from torch import Tensor


class DefaultStrategy(_GsplatDefault):
    """gsplat's DefaultStrategy with a working opacity reset and a Gaussian cap.

    Args:
        max_gaussians: Growing stops (pruning goes on) once there are this many.
        Other arguments: those of ``gsplat.strategy.DefaultStrategy``.
    """

    def __init__(self, *args, max_gaussians: int = 1_000_000, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_gaussians = max_gaussians
        self.resets = 0

    def step_post_backward(self, params, optimizers, state, step, info, packed=False, lr=None):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
            self.resets += 1

    def _grow_gs(self, params, optimizers, state, step):
        if len(params["means"]) >= self.max_gaussians:
            return 0, 0
        return super()._grow_gs(params, optimizers, state, step)

    @torch.no_grad()
    def _update_state(self, params, state, info, packed=False):
        """gsplat 1.5.3's running statistics (screen-space gradient norm, visible count,
        largest 2D radius per Gaussian), with masks instead of ``torch.where`` and boolean
        indexing, so a step does not wait for the GPU. With one camera (as the trainer
        renders) the sums are the same additions as gsplat's ``index_add_``."""
        if packed:
            return super()._update_state(params, state, info, packed=packed)
        for key in ("width", "height", "n_cameras", "radii", self.key_for_gradient):
            assert key in info, f"{key} is required but missing."
        g = info[self.key_for_gradient]
        grads = (g.absgrad if self.absgrad else g.grad).clone()  # [C, N, 2]
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n = len(params["means"])
        for key in ("grad2d", "count") + (("radii",) if self.refine_scale2d_stop_iter > 0 else ()):
            if state[key] is None:
                state[key] = torch.zeros(n, device=grads.device)
        sel = (info["radii"] > 0).all(dim=-1)  # [C, N]
        norms = grads.norm(dim=-1)  # [C, N]
        state["grad2d"] += torch.where(sel, norms, torch.zeros_like(norms)).sum(dim=0)
        state["count"] += sel.sum(dim=0, dtype=torch.float32)
        if self.refine_scale2d_stop_iter > 0:
            radii = info["radii"].max(dim=-1).values / float(max(info["width"], info["height"]))
            radii = torch.where(sel, radii, torch.zeros_like(radii)).max(dim=0).values  # [N]
            torch.maximum(state["radii"], radii, out=state["radii"])


class MCMCStrategy(_GsplatMCMC):
    """gsplat's MCMCStrategy (3DGS as Markov chain Monte Carlo), on CPU and CUDA."""

    resets = 0  # MCMC has no opacity reset

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        install_cpu_fallbacks()

    def step_post_backward(self, params, optimizers, state, step, info, packed=False, lr=None):
        super().step_post_backward(params, optimizers, state, step, info, lr=lr)


def compute_relocation_torch(
    opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor
) -> tuple[Tensor, Tensor]:
    """PyTorch version of ``gsplat.relocation.compute_relocation`` (Eq. 9 of the MCMC paper).

    Args:
        opacities: [N] opacities in (0, 1).
        scales: [N, 3] scales.
        ratios: [N] how many Gaussians each one becomes (clamped to [1, n_max]).
        binoms: [n_max, n_max] binomial coefficients.

    Returns:
        New opacities [N] and scales [N, 3].
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).to(torch.int64)  # [N]
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))  # [N]
    k = torch.arange(n_max, device=opacities.device, dtype=opacities.dtype)  # [K]
    # term[j, k] = (-1)^k / sqrt(k + 1) * new_op_j^(k + 1)
    term = ((-1.0) ** k / torch.sqrt(k + 1))[None] * new_op[:, None] ** (k + 1)[None]  # [N, K]
    # denominator: sum over i = 1..n_j of sum over k = 0..i-1 of binoms[i-1, k] * term[j, k]
    per_i = term @ binoms.to(term.dtype).T  # [N, n_max]: row i-1 sums k over binoms[i-1, :]
    rows = torch.arange(n_max, device=opacities.device)[None] < n[:, None]  # [N, n_max]
    denom = (per_i * rows).sum(dim=1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_op, new_scales


def _by_device(cuda_fn, cpu_fn):
    """``cuda_fn`` for CUDA tensors (after making sure gsplat's kernels are loaded), else
    ``cpu_fn``; ``dispatch.calls`` counts the calls each way ("cuda", "cpu")."""

    @functools.wraps(cuda_fn)
    def dispatch(*args, **kwargs):
        first = args[0] if args else next(iter(kwargs.values()))
        if first.is_cuda:
            from vid3d.splats.rasterize import require_cuda_backend

            require_cuda_backend()
            dispatch.calls["cuda"] += 1
            return cuda_fn(*args, **kwargs)
        dispatch.calls["cpu"] += 1
        return cpu_fn(*args, **kwargs)

    dispatch._vid3d_fallback = True
    dispatch.cuda_fn, dispatch.cpu_fn = cuda_fn, cpu_fn
    dispatch.calls = collections.Counter()
    return dispatch


def install_cpu_fallbacks() -> None:
    """Route gsplat's strategy ops to PyTorch code for CPU tensors (once per process)."""
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci
    from gsplat.strategy import ops

    if getattr(ops.compute_relocation, "_vid3d_fallback", False):
        return
    ops.compute_relocation = _by_device(ops.compute_relocation, compute_relocation_torch)
    ops.quat_scale_to_covar_preci = _by_device(ops.quat_scale_to_covar_preci, _quat_scale_to_covar_preci)
