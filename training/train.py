"""Trains the default model sparsevid-shapes (issue 5), stage by stage.

Stages (each resumable: it starts from the checkpoint of the previous stage in
--ckpt-in and writes its own to --ckpt-out; shards <= 15 MB so they come back
through the device tool):
  vae     stage 0: Wan-VAE autoencoder on procedural clips (+ latent statistics)
  dit     stage 1: umT5 + DiT, full attention, flow matching, CFG dropout, EMA
  router  stage 2: SLA2 router (proj_q, proj_k) + alpha, SoftTop-k vs full attention, DiT frozen
  qat     stage 3: DiT + alpha fine-tuned with the diffusion loss, router frozen,
          hard top-k, low-bit forward (QAT)
  export  model directory (model.yaml, safetensors with Wan2.1 names, spiece.model)
Example: python training/train.py --stages vae,dit --ckpt-out runs/ckpt --budget vae=120,dit=300
"""
import argparse
import copy
import glob
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from sparsevid_ref import sampler as sampler_mod  # noqa: E402
from sparsevid_ref.tokenizer import EOS_ID, Tokenizer, train as train_tokenizer  # noqa: E402
from sparsevid_ref.umt5 import T5Encoder  # noqa: E402
from sparsevid_ref.wan_dit import WanModel  # noqa: E402
from sparsevid_ref.wan_vae import WanVAE  # noqa: E402

TRAIN_SHIFT = 3.0


def model_config(size):
    """The shipped configuration ('default') and a CPU smoke-test one ('toy')."""
    if size == "default":
        w = h = 256
        frames = 33
        dit = dict(dim=256, ffn_dim=768, num_heads=4, num_layers=6)
        t5 = dict(d_model=128, num_heads=4, d_kv=32, d_ff=256, num_layers=2)
        vae = dict(base_dim=12, num_res_blocks=1)
        grid = [9, 16, 16]
    else:
        w = h = 32
        frames = 9
        dit = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
        t5 = dict(d_model=32, num_heads=2, d_kv=16, d_ff=64, num_layers=1)
        vae = dict(base_dim=4, num_res_blocks=1)
        grid = [3, 2, 2]
    z = 16
    return {
        "name": "sparsevid-shapes-v1",
        "dit": dict(dit, patch_size=[1, 2, 2], in_dim=z, out_dim=z, text_dim=t5["d_model"],
                    text_len=32, freq_dim=256 if size == "default" else 32, eps=1e-6),
        "attention": {"mode": "sla2", "block_q": 128 if size == "default" else 4,
                      "block_k": 64 if size == "default" else 2, "keep_ratio": 0.03,
                      "trained_grid": grid},
        "t5": dict(t5, vocab_size=0, num_buckets=32, max_distance=128, eps=1e-6, tokenizer="spiece.model"),
        "vae": dict(vae, z_dim=z, dim_mult=[1, 2, 4, 4], temporal_downsample=[False, True, True],
                    latents_mean=[0.0] * z, latents_std=[1.0] * z),
        "sampling": {"sampler": "unipc", "steps": 12, "guidance_scale": 4.0, "shift": TRAIN_SHIFT,
                     "negative_prompt": ""},
        "video": {"width": w, "height": h, "num_frames": frames, "fps": 16, "max_width": 512,
                  "max_height": 512, "max_frames": 65},
        "weights": {"dit": ["diffusion_pytorch_model.safetensors"], "t5": ["t5.safetensors"],
                    "vae": ["vae.safetensors"]},
    }


# ---------------------------------------------------------------- checkpoints
def split_shards(state, max_bytes):
    """Groups state (in order) into dicts of at most max_bytes each (a tensor
    larger than max_bytes gets a shard of its own)."""
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        nb = v.numel() * v.element_size()
        if cur and size + nb > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += nb
    shards.append(cur)
    return shards


def save_sharded(state, prefix, max_bytes=15 * 2 ** 20):
    shards = [{k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.detach().contiguous().cpu()
               for k, v in sh.items()} for sh in split_shards(state, max_bytes)]
    for old in glob.glob(prefix + "-*.safetensors"):
        os.remove(old)
    for i, sh in enumerate(shards):
        save_file(sh, f"{prefix}-{i:02d}.safetensors")


def save_export_shards(state, out, stem, max_bytes=15 * 2 ** 20):
    """Writes state as <stem>-0000k-of-0000n.safetensors files (the official
    multi-file Wan layout), each at most max_bytes, so no file in the
    repository exceeds 16 MiB; returns the file names for model.yaml."""
    shards = split_shards(state, max_bytes)
    if len(shards) == 1:
        names = [f"{stem}.safetensors"]
    else:
        names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for old in glob.glob(os.path.join(out, stem + "*.safetensors")):
        os.remove(old)
    for name, sh in zip(names, shards):
        save_file(sh, os.path.join(out, name))
    return names


def load_sharded(prefix):
    files = sorted(glob.glob(prefix + "-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no checkpoint shards {prefix}-*.safetensors")
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


class Run:
    def __init__(self, args):
        self.args = args
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        os.makedirs(args.ckpt_out, exist_ok=True)
        meta_in = os.path.join(args.ckpt_in, "meta.json") if args.ckpt_in else None
        if meta_in and os.path.exists(meta_in):
            with open(meta_in) as f:
                self.meta = json.load(f)
        else:
            self.meta = {"config": model_config(args.size), "stage_seconds": {}, "log": {}}
        self.cfg = self.meta["config"]
        self.budget = {k: float(v) for k, v in (kv.split("=") for kv in args.budget.split(",") if kv)}
        self._tok = None

    # paths
    def src(self, name):
        for d in (self.args.ckpt_out, self.args.ckpt_in):
            if d and glob.glob(os.path.join(d, name + "-*.safetensors")):
                return os.path.join(d, name)
        raise FileNotFoundError(f"checkpoint '{name}' in neither --ckpt-out nor --ckpt-in")

    def dst(self, name):
        return os.path.join(self.args.ckpt_out, name)

    def save_meta(self):
        with open(os.path.join(self.args.ckpt_out, "meta.json"), "w") as f:
            json.dump(self.meta, f, indent=1)

    def tokenizer(self):
        if self._tok is None:
            path = os.path.join(self.args.ckpt_out, "spiece.model")
            src = os.path.join(self.args.ckpt_in or "", "spiece.model")
            if not os.path.exists(path):
                if self.args.ckpt_in and os.path.exists(src):
                    with open(src, "rb") as a, open(path, "wb") as b:
                        b.write(a.read())
                else:
                    train_tokenizer(data.caption_corpus(20000), 160, path)
            self._tok = Tokenizer(path)
            self.cfg["t5"]["vocab_size"] = self._tok.vocab_size
        return self._tok

    def ids_batch(self, captions):
        tok = self.tokenizer()
        text_len = self.cfg["dit"]["text_len"]
        ids = torch.zeros(len(captions), text_len, dtype=torch.long)
        for i, c in enumerate(captions):
            t = tok.encode(c, text_len)
            ids[i, :len(t)] = torch.tensor(t)
        return ids.to(self.dev), (ids != 0).to(self.dev)

    def vae(self):
        vae = WanVAE(copy.deepcopy(self.cfg["vae"])).to(self.dev)
        vae.load_state_dict(load_sharded(self.src("vae")))
        return vae.eval().requires_grad_(False)

    def dit_t5(self, name="dit"):
        tok = self.tokenizer()
        t5 = T5Encoder(self.cfg["t5"]).to(self.dev)
        dit = WanModel(self.cfg["dit"], self.cfg["attention"]).to(self.dev)
        st = load_sharded(self.src(name))
        t5.load_state_dict({k[3:]: v for k, v in st.items() if k.startswith("t5.")})
        dit.load_state_dict({k[4:]: v for k, v in st.items() if k.startswith("dit.")})
        return dit, t5

    def save_dit_t5(self, name, dit, t5):
        st = {"t5." + k: v for k, v in t5.state_dict().items()}
        st.update({"dit." + k: v for k, v in dit.state_dict().items()})
        save_sharded(st, self.dst(name))


def autocast(dev):
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


START = time.time()
DEADLINE = [float("inf")]  # wall-clock end of the whole process (--deadline), minus a save reserve


def timed_loop(budget, max_steps):
    t0 = time.time()
    step = 0
    while step < max_steps and time.time() - t0 < budget and time.time() < DEADLINE[0]:
        yield step
        step += 1


# ---------------------------------------------------------------- stage 0: VAE
def encode_latents(vae, video):
    """Normalised latent means (what the DiT sees); the first frame is encoded alone."""
    return vae.normalize(vae.encode_raw(video, chunk_sizes=[1, video.shape[2] - 1])[0].float())


def roundtrip(vae, video):
    """encode_latents then decode (unclamped output range as decode gives it)."""
    z = encode_latents(vae, video)
    return vae.decode(z, chunk_sizes=[1, z.shape[2] - 1]).float()


def object_mask(video):
    """[B, F, H, W] true on object pixels: those differing from the frame's
    top-left (background) pixel."""
    return (video - video[:, :, :, :1, :1]).abs().sum(1) > 0.1


def object_weight(video, weight):
    """1 on the background, 1 + weight on object pixels: the objects are a few
    percent of the pixels, and an unweighted loss learns them as gray blobs."""
    return 1 + weight * object_mask(video).unsqueeze(1).float()


def folded_stats(cfg, trained_stats_meta):
    """Statistics that make decode() reproduce what a decoder trained under another
    run's statistics expects: std = s2*std1, mean = m2*std1 + mean1 (see stage_export)."""
    m2, s2 = torch.tensor(cfg["vae"]["latents_mean"]), torch.tensor(cfg["vae"]["latents_std"])
    if not trained_stats_meta:
        return m2, s2
    with open(trained_stats_meta) as f:
        v1 = json.load(f)["config"]["vae"]
    m1, s1 = torch.tensor(v1["latents_mean"]), torch.tensor(v1["latents_std"])
    return m2 * s1 + m1, s2 * s1

def object_crops(video, crop):
    """Per clip, the latent-aligned crop window (crop latent pixels = 8*crop video
    pixels) centred on the object's pixels summed over time: [(y0, x0)] in latents."""
    mass = object_mask(video).float().sum(1)  # [B, H, W]
    h, w = mass.shape[1] // 8, mass.shape[2] // 8
    out = []
    for m in mass:
        tot = m.sum().clamp_min(1)
        ys, xs = torch.meshgrid(torch.arange(m.shape[0], device=m.device),
                                torch.arange(m.shape[1], device=m.device), indexing="ij")
        cy, cx = float((m * ys).sum() / tot) / 8, float((m * xs).sum() / tot) / 8
        out.append((min(max(0, round(cy - crop / 2)), h - crop), min(max(0, round(cx - crop / 2)), w - crop)))
    return out


def stage_vae_decoder(run):
    """Decoder-only fine-tune at the default resolution and length. The encoder and
    the latent statistics stay exactly as they were, so a DiT trained on this VAE's
    latents stays valid. Why: a VAE trained on 9-frame 128^2 and 33-frame 64^2 clips
    never saw the per-frame motion (in pixels) of a 256^2 default video, and its
    decoder draws trails and stray colours behind fast objects there."""
    a, dev, cfg = run.args, run.dev, run.cfg
    torch.manual_seed(0)
    vae = WanVAE(copy.deepcopy(cfg["vae"])).to(dev)
    vae.load_state_dict(load_sharded(run.src("vae")))
    vae.train()
    dec_params = [p for n, p in vae.named_parameters() if not n.startswith(("encoder.", "conv1."))]
    for n, p in vae.named_parameters():
        p.requires_grad_(not n.startswith(("encoder.", "conv1.")))
    opt = torch.optim.AdamW(dec_params, lr=a.vae_lr, weight_decay=0.0)
    w, h, frames = cfg["video"]["width"], cfg["video"]["height"], cfg["video"]["num_frames"]
    crop = min(a.vae_crop, h // 8, w // 8)
    rng = random.Random(2)
    before = vae_roundtrip_eval(run, vae)
    print(f"[vae-dec] round trip at {w}x{h}x{frames} before: {before['table']}", flush=True)
    t0, losses = time.time(), []
    for step in timed_loop(run.budget.get("vae", 60), a.max_steps):
        seeds = [rng.randrange(10 ** 9) for _ in range(a.vae_batch)]
        _, video, _ = data.batch(seeds, frames, h, w, device=dev)
        with torch.no_grad(), autocast(dev):
            z = encode_latents(vae, video)
        # Robustness to the DiT's small errors: decode slightly perturbed latents too.
        z = z + a.vae_latent_noise * torch.rand(z.shape[0], 1, 1, 1, 1, device=dev) * torch.randn_like(z)
        wins = object_crops(video, crop)
        zc = torch.stack([z[i, :, :, y:y + crop, x:x + crop] for i, (y, x) in enumerate(wins)])
        vc = torch.stack([video[i, :, :, 8 * y:8 * (y + crop), 8 * x:8 * (x + crop)] for i, (y, x) in enumerate(wins)])
        with autocast(dev):
            rec = vae.decode(zc, chunk_sizes=[1, zc.shape[2] - 1], clamp=False).float()
        wt = object_weight(vc, a.object_weight)
        loss = (wt * (rec - vc).abs()).mean() + (wt * (rec - vc) ** 2).mean()
        optimise(opt, loss, dec_params)
        losses.append(float(loss))
        if step % 100 == 0:
            print(f"[vae-dec] step {step} loss {sum(losses[-50:]) / len(losses[-50:]):.4f} {time.time() - t0:.0f}s", flush=True)
    vae.eval()
    after = vae_roundtrip_eval(run, vae)
    print(f"[vae-dec] round trip at {w}x{h}x{frames} after {len(losses)} steps: {after['table']}", flush=True)
    save_sharded(vae.state_dict(), run.dst("vae"))
    run.meta["log"]["vae_decoder"] = {"steps": len(losses), "crop_latent": crop, "batch": a.vae_batch,
                                      "latent_noise": a.vae_latent_noise,
                                      "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
                                      "roundtrip_before": before["table"], "roundtrip_after": after["table"]}


def vae_roundtrip_eval(run, vae):
    """The evaluator's checks on encode + decode of the held-out clips at the default
    size: the ceiling any generated video can reach through this VAE."""
    import evaluate
    cfg, dev = run.cfg, run.dev
    w, h, frames = cfg["video"]["width"], cfg["video"]["height"], cfg["video"]["num_frames"]
    items = evaluate.heldout_items(run.args.eval_num)
    res = []
    for it in items:
        video = data.render([it], frames, h, w, device=dev)
        with torch.no_grad(), autocast(dev):
            rec = roundtrip(vae, video)
        ref = evaluate.to_uint8(video)[0]
        res.append(evaluate.score(evaluate.to_uint8(rec)[0], it, ref))
    return {"table": evaluate.summarize(res), "details": res}


def stage_vae(run):
    a, dev, cfg = run.args, run.dev, run.cfg
    if a.vae_decoder_only:
        return stage_vae_decoder(run)
    torch.manual_seed(0)
    # The decoder is trained on raw latents: identity statistics while training
    # (normalisation is fitted afterwards), also when warm-starting.
    z = cfg["vae"]["z_dim"]
    cfg["vae"]["latents_mean"], cfg["vae"]["latents_std"] = [0.0] * z, [1.0] * z
    vae = WanVAE(copy.deepcopy(cfg["vae"])).to(dev).train()
    if a.warm_start and a.ckpt_in and glob.glob(os.path.join(a.ckpt_in, "vae-*.safetensors")):
        vae.load_state_dict(load_sharded(os.path.join(a.ckpt_in, "vae")))
        print("[vae] warm start from", a.ckpt_in, flush=True)
    opt = torch.optim.AdamW(vae.parameters(), lr=a.vae_lr, weight_decay=0.0)
    # Alternate short high-resolution clips and full-length low-resolution clips, so
    # the temporal convolutions see every latent position used at inference.
    shapes = [(9, 128), (33, 64)] if a.size == "default" else [(9, 32), (17, 16)]
    rng = random.Random(1)
    t0, losses, colours = time.time(), [], []
    for step in timed_loop(run.budget.get("vae", 60), a.max_steps):
        seeds = [rng.randrange(10 ** 9) for _ in range(a.vae_batch)]
        nf, res = shapes[step % len(shapes)]
        _, video, _ = data.batch(seeds, nf, res, res, device=dev)
        with autocast(dev):
            mu, logvar = vae.encode_raw(video, chunk_sizes=[1, nf - 1])
            # Cap the posterior noise: logvar starts near 0 (sigma ~1) and falls slowly, and
            # sigma ~1 drowns the small early colour differences in mu, so the decoder
            # learns to ignore them (green and blue decode identically; docs/training.md).
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar.clamp(-20, a.vae_max_logvar))
            rec = vae.decode(z.float(), chunk_sizes=[1, z.shape[2] - 1], clamp=False)
        rec = rec.float()
        kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).mean()
        w = object_weight(video, a.object_weight)
        loss = (w * (rec - video).abs()).mean() + (w * (rec - video) ** 2).mean() + a.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
        if step % 100 == 0:
            print(f"[vae] step {step} loss {loss.item():.4f} kl {kl.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if a.colour_check_every and step % a.colour_check_every == 0 and step:
            # The colour round trip is the failure seen in earlier runs: log its progress.
            vae.eval()
            colours.append((step, vae_colour_check(run, vae)))
            vae.train()
            print(f"[vae] step {step} held-out colours kept by a round trip: {colours[-1][1]:.2f}", flush=True)
    # latent statistics at the default resolution (the DiT works in normalised space)
    vae.eval()
    w, h, frames = cfg["video"]["width"], cfg["video"]["height"], cfg["video"]["num_frames"]
    mus = []
    with torch.no_grad(), autocast(dev):
        for i in range(4):
            _, video, _ = data.batch(range(1000 + 8 * i, 1008 + 8 * i), frames, h, w, device=dev)
            mus.append(vae.encode_raw(video, chunk_sizes=[1, frames - 1])[0].float())
    mu = torch.cat(mus)
    mean = mu.mean(dim=(0, 2, 3, 4))
    std = mu.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    vae.set_latent_stats(mean.cpu(), std.cpu())
    cfg["vae"]["latents_mean"] = vae.cfg["latents_mean"]
    cfg["vae"]["latents_std"] = vae.cfg["latents_std"]
    save_sharded(vae.state_dict(), run.dst("vae"))
    with torch.no_grad(), autocast(dev):
        _, video, _ = data.batch(range(5000, 5004), frames, h, w, device=dev)
        rec = roundtrip(vae, video)
    psnr = 10 * math.log10(4.0 / F.mse_loss(rec, video).item())
    colour_ok = vae_colour_check(run, vae)
    run.meta["log"]["vae"] = {"steps": len(losses), "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
                              "recon_psnr_db_full_res": psnr, "heldout_colour_roundtrip": colour_ok,
                              "colour_roundtrip_by_step": colours}
    print(f"[vae] done: {len(losses)} steps, reconstruction PSNR {psnr:.2f} dB at {w}x{h}x{frames}, "
          f"held-out colours kept by a round trip: {colour_ok:.2f}", flush=True)
    if colour_ok < a.min_colour_roundtrip:
        raise SystemExit(f"VAE loses object colours ({colour_ok:.2f} < --min-colour-roundtrip "
                         f"{a.min_colour_roundtrip}); train it longer before the DiT stage")


def vae_colour_check(run, vae):
    """Fraction of held-out clips whose object colour survives encode + decode."""
    import evaluate
    items = evaluate.heldout_items(len(data.HELD_OUT))
    video = data.render(items, 17, 96, 96, device=run.dev)
    with torch.no_grad(), autocast(run.dev):
        rec = roundtrip(vae, video)
    frames = evaluate.to_uint8(rec)
    return sum(evaluate.analyze(f)["colour"] == it["objects"][0]["colour"]
               for f, it in zip(frames, items)) / len(items)


# ---------------------------------------------------------------- latents
def encode_dataset(run, vae, n, seed0, split="train"):
    cfg, dev = run.cfg, run.dev
    w, h, frames = cfg["video"]["width"], cfg["video"]["height"], cfg["video"]["num_frames"]
    lat, caps = [], []
    with torch.no_grad(), autocast(dev):
        for i in range(0, n, 16):
            seeds = range(seed0 + i, seed0 + min(n, i + 16))
            c, video, _ = data.batch(seeds, frames, h, w, split=split, device=dev)
            lat.append(encode_latents(vae, video).to(torch.bfloat16))
            caps += c
    return torch.cat(lat), caps


def cached_latents(run, n, seed0):
    """The DiT stage's encoded clips when run in the same process, else fresh ones."""
    if getattr(run, "latents", None) is not None:
        return run.latents
    vae = run.vae()
    out = encode_dataset(run, vae, n, seed0)
    del vae
    return out


def flow_batch(latents, gen):
    b = latents.shape[0]
    u = torch.rand(b, device=latents.device, generator=gen)
    sigma = TRAIN_SHIFT * u / (1 + (TRAIN_SHIFT - 1) * u)
    eps = torch.randn(latents.shape, device=latents.device, generator=gen)
    s = sigma.view(-1, 1, 1, 1, 1)
    x0 = latents.float()
    return (1 - s) * x0 + s * eps, eps - x0, sigma * 1000


def context(t5, ids, mask):
    return t5(ids, mask) * mask[..., None]


def diffusion_batch(lat, ids, mask, neg, batch, cfg_dropout, gen):
    """A random batch of clips for the diffusion loss: prompt ids with CFG
    dropout (prompt -> negative prompt) and the flow-matching inputs."""
    idx = torch.randint(0, lat.shape[0], (batch,), device=lat.device, generator=gen)
    bi, bm = ids[idx].clone(), mask[idx].clone()
    drop = torch.rand(batch, device=lat.device, generator=gen) < cfg_dropout
    bi[drop], bm[drop] = neg[0][0], neg[1][0]
    xt, target, t = flow_batch(lat[idx], gen)
    return bi, bm, xt, target, t


def optimise(opt, loss, params):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def ema_update(pairs, step, decay):
    """EMA of (ema_module, live_module) pairs, warmed up over the first steps."""
    with torch.no_grad():
        d = min(decay, (step + 1) / (step + 10))
        for e, m in pairs:
            for pe, pm in zip(e.parameters(), m.parameters()):
                pe.lerp_(pm, 1 - d)


# ---------------------------------------------------------------- stage 1: DiT
def stage_dit(run):
    a, dev, cfg = run.args, run.dev, run.cfg
    torch.manual_seed(0)
    run.tokenizer()
    vae = run.vae()
    t0 = time.time()
    lat, caps = encode_dataset(run, vae, a.num_clips, 0)
    ids, mask = run.ids_batch(caps)
    neg_ids, neg_mask = run.ids_batch([cfg["sampling"]["negative_prompt"]])
    print(f"[dit] encoded {len(caps)} clips in {time.time() - t0:.0f}s, latent {tuple(lat.shape[1:])}", flush=True)
    del vae
    run.latents = (lat, caps)
    t5 = T5Encoder(cfg["t5"]).to(dev).train()
    dit = WanModel(cfg["dit"], cfg["attention"]).to(dev).train()
    if a.warm_start and a.ckpt_in and glob.glob(os.path.join(a.ckpt_in, "dit-*.safetensors")):
        st = load_sharded(os.path.join(a.ckpt_in, "dit"))
        t5.load_state_dict({k[3:]: v for k, v in st.items() if k.startswith("t5.")})
        dit.load_state_dict({k[4:]: v for k, v in st.items() if k.startswith("dit.")})
        print("[dit] warm start from", a.ckpt_in, flush=True)
    params = list(t5.parameters()) + [p for n, p in dit.named_parameters() if ".sla2." not in n]
    opt = torch.optim.AdamW(params, lr=a.dit_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema_t5, ema_dit = copy.deepcopy(t5).eval(), copy.deepcopy(dit).eval()
    gen = torch.Generator(device=dev).manual_seed(0)
    losses = []
    t0 = time.time()
    for step in timed_loop(run.budget.get("dit", 60), a.max_steps):
        bi, bm, xt, target, t = diffusion_batch(lat, ids, mask, (neg_ids, neg_mask), a.batch,
                                                a.cfg_dropout, gen)
        for g in opt.param_groups:
            g["lr"] = a.dit_lr * min(1.0, (step + 1) / 200)
        with autocast(dev):
            v = dit(xt, t, context(t5, bi, bm), {"mode": "dense", "fast": True})
        loss = F.mse_loss(v.float(), target)
        optimise(opt, loss, params)
        ema_update(((ema_t5, t5), (ema_dit, dit)), step, a.ema)
        losses.append(float(loss))
        if step % 200 == 0:
            print(f"[dit] step {step} loss {sum(losses[-50:]) / len(losses[-50:]):.4f} {time.time() - t0:.0f}s", flush=True)
    run.save_dit_t5("dit", ema_dit, ema_t5)
    run.meta["log"]["dit"] = {"steps": len(losses), "clips": a.num_clips, "batch": a.batch,
                              "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:]))}


# ---------------------------------------------------------------- stage 2: router
def stage_router(run):
    a, dev, cfg = run.args, run.dev, run.cfg
    torch.manual_seed(0)
    dit, t5 = run.dit_t5("dit")
    dit.eval().requires_grad_(False)
    t5.eval().requires_grad_(False)
    params = dit.sla2_parameters()
    for p in params:
        p.requires_grad_(True)
    lat, caps = cached_latents(run, max(64, a.num_clips // 8), 10 ** 6)
    ids, mask = run.ids_batch(caps)
    opt = torch.optim.AdamW(params, lr=a.router_lr, weight_decay=0.0)
    gen = torch.Generator(device=dev).manual_seed(1)
    losses = []
    t0 = time.time()
    for step in timed_loop(run.budget.get("router", 60), a.max_steps):
        idx = torch.randint(0, lat.shape[0], (a.router_batch,), device=dev, generator=gen)
        xt, _, t = flow_batch(lat[idx], gen)
        attn = {"mode": "distill", "losses": [], "keep_ratio": a.router_keep or cfg["attention"]["keep_ratio"]}
        with torch.no_grad():
            ctx = context(t5, ids[idx], mask[idx])
        with autocast(dev):
            dit(xt, t, ctx, attn)
        loss = sum(attn["losses"]) / len(attn["losses"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % 50 == 0:
            print(f"[router] step {step} attn-mse {loss.item():.5f} {time.time() - t0:.0f}s", flush=True)
    run.save_dit_t5("router", dit, t5)
    alpha = torch.sigmoid(torch.stack([b.self_attn.sla2.alpha_logit for b in dit.blocks]))
    run.meta["log"]["router"] = {"steps": len(losses), "first_mse": losses[0] if losses else None,
                                 "final_mse": sum(losses[-20:]) / max(1, len(losses[-20:])),
                                 "alpha_mean": float(alpha.mean())}


# ---------------------------------------------------------------- stage 3: QAT
def stage_qat(run):
    a, dev, cfg = run.args, run.dev, run.cfg
    torch.manual_seed(0)
    dit, t5 = run.dit_t5(a.qat_from)
    t5.eval().requires_grad_(False)
    dit.train()
    # Several keep ratios (alternating per step) make one model usable at each of them.
    keeps = [float(k) for k in a.qat_keep.split(",")] if a.qat_keep else [cfg["attention"]["keep_ratio"]]
    for n, p in dit.named_parameters():
        p.requires_grad_(not (".sla2.proj_q" in n or ".sla2.proj_k" in n))
    lat, caps = cached_latents(run, max(64, a.num_clips // 2), 2 * 10 ** 6)
    ids, mask = run.ids_batch(caps)
    neg_ids, neg_mask = run.ids_batch([cfg["sampling"]["negative_prompt"]])
    params = [p for p in dit.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.qat_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = copy.deepcopy(dit).eval()
    gen = torch.Generator(device=dev).manual_seed(2)
    teacher = None
    if a.qat_teacher:
        # Distillation: regress the full-attention DiT's velocity instead of the noisy
        # flow-matching target (same inputs), a far lower-variance signal for adapting
        # to 97 % sparsity.
        teacher, teacher_t5 = run.dit_t5(a.qat_teacher)
        teacher.eval().requires_grad_(False)
        teacher_t5.eval().requires_grad_(False)
    losses = []
    t0 = time.time()
    for step in timed_loop(run.budget.get("qat", 60), a.max_steps):
        bi, bm, xt, target, t = diffusion_batch(lat, ids, mask, (neg_ids, neg_mask), a.qat_batch,
                                                a.cfg_dropout, gen)
        with torch.no_grad():
            ctx = context(t5, bi, bm)
        if teacher is not None:
            with torch.no_grad(), autocast(dev):
                target = teacher(xt, t, context(teacher_t5, bi, bm), {"mode": "dense", "fast": True}).float()
        with autocast(dev):
            v = dit(xt, t, ctx, {"mode": "sla2_low_bit", "checkpoint": True,
                                 "keep_ratio": keeps[step % len(keeps)]})
        loss = F.mse_loss(v.float(), target)
        optimise(opt, loss, params)
        ema_update(((ema, dit),), step, a.ema)
        losses.append(float(loss))
        if step % 50 == 0:
            print(f"[qat] step {step} loss {sum(losses[-20:]) / len(losses[-20:]):.4f} {time.time() - t0:.0f}s", flush=True)
    run.save_dit_t5("qat", ema, t5)
    prev = run.meta["log"].get("qat", {}) if a.qat_from == "qat" else {}
    run.meta["log"]["qat"] = {"steps": len(losses), "batch": a.qat_batch, "keep_ratios": keeps,
                              "lr": a.qat_lr, "teacher": a.qat_teacher or None,
                              # QAT steps of all earlier runs this one continues
                              "steps_before": prev.get("steps_before", 0) + prev.get("steps", 0),
                              "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:]))}


# ---------------------------------------------------------------- held-out evaluation
def stage_eval(run):
    import evaluate
    a, dev, cfg = run.args, run.dev, run.cfg
    items = evaluate.heldout_items(a.eval_num)
    seeds = [evaluate.EVAL_SEED0 + i for i in range(len(items))]
    caps = [it["caption"] for it in items]
    v = cfg["video"]
    ref = evaluate.reference_frames(items, v["num_frames"], v["height"], v["width"])
    vae = run.vae()
    table, details = {}, {}
    rt = vae_roundtrip_eval(run, vae)  # the ceiling: the held-out clips through the VAE alone
    table["vae:roundtrip"], details["vae:roundtrip"] = dict(rt["table"], density=None), rt["details"]
    print(f"[eval] vae:roundtrip: {table['vae:roundtrip']}", flush=True)
    variants = [tuple(v.split(":", 1)) for v in a.eval_variants.split(",") if v]
    for ck, spec in variants:
        if not glob.glob(os.path.join(a.ckpt_out, ck + "-*.safetensors")):
            continue
        dit, t5 = run.dit_t5(ck)
        dit.eval()
        t5.eval()
        attn = evaluate.parse_mode(spec)
        if attn["mode"] == "dense":
            attn["fast"] = True
        t0 = time.time()
        frames, density = evaluate.generate(dit, t5, vae, run.ids_batch, caps, seeds, cfg, attn, device=dev)
        res = [evaluate.score(fr, it, rf) for fr, it, rf in zip(frames, items, ref)]
        name = f"{ck}:{spec}"
        table[name] = dict(evaluate.summarize(res), density=density, seconds=round(time.time() - t0, 1))
        details[name] = res
        print(f"[eval] {name}: {table[name]}", flush=True)
    run.meta["log"]["eval"] = table
    with open(os.path.join(a.ckpt_out, "eval.json"), "w") as f:
        json.dump({"table": table, "details": details}, f, indent=1)
    print(evaluate.markdown(table), flush=True)


# ---------------------------------------------------------------- export
def stage_export(run):
    from sparsevid_ref import config as cfgmod  # pyyaml is only needed here
    cfg = copy.deepcopy(run.cfg)
    out = run.args.export_dir
    os.makedirs(out, exist_ok=True)
    run.tokenizer()
    cfg["t5"]["vocab_size"] = run.tokenizer().vocab_size
    src = run.args.export_from
    dit, t5 = run.dit_t5(src)
    vae = run.vae()
    cfg["weights"]["dit"] = save_export_shards(
        {k: v.float().contiguous().cpu() for k, v in dit.state_dict().items()}, out,
        "diffusion_pytorch_model")
    save_file({k: v.float().contiguous().cpu() for k, v in t5.state_dict().items()},
              os.path.join(out, "t5.safetensors"))
    save_file({k: v.float().contiguous().cpu() for k, v in vae.state_dict().items()
               if not k.startswith("encoder.") and not k.startswith("conv1.")},
              os.path.join(out, "vae.safetensors"))
    with open(os.path.join(run.args.ckpt_out, "spiece.model"), "rb") as a, \
            open(os.path.join(out, "spiece.model"), "wb") as b:
        b.write(a.read())
    if run.args.vae_trained_stats:
        # Run c2 warm-started the VAE while the config still held run c1's latent
        # statistics, so its decoder was trained on z*std1 + mean1 of raw latents.
        # Folding keeps decode(z) exactly as trained: std = s2*std1, mean = m2*std1 + mean1.
        mean, std = folded_stats(cfg, run.args.vae_trained_stats)
        cfg["vae"]["latents_mean"] = [float(x) for x in mean]
        cfg["vae"]["latents_std"] = [float(x) for x in std]
    if src == "dit":
        cfg["attention"]["mode"] = "dense"
    if run.args.export_keep > 0:
        cfg["attention"]["keep_ratio"] = run.args.export_keep
    cfgmod.save(cfg, os.path.join(out, "model.yaml"))
    print(f"[export] {src} -> {out}", flush=True)


STAGES = {"vae": stage_vae, "dit": stage_dit, "router": stage_router, "qat": stage_qat,
          "eval": stage_eval, "export": stage_export}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", required=True, help="comma list of " + ",".join(STAGES))
    p.add_argument("--size", choices=["default", "toy"], default="default")
    p.add_argument("--ckpt-in", default="", help="directory of an earlier run's checkpoints")
    p.add_argument("--ckpt-out", required=True)
    p.add_argument("--export-dir", default="models/sparsevid-shapes")
    p.add_argument("--budget", default="", help="seconds per stage, e.g. vae=120,dit=300")
    p.add_argument("--max-steps", type=int, default=10 ** 9)
    p.add_argument("--warm-start", action="store_true", help="vae/dit start from --ckpt-in weights")
    p.add_argument("--eval-num", type=int, default=8)
    p.add_argument("--eval-variants", default="dit:dense,router:sla2@0.03,qat:sla2@0.1,qat:sla2@0.05,"
                   "qat:sla2@0.03,qat:sla2_low_bit@0.1,qat:sla2_low_bit@0.03",
                   help="eval stage: checkpoint:attention pairs (skipped when the checkpoint is absent)")
    p.add_argument("--export-from", default="qat", choices=["dit", "router", "qat"])
    p.add_argument("--export-keep", type=float, default=0.0,
                   help="keep ratio written to the exported model.yaml (0 = the trained config's)")
    p.add_argument("--vae-trained-stats", default="",
                   help="meta.json whose latent statistics the decoder was trained with (see export)")
    p.add_argument("--deadline", type=float, default=0.0,
                   help="seconds after start by which every loop stops (0 = none); 40 s are kept for saving")
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--vae-max-logvar", type=float, default=-4.0,
                   help="upper clamp of logvar when sampling the VAE posterior (sigma <= exp(x/2))")
    p.add_argument("--object-weight", type=float, default=8.0)
    p.add_argument("--vae-decoder-only", action="store_true",
                   help="vae stage: fine-tune only the decoder on default-size clips (encoder and "
                        "latent statistics kept, so the DiT stays valid)")
    p.add_argument("--vae-crop", type=int, default=16,
                   help="--vae-decoder-only: latent crop (8x pixels) around the object")
    p.add_argument("--vae-latent-noise", type=float, default=0.05,
                   help="--vae-decoder-only: up to this normalised-latent noise std during training")
    p.add_argument("--min-colour-roundtrip", type=float, default=0.0,
                   help="stop after the VAE stage if fewer held-out colours survive a round trip")
    p.add_argument("--colour-check-every", type=int, default=200,
                   help="VAE steps between held-out colour round-trip checks (0 = only at the end)")
    p.add_argument("--num-clips", type=int, default=4096)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dit-lr", type=float, default=4e-4)
    p.add_argument("--cfg-dropout", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--router-batch", type=int, default=4)
    p.add_argument("--router-lr", type=float, default=2e-3)
    p.add_argument("--router-keep", type=float, default=0.0,
                   help="router stage: keep ratio it is distilled at (0 = the config's)")
    p.add_argument("--qat-batch", type=int, default=8)
    p.add_argument("--qat-lr", type=float, default=5e-5)
    p.add_argument("--qat-from", default="router", choices=["router", "qat"],
                   help="checkpoint the QAT stage starts from (qat = continue an earlier QAT run)")
    p.add_argument("--qat-teacher", default="",
                   help="qat stage: distil this checkpoint's full-attention velocity (e.g. dit) "
                        "instead of the flow-matching target")
    p.add_argument("--qat-keep", default="",
                   help="comma list of keep ratios alternated per QAT step (default: the config's)")
    args = p.parse_args(argv)
    if args.deadline > 0:
        DEADLINE[0] = START + args.deadline - 40.0
    run = Run(args)
    for name in args.stages.split(","):
        if name not in STAGES:
            raise SystemExit(f"unknown stage '{name}'")
        t0 = time.time()
        STAGES[name](run)
        if run.dev.type == "cuda":
            torch.cuda.synchronize()
        run.meta["stage_seconds"][name] = round(time.time() - t0, 1)
        run.save_meta()
        print(f"== stage {name}: {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
