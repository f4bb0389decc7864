"""Whole text-to-video generation (wan2.1.md §5.6) with the reference modules."""
import math

import torch

from . import sampler as sampler_mod
from .noise import gaussian_noise


def latent_shape(cfg, width, height, num_frames):
    vae = cfg["vae"]
    down = 2 ** (len(vae["dim_mult"]) - 1)
    tdown = 2 ** sum(bool(v) for v in vae["temporal_downsample"])
    if (num_frames - 1) % tdown:
        raise ValueError(f"num_frames must be {tdown}n+1")
    p = cfg["dit"]["patch_size"]
    if height % (down * p[1]) or width % (down * p[2]):
        raise ValueError(f"width/height must be multiples of {down * p[1]}")
    return (vae["z_dim"], (num_frames - 1) // tdown + 1, height // down, width // down)


def encode_text(t5, ids):
    """ids: 1-D int tensor of valid tokens (text + EOS) -> [1, L, d_model]."""
    return t5(ids.long()[None])


@torch.no_grad()
def generate(t5, dit, vae, ids, neg_ids, noise, steps, guidance, shift, sampler, attn=None):
    """noise [C, T', h, w] -> video [3, F, H, W] in [-1, 1]; also returns the final latent."""
    ctx_pos = encode_text(t5, ids)
    ctx_neg = encode_text(t5, neg_ids)

    def model_fn(x, t, sigma):
        tt = torch.tensor([t], dtype=torch.float32)
        v_c = dit(x[None], tt, ctx_pos, attn)[0]
        v_u = dit(x[None], tt, ctx_neg, attn)[0]
        return v_u + guidance * (v_c - v_u)

    x = torch.as_tensor(noise).float()
    latent, _ = sampler_mod.sample(model_fn, x, steps, shift, sampler)
    video = vae.decode(latent[None])[0]
    return video, latent


def seeded_noise(cfg, seed, width, height, num_frames):
    return torch.from_numpy(gaussian_noise(seed, latent_shape(cfg, width, height, num_frames)))


def to_uint8(video):
    """Official save path: trunc(((clamp(x,-1,1)+1)/2)·255); [3,F,H,W] -> [F,H,W,3] u8."""
    v = ((video.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
    return v.permute(1, 2, 3, 0).contiguous()
