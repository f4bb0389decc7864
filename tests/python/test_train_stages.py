"""Training stages at the toy size on the CPU (skipped without torch): the
decoder-only VAE fine-tune keeps what the DiT depends on, and QAT distils a
teacher when asked."""
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "training"))
import train  # noqa: E402


def run_train(*args):
    subprocess.run([sys.executable, os.path.join(ROOT, "training", "train.py"), "--size", "toy",
                    "--eval-num", "2", "--num-clips", "16", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def meta(d):
    with open(os.path.join(d, "meta.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("base"))
    run_train("--stages", "vae,dit,router", "--ckpt-out", d, "--max-steps", "3")
    return d


def test_decoder_only_keeps_encoder_and_latent_statistics(base, tmp_path):
    out = str(tmp_path)
    run_train("--stages", "vae", "--ckpt-in", base, "--ckpt-out", out, "--vae-decoder-only",
              "--max-steps", "3", "--vae-batch", "2")
    a, b = train.load_sharded(os.path.join(base, "vae")), train.load_sharded(os.path.join(out, "vae"))
    enc = [k for k in a if k.startswith(("encoder.", "conv1."))]
    dec = [k for k in a if k not in enc]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)
    assert any(not torch.equal(a[k], b[k]) for k in dec)
    va, vb = meta(base)["config"]["vae"], meta(out)["config"]["vae"]
    assert va["latents_mean"] == vb["latents_mean"] and va["latents_std"] == vb["latents_std"]
    log = meta(out)["log"]["vae_decoder"]
    assert log["steps"] == 3
    assert set(log["roundtrip_after"]) >= {"background", "colour", "shape", "direction", "psnr_db"}


def test_object_crops_centre_on_the_object():
    video = -torch.ones(2, 3, 5, 64, 64)
    video[0, :, :, 40:56, 44:60] = 1.0  # object centred at (48, 52) px = latent (6, 6.5)
    video[1, :, :, 1:9, 1:9] = 1.0      # near the corner: the window is clamped inside
    (y0, x0), (y1, x1) = train.object_crops(video, 4)
    assert (y0, x0) == (4, 4) or (y0, x0) == (4, 5)
    assert y0 <= 6 < y0 + 4 and x0 <= 6 < x0 + 4
    assert (y1, x1) == (0, 0)


def test_qat_distils_the_named_teacher(base, tmp_path):
    out = str(tmp_path)
    run_train("--stages", "qat", "--ckpt-in", base, "--ckpt-out", out, "--qat-teacher", "dit",
              "--max-steps", "2", "--qat-batch", "2")
    log = meta(out)["log"]["qat"]
    assert log["teacher"] == "dit" and log["steps"] == 2


def test_qat_with_a_missing_teacher_names_it(base, tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "training", "train.py"), "--size", "toy",
                        "--stages", "qat", "--ckpt-in", base, "--ckpt-out", str(tmp_path),
                        "--qat-teacher", "nosuch", "--max-steps", "1"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "nosuch" in p.stderr
