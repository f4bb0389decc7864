"""Writes the golden parity files tests/parity/golden/* for the C++ tests.

Each file: weights with official Wan2.1 names, inputs `input.*`, outputs
`output.*`, and __metadata__ {"config": model.yaml schema as JSON,
"case": JSON of case parameters}. All fp32 (masks u8, ids int32),
deterministic (fixed seeds, CPU).  Usage: python training/make_golden.py [out_dir]
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparsevid_ref import config as cfgmod  # noqa: E402
from sparsevid_ref import sla2, sampler  # noqa: E402
from sparsevid_ref.noise import gaussian_noise  # noqa: E402
from sparsevid_ref.pipeline import generate, latent_shape  # noqa: E402
from sparsevid_ref.tokenizer import Tokenizer, train as train_tokenizer  # noqa: E402
from sparsevid_ref.umt5 import T5Encoder  # noqa: E402
from sparsevid_ref.wan_dit import WanModel  # noqa: E402
from sparsevid_ref.wan_vae import WanVAE  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
    return {
        "name": "golden-tiny",
        "dit": {"dim": 32, "ffn_dim": 64, "num_heads": 2, "num_layers": 2, "patch_size": [1, 2, 2],
                "in_dim": 4, "out_dim": 4, "text_dim": 24, "text_len": 12, "freq_dim": 16,
                "eps": 1e-6},
        "attention": {"mode": "sla2", "block_q": 16, "block_k": 8, "keep_ratio": 0.4,
                      "trained_grid": [3, 4, 6]},
        "t5": {"vocab_size": 64, "d_model": 24, "num_heads": 2, "d_kv": 8, "d_ff": 40,
               "num_layers": 2, "num_buckets": 16, "max_distance": 32, "eps": 1e-6,
               "tokenizer": "spiece.model"},
        "vae": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
                "temporal_downsample": [False, True, True],
                "latents_mean": [0.3, -0.2, 0.1, -0.4], "latents_std": [1.5, 0.8, 1.2, 2.0]},
        "sampling": {"sampler": "unipc", "steps": 2, "guidance_scale": 4.0, "shift": 3.0,
                     "negative_prompt": "blurry"},
        "video": {"width": 32, "height": 32, "num_frames": 9, "fps": 8, "max_width": 64,
                  "max_height": 64, "max_frames": 17},
        "weights": {"dit": ["diffusion_pytorch_model.safetensors"], "t5": ["t5.safetensors"],
                    "vae": ["vae.safetensors"]},
    }


def perturb_(module, seed):
    """Random, non-trivial values for norms/gains and zero-initialised tensors."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma") or (name.endswith("weight") and p.dim() == 1):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("alpha_logit"):
                p.copy_(1.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("proj_q.weight") or name.endswith("proj_k.weight"):
                d = p.shape[0]
                p.copy_(torch.eye(d) + 0.4 * torch.randn(p.shape, generator=g) / math.sqrt(d))
            elif p.abs().max() == 0:  # e.g. the VAE attention projection
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def state(module):
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def write(path, tensors, cfg, case):
    meta = {"config": json.dumps(cfg), "case": json.dumps(case)}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def case_sla2_attention(out, cfg):
    torch.manual_seed(1)
    length, heads, d, bq, bk, keep = 100, 2, 16, 32, 16, 0.3
    # Tokens with local structure so block routing matters: smooth random walk + noise.
    base = torch.cumsum(torch.randn(length, heads, d) * 0.35, dim=0)
    q = base + 0.5 * torch.randn(length, heads, d)
    k = base + 0.5 * torch.randn(length, heads, d) + 0.3
    v = torch.randn(length, heads, d)
    t_m = sla2.num_blocks(length, bq)
    proj_q = torch.eye(d) + 0.3 * torch.randn(d, d) / math.sqrt(d)
    proj_k = torch.eye(d) + 0.3 * torch.randn(d, d) / math.sqrt(d)
    alpha = 1.5 * torch.randn(heads, t_m)
    args = (proj_q, proj_k, alpha, keep, bq, bk)
    dense = sla2.dense_attention(q[None], k[None], v[None])[0]
    o, mask = sla2.sla2_attention(q[None], k[None], v[None], *args, mode="sla2", return_mask=True)
    o_low = sla2.sla2_attention(q[None], k[None], v[None], *args, mode="sla2_low_bit")
    c = copy.deepcopy(cfg)
    c["attention"].update({"block_q": bq, "block_k": bk, "keep_ratio": keep})
    case = {"name": "sla2_attention", "L": length, "H": heads, "d": d, "block_q": bq,
            "block_k": bk, "keep_ratio": keep, "kept_blocks_per_row": sla2.keep_count(keep, sla2.num_blocks(length, bk))}
    write(os.path.join(out, "sla2_attention.safetensors"), {
        "input.q": q, "input.k": k, "input.v": v,
        "blocks.0.self_attn.sla2.proj_q.weight": proj_q,
        "blocks.0.self_attn.sla2.proj_k.weight": proj_k,
        "blocks.0.self_attn.sla2.alpha_logit": alpha,
        "output.dense": dense, "output.sla2": o[0], "output.sla2_low_bit": o_low[0],
        "output.mask": mask[0].to(torch.uint8)}, c, case)


def make_t5(cfg, seed):
    torch.manual_seed(seed)
    t5 = T5Encoder(cfg["t5"]).eval()
    perturb_(t5, seed)
    return t5


def case_t5(out, cfg):
    t5 = make_t5(cfg, 2)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, cfg["t5"]["vocab_size"], (14,), generator=g)
    ids[-1] = 1  # EOS
    with torch.no_grad():
        hidden = t5(ids[None].long())[0]
    tensors = state(t5)
    tensors.update({"input.ids": ids.to(torch.int32), "output.hidden": hidden})
    write(os.path.join(out, "t5_encoder.safetensors"), tensors, cfg,
          {"name": "t5_encoder", "tokens": int(ids.numel())})


def make_dit(cfg, seed):
    torch.manual_seed(seed)
    dit = WanModel(cfg["dit"], cfg["attention"]).eval()
    perturb_(dit, seed)
    return dit


def case_dit(out, cfg, mode):
    c = copy.deepcopy(cfg)
    c["attention"]["mode"] = "dense" if mode == "dense" else "sla2"
    dit = make_dit(c, 4)
    g = torch.Generator().manual_seed(5)
    latent = torch.randn(4, 3, 6, 10, generator=g)
    context = torch.randn(5, c["dit"]["text_dim"], generator=g)
    t = torch.tensor(937.0)
    outputs = {}
    with torch.no_grad():
        if mode == "dense":
            outputs["output.velocity"] = dit(latent[None], t[None], context[None], {"mode": "dense"})[0]
        else:
            outputs["output.velocity"] = dit(latent[None], t[None], context[None], {"mode": "sla2"})[0]
            outputs["output.velocity_low_bit"] = dit(latent[None], t[None], context[None],
                                                     {"mode": "sla2_low_bit"})[0]
            outputs["output.velocity_dense"] = dit(latent[None], t[None], context[None], {"mode": "dense"})[0]
    tensors = state(dit)
    tensors.update({"input.latent": latent, "input.timestep": t, "input.context": context})
    tensors.update(outputs)
    grid = [3, 3, 5]
    case = {"name": f"dit_{mode}", "grid": grid, "tokens": 45,
            "T_m": sla2.num_blocks(45, c["attention"]["block_q"]),
            "T_n": sla2.num_blocks(45, c["attention"]["block_k"]),
            "alpha_trained_T_m": sla2.num_blocks(math.prod(c["attention"]["trained_grid"]),
                                                 c["attention"]["block_q"])}
    write(os.path.join(out, f"dit_{mode}.safetensors"), tensors, c, case)


def make_vae(cfg, seed):
    torch.manual_seed(seed)
    vae = WanVAE(copy.deepcopy(cfg["vae"])).eval()
    perturb_(vae, seed)
    return vae


def vae_decoder_state(vae):
    return {k: v for k, v in state(vae).items() if not k.startswith("encoder.") and k != "conv1.weight"
            and k != "conv1.bias"}


def case_vae(out, cfg):
    vae = make_vae(cfg, 6)
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(4, 3, 4, 4, generator=g)
    with torch.no_grad():
        raw = vae.decode(latent[None], clamp=False)[0]
        two = vae.decode(latent[None], chunk_sizes=[1, 2], clamp=False)[0]
    assert torch.allclose(raw, two, atol=1e-5), "chunked decode must equal the two-chunk decode"
    tensors = vae_decoder_state(vae)
    tensors.update({"input.latent": latent, "output.video": raw.clamp(-1, 1),
                    "output.video_unclamped": raw})
    write(os.path.join(out, "vae_decoder.safetensors"), tensors, cfg,
          {"name": "vae_decoder", "note": "input.latent is in DiT (normalised) space; "
           "decode applies latents_std/mean, conv2, per-frame chunks with the feature cache"})


def case_sampler(out, cfg):
    steps, shift, a, b = 10, 5.0, -0.8, 0.5
    sigmas, timesteps = sampler.sigma_schedule(steps, shift)
    x0 = torch.from_numpy(gaussian_noise(11, (4, 8)))

    def model_fn(x, t, sigma):
        return a * x + b * sigma

    tensors = {"input.x": x0, "output.sigmas": torch.from_numpy(sigmas),
               "output.timesteps": torch.from_numpy(timesteps.astype(np.int32))}
    for name, fn in (("euler", sampler.euler_sample), ("unipc", sampler.unipc_sample)):
        _, traj = fn(model_fn, x0.clone(), sigmas, timesteps)
        tensors[f"output.{name}_trajectory"] = torch.stack(traj)  # [steps, 4, 8]
    write(os.path.join(out, "sampler.safetensors"), tensors, cfg,
          {"name": "sampler", "steps": steps, "shift": shift, "model": "v(x, sigma) = a*x + b*sigma",
           "a": a, "b": b, "trajectory": "state after each step, [steps, ...]"})


def case_noise(out, cfg):
    seed, shape = 42, [4, 3, 4, 4]
    write(os.path.join(out, "noise.safetensors"),
          {"output.noise": torch.from_numpy(gaussian_noise(seed, tuple(shape)))}, cfg,
          {"name": "noise", "seed": seed, "shape": shape,
           "generator": "std::mt19937_64(seed); u=((x>>11)+1)*2^-53; Box-Muller in double; z0,z1 order"})


def case_pipeline(out, cfg):
    """A complete tiny model directory plus io.safetensors."""
    mdir = os.path.join(out, "pipeline_2step")
    os.makedirs(mdir, exist_ok=True)
    c = copy.deepcopy(cfg)
    c["name"] = "golden-pipeline-2step"
    c["attention"]["keep_ratio"] = 0.5
    c["attention"]["trained_grid"] = [3, 2, 2]
    c["dit"]["text_len"] = 48
    corpus = [f"a {col} {shape} moving {d} on a {bg} background"
              for col in ("red", "green", "blue") for shape in ("circle", "square")
              for d in ("left", "right") for bg in ("black", "white")] + ["blurry"]
    tok_path = os.path.join(mdir, "spiece.model")
    train_tokenizer(corpus, 64, tok_path, model_type="unigram")
    tok = Tokenizer(tok_path)
    c["t5"]["vocab_size"] = tok.vocab_size
    t5 = make_t5(c, 8)
    dit = make_dit(c, 9)
    vae = make_vae(c, 10)
    save_file(state(dit), os.path.join(mdir, "diffusion_pytorch_model.safetensors"))
    save_file(state(t5), os.path.join(mdir, "t5.safetensors"))
    save_file(vae_decoder_state(vae), os.path.join(mdir, "vae.safetensors"))
    cfgmod.save(c, os.path.join(mdir, "model.yaml"))
    prompt = "a  red circle moving left on a black background"
    ids = torch.tensor(tok.encode(prompt), dtype=torch.int32)
    neg_ids = torch.tensor(tok.encode(c["sampling"]["negative_prompt"]), dtype=torch.int32)
    seed = 1234
    shape = latent_shape(c, c["video"]["width"], c["video"]["height"], c["video"]["num_frames"])
    noise = torch.from_numpy(gaussian_noise(seed, shape))
    s = c["sampling"]
    video, latent = generate(t5, dit, vae, ids, neg_ids, noise, s["steps"], s["guidance_scale"],
                             s["shift"], s["sampler"], {"mode": c["attention"]["mode"]})
    write(os.path.join(mdir, "io.safetensors"), {
        "input.ids": ids, "input.neg_ids": neg_ids, "input.noise": noise,
        "output.latent": latent, "output.video": video}, c,
        {"name": "pipeline_2step", "prompt": prompt, "negative_prompt": s["negative_prompt"],
         "seed": seed, "width": c["video"]["width"], "height": c["video"]["height"],
         "num_frames": c["video"]["num_frames"], "steps": s["steps"], "sampler": s["sampler"],
         "guidance_scale": s["guidance_scale"], "shift": s["shift"],
         "attention": c["attention"]["mode"]})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "parity", "golden")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    cfg = cfgmod.validate(tiny_config())
    case_sla2_attention(out, cfg)
    case_t5(out, cfg)
    case_dit(out, cfg, "dense")
    case_dit(out, cfg, "sla2")
    case_vae(out, cfg)
    case_sampler(out, cfg)
    case_noise(out, cfg)
    case_pipeline(out, cfg)


if __name__ == "__main__":
    main()
