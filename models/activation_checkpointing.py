"""Activation checkpointing over each backbone's blocks (``train.activation_checkpointing``).

:func:`enable_activation_checkpointing` makes every *block* of a backbone (the repeated unit its class
declares in ``checkpoint_blocks``, beside the class: a new backbone needs no entry here) run under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)`` while
gradients are being recorded: its inner activations are not kept for the backward pass but recomputed
there, so peak memory drops to about one block's activations plus each block's input, for roughly one
more forward pass of compute. Under ``torch.no_grad`` / ``inference_mode`` (validation, evaluation) the
blocks run as before.

The switch patches the ``forward`` of the block *instances* (no wrapper modules): parameter names, the
state dict and every saved file stay exactly the same, so a checkpointed run writes the same
``model.pt`` layout and resumes from the same ``last.pt``. The RNG state is preserved across the
recomputation (``preserve_rng_state``, the default), so dropout draws the same masks twice, and the
autocast state of the forward is restored for the recomputation (bf16 works). No block holds
BatchNorm (only the latent encoders do, and they are not checkpointed: recomputing a training-mode
BatchNorm would update its running statistics twice).

Blocks per backbone (each class's ``checkpoint_blocks``):

* MIMO-UNet / MIMO-UNet+: every ``ResidualBlock`` (encoder and decoder stages).
* Stripformer: every intra / inter strip-attention block and every convolutional residual unit.
* FFTformer: every ``FFTBlock`` (encoder, decoder, refinement and the blocks inside the skip fusions).
* LoFormer-S: every ``LocalFrequencyLayer`` (DCT attention + FFN sub-block).
"""
from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_FLAG = "_blurdm_checkpointed"


def checkpoint_block_types(backbone: nn.Module) -> tuple[type, ...]:
    """The block classes checkpointed in ``backbone``: its class's ``checkpoint_blocks``."""
    blocks = getattr(type(backbone), "checkpoint_blocks", None)
    if not blocks:
        raise ValueError(f"{type(backbone).__name__} declares no checkpoint_blocks: activation checkpointing "
                         "does not know which of its modules to wrap")
    return tuple(blocks)


def _checkpointed_forward(self, *args, **kwargs):
    forward = type(self).forward
    if torch.is_grad_enabled():
        return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)
    return forward(self, *args, **kwargs)


def enable_activation_checkpointing(backbone: nn.Module) -> int:
    """Checkpoint every block of ``backbone`` (idempotent); returns how many blocks are checkpointed."""
    block_types = checkpoint_block_types(backbone)
    count = 0
    for module in backbone.modules():
        if isinstance(module, block_types):
            if not getattr(module, _FLAG, False):
                module.forward = types.MethodType(_checkpointed_forward, module)
                setattr(module, _FLAG, True)
            count += 1
    return count


def disable_activation_checkpointing(backbone: nn.Module) -> None:
    """Undo :func:`enable_activation_checkpointing`."""
    for module in backbone.modules():
        if getattr(module, _FLAG, False):
            del module.forward
            delattr(module, _FLAG)


def is_checkpointed(module: nn.Module) -> bool:
    return bool(getattr(module, _FLAG, False))
