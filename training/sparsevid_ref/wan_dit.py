"""Wan2.1 DiT (wan2.1.md §1) with SLA2 self-attention, official tensor names.

The forward is fp32 throughout (the engine's parity path)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import sla2 as sla2_ops


def sinusoid(t, dim):
    """[cos(t ω_k), sin(t ω_k)], ω_k = 10000^(-k/half), float64 then fp32. t: [B]."""
    half = dim // 2
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half).to(t.device)
    ang = t.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1).float()


def rope_angles(grid, head_dim, device):
    """Angles [L, d/2] for tokens in (f, h, w) order; axis split d_t = d - 4⌊d/6⌋, d_h = d_w = 2⌊d/6⌋."""
    d_hw = 2 * (head_dim // 6)
    d_t = head_dim - 2 * d_hw
    parts = []
    for axis, dd in enumerate((d_t, d_hw, d_hw)):
        omega = 1.0 / torch.pow(10000.0, torch.arange(0, dd, 2, dtype=torch.float64) / dd)
        pos = torch.arange(grid[axis], dtype=torch.float64)
        parts.append(pos[:, None] * omega[None])
    f, h, w = grid
    ang = torch.cat([
        parts[0][:, None, None, :].expand(f, h, w, -1),
        parts[1][None, :, None, :].expand(f, h, w, -1),
        parts[2][None, None, :, :].expand(f, h, w, -1)], dim=-1)
    return ang.reshape(f * h * w, head_dim // 2).to(device)


def apply_rope(x, ang):
    """x [B, L, H, d], interleaved pairs (x[2j], x[2j+1]) rotated by ang [L, d/2] (float64 math)."""
    xd = x.to(torch.float64).reshape(*x.shape[:-1], -1, 2)
    a, b = xd[..., 0], xd[..., 1]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype) * self.weight


class SelfAttention(nn.Module):
    def __init__(self, dim, num_heads, eps, sla2_t_m):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)
        self.sla2 = sla2_ops.SLA2Params(self.head_dim, num_heads, sla2_t_m)

    def forward(self, x, ang, attn):
        b, length, dim = x.shape
        shape = (b, length, self.num_heads, self.head_dim)
        q = apply_rope(self.norm_q(self.q(x)).view(shape), ang)
        k = apply_rope(self.norm_k(self.k(x)).view(shape), ang)
        v = self.v(x).view(shape)
        mode = attn["mode"]
        if mode == "dense":
            if attn.get("fast", False):
                y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                   v.transpose(1, 2)).transpose(1, 2)
            else:
                y = sla2_ops.dense_attention(q, k, v)
        elif mode == "distill":  # SLA2 stage 1: dense output flows on, soft SLA2 is scored
            with torch.no_grad():
                y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                   v.transpose(1, 2)).transpose(1, 2)
            p = self.sla2
            with torch.autocast(device_type=x.device.type, enabled=False):
                y_soft = sla2_ops.sla2_attention(
                    q.float(), k.float(), v.float(), p.proj_q.weight, p.proj_k.weight,
                    p.alpha_logit, attn["keep_ratio"], attn["block_q"], attn["block_k"],
                    mode="sla2_soft")
                attn["losses"].append(F.mse_loss(y_soft, y.float()))
        else:
            p = self.sla2
            with torch.autocast(device_type=x.device.type, enabled=False):
                y, mask = sla2_ops.sla2_attention(
                    q.float(), k.float(), v.float(), p.proj_q.weight, p.proj_k.weight,
                    p.alpha_logit, attn["keep_ratio"], attn["block_q"], attn["block_k"],
                    mode=mode, return_mask=True)
            y = y.to(x.dtype)
            hook = attn.get("on_sla2")
            if hook is not None:  # statistics (kept fraction)
                hook(mask)
        return self.o(y.reshape(b, length, dim))


class CrossAttention(nn.Module):
    def __init__(self, dim, num_heads, eps):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x, context):
        b, length, dim = x.shape
        hd = dim // self.num_heads
        q = self.norm_q(self.q(x)).view(b, length, self.num_heads, hd).transpose(1, 2)
        k = self.norm_k(self.k(context)).view(b, -1, self.num_heads, hd).transpose(1, 2)
        v = self.v(context).view(b, -1, self.num_heads, hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, length, dim))


class WanAttentionBlock(nn.Module):
    def __init__(self, dim, ffn_dim, num_heads, eps, sla2_t_m):
        super().__init__()
        self.eps = eps
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        self.self_attn = SelfAttention(dim, num_heads, eps, sla2_t_m)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(ffn_dim, dim))

    def forward(self, x, e0, context, ang, attn):
        m = self.modulation + e0  # [B, 6, D]
        sh1, sc1, g1, sh2, sc2, g2 = (m[:, i:i + 1] for i in range(6))
        h = F.layer_norm(x, (x.shape[-1],), eps=self.eps) * (1 + sc1) + sh1
        x = x + self.self_attn(h, ang, attn) * g1
        x = x + self.cross_attn(self.norm3(x), context)
        h = F.layer_norm(x, (x.shape[-1],), eps=self.eps) * (1 + sc2) + sh2
        return x + self.ffn(h) * g2


class Head(nn.Module):
    def __init__(self, dim, out_features, eps):
        super().__init__()
        self.eps = eps
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)
        self.head = nn.Linear(dim, out_features)

    def forward(self, x, e):
        m = self.modulation + e[:, None]
        shift, scale = m[:, 0:1], m[:, 1:2]
        return self.head(F.layer_norm(x, (x.shape[-1],), eps=self.eps) * (1 + scale) + shift)


class WanModel(nn.Module):
    def __init__(self, dit_cfg, att_cfg):
        super().__init__()
        c = dit_cfg
        self.cfg = c
        self.att_cfg = dict(att_cfg)
        self.patch_size = tuple(c["patch_size"])
        dim = c["dim"]
        self.dim = dim
        self.patch_embedding = nn.Conv3d(c["in_dim"], dim, kernel_size=self.patch_size,
                                         stride=self.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(c["text_dim"], dim),
                                            nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(c["freq_dim"], dim), nn.SiLU(),
                                            nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        tg = att_cfg["trained_grid"]
        t_m = sla2_ops.num_blocks(tg[0] * tg[1] * tg[2], att_cfg["block_q"])
        self.blocks = nn.ModuleList(
            WanAttentionBlock(dim, c["ffn_dim"], c["num_heads"], c["eps"], t_m)
            for _ in range(c["num_layers"]))
        self.head = Head(dim, c["out_dim"] * math.prod(self.patch_size), c["eps"])

    def sla2_parameters(self):
        return [p for n, p in self.named_parameters() if ".sla2." in n]

    def forward(self, x, t, context, attn=None):
        """x [B, C, T, H, W] latents, t [B] timesteps (float), context [B, Lc, text_dim]
        (valid rows; zero-padded to text_len here). Returns the velocity [B, C, T, H, W]."""
        attn = dict(self.att_cfg, **(attn or {}))
        b = x.shape[0]
        pt, ph, pw = self.patch_size
        xe = self.patch_embedding(x)  # [B, D, F, Hp, Wp]
        grid = tuple(xe.shape[2:])
        tokens = xe.flatten(2).transpose(1, 2)
        ang = rope_angles(grid, self.dim // self.cfg["num_heads"], x.device)
        e = self.time_embedding(sinusoid(t, self.cfg["freq_dim"]))
        e0 = self.time_projection(e).view(b, 6, self.dim)
        text_len = self.cfg["text_len"]
        if context.shape[1] > text_len:
            raise ValueError(f"context has {context.shape[1]} rows, more than text_len {text_len}")
        ctx = F.pad(context, (0, 0, 0, text_len - context.shape[1]))
        ctx = self.text_embedding(ctx)
        h = tokens
        for block in self.blocks:
            if attn.get("checkpoint", False) and self.training:
                h = torch.utils.checkpoint.checkpoint(block, h, e0, ctx, ang, attn, use_reentrant=False)
            else:
                h = block(h, e0, ctx, ang, attn)
        out = self.head(h, e)  # [B, L, pt*ph*pw*C] ordered (dt, dh, dw, c)
        f, hp, wp = grid
        c_out = self.cfg["out_dim"]
        out = out.view(b, f, hp, wp, pt, ph, pw, c_out)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c_out, f * pt, hp * ph, wp * pw)
        return out
