"""gsplat's densification strategies, made to run everywhere.

- :class:`DefaultStrategy`: gsplat's ``DefaultStrategy`` with the opacity reset that
  gsplat 1.5.3 never fires (``step % self.reset_every == 0 & step > 0`` parses as
  ``step % reset_every == (0 & step) > 0``) and a cap on the number of Gaussians.
- :class:`MCMCStrategy`: gsplat's ``MCMCStrategy``; its relocation and position-noise
  ops call CUDA kernels, so :func:`install_cpu_fallbacks` routes CPU tensors to the
  PyTorch versions below (CUDA tensors still take gsplat's kernels).
"""

from __future__ import annotations

import functools
import math

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


class MCMCStrategy(_GsplatMCMC):
    """gsplat's MCMCStrategy (3DGS as Markov chain Monte Carlo), on CPU and CUDA."""

    resets = 0  # MCMC has no opacity reset

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        install_cpu_fallbacks()

    def step_post_backward(self, params, optimizers, state, step, info, packed=False, lr=None):
        super().step_post_backward(params, optimizers, state, step, info, lr=lr)


def compute_relocation_torch(opacities: Tensor, scales: Tensor, ratios: Tensor,
                             binoms: Tensor) -> tuple[Tensor, Tensor]:
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
    @functools.wraps(cuda_fn)
    def dispatch(*args, **kwargs):
        first = args[0] if args else next(iter(kwargs.values()))
        return (cuda_fn if first.is_cuda else cpu_fn)(*args, **kwargs)

    dispatch._vid3d_fallback = True
    return dispatch


def install_cpu_fallbacks() -> None:
    """Route gsplat's strategy ops to PyTorch code for CPU tensors (once per process)."""
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci
    from gsplat.strategy import ops

    if getattr(ops.compute_relocation, "_vid3d_fallback", False):
        return
    ops.compute_relocation = _by_device(ops.compute_relocation, compute_relocation_torch)
    ops.quat_scale_to_covar_preci = _by_device(ops.quat_scale_to_covar_preci,
                                               _quat_scale_to_covar_preci)


def binomial_table(n_max: int) -> Tensor:
    """[n_max, n_max] binomial coefficients, as MCMCStrategy builds them."""
    t = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            t[n, k] = math.comb(n, k)
    return t
