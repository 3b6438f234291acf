#!/usr/bin/env python3
"""PyTorch parity check of the neurofm masked autoencoder (crates/neurofm-models/src/mae.rs).

Defines the same model in PyTorch with the same parameter names, loads the weights that
`cargo run -p neurofm-models --example dump_mae -- DIR` writes (strict: every key must match
in name and shape, which is what `neurofm export` relies on), and compares the loss, the
reconstruction and encode() on the fixed batch the example also writes.

Usage: python3 scripts/check/torch_mae_parity.py [--dir DIR] [--no-cargo]
Creates scripts/check/.venv (torch, numpy, safetensors from PyPI) on first run.
Exit status 0 = parity within tolerance.
"""
import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
REQUIREMENTS = ["torch==2.15.0", "numpy", "safetensors"]


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    check = subprocess.run([str(py), "-c", "import torch, numpy, safetensors"], capture_output=True)
    if check.returncode != 0:
        subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", *REQUIREMENTS])
    os.execv(str(py), [str(py), *sys.argv])


def main():
    ensure_venv()
    import math

    import torch
    import torch.nn as nn
    from safetensors.torch import load_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT / "target" / "torch_mae_parity"))
    ap.add_argument("--no-cargo", action="store_true", help="use an existing dump in --dir")
    args = ap.parse_args()
    out = Path(args.dir)
    if not args.no_cargo:
        subprocess.check_call(
            ["cargo", "run", "--quiet", "-p", "neurofm-models", "--example", "dump_mae", "--", str(out)],
            cwd=ROOT,
        )

    cfg = json.loads((out / "config.json").read_text())
    assert cfg.pop("type") == "mae", cfg

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim, bias=cfg["qkv_bias"])
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, l, d = x.shape
            h = self.heads
            qkv = self.qkv(x).reshape(b, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
            att = att.softmax(dim=-1)
            return self.proj((att @ v).transpose(1, 2).reshape(b, l, d))

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, dim, heads, hidden):
            super().__init__()
            eps = cfg["layer_norm_eps"]
            self.norm1 = nn.LayerNorm(dim, eps=eps)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm(dim, eps=eps)
            self.mlp = Mlp(dim, hidden)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(cfg["patch_len"], cfg["d_model"])

    class Mae(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg["d_model"]
            self.patch_embed = PatchEmbed()
            self.channel_embed = nn.Embedding(cfg["n_channel_ids"], d)
            self.time_embed = nn.Embedding(cfg["max_patches"], d)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, d))
            self.blocks = nn.ModuleList(
                [Block(d, cfg["n_heads"], cfg["mlp_dim"]) for _ in range(cfg["depth"])]
            )
            self.norm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
            head_in = d
            if cfg["decoder_depth"] > 0:
                dd = cfg["decoder_dim"]
                self.decoder_embed = nn.Linear(d, dd)
                hidden = cfg["mlp_dim"] * dd // d
                self.decoder_blocks = nn.ModuleList(
                    [Block(dd, cfg["decoder_heads"], hidden) for _ in range(cfg["decoder_depth"])]
                )
                self.decoder_norm = nn.LayerNorm(dd, eps=cfg["layer_norm_eps"])
                head_in = dd
            self.head = nn.Linear(head_in, cfg["patch_len"])

        def embed(self, x, ids, mask=None):
            b, c, t = x.shape
            n = cfg["patch_len"]
            p = t // n
            patches = x.reshape(b, c, p, n)
            tok = self.patch_embed.proj(patches)
            if mask is not None:
                m = mask.to(tok.dtype).reshape(b, c, p, 1)
                tok = tok * (1 - m) + m * self.mask_token
            tok = tok + self.channel_embed(ids).reshape(1, c, 1, -1)
            tok = tok + self.time_embed.weight[:p].reshape(1, 1, p, -1)
            return tok.reshape(b, c * p, -1), patches

        def encoder(self, h):
            for blk in self.blocks:
                h = blk(h)
            return self.norm(h)

        def forward_loss(self, x, ids, mask):
            b, c, t = x.shape
            n = cfg["patch_len"]
            p = t // n
            tok, patches = self.embed(x, ids, mask)
            h = self.encoder(tok)
            if cfg["decoder_depth"] > 0:
                h = self.decoder_embed(h)
                for blk in self.decoder_blocks:
                    h = blk(h)
                h = self.decoder_norm(h)
            pred = self.head(h).reshape(b, c, p, n)
            m = mask.to(pred.dtype).reshape(b, c, p, 1)
            n_masked = m.sum().clamp(min=1.0)
            recon = (((pred - patches) ** 2) * m).sum() / (n_masked * n)
            out = {"recon_loss": recon, "pred": pred, "loss": recon}
            w = cfg["fft_loss_weight"]
            if w > 0:
                def amp(z):
                    f = torch.fft.rfft(z, dim=-1, norm="forward")
                    return torch.sqrt(f.real ** 2 + f.imag ** 2 + 1e-12)
                k = n // 2 + 1
                fft = (((amp(pred) - amp(patches)) ** 2) * m).sum() / (n_masked * k)
                out["fft_loss"] = fft
                out["loss"] = recon + w * fft
            return out

        def encode(self, x, ids):
            tok, _ = self.embed(x, ids)
            return self.encoder(tok).mean(dim=1)

    model = Mae()
    state = load_file(str(out / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        print(f"FAIL: module tree differs: missing {missing}, unexpected {unexpected}")
        return 1
    model.load_state_dict(state, strict=True)
    model.eval()
    inp = load_file(str(out / "inputs.safetensors"))
    ref = load_file(str(out / "outputs.safetensors"))
    with torch.no_grad():
        got = model.forward_loss(inp["x"], inp["channel_ids"], inp["mask"])
        got["encode"] = model.encode(inp["x"], inp["channel_ids"])

    ok = True
    print(f"torch {torch.__version__}; {len(state)} tensors loaded strictly")
    for key in ["loss", "recon_loss", "fft_loss", "pred", "encode"]:
        a = ref[key].double().reshape(-1)
        b = got[key].double().reshape(-1)
        err = (a - b).abs().max().item()
        scale = b.abs().max().item()
        rel = err / max(scale, 1e-12)
        good = rel < 1e-4
        ok &= good
        print(f"{key:>10}: rust {a[0].item(): .6e} torch {b[0].item(): .6e} max|diff| {err:.3e} rel {rel:.3e} {'ok' if good else 'FAIL'}")
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
