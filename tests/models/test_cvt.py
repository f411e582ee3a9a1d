"""CvT-13 from Hugging Face transformers (relook.models.cvt): the architecture, seeded random init across
processes, real ``from_pretrained`` paths (hub offline: one line, exit 2 through the CLI; a local folder), and
the captured attention against softmax(q k^T * scale) recomputed by hand from each block's input."""

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from relook.errors import ConfigError
from relook.models import cvt

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SRC = Path(__file__).resolve().parents[2] / "src"
#: a small CvT (the same three-stage layout, CLS in the last stage) for the checks that need no CvT-13;
#: transformers wants depth[s] > s (it picks stage s's drop-path rate as the s-th of the stage's blocks)
TINY = {"depth": [1, 2, 3], "embed_dim": [16, 24, 32], "num_heads": [1, 2, 2]}


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_config_is_cvt13():
    """``CvtConfig()`` is CvT-13 as published (Wu et al., Table 2): 1 / 2 / 10 blocks of 64 / 192 / 384
    channels, 1 / 3 / 6 heads, 7x7 stride-4 then 3x3 stride-2 token embeddings, CLS in stage 3 only, 20M
    parameters with the ImageNet head (19.6M without its LayerNorm and 384 x 1000 classifier)."""
    from transformers import CvtConfig

    c = CvtConfig()
    assert {k: list(getattr(c, k)) for k in cvt.CVT13} == cvt.CVT13
    assert [list(getattr(c, k)) for k in ("patch_sizes", "patch_stride", "stride_kv", "mlp_ratio")] == [
        [7, 3, 3],
        [4, 2, 2],
        [2, 2, 2],
        [4.0] * 3,
    ]
    model, record, norm = cvt.create_cvt(False, seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert n == 19_611_712 and round((n + 2 * 384 + 384 * 1000 + 1000) / 1e6) == 20
    assert record.is_random and record.what == "random init, seed 0" and not model.training
    assert norm == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


CHILD = textwrap.dedent("""
    import hashlib, sys
    import torch
    from relook.models.cvt import create_cvt
    torch.rand(int(sys.argv[2]))  # another global random state in every process
    model, _, _ = create_cvt(False, seed=int(sys.argv[1]))
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    print(h.hexdigest())
""")


@pytest.mark.slow
def test_seeded():
    """``pretrained: false`` draws CvT-13 from ``seed`` alone: byte-identical in a child process and in this one,
    which start from different global random states; another seed differs; the caller's generator is untouched."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "3", "1000"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr[-2000:]
    torch.manual_seed(7)
    state = torch.get_rng_state()
    here = _digest(cvt.create_cvt(False, seed=3)[0])
    assert torch.equal(torch.get_rng_state(), state)
    assert child.stdout.strip() == here
    assert _digest(cvt.create_cvt(False, seed=4)[0]) != here


def _offline(monkeypatch, tmp_path):
    """No hub and no cache, as on this machine and in CI (huggingface_hub reads its settings at import, so
    they are patched there too; without HF_HUB_OFFLINE it retries the network for ~40 s before failing)."""
    import huggingface_hub.constants as hub

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, value in (("HF_HUB_OFFLINE", True), ("HF_HOME", str(cache)), ("HF_HUB_CACHE", str(cache / "hub"))):
        if hasattr(hub, name):
            monkeypatch.setattr(hub, name, value)


def test_offline_pretrained_one_line(monkeypatch, tmp_path):
    """``pretrained: true`` really calls ``CvtModel.from_pretrained("microsoft/cvt-13")``: without the hub or its
    cache that is one ConfigError line naming the model and the ways forward."""
    _offline(monkeypatch, tmp_path)
    with pytest.raises(ConfigError) as e:
        cvt.create_cvt(True)
    msg = str(e.value)
    assert "\n" not in msg and "'microsoft/cvt-13'" in msg
    for what in ("HF_HOME", "checkpoint:", "pretrained: false"):
        assert what in msg, (what, msg)


@pytest.mark.slow
def test_offline_pretrained_cli_exit_2(tmp_path):
    """Through ``relook extract``: exit code 2 and the same single ``error:`` line on stderr."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for group in ("a", "b"):
        (tmp_path / "photos" / group).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / group / f"{i}.png")
    (tmp_path / "c.yaml").write_text(
        f"dataset: {{name: folder, root: {tmp_path / 'photos'}}}\n"
        "extractors: [{name: vit_tokens, backbone: cvt13, pretrained: true}]\n"
        f"global: vit_tokens\nout: {tmp_path / 'out'}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "relook.cli", "extract", "-c", str(tmp_path / "c.yaml"), "--quiet"],
        env=_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "'microsoft/cvt-13'" in err, err


def test_checkpoint_folder(tmp_path):
    """``checkpoint: <folder>`` goes through the same ``from_pretrained`` offline: weights equal what was saved."""
    model, _, _ = cvt.create_cvt(False, seed=2, **TINY)
    model.save_pretrained(tmp_path / "ckpt")
    loaded, record, _ = cvt.create_cvt(False, checkpoint=str(tmp_path / "ckpt"))
    assert _digest(loaded) == _digest(model) and len(record.sha256) == 64 and not loaded.training
    with pytest.raises(ConfigError, match="model_kwargs"):
        cvt.create_cvt(True, **TINY)
    with pytest.raises(ConfigError, match="not a CvT save_pretrained folder"):
        cvt.create_cvt(False, checkpoint=str(tmp_path))


def _attention_by_hand(m, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """softmax(q k^T * scale) of one CvtSelfAttention from its input x (B, [1 +] h*w, C): (B, heads, Nq, Nk)."""
    b, _, c = x.shape
    cls, x = (x[:, :1], x[:, 1:]) if m.with_cls_token else (None, x)
    grid = x.transpose(1, 2).reshape(b, c, h, w)
    q = m.convolution_projection_query.convolution_projection(grid).flatten(2).transpose(1, 2)
    k = m.convolution_projection_key.convolution_projection(grid).flatten(2).transpose(1, 2)
    if cls is not None:
        q, k = torch.cat([cls, q], 1), torch.cat([cls, k], 1)
    heads = m.num_heads
    q = m.projection_query(q).view(b, q.shape[1], heads, -1).transpose(1, 2)
    k = m.projection_key(k).view(b, k.shape[1], heads, -1).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) * m.scale, -1)


def test_attention_matches_reference():
    """Every captured block (in order): the softmax probabilities recomputed by hand from the block's input, the
    query grid of its stage and the stride-2 key grid (56/28, 28/14, 14/7 at 224 px), CLS only in stage 3."""
    from transformers.models.cvt.modeling_cvt import CvtSelfAttention

    model, _, _ = cvt.create_cvt(False, seed=1)
    capture = cvt.AttentionCapture(model)
    inputs = []
    for m in model.modules():
        if isinstance(m, CvtSelfAttention):
            m.register_forward_pre_hook(lambda mod, args: inputs.append((mod, *args)))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(pixel_values=x)
        refs = [_attention_by_hand(m, hs, h, w) for m, hs, h, w in inputs]
    assert len(capture.layers) == len(refs) == 13
    grids = [((56, 56), (28, 28))] + [((28, 28), (14, 14))] * 2 + [((14, 14), (7, 7))] * 10
    for (probs, q_hw, k_hw, prefix), ref, g, i in zip(capture.layers, refs, grids, range(13)):
        assert (q_hw, k_hw) == g and prefix == int(i >= 3)
        heads = 1 if i == 0 else 3 if i < 3 else 6
        assert probs.shape == (2, heads, prefix + g[0][0] * g[0][1], prefix + g[1][0] * g[1][1])
        torch.testing.assert_close(probs, ref, atol=1e-6, rtol=1e-5)
    capture.clear()
    assert capture.layers == []
