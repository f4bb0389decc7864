"""Wan-VAE (wan2.1.md §4): causal 3-D conv autoencoder, official tensor names,
chunked decoding/encoding with the official feature cache (incl. the "Rep"
rule of upsample3d).

decode() with chunk_sizes=None runs the official per-latent-frame chunks;
chunk_sizes=[1, T'-1] gives the same result in two chunks (the cache makes
every chunk after the first an exact causal conv over the concatenation) and
is what training uses."""
import torch
import torch.nn as nn
import torch.nn.functional as F

CACHE_T = 2
REP = "Rep"


class CausalConv3d(nn.Conv3d):
    """Zero pad H, W symmetrically; pad time at the front only (2·p_t)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        p = self.padding
        self._pad = (p[2], p[2], p[1], p[1], 2 * p[0], 0)
        self.padding = (0, 0, 0)

    def forward(self, x, cache_x=None):
        pad = list(self._pad)
        if cache_x is not None and pad[4] > 0:
            x = torch.cat([cache_x.to(x.dtype), x], dim=2)
            pad[4] -= cache_x.shape[2]
        return super().forward(F.pad(x, pad))


def cached_conv(conv, x, cache, idx):
    """Run a kernel-3 causal conv with the cache slot idx[0]; store the new cache."""
    i = idx[0]
    cache_x = x[:, :, -CACHE_T:].clone()
    if cache_x.shape[2] < 2 and cache[i] is not None:
        cache_x = torch.cat([cache[i][:, :, -1:].to(cache_x.dtype), cache_x], dim=2)
    x = conv(x, cache[i])
    cache[i] = cache_x
    idx[0] += 1
    return x


class RMSNormC(nn.Module):
    """Channel-first RMS norm: F.normalize over C · √C · γ (bias 0)."""

    def __init__(self, dim, images=False):
        super().__init__()
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(shape))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNormC(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNormC(out_dim), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x, cache=None, idx=None):
        h = self.shortcut(x)
        for layer in self.residual:
            if isinstance(layer, CausalConv3d) and cache is not None:
                x = cached_conv(layer, x, cache, idx)
            else:
                x = layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention per frame (2-D), scale 1/√C."""

    def __init__(self, dim):
        super().__init__()
        self.norm = RMSNormC(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x):
        b, c, t, h, w = x.shape
        identity = x
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(y)).reshape(b * t, 3, c, h * w)
        q, k, v = (qkv[:, i].transpose(1, 2)[:, None] for i in range(3))  # [bt, 1, hw, c]
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return y + identity


class Resample(nn.Module):
    def __init__(self, dim, mode):
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
        else:
            raise ValueError(mode)

    def forward(self, x, cache=None, idx=None):
        b, c, t, h, w = x.shape
        if self.mode == "upsample3d" and cache is not None:
            i = idx[0]
            if cache[i] is None:
                cache[i] = REP  # first chunk: no temporal doubling
                idx[0] += 1
            else:
                cache_x = x[:, :, -CACHE_T:].clone()
                if cache_x.shape[2] < 2 and not isinstance(cache[i], str):
                    cache_x = torch.cat([cache[i][:, :, -1:], cache_x], dim=2)
                if cache_x.shape[2] < 2 and isinstance(cache[i], str):
                    cache_x = torch.cat([torch.zeros_like(cache_x), cache_x], dim=2)
                if isinstance(cache[i], str):
                    x = self.time_conv(x)
                else:
                    x = self.time_conv(x, cache[i])
                cache[i] = cache_x
                idx[0] += 1
                x = x.reshape(b, 2, c, t, h, w)
                x = torch.stack((x[:, 0], x[:, 1]), dim=3).reshape(b, c, t * 2, h, w)
        t = x.shape[2]
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = self.resample(y)
        x = y.reshape(b, t, y.shape[1], y.shape[2], y.shape[3]).permute(0, 2, 1, 3, 4)
        if self.mode == "downsample3d" and cache is not None:
            i = idx[0]
            if cache[i] is None:
                cache[i] = x.clone()
                idx[0] += 1
            else:
                cache_x = x[:, :, -1:].clone()
                x = self.time_conv(torch.cat([cache[i][:, :, -1:], x], dim=2))
                cache[i] = cache_x
                idx[0] += 1
        return x


def _run_head_or_conv(layers, x, cache, idx):
    for layer in layers:
        if isinstance(layer, CausalConv3d) and cache is not None:
            x = cached_conv(layer, x, cache, idx)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temporal_downsample):
        super().__init__()
        dims = [dim * u for u in [1] + list(dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers = []
        for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(din, dout))
                din = dout
            if i != len(dim_mult) - 1:
                layers.append(Resample(dout, "downsample3d" if temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]),
                                    ResidualBlock(dims[-1], dims[-1]))
        self.head = nn.Sequential(RMSNormC(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], z_dim * 2, 3, padding=1))

    def forward(self, x, cache, idx):
        x = cached_conv(self.conv1, x, cache, idx)
        for layer in self.downsamples:
            x = layer(x, cache, idx)
        for layer in self.middle:
            x = layer(x, cache, idx) if isinstance(layer, ResidualBlock) else layer(x)
        return _run_head_or_conv(self.head, x, cache, idx)


class Decoder3d(nn.Module):
    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temporal_upsample):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1]] + list(dim_mult)[::-1]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers = []
        for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
            if i in (1, 2, 3):
                din = din // 2
            for _ in range(num_res_blocks + 1):
                layers.append(ResidualBlock(din, dout))
                din = dout
            if i != len(dim_mult) - 1:
                layers.append(Resample(dout, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNormC(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x, cache, idx):
        x = cached_conv(self.conv1, x, cache, idx)
        for layer in self.middle:
            x = layer(x, cache, idx) if isinstance(layer, ResidualBlock) else layer(x)
        for layer in self.upsamples:
            x = layer(x, cache, idx)
        return _run_head_or_conv(self.head, x, cache, idx)


def _count_cache_slots(module):
    return sum(isinstance(m, CausalConv3d) for m in module.modules())


class WanVAE(nn.Module):
    """Top level: encoder, conv1 (quant), conv2 (post-quant), decoder; latents
    are normalised with latents_mean/std (DiT space)."""

    def __init__(self, vae_cfg):
        super().__init__()
        c = vae_cfg
        self.cfg = c
        self.z_dim = c["z_dim"]
        tdown = list(c["temporal_downsample"])
        self.encoder = Encoder3d(c["base_dim"], c["z_dim"], c["dim_mult"], c["num_res_blocks"], tdown)
        self.conv1 = CausalConv3d(c["z_dim"] * 2, c["z_dim"] * 2, 1)
        self.conv2 = CausalConv3d(c["z_dim"], c["z_dim"], 1)
        self.decoder = Decoder3d(c["base_dim"], c["z_dim"], c["dim_mult"], c["num_res_blocks"], tdown[::-1])
        self.register_buffer("mean", torch.tensor(c["latents_mean"], dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(c["latents_std"], dtype=torch.float32), persistent=False)

    def set_latent_stats(self, mean, std):
        self.mean.copy_(torch.as_tensor(mean))
        self.std.copy_(torch.as_tensor(std))
        self.cfg["latents_mean"] = [float(v) for v in self.mean]
        self.cfg["latents_std"] = [float(v) for v in self.std]

    def _chunks(self, total, sizes):
        if sizes is None:
            return None
        assert sum(sizes) == total
        return sizes

    def encode_raw(self, video, chunk_sizes=None):
        """video [B, 3, 1+4n, H, W] in [-1, 1] -> (mu, logvar) un-normalised."""
        t = video.shape[2]
        if (t - 1) % 4:
            raise ValueError("encoder needs 1 + 4n frames")
        sizes = chunk_sizes or ([1] + [4] * ((t - 1) // 4))
        cache = [None] * _count_cache_slots(self.encoder)
        outs, start = [], 0
        for s in sizes:
            idx = [0]
            outs.append(self.encoder(video[:, :, start:start + s], cache, idx))
            start += s
        mu, logvar = self.conv1(torch.cat(outs, dim=2)).chunk(2, dim=1)
        return mu, logvar

    def normalize(self, mu):
        return (mu - self.mean.view(1, -1, 1, 1, 1)) / self.std.view(1, -1, 1, 1, 1)

    def decode(self, z, chunk_sizes=None, clamp=True):
        """z [B, z_dim, T', h, w] in DiT (normalised) space -> video [B, 3, 1+4(T'-1), 8h, 8w]."""
        z = z * self.std.view(1, -1, 1, 1, 1) + self.mean.view(1, -1, 1, 1, 1)
        x = self.conv2(z)
        t = x.shape[2]
        sizes = chunk_sizes or [1] * t
        cache = [None] * _count_cache_slots(self.decoder)
        outs, start = [], 0
        for s in sizes:
            idx = [0]
            outs.append(self.decoder(x[:, :, start:start + s], cache, idx))
            start += s
        out = torch.cat(outs, dim=2)
        return out.clamp(-1, 1) if clamp else out
