"""2:4 semi-structured sparsity for TensorRT's sparse tensor cores.

TensorRT reads the 2:4 pattern along a convolution's input channels: for each output channel
and each kernel position, every 4 consecutive input channels hold at least 2 zeros. It only
considers dense (groups 1) convolutions and prefers channel counts that are multiples of 32
(INT8) / 16 (FP16); whether a sparse kernel actually wins is decided per layer when the engine
is built, so this module reports which layers carry the pattern, never a speed-up.

Masks are magnitude masks (keep the 2 largest of every 4). ``hold_masks`` keeps pruned
weights at exactly zero through any optimiser that leaves zero-gradient weights untouched
(SGD, Adam, AdamW: decoupled weight decay scales a zero by a factor), by masking gradients.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from spartan_deploy.prune.options import SPARSE_CHANNEL_MULTIPLE as CHANNEL_MULTIPLE
from spartan_deploy.prune.options import Sparsity
from spartan_deploy.model.spartan import SpaRTAN, SqueezeExcite



@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """One convolution's verdict: masked or why not."""

    name: str
    shape: tuple[int, ...]
    groups: int
    sparse: bool
    reason: str  # "2:4" or why the layer does not qualify

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "groups": self.groups,
                "sparse": self.sparse, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    layers: tuple[LayerSparsity, ...]

    @property
    def sparse_layers(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.sparse)

    def to_dict(self) -> dict:
        return {"pattern": Sparsity.TWO_FOUR.value, "sparse_layers": list(self.sparse_layers),
                "layers": [layer.to_dict() for layer in self.layers]}


def _gate_convs(model: nn.Module) -> set[nn.Module]:
    return {m for se in model.modules() if isinstance(se, SqueezeExcite)
            for m in (se.squeeze, se.expand)}


def qualifies(conv: nn.Conv2d, is_gate: bool = False) -> tuple[bool, str]:
    """Whether a convolution can take the 2:4 pattern TensorRT uses, and why not."""
    if conv.groups != 1:
        kind = "depthwise" if conv.groups == conv.in_channels else "grouped"
        return False, f"{kind} convolution (groups {conv.groups}): no sparse kernels"
    if is_gate:
        return False, "squeeze-excitation gate on a pooled 1x1 vector: too little work"
    for label, channels in (("input", conv.in_channels), ("output", conv.out_channels)):
        if channels % CHANNEL_MULTIPLE:
            return False, f"{label} channels not a multiple of {CHANNEL_MULTIPLE} ({channels})"
    return True, "2:4"


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest magnitudes of every 4 consecutive input channels (dim 1)."""
    out_ch, in_ch, kh, kw = weight.shape
    quads = weight.detach().abs().permute(0, 2, 3, 1).reshape(-1, 4)
    keep = torch.zeros_like(quads, dtype=torch.bool)
    keep.scatter_(1, quads.topk(2, dim=1).indices, True)
    return keep.reshape(out_ch, kh, kw, in_ch).permute(0, 3, 1, 2).contiguous()


def is_two_four(weight: torch.Tensor) -> bool:
    """True when every 4 consecutive input channels hold at most 2 non-zeros."""
    if weight.ndim != 4 or weight.shape[1] % 4:
        return False
    quads = (weight.detach() != 0).permute(0, 2, 3, 1).reshape(-1, 4)
    return bool((quads.sum(dim=1) <= 2).all())


def apply_two_four(model: SpaRTAN) -> tuple[dict[str, torch.Tensor], SparsityReport]:
    """Mask every qualifying conv in place; return the masks (by parameter name) and report."""
    gates = _gate_convs(model)
    masks: dict[str, torch.Tensor] = {}
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        ok, reason = qualifies(module, module in gates)
        layers.append(LayerSparsity(name, tuple(module.weight.shape), module.groups, ok, reason))
        if ok:
            mask = two_four_mask(module.weight)
            with torch.no_grad():
                module.weight.mul_(mask)
            masks[f"{name}.weight"] = mask
    return masks, SparsityReport(tuple(layers))


def hold_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> list:
    """Zero the gradients of masked weights; returns hook handles (call ``.remove()``)."""
    params = dict(model.named_parameters())
    return [params[name].register_hook(lambda grad, m=mask: grad * m.to(grad.dtype))
            for name, mask in masks.items()]


def reapply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Force masked weights back to zero (belt and braces after training)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))
