"""Parameter, MAC and FLOP counting (one home for cost arithmetic).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``, which sees convolutions, linear
layers and attention matmuls (thop misses the latter). For matmul/conv FLOPs = 2 x MACs, so we report
``macs = flops / 2``. FFTs: FlopCounterMode has no formula for them; we add our own count of
``5 N log2 N`` real FLOPs per complex transform of N points (the usual radix-2 estimate), see
:func:`count_costs`, and report them separately as ``fft_flops`` (included in ``flops``, and in
``macs`` as ``fft_flops / 2``, stated in the output's ``notes``).

Counting runs on the ``meta`` device by default: no memory, no arithmetic, so paper-scale models
at 256x256 are counted in well under a second.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FFT_OPS = {
    "aten._fft_r2c.default",
    "aten._fft_c2r.default",
    "aten._fft_c2c.default",
}


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _fft_flops(op_name: str, args, kwargs, out) -> int:
    """5 N log2 N per transformed line (complex); real transforms count half."""
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    if isinstance(dims, int):
        dims = [dims]
    shape = x.shape if op_name != "aten._fft_c2r.default" else out.shape
    n = 1
    for d in dims:
        n *= shape[d]
    batch = math.prod(shape) // max(n, 1)
    flops = 5 * n * math.log2(max(n, 2)) * batch
    if op_name != "aten._fft_c2c.default":
        flops /= 2
    return int(flops)


class _FFTCounter(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func)
        if name in FFT_OPS:
            self.flops += _fft_flops(name, args, kwargs, out)
        return out


def count_costs(
    module: nn.Module | Callable,
    *inputs: torch.Tensor,
    device: str | torch.device = "meta",
    **kwargs,
) -> dict:
    """Count FLOPs/MACs of one forward call ``module(*inputs, **kwargs)`` under ``torch.no_grad``.

    Returns ``{"flops", "macs", "fft_flops", "params", "by_op"}``. ``module`` and inputs are moved to
    ``device`` (meta by default; the caller's module is not modified when it is an nn.Module:
    a meta copy is made with ``to_empty``-free ``module.to("meta")`` on a deepcopy).
    """
    params = count_params(module) if isinstance(module, nn.Module) else 0
    if isinstance(module, nn.Module) and device is not None:
        module = copy.deepcopy(module).to(device)
        inputs = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
        kwargs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    if isinstance(module, nn.Module):
        module.eval()
    counter = FlopCounterMode(display=False)
    fft = _FFTCounter()
    with torch.no_grad(), counter, fft:
        module(*inputs, **kwargs)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    dense = int(counter.get_total_flops())
    total = dense + fft.flops
    return {
        "flops": total,
        "macs": total / 2,
        "fft_flops": fft.flops,
        "params": params,
        "by_op": by_op,
    }


def count_layer_macs(module: nn.Module, *inputs: torch.Tensor, device: str | torch.device = "meta", **kwargs) -> int:
    """thop-style MACs: only nn.Conv*/nn.ConvTranspose*/nn.Linear layers, counted with forward hooks.

    This is how the published "GFLOPs" of the backbones were obtained (thop at 1x3x256x256): it
    misses functional matmuls (attention) and FFTs. Use it only to compare with published numbers;
    :func:`count_costs` is the complete count.
    """
    module = copy.deepcopy(module).to(device).eval()
    inputs = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
    kwargs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    total = [0]

    def conv_hook(layer, args, out):
        kernel = math.prod(layer.kernel_size) * (layer.in_channels // layer.groups)
        if isinstance(layer, nn.modules.conv._ConvTransposeNd):
            total[0] += args[0].numel() * math.prod(layer.kernel_size) * (layer.out_channels // layer.groups)
        else:
            total[0] += out.numel() * kernel

    def linear_hook(layer, args, out):
        total[0] += out.numel() * layer.in_features

    handles = []
    for layer in module.modules():
        if isinstance(layer, (nn.modules.conv._ConvNd,)):
            handles.append(layer.register_forward_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            module(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return int(total[0])
