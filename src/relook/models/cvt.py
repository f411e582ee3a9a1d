"""CvT-13 (Wu et al., ICCV 2021), the main backbone of "Beyond the CLS Token" (Tables 1-3), from Hugging Face
``transformers`` (``CvtModel``), with its self-attention captured for the rollout (Eq. 7).

``create_cvt(pretrained, seed)`` returns the network, its ``WeightsRecord`` and the input normalisation:

* ``pretrained=True``: ``CvtModel.from_pretrained("microsoft/cvt-13")`` (ImageNet-1k, 224 px), from the hub
  or its cache (``HF_HOME``); with neither, one ``ConfigError`` line saying what to do (the CLI: exit 2);
* ``checkpoint="<folder>"``: ``CvtModel.from_pretrained(folder)`` on a ``save_pretrained`` folder, offline;
* ``pretrained=False``: ``CvtModel(CvtConfig())`` drawn from ``seed`` alone inside ``torch.random.fork_rng``
  (transformers initialises from torch's global generator): identical weights in every process.

``CvtConfig()``'s defaults are CvT-13 (``CVT13``: 1 + 2 + 10 blocks of 64 / 192 / 384 channels, 1 / 3 / 6
heads, the CLS token only in the last stage). At 224 px the stages run on 56x56, 28x28 and 14x14 tokens; the
keys and values of every block come from a stride-2 convolutional projection, so each attention map is
(queries on the stage grid) x (keys on a half-resolution grid), plus the CLS row and column in stage 3.

``CvtModel`` does not return attention (no ``output_attentions``): ``AttentionCapture`` hooks the attention
dropout of every ``CvtSelfAttention`` (its input and output are the softmax probabilities, (B, heads, Nq, Nk);
dropout is the identity in eval mode) and reads the query and key grids from the inputs of the two
projections' flattening steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from relook.errors import ConfigError
from relook.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from relook.weights import WeightsRecord, file_sha256, random_init

HUB_NAME = "microsoft/cvt-13"
#: names ``vit_tokens`` accepts for this backbone
NAMES = ("cvt13", "cvt_13", "cvt-13", HUB_NAME)
#: CvT-13 as published (Wu et al., Table 2); transformers' ``CvtConfig()`` defaults, checked by the tests
CVT13 = {"depth": [1, 2, 10], "embed_dim": [64, 192, 384], "num_heads": [1, 3, 6], "cls_token": [False, False, True]}


def hub_error(error: Exception) -> ConfigError:
    """One line for a failed ``from_pretrained("microsoft/cvt-13")`` naming the ways forward."""
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return ConfigError(
        f"cannot load CvT-13 weights {HUB_NAME!r} from the Hugging Face hub ({first}); fetch them "
        "once where huggingface.co is reachable (they stay in the hub cache, HF_HOME), or set "
        "checkpoint: <a save_pretrained folder>, or pretrained: false for a seeded random init"
    )


def create_cvt(
    pretrained: bool, seed: int = 0, checkpoint: str | None = None, **config: Any
) -> tuple[nn.Module, WeightsRecord, tuple[tuple, tuple]]:
    """(CvtModel in eval mode, weights record, (mean, std) on [0, 1] pixels); ``config`` overrides
    ``CvtConfig`` fields (random init only, e.g. smaller depths for quick tests)."""
    try:
        # lazy: optional dependency (transformers)
        import transformers

        # lazy: optional dependency (transformers)
        from transformers import CvtConfig, CvtModel
    except ImportError:
        raise ConfigError(
            "backbone 'cvt13' needs Hugging Face transformers: pip install 'relook[cvt]' (or pip install transformers)"
        ) from None
    if config and (pretrained or checkpoint):
        raise ConfigError(
            f"backbone 'cvt13': model_kwargs {sorted(config)} change the architecture; they go "
            "with pretrained: false only"
        )
    if checkpoint:
        try:
            model = CvtModel.from_pretrained(str(checkpoint), local_files_only=True)
        except Exception as e:
            raise ConfigError(
                f"checkpoint {checkpoint!r}: not a CvT save_pretrained folder ({str(e).strip().splitlines()[0][:160]})"
            ) from None
        files = sorted(Path(checkpoint).glob("*.safetensors"))
        record = WeightsRecord(
            name=str(checkpoint),
            what="CvT weights from a local folder",
            path=str(checkpoint),
            sha256=file_sha256(files[0]) if files else "",
        )
    elif pretrained:
        try:
            model = CvtModel.from_pretrained(HUB_NAME)
        except Exception as e:  # no network and nothing cached: one line
            raise hub_error(e) from None
        record = WeightsRecord(
            name=HUB_NAME,
            what="CvT-13 ImageNet-1k (Hugging Face hub)",
            package="transformers",
            version=transformers.__version__,
        )
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = CvtModel(CvtConfig(**config), add_pooling_layer=False)
        record = random_init(seed)
    if not model.config.cls_token[-1]:
        raise ConfigError("backbone 'cvt13': the last stage must have the CLS token (Sec. 3.3's global descriptor)")
    return model.eval(), record, (IMAGENET_MEAN, IMAGENET_STD)


class AttentionCapture:
    """Record every CvT block's attention of one forward pass: ``layers`` is a list, in block order, of
    ``(probs (B, heads, Nq, Nk), query grid (h, w), key grid (h, w), prefix tokens)``."""

    def __init__(self, model: nn.Module) -> None:
        # lazy: optional dependency (transformers)
        from transformers.models.cvt.modeling_cvt import CvtSelfAttention

        self.layers: list[tuple[torch.Tensor, tuple[int, int], tuple[int, int], int]] = []
        self._grids: dict[int, dict[str, tuple[int, int]]] = {}
        blocks = [m for m in model.modules() if isinstance(m, CvtSelfAttention)]
        for i, blk in enumerate(blocks):
            for side, proj in (("q", blk.convolution_projection_query), ("k", blk.convolution_projection_key)):
                proj.linear_projection.register_forward_pre_hook(self._grid_hook(i, side))
            blk.dropout.register_forward_hook(self._probs_hook(i, int(blk.with_cls_token)))

    def _grid_hook(self, i: int, side: str):
        def hook(module, args):
            self._grids.setdefault(i, {})[side] = tuple(args[0].shape[-2:])

        return hook

    def _probs_hook(self, i: int, prefix: int):
        def hook(module, args, out):
            g = self._grids.pop(i)
            self.layers.append((out.detach(), g["q"], g["k"], prefix))

        return hook

    def clear(self) -> None:
        self.layers.clear()
        self._grids.clear()
