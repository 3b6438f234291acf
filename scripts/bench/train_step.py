#!/usr/bin/env python3
"""PyTorch twin of `crates/neurofm-models/examples/train_step.rs`.

The same masked autoencoder as crates/neurofm-models/src/mae.rs (module tree, init scheme:
nn.Linear defaults = uniform(+-1/sqrt(fan_in)) for weight and bias, embeddings and mask token
N(0, 0.02), LayerNorm ones/zeros), the same batch shape, masking ratio (exactly
round(ratio * C * P) masked patches per window), loss (MSE over masked patches) and
optimizer (torch.optim.AdamW, lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 0.05 on
rank >= 2 tensors only). Times full steps (mask, forward, loss, backward, AdamW step).

Usage: train_step.py --preset tiny|base --batch B --steps N [--warmup W] [--channels C]
       [--patches P] [--device cpu|cuda] [--dtype f32|bf16] [--attn sdpa|manual]
       [--threads T]
The last line printed is one JSON object ("impl": "torch").
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(patch_len=200, d_model=64, depth=2, n_heads=4, mlp_dim=256, n_channel_ids=344,
                 max_patches=64, mask_ratio=0.5, decoder_depth=0, decoder_dim=64,
                 decoder_heads=4, layer_norm_eps=1e-5, qkv_bias=True),
    "base": dict(patch_len=200, d_model=256, depth=8, n_heads=8, mlp_dim=1024, n_channel_ids=344,
                 max_patches=256, mask_ratio=0.5, decoder_depth=2, decoder_dim=128,
                 decoder_heads=4, layer_norm_eps=1e-5, qkv_bias=True),
}


def matmul_flops_fwd(cfg, batch, channels, patches):
    """Same formula as matmul_flops_fwd in train_step.rs."""
    l = channels * patches
    n = batch * l

    def block(d, m):
        return 2 * n * (3 * d * d + d * d + 2 * d * m) + 4 * batch * l * l * d

    d = cfg["d_model"]
    f = 2 * n * cfg["patch_len"] * d
    f += cfg["depth"] * block(d, cfg["mlp_dim"])
    head_in = d
    if cfg["decoder_depth"] > 0:
        dd = cfg["decoder_dim"]
        f += 2 * n * d * dd
        f += cfg["decoder_depth"] * block(dd, cfg["mlp_dim"] * dd // d)
        head_in = dd
    return float(f + 2 * n * head_in * cfg["patch_len"])


def build(cfg, attn_impl):
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
            q, k, v = qkv.unbind(0)
            if attn_impl == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v)
            else:
                att = ((q @ k.transpose(-2, -1)) / math.sqrt(d // h)).softmax(dim=-1)
                o = att @ v
            return self.proj(o.transpose(1, 2).reshape(b, l, d))

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
            for t in (self.channel_embed.weight, self.time_embed.weight, self.mask_token):
                nn.init.normal_(t, 0.0, 0.02)
            self.blocks = nn.ModuleList(
                [Block(d, cfg["n_heads"], cfg["mlp_dim"]) for _ in range(cfg["depth"])])
            self.norm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
            head_in = d
            if cfg["decoder_depth"] > 0:
                dd = cfg["decoder_dim"]
                self.decoder_embed = nn.Linear(d, dd)
                self.decoder_blocks = nn.ModuleList(
                    [Block(dd, cfg["decoder_heads"], cfg["mlp_dim"] * dd // d)
                     for _ in range(cfg["decoder_depth"])])
                self.decoder_norm = nn.LayerNorm(dd, eps=cfg["layer_norm_eps"])
                head_in = dd
            self.head = nn.Linear(head_in, cfg["patch_len"])

        def forward_loss(self, x, ids, mask):
            b, c, t = x.shape
            n = cfg["patch_len"]
            p = t // n
            patches = x.reshape(b, c, p, n)
            tok = self.patch_embed.proj(patches)
            m = mask.to(tok.dtype).reshape(b, c, p, 1)
            tok = tok * (1 - m) + m * self.mask_token
            tok = tok + self.channel_embed(ids).reshape(1, c, 1, -1)
            tok = tok + self.time_embed.weight[:p].reshape(1, 1, p, -1)
            h = tok.reshape(b, c * p, -1)
            for blk in self.blocks:
                h = blk(h)
            h = self.norm(h)
            if cfg["decoder_depth"] > 0:
                h = self.decoder_embed(h)
                for blk in self.decoder_blocks:
                    h = blk(h)
                h = self.decoder_norm(h)
            pred = self.head(h).reshape(b, c, p, n)
            n_masked = m.sum().clamp(min=1.0).detach()
            return (((pred - patches) ** 2) * m).sum() / (n_masked * n)

    return Mae()


def random_mask(b, per, ratio, device, gen):
    """Exactly round(ratio * per) masked positions per row, uniformly chosen."""
    k = min(int(round(per * ratio)), per)
    idx = torch.rand(b, per, generator=gen).argsort(dim=1)[:, :k]
    mask = torch.zeros(b, per)
    mask.scatter_(1, idx, 1.0)
    return mask.to(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--patches", type=int, default=16)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "manual"],
                    help="sdpa = F.scaled_dot_product_attention (timm's default); manual = "
                         "softmax(q k^T / sqrt(d)) v as three ops")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    if args.patches > cfg["max_patches"]:
        sys.exit(f"--patches {args.patches} exceeds max_patches {cfg['max_patches']}")
    dev = torch.device(args.device)
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    torch.manual_seed(args.seed)
    model = build(cfg, args.attn).to(device=dev, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    b, c, p, n = args.batch, args.channels, args.patches, cfg["patch_len"]
    x = torch.randn(b, c, p * n).to(device=dev, dtype=dtype)
    ids = torch.arange(c, device=dev)
    gen = torch.Generator().manual_seed(args.seed)
    flops_step = 3.0 * matmul_flops_fwd(cfg, b, c, p)
    print(f"torch {torch.__version__}: mae {args.preset} ({n_params} parameters), batch {b}, "
          f"{c} channels x {p} patches = {c * p} tokens, {args.device} {args.dtype}, "
          f"attn {args.attn}, {torch.get_num_threads()} threads", file=sys.stderr)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    loss_v = float("nan")
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        mask = random_mask(b, c * p, cfg["mask_ratio"], dev, gen).to(dtype).reshape(b, c, p)
        opt.zero_grad(set_to_none=True)
        loss = model.forward_loss(x, ids, mask)
        loss.backward()
        opt.step()
        loss_v = loss.item()  # synchronizes
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(dt)
        print(f"step {step}: {dt:.4f} s, loss {loss_v:.5f}", file=sys.stderr)
    med = statistics.median(times)
    out = {
        "impl": "torch",
        "torch": torch.__version__,
        "attn": args.attn,
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "batch": b,
        "tokens": c * p,
        "params": n_params,
        "steps": args.steps,
        "step_s_best": min(times),
        "step_s_median": med,
        "windows_per_s": b / med,
        "flops_per_step": flops_step,
        "gflops_median": flops_step / med / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "final_loss": loss_v,
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
