"""umT5 encoder (wan2.1.md §3), official Wan tensor names, fp32.

The engine encodes only the valid tokens (text + EOS); with a key mask that is
identical to the padded reference, since the bias depends only on j - i."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def relative_bucket(rel, num_buckets, max_distance):
    """Bidirectional T5 bucket of n = j - i (key - query)."""
    nb = num_buckets // 2
    max_exact = nb // 2
    bucket = (rel > 0).long() * nb
    a = rel.abs()
    a_f = a.clamp_min(1).float()
    large = max_exact + (torch.log(a_f / max_exact) / math.log(max_distance / max_exact)
                         * (nb - max_exact)).long()
    large = large.clamp(max=nb - 1)
    return bucket + torch.where(a < max_exact, a, large)


class T5RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class T5Attention(nn.Module):
    def __init__(self, d_model, inner, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(d_model, inner, bias=False)
        self.k = nn.Linear(d_model, inner, bias=False)
        self.v = nn.Linear(d_model, inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)

    def forward(self, x, bias, key_mask):
        b, length, _ = x.shape
        n = self.num_heads
        q = self.q(x).view(b, length, n, -1).transpose(1, 2)
        k = self.k(x).view(b, length, n, -1).transpose(1, 2)
        v = self.v(x).view(b, length, n, -1).transpose(1, 2)
        logits = torch.matmul(q, k.transpose(-1, -2)) + bias  # no 1/sqrt(d) in T5
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], torch.finfo(logits.dtype).min)
        y = torch.matmul(torch.softmax(logits, dim=-1), v)
        return self.o(y.transpose(1, 2).reshape(b, length, -1))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets, num_heads, max_distance):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length, device):
        pos = torch.arange(length, device=device)
        rel = pos[None, :] - pos[:, None]  # j - i
        buckets = relative_bucket(rel, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)[None]  # [1, H, L, L]


class T5FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(d_model, d_ff, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(d_model, d_ff, bias=False)
        self.fc2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.fc2(self.gate(x) * self.fc1(x))


class T5Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1 = T5RMSNorm(c["d_model"], c["eps"])
        self.attn = T5Attention(c["d_model"], c["num_heads"] * c["d_kv"], c["num_heads"])
        self.norm2 = T5RMSNorm(c["d_model"], c["eps"])
        self.ffn = T5FeedForward(c["d_model"], c["d_ff"])
        self.pos_embedding = T5RelativeEmbedding(c["num_buckets"], c["num_heads"], c["max_distance"])

    def forward(self, x, key_mask):
        bias = self.pos_embedding(x.shape[1], x.device)
        x = x + self.attn(self.norm1(x), bias, key_mask)
        return x + self.ffn(self.norm2(x))


class T5Encoder(nn.Module):
    def __init__(self, t5_cfg):
        super().__init__()
        c = t5_cfg
        self.cfg = c
        self.token_embedding = nn.Embedding(c["vocab_size"], c["d_model"])
        self.blocks = nn.ModuleList(T5Block(c) for _ in range(c["num_layers"]))
        self.norm = T5RMSNorm(c["d_model"], c["eps"])

    def forward(self, ids, key_mask=None):
        """ids [B, L] int64 -> hidden [B, L, d_model]; key_mask [B, L] bool (True = real token)."""
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.cfg["vocab_size"]):
            raise ValueError("token id out of range of t5.vocab_size")
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, key_mask)
        return self.norm(x)
