"""SLA2 sparse-linear attention, exactly as docs/conventions.md.

Layout: q, k, v are [B, L, H, d] (token order = the DiT's flattened (f,h,w)).
Modes:
  dense         softmax(q kᵀ/√d) v
  sla2          hard top-k router, sparse + complement linear branch, α blend
  sla2_low_bit  as sla2, sparse branch with the INT8/FP8 forward emulation;
                the backward is the full-precision one (straight-through, QAT)
  sla2_soft     stage-1 training: SoftTop-k mask σ(P/τ+λ), P = scores/√d
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8_MAX = 448.0


def num_blocks(length, block):
    return (length + block - 1) // block


def keep_count(keep_ratio, t_n):
    """k = max(1, min(T_n, floor(keep_ratio * T_n))), computed in float64."""
    return max(1, min(t_n, int(math.floor(float(keep_ratio) * t_n))))


def block_pool(x, block):
    """Mean over consecutive row blocks; a partial last block over its valid rows.

    x [B, H, L, d] -> [B, H, T, d]."""
    b, h, length, d = x.shape
    t = num_blocks(length, block)
    xp = F.pad(x, (0, 0, 0, t * block - length))
    sums = xp.reshape(b, h, t, block, d).sum(3)
    counts = torch.full((t,), float(block), dtype=x.dtype, device=x.device)
    counts[-1] = float(length - (t - 1) * block)
    return sums / counts[:, None]


def router_scores(q, k_smooth, proj_q, proj_k, block_q, block_k):
    """scores = proj_q(pool(Q)) · proj_k(pool(K̃))ᵀ  -> [B, H, T_m, T_n]."""
    qbar = block_pool(q, block_q)
    kbar = block_pool(k_smooth, block_k)
    return torch.matmul(qbar @ proj_q.t(), (kbar @ proj_k.t()).transpose(-1, -2))


def hard_topk_mask(scores, kcnt):
    """Boolean [.., T_m, T_n]: the kcnt highest per row, ties -> lower index."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(-1, order[..., :kcnt], True)
    return mask


def soft_topk_mask(scores, kcnt, tau=0.1, iters=40):
    """SoftTop-k: s = σ(P/τ + λ_i) with Σ_j s_ij = kcnt, P = scores/√d applied by caller.

    λ is found per row by bisection (no grad); the gradient through λ is the exact
    implicit one, dλ/dP_j = -g_j / (τ Σ g) with g = s(1-s), added as a zero-valued
    correction term."""
    z = scores / tau
    with torch.no_grad():
        zd = z.detach().float()
        lo = -zd.amax(-1, keepdim=True) - 30.0
        hi = -zd.amin(-1, keepdim=True) + 30.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            total = torch.sigmoid(zd + mid).sum(-1, keepdim=True)
            too_many = total > kcnt
            hi = torch.where(too_many, mid, hi)
            lo = torch.where(too_many, lo, mid)
        lam = (0.5 * (lo + hi)).to(scores.dtype)
        s0 = torch.sigmoid(zd + lam)
        g = (s0 * (1 - s0)).to(scores.dtype)
        gsum = g.sum(-1, keepdim=True).clamp_min(1e-12)
    correction = -((g * (z - z.detach())).sum(-1, keepdim=True)) / gsum
    return torch.sigmoid(z + lam + correction)


def expand_blocks(block_values, block_q, block_k, length):
    """[.., T_m, T_n] -> [.., L, L] by repeating each block entry."""
    x = block_values.repeat_interleave(block_q, dim=-2)[..., :length, :]
    return x.repeat_interleave(block_k, dim=-1)[..., :length]


def alpha_rows(alpha_logit, t_m, block_q, length):
    """α = sigmoid(alpha_logit) [H, T_train] -> per token row [H, L].

    A different T_m is resampled by nearest neighbour over (i + 0.5) / T_m."""
    t_train = alpha_logit.shape[-1]
    if t_train == t_m:
        src = torch.arange(t_m, device=alpha_logit.device)
    else:
        pos = (torch.arange(t_m, dtype=torch.float64) + 0.5) / t_m
        src = torch.clamp(torch.floor(pos * t_train).long(), max=t_train - 1).to(alpha_logit.device)
    a = torch.sigmoid(alpha_logit)[:, src]  # [H, T_m]
    return a.repeat_interleave(block_q, dim=-1)[:, :length]


def round_half_away(x):
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def quant_int8_blocks(x, block):
    """Symmetric INT8 per (head, row block): s = amax/127 (s = 1 if amax = 0).

    x [B,H,L,d] -> (integer-valued float tensor, per-row scale [B,H,L,1])."""
    b, h, length, d = x.shape
    t = num_blocks(length, block)
    xp = F.pad(x, (0, 0, 0, t * block - length))
    amax = xp.abs().reshape(b, h, t, block * d).amax(-1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    scale_rows = scale.repeat_interleave(block, dim=-1)[..., :length].unsqueeze(-1)
    qx = torch.clamp(round_half_away(x / scale_rows), -127.0, 127.0)
    return qx, scale_rows


def to_fp8(x):
    """Round to FP8 E4M3 (nearest even, saturating at ±448), returned as fp32."""
    return torch.clamp(x, -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype)


def sparse_branch_low_bit(q, k_smooth, v, mask_c, block_q, block_k):
    """Low-bit sparse branch: INT8 Q/K̃, FP8 P̂ and V̂, online softmax over kept
    key blocks in ascending order (vectorised: the running max after block j is a
    cumulative max, the rescale exp(m_j - m_final) is applied per block)."""
    b, h, length, d = q.shape
    t_n = num_blocks(length, block_k)
    qi, sq = quant_int8_blocks(q, block_q)
    ki, sk = quant_int8_blocks(k_smooth, block_k)
    s = torch.matmul(qi, ki.transpose(-1, -2)) * sq * sk.transpose(-1, -2) / math.sqrt(d)
    vmax = v.abs().amax(dim=2, keepdim=True)  # per (head, channel)
    sv = torch.where(vmax > 0, vmax / FP8_MAX, torch.ones_like(vmax))
    vhat = to_fp8(v / sv)

    keep_rows = mask_c.repeat_interleave(block_q, dim=-2)[..., :length, :]  # [B,H,L,T_n]
    pad = t_n * block_k - length
    sb = F.pad(s, (0, pad), value=float("-inf")).reshape(b, h, length, t_n, block_k)
    bmax = sb.amax(-1).masked_fill(~keep_rows, float("-inf"))
    m_run = torch.cummax(bmax, dim=-1).values  # running max after each block
    m_fin = m_run[..., -1:]
    m_safe = torch.where(keep_rows, m_run, torch.zeros_like(m_run))
    p = torch.exp(sb - m_safe.unsqueeze(-1))
    p = torch.where(keep_rows.unsqueeze(-1), p, torch.zeros_like(p))
    rescale = torch.where(keep_rows, torch.exp(m_safe - m_fin), torch.zeros_like(m_run))
    l = (p.sum(-1) * rescale).sum(-1, keepdim=True)  # [B,H,L,1]
    phat = to_fp8(p * FP8_MAX) * rescale.unsqueeze(-1)
    phat = phat.reshape(b, h, length, t_n * block_k)[..., :length]
    acc = torch.matmul(phat, vhat)
    return acc * sv / (FP8_MAX * l)


def linear_branch(q, k_smooth, v, lin_weight, block_q, block_k):
    """O_l = φ(Q) H_i / (φ(Q) Z_i), H_i = Σ_j w_ij φ(K̃_j)ᵀ V_j, Z_i = Σ_j w_ij colsum φ(K̃_j).

    lin_weight [.., T_m, T_n] = 1 - mask (hard or soft). Zero denominator -> 0."""
    b, h, length, d = q.shape
    t_m = num_blocks(length, block_q)
    t_n = num_blocks(length, block_k)
    qf = torch.softmax(q, dim=-1)
    kf = F.pad(torch.softmax(k_smooth, dim=-1), (0, 0, 0, t_n * block_k - length))  # padded rows 0
    vp = F.pad(v, (0, 0, 0, t_n * block_k - length))
    kf = kf.reshape(b, h, t_n, block_k, d)
    vp = vp.reshape(b, h, t_n, block_k, v.shape[-1])
    hj = torch.einsum("bhtnd,bhtne->bhtde", kf, vp)
    zj = kf.sum(3)
    hi = torch.einsum("bhmn,bhnde->bhmde", lin_weight, hj)
    zi = torch.einsum("bhmn,bhnd->bhmd", lin_weight, zj)
    qfp = F.pad(qf, (0, 0, 0, t_m * block_q - length)).reshape(b, h, t_m, block_q, d)
    num = torch.einsum("bhmrd,bhmde->bhmre", qfp, hi)
    den = torch.einsum("bhmrd,bhmd->bhmr", qfp, zi).unsqueeze(-1)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    out = torch.where(den > 0, num / safe, torch.zeros_like(num))
    return out.reshape(b, h, t_m * block_q, -1)[:, :, :length]


def dense_attention(q, k, v):
    """[B,L,H,d] -> [B,L,H,d]."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    s = torch.matmul(qt, kt.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul(torch.softmax(s, dim=-1), vt).transpose(1, 2)


def sla2_attention(q, k, v, proj_q, proj_k, alpha_logit, keep_ratio, block_q, block_k,
                   mode="sla2", tau=0.1, return_mask=False):
    """SLA2 per conventions.md. q,k,v [B,L,H,d]; proj_* [d,d]; alpha_logit [H,T_train]."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B,H,L,d]
    b, h, length, d = qt.shape
    t_m = num_blocks(length, block_q)
    t_n = num_blocks(length, block_k)
    kcnt = keep_count(keep_ratio, t_n)
    ks = kt - kt.mean(dim=2, keepdim=True)
    scores = router_scores(qt, ks, proj_q, proj_k, block_q, block_k)
    s = torch.matmul(qt, ks.transpose(-1, -2)) / math.sqrt(d)
    if mode == "sla2_soft":
        mask_c = soft_topk_mask(scores / math.sqrt(d), kcnt, tau)
        logits = s + torch.log(expand_blocks(mask_c, block_q, block_k, length).clamp_min(1e-30))
        o_s = torch.matmul(torch.softmax(logits, dim=-1), vt)
        lin_w = 1.0 - mask_c
    else:
        mask_c = hard_topk_mask(scores, kcnt)
        tok_mask = expand_blocks(mask_c, block_q, block_k, length)
        o_s = torch.matmul(torch.softmax(s.masked_fill(~tok_mask, float("-inf")), dim=-1), vt)
        if mode == "sla2_low_bit":
            with torch.no_grad():
                o_low = sparse_branch_low_bit(qt, ks, vt, mask_c, block_q, block_k)
            o_s = o_s + (o_low - o_s).detach()  # low-bit forward, full-precision backward
        elif mode != "sla2":
            raise ValueError(f"unknown SLA2 mode '{mode}'")
        lin_w = (~mask_c).to(q.dtype)
    o_l = linear_branch(qt, ks, vt, lin_w, block_q, block_k)
    a = alpha_rows(alpha_logit, t_m, block_q, length)[None, :, :, None].to(q.dtype)
    out = (a * o_s + (1 - a) * o_l).transpose(1, 2)
    if return_mask:
        return out, mask_c
    return out


class SLA2Params(nn.Module):
    """Per-layer SLA2 parameters: router projections (init I) and α logits."""

    def __init__(self, head_dim, num_heads, t_m, alpha_init=2.0):
        super().__init__()
        self.proj_q = nn.Linear(head_dim, head_dim, bias=False)
        self.proj_k = nn.Linear(head_dim, head_dim, bias=False)
        with torch.no_grad():
            self.proj_q.weight.copy_(torch.eye(head_dim))
            self.proj_k.weight.copy_(torch.eye(head_dim))
        self.alpha_logit = nn.Parameter(torch.full((num_heads, t_m), float(alpha_init)))
