"""Procedural shape videos with matching captions, deterministic by seed.

Prompt language: "a {colour} {shape} moving {direction} on a {background} background"
plus variants (size, speed, diagonal directions, rotation, growing/shrinking,
two objects, article and word-order templates). A held-out set of
(colour, shape, direction) combinations never appears in training.
Rendering is vectorised torch (runs on the GPU during training)."""
import math
import random

import torch

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 225),
           "yellow": (235, 215, 40), "white": (245, 245, 245), "orange": (245, 140, 30),
           "purple": (140, 50, 180), "cyan": (40, 210, 220)}
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
CARDINAL = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
DIAGONAL = {"up left": (-1, -1), "up right": (1, -1), "down left": (-1, 1), "down right": (1, 1)}
DIRECTIONS = {**CARDINAL, **DIAGONAL}
SPEEDS = {"slowly": 0.25, "": 0.45, "quickly": 0.65}   # distance over the clip (frame widths)
SIZES = {"small": 0.08, "": 0.12, "large": 0.17}        # radius (frame widths)
SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}


def held_out_combinations():
    """8 (colour, shape, cardinal direction) triples kept out of training (fixed)."""
    rng = random.Random(2024)
    combos = [(c, s, d) for c in COLOURS for s in SHAPES for d in CARDINAL]
    rng.shuffle(combos)
    held, used_c, used_s = [], set(), {}
    for c, s, d in combos:  # spread over colours so every attribute stays in training
        if c in used_c or used_s.get(s, 0) >= 3:
            continue
        held.append((c, s, d))
        used_c.add(c)
        used_s[s] = used_s.get(s, 0) + 1
    return held


HELD_OUT = frozenset(held_out_combinations())


def _obj(rng, held_out_ok):
    while True:
        c, s, d = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(DIRECTIONS))
        if held_out_ok or (c, s, d) not in HELD_OUT:
            return c, s, d


def _background(rng, colours):
    return rng.choice([b for b in BACKGROUNDS if b not in colours])


def _motion(d, speed, rng, jitter=0.06):
    dx, dy = DIRECTIONS[d]
    n = math.hypot(dx, dy)
    dist = SPEEDS[speed]
    vx, vy = dx / n * dist, dy / n * dist
    cx = 0.5 - vx / 2 + rng.uniform(-jitter, jitter)
    cy = 0.5 - vy / 2 + rng.uniform(-jitter, jitter)
    return cx, cy, vx, vy


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def sample_item(seed, split="train"):
    """One caption and its render parameters. split: 'train' or 'heldout'."""
    rng = random.Random(seed * 7919 + (0 if split == "train" else 1))
    if split == "heldout":
        c, s, d = sorted(HELD_OUT)[seed % len(HELD_OUT)]
        bg = _background(rng, [c])
        cx, cy, vx, vy = _motion(d, "", rng, jitter=0.0)
        obj = dict(colour=c, shape=s, cx=cx, cy=cy, vx=vx, vy=vy, r=SIZES[""], grow=0.0, spin=0.0)
        return {"caption": f"{_article(c)} {c} {s} moving {d} on a {bg} background", "background": bg,
                "objects": [obj], "direction": d}
    kind = rng.random()
    c, s, d = _obj(rng, False)
    size = rng.choice(list(SIZES)) if rng.random() < 0.4 else ""
    speed = rng.choice(list(SPEEDS)) if rng.random() < 0.4 else ""
    if kind < 0.12:  # two objects
        c2, s2, d2 = _obj(rng, False)
        while c2 == c:
            c2, s2, d2 = _obj(rng, False)
        bg = _background(rng, [c, c2])
        objs = []
        for cc, ss, dd in ((c, s, d), (c2, s2, d2)):
            cx, cy, vx, vy = _motion(dd, "", rng, jitter=0.15)
            objs.append(dict(colour=cc, shape=ss, cx=cx, cy=cy, vx=vx, vy=vy, r=SIZES["small"],
                             grow=0.0, spin=0.0))
        cap = f"{_article(c)} {c} {s} moving {d} and {_article(c2)} {c2} {s2} moving {d2} on a {bg} background"
        return {"caption": cap, "background": bg, "objects": objs, "direction": d}
    bg = _background(rng, [c])
    if kind < 0.22:  # growing / shrinking in place
        grow = rng.choice(["growing", "shrinking"])
        r0 = 0.07 if grow == "growing" else 0.2
        g = 1.6 if grow == "growing" else -0.6
        obj = dict(colour=c, shape=s, cx=0.5 + rng.uniform(-0.1, 0.1), cy=0.5 + rng.uniform(-0.1, 0.1),
                   vx=0.0, vy=0.0, r=r0, grow=g, spin=0.0)
        return {"caption": f"{_article(c)} {c} {s} {grow} on a {bg} background", "background": bg,
                "objects": [obj], "direction": None}
    cx, cy, vx, vy = _motion(d, speed, rng)
    spin = 0.0
    if s != "circle" and kind < 0.32:
        spin = rng.choice([-1, 1]) * math.pi
    obj = dict(colour=c, shape=s, cx=cx, cy=cy, vx=vx, vy=vy, r=SIZES[size], grow=0.0, spin=spin)
    adj = " ".join(w for w in (size, c) if w)
    mv = " ".join(w for w in ("moving", speed, d) if w)
    if spin:
        cap = f"{_article(adj)} {adj} {s} rotating while {mv} on a {bg} background"
    else:
        t = rng.randrange(4)
        if t == 0:
            cap = f"{_article(adj)} {adj} {s} {mv} on a {bg} background"
        elif t == 1:
            cap = f"{adj} {s} {mv}, {bg} background"
        elif t == 2:
            cap = f"on a {bg} background, {_article(adj)} {adj} {s} moves {' '.join(w for w in (speed, d) if w)}"
        else:
            cap = f"the {adj} {s} moves {' '.join(w for w in (speed, d) if w)} across a {bg} background"
    return {"caption": cap, "background": bg, "objects": [obj], "direction": d}


def render(items, num_frames, height, width, device="cpu"):
    """Batch of items -> video [B, 3, F, H, W] in [-1, 1] (float32)."""
    b = len(items)
    n_obj = max(len(it["objects"]) for it in items)
    def field(key, default=0.0):
        return torch.tensor([[o[key] for o in it["objects"]] + [default] * (n_obj - len(it["objects"]))
                             for it in items], dtype=torch.float32, device=device)
    cx, cy, vx, vy, r, grow, spin = (field(k) for k in ("cx", "cy", "vx", "vy", "r", "grow", "spin"))
    present = torch.tensor([[1.0] * len(it["objects"]) + [0.0] * (n_obj - len(it["objects"]))
                            for it in items], device=device)
    shape = torch.tensor([[SHAPE_ID[o["shape"]] for o in it["objects"]] + [0] * (n_obj - len(it["objects"]))
                          for it in items], device=device)
    col = torch.tensor([[COLOURS[o["colour"]] for o in it["objects"]] + [(0, 0, 0)] * (n_obj - len(it["objects"]))
                        for it in items], dtype=torch.float32, device=device) / 127.5 - 1
    bg = torch.tensor([BACKGROUNDS[it["background"]] for it in items], dtype=torch.float32,
                      device=device) / 127.5 - 1
    t = torch.linspace(0, 1, num_frames, device=device)[None, None, :]  # [1,1,F]
    px = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    py = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / width  # same units as x
    ox = (cx[..., None] + vx[..., None] * t)[..., None, None]  # [B,O,F,1,1]
    oy = (cy[..., None] + vy[..., None] * t)[..., None, None]
    rad = (r[..., None] * (1 + grow[..., None] * t))[..., None, None]
    ang = (spin[..., None] * t)[..., None, None]
    dx = px[None, None, None, None, :] - ox
    dy = py[None, None, None, :, None] - oy
    ca, sa = torch.cos(ang), torch.sin(ang)
    ux, uy = ca * dx + sa * dy, -sa * dx + ca * dy  # object frame
    sdf_circle = torch.sqrt(ux ** 2 + uy ** 2) - rad
    sdf_square = torch.maximum(ux.abs(), uy.abs()) - rad * 0.85
    # equilateral triangle pointing up, circumradius 1.2 r
    rt = rad * 1.2
    e1 = uy - rt * 0.5
    e2 = -0.866 * ux - 0.5 * uy - rt * 0.5
    e3 = 0.866 * ux - 0.5 * uy - rt * 0.5
    sdf_tri = torch.maximum(torch.maximum(e1, e2), e3)
    sel = shape[..., None, None, None]
    sdf = torch.where(sel == 0, sdf_circle, torch.where(sel == 1, sdf_square, sdf_tri))
    cover = torch.clamp(0.5 - sdf * width, 0, 1) * present[..., None, None, None]  # [B,O,F,H,W]
    video = bg[:, :, None, None, None].expand(b, 3, num_frames, height, width).clone()
    for o in range(n_obj):
        a = cover[:, o][:, None]
        video = video * (1 - a) + col[:, o][:, :, None, None, None] * a
    return video


def batch(seeds, num_frames, height, width, split="train", device="cpu"):
    items = [sample_item(int(s), split) for s in seeds]
    return [it["caption"] for it in items], render(items, num_frames, height, width, device), items


def caption_corpus(n=20000):
    caps = [sample_item(i)["caption"] for i in range(n)]
    caps += [sample_item(i, "heldout")["caption"] for i in range(len(HELD_OUT))]
    return caps
