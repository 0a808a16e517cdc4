"""The ResShift VQ-GAN autoencoder (nets.vqgan): official key layout, encode/quantize/decode against the official fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import shared_path
from restorecli.nets import attention, blocks, vqgan
from restorecli.nets.vqgan import build_vq
from restorecli.weights.registry import load_registry

TOL = 1e-4
KEY_FILES = {
    # official file -> registry arch used for it
    "autoencoder_vq_f4.json": "resshift-realsr-x4-v3",
    "celeba256_vq_f4_dim3_face.json": "resshift-inpaint-face",
    "ffhq512_vq_f8_dim8_face.json": "resshift-faceir",
}


def _case(name: str) -> tuple[dict, dict[str, torch.Tensor], Path]:
    folder = shared_path("conformance", "resshift", name)
    cfg = json.loads((folder / "case.json").read_text())
    tensors = load_file(str(folder / "tensors.safetensors"))
    ae_file = folder / "autoencoder.pth"
    if not ae_file.exists():
        ae_file = folder.parent / "sr_x4" / "autoencoder.pth"
    return cfg, tensors, ae_file


def _autoencoder(cfg: dict, path: Path) -> vqgan.VQAutoencoder:
    net = build_vq(cfg["config"]["autoencoder"])
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


@pytest.mark.parametrize("key_file", sorted(KEY_FILES))
def test_full_size_keys_and_shapes(key_file: str) -> None:
    """The registry config builds (on meta) exactly the official key set, shapes and parameter count."""
    info = json.loads(shared_path("conformance", "resshift", "keys", key_file).read_text())
    spec = load_registry().get(KEY_FILES[key_file])
    comp = spec.components["autoencoder"]
    assert comp.file == info["official_file"]
    assert comp.url == info["source_url"]
    assert comp.config["embed_dim"] == info["config"]["embed_dim"]
    assert comp.config["n_embed"] == info["config"]["n_embed"]
    assert comp.config["ddconfig"] == info["config"]["ddconfig"]
    net = build_vq(comp.config, device="meta")
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: v["shape"] for k, v in info["keys"].items()}
    assert sorted(set(ours) ^ set(theirs)) == []
    assert ours == theirs
    assert sum(p.numel() for p in net.parameters()) == info["params"]


@pytest.mark.parametrize("case", ["sr_x4", "sr_x4_pad", "inpaint"])
def test_encode_matches_official(case: str) -> None:
    cfg, t, ae_file = _case(case)
    net = _autoencoder(cfg, ae_file)
    lq = t["lq_01"]
    multiple = cfg["config"]["unet"]["lq_size"]
    if "mask_01" in t:
        lq = lq * (1 - t["mask_01"])
    y = lq * 2 - 1
    h, w = y.shape[-2:]
    y = F.pad(y, (0, -w % multiple, 0, -h % multiple), mode="reflect")
    if cfg["sf"] != 1:
        y = F.interpolate(y, scale_factor=cfg["sf"], mode="bicubic")
    with torch.no_grad():
        z = net.encode(y)
    assert (z - t["z_y"]).abs().max().item() <= TOL


@pytest.mark.parametrize("case", ["sr_x4", "sr_x4_pad", "sr_x4_onestep", "inpaint"])
def test_quantize_and_decode_match_official(case: str) -> None:
    cfg, t, ae_file = _case(case)
    net = _autoencoder(cfg, ae_file)
    # The last latent of the chain: the x0 estimate for one-step; otherwise re-quantizing
    # the recorded quantized latent must pick the very same codes.
    with torch.no_grad():
        quantized, index = net.quantize(t["quantized"])
        decoded = net.decode_quantized(t["quantized"])
    assert torch.equal(index, t["code_indices"])
    assert (quantized - t["quantized"]).abs().max().item() <= 1e-6
    assert (decoded - t["decoder_out"]).abs().max().item() <= TOL
    if case == "sr_x4_onestep":
        q2, i2 = net.quantize(t["x0_pred_0"])
        assert torch.equal(i2, t["code_indices"])
        assert (q2 - t["quantized"]).abs().max().item() <= 1e-6


def test_quantize_chunking_and_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked distance computation picks the same codes; exact ties go to the lowest index."""
    torch.manual_seed(0)
    quant = vqgan.VectorQuantizer(64, 3)
    z = torch.randn(2, 3, 16, 16)
    whole_q, whole_i = quant(z)
    monkeypatch.setattr(vqgan, "_DISTANCE_CHUNK", 64 * 7)  # 7 rows at a time
    part_q, part_i = quant(z)
    assert torch.equal(whole_i, part_i) and torch.equal(whole_q, part_q)
    # index order is (b, h, w): the code picked at batch 1, row 2, col 5
    assert whole_i.view(2, 16, 16)[1, 2, 5] == whole_i[256 + 2 * 16 + 5]
    with torch.no_grad():
        quant.embedding.weight[10] = quant.embedding.weight[40]  # duplicate code
    probe = quant.embedding.weight[40].view(1, 3, 1, 1).clone()
    _, idx = quant(probe)
    assert idx.item() == 10


def test_mid_attention_equals_explicit_softmax() -> None:
    """The scaled_dot_product_attention path computes the official softmax(QK^T/sqrt(c))V."""
    torch.manual_seed(1)
    block = blocks.SelfAttention(64).eval()
    x = torch.randn(2, 64, 12, 10)
    with torch.no_grad():
        fast = block(x)
        y = block.norm(x)
        q = block.q(y).reshape(2, 64, 120).permute(0, 2, 1)
        k = block.k(y).reshape(2, 64, 120)
        w = torch.softmax(torch.bmm(q, k) * 64**-0.5, dim=2)
        v = block.v(y).reshape(2, 64, 120)
        ref = x + block.proj_out(torch.bmm(v, w.permute(0, 2, 1)).reshape(2, 64, 12, 10))
        with attention.reference_mode():
            plain = block(x)
    assert (fast - ref).abs().max().item() <= 1e-5
    assert (plain - ref).abs().max().item() <= 1e-5


def test_rejects_unsupported_configs() -> None:
    cfg = {
        "embed_dim": 3,
        "n_embed": 8,
        "ddconfig": {
            "double_z": True,
            "z_channels": 3,
            "resolution": 64,
            "in_channels": 3,
            "out_ch": 3,
            "ch": 32,
            "ch_mult": [1, 2],
            "num_res_blocks": 1,
            "attn_resolutions": [],
            "dropout": 0.0,
        },
    }
    with pytest.raises(ValueError, match="double_z"):
        build_vq(cfg, device="meta")
    cfg["ddconfig"]["double_z"] = False
    cfg["ddconfig"]["num_res_blocks"] = [1, 2, 3]
    with pytest.raises(ValueError, match="num_res_blocks"):
        build_vq(cfg, device="meta")


def test_attention_gets_contiguous_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strided q/k/v make the CPU kernel fall back to materialising the full (HW x HW) matrix."""
    seen = []

    def check(q, k, v, mask=None, scale=None):
        seen.append(all(t.is_contiguous() for t in (q, k, v)))
        return attention.attention(q, k, v, mask, scale)

    monkeypatch.setattr(blocks, "attention", check)
    block = blocks.SelfAttention(32).eval()
    with torch.no_grad():
        block(torch.randn(1, 32, 6, 5))
    assert seen == [True]
