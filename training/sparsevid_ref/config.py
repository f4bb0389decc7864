"""model.yaml schema (docs/model-config.md): read, validate, write.

Unknown keys are an error naming the key, as in the C++ engine."""
import copy
import json

import yaml

SCHEMA = {
    "name": str,
    "dit": {"dim": int, "ffn_dim": int, "num_heads": int, "num_layers": int,
            "patch_size": list, "in_dim": int, "out_dim": int, "text_dim": int,
            "text_len": int, "freq_dim": int, "eps": float},
    "attention": {"mode": str, "block_q": int, "block_k": int, "keep_ratio": float,
                  "trained_grid": list},
    "t5": {"vocab_size": int, "d_model": int, "num_heads": int, "d_kv": int, "d_ff": int,
           "num_layers": int, "num_buckets": int, "max_distance": int, "eps": float,
           "tokenizer": str},
    "vae": {"base_dim": int, "z_dim": int, "dim_mult": list, "num_res_blocks": int,
            "temporal_downsample": list, "latents_mean": list, "latents_std": list},
    "sampling": {"sampler": str, "steps": int, "guidance_scale": float, "shift": float,
                 "negative_prompt": str},
    "video": {"width": int, "height": int, "num_frames": int, "fps": int,
              "max_width": int, "max_height": int, "max_frames": int},
    "weights": {"dit": list, "t5": list, "vae": list},
}

ATTENTION_MODES = ("dense", "sla2", "sla2_low_bit")
SAMPLERS = ("unipc", "euler")


class ConfigError(ValueError):
    pass


def _check(node, schema, path):
    if isinstance(schema, dict):
        if not isinstance(node, dict):
            raise ConfigError(f"{path or 'config'}: expected a mapping")
        for key in node:
            if key not in schema:
                raise ConfigError(f"unknown key '{path + key}'")
        for key, sub in schema.items():
            if key not in node:
                raise ConfigError(f"missing key '{path + key}'")
            _check(node[key], sub, path + key + ".")
        return
    name = path[:-1]
    if schema is float and isinstance(node, int) and not isinstance(node, bool):
        return
    if not isinstance(node, schema) or isinstance(node, bool) and schema is not bool:
        raise ConfigError(f"'{name}': expected {schema.__name__}, got {type(node).__name__}")


def validate(cfg):
    _check(cfg, SCHEMA, "")
    dit, att, vae = cfg["dit"], cfg["attention"], cfg["vae"]
    if dit["dim"] % dit["num_heads"]:
        raise ConfigError("'dit.dim' must be a multiple of 'dit.num_heads'")
    if dit["in_dim"] != vae["z_dim"] or dit["out_dim"] != vae["z_dim"]:
        raise ConfigError("'dit.in_dim'/'dit.out_dim' must equal 'vae.z_dim'")
    if dit["text_dim"] != cfg["t5"]["d_model"]:
        raise ConfigError("'dit.text_dim' must equal 't5.d_model'")
    if att["mode"] not in ATTENTION_MODES:
        raise ConfigError(f"'attention.mode': unknown mode '{att['mode']}'")
    if cfg["sampling"]["sampler"] not in SAMPLERS:
        raise ConfigError(f"'sampling.sampler': unknown sampler '{cfg['sampling']['sampler']}'")
    for key in ("latents_mean", "latents_std"):
        if len(vae[key]) != vae["z_dim"]:
            raise ConfigError(f"'vae.{key}' must have z_dim entries")
    return cfg


def load(path):
    with open(path) as f:
        return validate(yaml.safe_load(f))


def save(cfg, path):
    validate(cfg)
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=None, width=100)


def to_json(cfg, **case):
    """The golden-file form: the model.yaml structure plus case parameters."""
    out = copy.deepcopy(cfg)
    if case:
        out["case"] = case
    return json.dumps(out)
