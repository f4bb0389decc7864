"""Automatic quality check of generated videos against their prompts.

For each held-out prompt ("a {colour} {shape} moving {direction} on a {bg}
background", combinations never seen in training) it checks the background,
object colour, shape and motion direction found in the frames, and the
MSE/PSNR against the procedural render of the same prompt.

Sources of frames:
  --model DIR        generate with the PyTorch reference (modes listed in --modes)
  --mp4-dir DIR      decode heldout_{i}.mp4 files (e.g. from the C++ engine) with
                     the ffmpeg CLI (raw RGB dump)
Output: a JSON report and a markdown table on stdout.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from sparsevid_ref.noise import gaussian_noise  # noqa: E402
from sparsevid_ref import sampler as sampler_mod  # noqa: E402

EVAL_SEED0 = 100


def heldout_items(n):
    return [data.sample_item(i, "heldout") for i in range(n)]


def _nearest(rgb, table):
    names = list(table)
    d = [np.sum((np.asarray(table[n], dtype=np.float64) - rgb) ** 2) for n in names]
    return names[int(np.argmin(d))]


def analyze(frames):
    """frames uint8 [F, H, W, 3] -> background, colour, shape, direction found."""
    f, h, w, _ = frames.shape
    x = frames.astype(np.float64)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).reshape(-1, 3)
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, data.BACKGROUNDS)
    diff = np.sqrt(((x - bg_rgb) ** 2).sum(-1))
    mask = diff > 80
    out = {"background": background, "colour": None, "shape": None, "direction": None}
    if mask.sum() < 10:
        return out
    out["colour"] = _nearest(np.median(x[mask], axis=0), data.COLOURS)
    ys, xs = np.mgrid[0:h, 0:w]
    cents = []
    for i in range(f):
        m = mask[i]
        if m.sum() >= 5:
            cents.append((i, xs[m].mean() / w, ys[m].mean() / w))
    mid = mask[f // 2] if mask[f // 2].sum() >= 5 else mask[cents[len(cents) // 2][0]] if cents else None
    if mid is not None and mid.sum() >= 5:
        yy, xx = np.nonzero(mid)
        fill = mid.sum() / ((yy.max() - yy.min() + 1) * (xx.max() - xx.min() + 1))
        out["fill"] = float(fill)
        out["shape"] = "square" if fill > 0.9 else "circle" if fill > 0.64 else "triangle"
    if len(cents) >= 4:
        k = max(1, len(cents) // 3)
        a = np.mean([c[1:] for c in cents[:k]], axis=0)
        b = np.mean([c[1:] for c in cents[-k:]], axis=0)
        dx, dy = b - a
        out["displacement"] = [float(dx), float(dy)]
        if math.hypot(dx, dy) < 0.08:
            out["direction"] = "static"
        else:
            ang = math.degrees(math.atan2(-dy, dx)) % 360  # up is +
            names = ["right", "up right", "up", "up left", "left", "down left", "down", "down right"]
            out["direction"] = names[int(((ang + 22.5) % 360) // 45)]
    return out


def score(frames, item, reference):
    """Checks plus MSE/PSNR (frames and reference uint8 [F,H,W,3])."""
    found = analyze(frames)
    obj = item["objects"][0]
    checks = {"background": found["background"] == item["background"],
              "colour": found["colour"] == obj["colour"],
              "shape": found["shape"] == obj["shape"],
              "direction": found["direction"] == item["direction"]}
    err = (frames.astype(np.float64) - reference.astype(np.float64)) ** 2
    mse = float(np.mean(err))
    # The first latent frame's video frames (0, and 1-4 from the next latent
    # frame) came out worst in earlier models: scored on their own too.
    first = float(np.mean(err[:5]))
    rest = float(np.mean(err[5:])) if len(err) > 5 else first
    return {"caption": item["caption"], "found": found, "checks": checks,
            "all": all(checks.values()), "mse": mse,
            "psnr_db": 10 * math.log10(255.0 ** 2 / max(mse, 1e-10)),
            "first_colour": analyze(frames[:5])["colour"] == obj["colour"],
            "psnr_first_db": 10 * math.log10(255.0 ** 2 / max(first, 1e-10)),
            "psnr_rest_db": 10 * math.log10(255.0 ** 2 / max(rest, 1e-10))}


def to_uint8(video):
    """[B,3,F,H,W] in [-1,1] -> uint8 [B,F,H,W,3] (the engine's conversion)."""
    v = ((video.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
    return v.permute(0, 2, 3, 4, 1).cpu().numpy()


def reference_frames(items, num_frames, height, width):
    return to_uint8(data.render(items, num_frames, height, width))


@torch.no_grad()
def generate(dit, t5, vae, ids_fn, captions, seeds, cfg, attn, steps=None, guidance=None, device="cpu"):
    """Batched PyTorch generation with CFG; noise = the engine's seeded noise."""
    s = cfg["sampling"]
    steps = steps or s["steps"]
    guidance = s["guidance_scale"] if guidance is None else guidance
    w, h, frames = cfg["video"]["width"], cfg["video"]["height"], cfg["video"]["num_frames"]
    z = cfg["vae"]["z_dim"]
    shape = (z, (frames - 1) // 4 + 1, h // 8, w // 8)
    noise = torch.stack([torch.from_numpy(gaussian_noise(sd, shape)) for sd in seeds]).to(device)
    ids, mask = ids_fn(captions)
    nids, nmask = ids_fn([s["negative_prompt"]] * len(captions))
    ctx = torch.cat([t5(ids, mask) * mask[..., None], t5(nids, nmask) * nmask[..., None]])
    b = len(captions)
    stats = []
    attn = dict(attn, on_sla2=lambda m: stats.append(float(m.float().mean())))

    def model_fn(x, t, sigma):
        tt = torch.full((2 * b,), float(t), device=device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                            enabled=torch.device(device).type == "cuda"):
            v = dit(torch.cat([x, x]), tt, ctx, attn).float()
        return v[b:] + guidance * (v[:b] - v[b:])

    latent, _ = sampler_mod.sample(model_fn, noise, steps, s["shift"], s["sampler"])
    video = vae.decode(latent.float(), chunk_sizes=[1, latent.shape[2] - 1])
    density = sum(stats) / len(stats) if stats else 1.0
    return to_uint8(video.float()), density


def summarize(results):
    n = len(results)
    keys = ("background", "colour", "shape", "direction")
    out = {k: sum(r["checks"][k] for r in results) / n for k in keys}
    out["all"] = sum(r["all"] for r in results) / n
    out["psnr_db"] = sum(r["psnr_db"] for r in results) / n
    out["mse"] = sum(r["mse"] for r in results) / n
    out["first_colour"] = sum(r["first_colour"] for r in results) / n
    out["psnr_first_db"] = sum(r["psnr_first_db"] for r in results) / n
    out["psnr_rest_db"] = sum(r["psnr_rest_db"] for r in results) / n
    return out


def markdown(table):
    lines = ["| variant | density | background | colour | shape | direction | all | PSNR dB "
             "| colour, frames 0-4 | PSNR dB, frames 0-4 / 5- |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in table.items():
        d = s.get("density", 1.0)
        lines.append(f"| {name} | {'–' if d is None else f'{d:.3f}'} | {s['background']:.2f} | {s['colour']:.2f} | "
                     f"{s['shape']:.2f} | {s['direction']:.2f} | {s['all']:.2f} | {s['psnr_db']:.2f} | "
                     f"{s.get('first_colour', float('nan')):.2f} | "
                     f"{s.get('psnr_first_db', float('nan')):.2f} / {s.get('psnr_rest_db', float('nan')):.2f} |")
    return "\n".join(lines)


def decode_mp4(path):
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", path],
                           check=True, capture_output=True, text=True).stdout.strip().split(",")
    w, h = int(probe[0]), int(probe[1])
    # -nostdin: ffmpeg otherwise reads keyboard commands ('q' stops the
    # decode early) from whatever stdin this process inherited.
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True, stdin=subprocess.DEVNULL).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)


def load_model_dir(model_dir, device):
    from safetensors.torch import load_file
    from sparsevid_ref import config as cfgmod
    from sparsevid_ref.tokenizer import Tokenizer
    from sparsevid_ref.umt5 import T5Encoder
    from sparsevid_ref.wan_dit import WanModel
    from sparsevid_ref.wan_vae import WanVAE
    cfg = cfgmod.load(os.path.join(model_dir, "model.yaml"))
    dit = WanModel(cfg["dit"], cfg["attention"])
    state = {}
    for name in cfg["weights"]["dit"]:  # the DiT may be split over several files
        state.update(load_file(os.path.join(model_dir, name)))
    dit.load_state_dict(state)
    t5 = T5Encoder(cfg["t5"])
    t5.load_state_dict(load_file(os.path.join(model_dir, cfg["weights"]["t5"][0])))
    vae = WanVAE(dict(cfg["vae"]))
    vae.load_state_dict(load_file(os.path.join(model_dir, cfg["weights"]["vae"][0])), strict=False)
    tok = Tokenizer(os.path.join(model_dir, cfg["t5"]["tokenizer"]))

    def ids_fn(captions):
        ids = torch.zeros(len(captions), cfg["dit"]["text_len"], dtype=torch.long)
        for i, c in enumerate(captions):
            t = tok.encode(c, cfg["dit"]["text_len"])
            ids[i, :len(t)] = torch.tensor(t)
        return ids.to(device), (ids != 0).to(device)
    return cfg, dit.to(device).eval(), t5.to(device).eval(), vae.to(device).eval(), ids_fn


def parse_mode(spec):
    """'dense' | 'sla2@0.05' | 'sla2_low_bit@0.03' -> attention dict."""
    if "@" in spec:
        mode, keep = spec.split("@")
        return {"mode": mode, "keep_ratio": float(keep)}
    return {"mode": spec}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (PyTorch generation)")
    p.add_argument("--modes", default="dense,sla2@0.1,sla2@0.05,sla2@0.03,sla2_low_bit@0.03")
    p.add_argument("--mp4-dir", help="directory with heldout_{i}.mp4")
    p.add_argument("--num", type=int, default=8, help="held-out prompts")
    p.add_argument("--out", default="eval_report.json")
    p.add_argument("--prompts", action="store_true", help="print the held-out prompts and seeds, then exit")
    a = p.parse_args()
    items = heldout_items(a.num)
    seeds = [EVAL_SEED0 + i for i in range(a.num)]
    if a.prompts:
        for i, (it, sd) in enumerate(zip(items, seeds)):
            print(json.dumps({"index": i, "prompt": it["caption"], "seed": sd}))
        return
    table, details = {}, {}
    if a.mp4_dir:
        frames = [decode_mp4(os.path.join(a.mp4_dir, f"heldout_{i}.mp4")) for i in range(a.num)]
        f, h, w = frames[0].shape[:3]
        ref = reference_frames(items, f, h, w)
        res = [score(fr, it, rf) for fr, it, rf in zip(frames, items, ref)]
        table["mp4"], details["mp4"] = summarize(res), res
    if a.model:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        cfg, dit, t5, vae, ids_fn = load_model_dir(a.model, dev)
        ref = reference_frames(items, cfg["video"]["num_frames"], cfg["video"]["height"], cfg["video"]["width"])
        for spec in a.modes.split(","):
            frames, density = generate(dit, t5, vae, ids_fn, [it["caption"] for it in items], seeds, cfg,
                                       parse_mode(spec), device=dev)
            res = [score(fr, it, rf) for fr, it, rf in zip(frames, items, ref)]
            table[spec] = dict(summarize(res), density=density)
            details[spec] = res
    with open(a.out, "w") as f:
        json.dump({"table": table, "details": details}, f, indent=1)
    print(markdown(table))


if __name__ == "__main__":
    main()
