"""Shipped RRT checkpoints: fp16 safetensors with the config in the metadata, loaded by ``load_rrt``."""

import pytest
import torch

from relook.errors import DataError
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import export_rrt_safetensors, load_rrt


def test_roundtrip_fp16(tmp_path):
    torch.manual_seed(0)
    m = RRT(num_layers=2, dim_feedforward=64, d_local=40, d_global=24).eval()
    p = export_rrt_safetensors(tmp_path / "rrt.safetensors", m, data="unit test")
    got = load_rrt(p)
    assert got.conf == m.conf and got.guidance == {"guidance": "none"}
    for k, v in m.state_dict().items():  # fp16 storage: equal to the weights rounded to half precision
        torch.testing.assert_close(got.state_dict()[k], v.half().float())
    q, c = torch.randn(3, 5, 40), torch.randn(3, 6, 40)
    pos = torch.rand(3, 5, 2), torch.rand(3, 6, 2)
    g = torch.randn(3, 24), torch.randn(3, 24)
    with torch.no_grad():
        a = m(q, c, *pos, q_global=g[0], c_global=g[1]).logits
        b = got(q, c, *pos, q_global=g[0], c_global=g[1]).logits
    torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)
    assert p.read_bytes()[:8] != b"PK\x03\x04"  # not a zip / pickle archive


def test_bad_input(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="x.safetensors"):
        load_rrt(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(DataError, match="without relook RRT metadata"):
        load_rrt(tmp_path / "plain.safetensors")
    with pytest.raises(DataError, match="no such"):
        load_rrt(tmp_path / "missing.safetensors")


def test_reranker_loads_safetensors(tmp_path):
    """The ``rrt`` reranker's ``checkpoint`` key takes a shipped file: its scores are the fp16 model's logits."""
    import numpy as np

    from relook.models.rrt.inputs import index_side, model_kwargs, pack_side
    from relook.rerank.rrt import RRTReranker
    from relook.types import ImageFeatures

    torch.manual_seed(0)
    m = RRT(num_layers=1, dim_feedforward=32, d_local=40, d_global=24).eval()
    p = export_rrt_safetensors(tmp_path / "rrt.safetensors", m)
    r = np.random.default_rng(0)

    def feat(i):
        return ImageFeatures(
            f"i{i}",
            global_desc=r.standard_normal(24).astype(np.float32),
            local_desc=r.standard_normal((4, 40)).astype(np.float32),
            keypoints=r.random((4, 2)).astype(np.float32) * 32,
            image_size=np.array([32, 32]),
        )

    q, cands = feat(0), [feat(i) for i in range(1, 4)]
    rr = RRTReranker(checkpoint=str(p), workers=0)
    got = rr.rerank(q, cands, np.zeros(3, np.float32))
    ref = load_rrt(p)
    qs, cs = pack_side([q], ref.conf), pack_side(cands, ref.conf)
    with torch.no_grad():
        want = ref(**model_kwargs(index_side(qs, torch.zeros(3, dtype=torch.long)), cs)).logits.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
