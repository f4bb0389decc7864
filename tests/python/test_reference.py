"""Checks of the PyTorch reference (training/sparsevid_ref) against independent,
loop-based re-implementations of docs/conventions.md. Skipped when torch is absent
(CI uses the committed golden files and needs no torch)."""
import math
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "training"))
from sparsevid_ref import sla2, sampler  # noqa: E402
from sparsevid_ref.noise import MT19937_64, gaussian_noise  # noqa: E402
from sparsevid_ref.wan_vae import WanVAE  # noqa: E402


def naive_sla2(q, k, v, pq, pk, alpha_logit, keep, bq, bk, low_bit):
    """One head at a time, one query block at a time, kept blocks in ascending order."""
    length, heads, d = q.shape
    tm, tn = math.ceil(length / bq), math.ceil(length / bk)
    kcnt = max(1, min(tn, int(math.floor(keep * tn))))
    out = torch.zeros_like(q, dtype=torch.float64)
    for h in range(heads):
        qh, kh, vh = q[:, h].double(), k[:, h].double(), v[:, h].double()
        ks = kh - kh.mean(0)
        qbar = torch.stack([qh[i * bq:(i + 1) * bq].mean(0) for i in range(tm)])
        kbar = torch.stack([ks[j * bk:(j + 1) * bk].mean(0) for j in range(tn)])
        scores = (qbar @ pq.double().t()) @ (kbar @ pk.double().t()).t()
        qphi, kphi = torch.softmax(qh, -1), torch.softmax(ks, -1)
        if low_bit:
            vmax = vh.abs().amax(0)
            sv = torch.where(vmax > 0, vmax / 448, torch.ones_like(vmax))
            vhat = (vh / sv).float().clamp(-448, 448).to(torch.float8_e4m3fn).double()
        for i in range(tm):
            rows = slice(i * bq, min(length, (i + 1) * bq))
            order = sorted(range(tn), key=lambda j: (-float(scores[i, j]), j))
            kept = sorted(order[:kcnt])
            qi = qh[rows]
            if low_bit:
                amax = qi.abs().max()
                sq = amax / 127 if amax > 0 else torch.tensor(1.0, dtype=torch.float64)
                qint = torch.clamp(torch.sign(qi / sq) * torch.floor((qi / sq).abs() + 0.5), -127, 127)
                m = torch.full((qi.shape[0],), -math.inf, dtype=torch.float64)
                lsum = torch.zeros(qi.shape[0], dtype=torch.float64)
                acc = torch.zeros(qi.shape[0], d, dtype=torch.float64)
                for j in kept:
                    kj = ks[j * bk:(j + 1) * bk]
                    amax = kj.abs().max()
                    sk = amax / 127 if amax > 0 else torch.tensor(1.0, dtype=torch.float64)
                    kint = torch.clamp(torch.sign(kj / sk) * torch.floor((kj / sk).abs() + 0.5), -127, 127)
                    s = (qint @ kint.t()) * sq * sk / math.sqrt(d)
                    m_new = torch.maximum(m, s.max(1).values)
                    p = torch.exp(s - m_new[:, None])
                    r = torch.exp(m - m_new)
                    lsum = lsum * r + p.sum(1)
                    phat = (p * 448).float().to(torch.float8_e4m3fn).double()
                    acc = acc * r[:, None] + phat @ vhat[j * bk:(j + 1) * bk]
                    m = m_new
                o_s = acc * sv / (448 * lsum[:, None])
            else:
                cols = torch.cat([torch.arange(j * bk, min(length, (j + 1) * bk)) for j in kept])
                p = torch.softmax(qi @ ks[cols].t() / math.sqrt(d), -1)
                o_s = p @ vh[cols]
            hmat = torch.zeros(d, d, dtype=torch.float64)
            z = torch.zeros(d, dtype=torch.float64)
            for j in range(tn):
                if j not in kept:
                    sl = slice(j * bk, min(length, (j + 1) * bk))
                    hmat += kphi[sl].t() @ vh[sl]
                    z += kphi[sl].sum(0)
            den = qphi[rows] @ z
            o_l = torch.where(den[:, None] > 0, (qphi[rows] @ hmat) / den[:, None].clamp_min(1e-300),
                              torch.zeros(1, dtype=torch.float64))
            a = torch.sigmoid(alpha_logit[h, i].double())
            out[rows, h] = a * o_s + (1 - a) * o_l
    return out.float()


@pytest.mark.parametrize("low_bit", [False, True])
def test_sla2_matches_naive(low_bit):
    torch.manual_seed(0)
    length, heads, d, bq, bk, keep = 75, 2, 8, 16, 8, 0.35
    base = torch.cumsum(torch.randn(length, heads, d) * 0.4, 0)
    q, k, v = base + torch.randn(length, heads, d), base + torch.randn(length, heads, d), torch.randn(length, heads, d)
    pq, pk = torch.eye(d) + 0.2 * torch.randn(d, d), torch.eye(d) + 0.2 * torch.randn(d, d)
    alpha = torch.randn(heads, math.ceil(length / bq))
    mode = "sla2_low_bit" if low_bit else "sla2"
    got = sla2.sla2_attention(q[None], k[None], v[None], pq, pk, alpha, keep, bq, bk, mode=mode)[0]
    want = naive_sla2(q, k, v, pq, pk, alpha, keep, bq, bk, low_bit)
    rel = float((got - want).norm() / want.norm())
    assert rel < 1e-5, rel


def test_hard_topk_ties_prefer_lower_index():
    scores = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0]])
    assert sla2.hard_topk_mask(scores, 2).tolist() == [[False, True, True, False, False]]


def test_soft_topk_sums_to_k_and_has_gradient():
    scores = torch.randn(3, 10, requires_grad=True)
    s = sla2.soft_topk_mask(scores, 3, tau=0.1)
    assert torch.allclose(s.sum(-1), torch.full((3,), 3.0), atol=1e-3)
    (s * torch.arange(10.0)).sum().backward()
    assert scores.grad.abs().sum() > 0
    assert torch.allclose(scores.grad.sum(-1), torch.zeros(3), atol=1e-3)  # Σ s fixed => Σ grad = 0


def test_mt19937_64_known_values():
    assert int(MT19937_64(5489).draw(10000)[-1]) == 9981545732273789042
    z = gaussian_noise(7, (1001,))
    assert z.dtype == np.float32 and abs(float(z.mean())) < 0.15 and 0.85 < float(z.std()) < 1.15


def test_sigma_schedule_matches_official_table():
    sig, t = sampler.sigma_schedule(50, 5.0)
    assert list(t[:5]) == [999, 995, 991, 987, 982] and list(t[-4:]) == [302, 241, 172, 92]
    assert abs(sig[1] - 0.995732) < 1e-6 and sig[-1] == 0


def test_unipc_exact_on_linear_flow():
    # x_sigma = (1-s) x0 + s eps with v = eps - x0 exact: every solver lands on x0.
    x0, eps = torch.randn(5), torch.randn(5)
    sig, t = sampler.sigma_schedule(8, 3.0)
    x = (1 - float(sig[0])) * x0 + float(sig[0]) * eps
    out, _ = sampler.unipc_sample(lambda xx, tt, s: eps - x0, x.clone(), sig, t)
    assert torch.allclose(out, x0, atol=1e-5)


def test_vae_chunking_equivalence_and_shapes():
    cfg = {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
           "temporal_downsample": [False, True, True], "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4}
    torch.manual_seed(0)
    vae = WanVAE(cfg).eval()
    z = torch.randn(1, 4, 4, 2, 2)
    with torch.no_grad():
        a = vae.decode(z, clamp=False)
        b = vae.decode(z, chunk_sizes=[1, 3], clamp=False)
        video = torch.randn(1, 3, 13, 16, 16)
        mu1, _ = vae.encode_raw(video)
        mu2, _ = vae.encode_raw(video, chunk_sizes=[1, 12])
    assert a.shape == (1, 3, 13, 16, 16)
    assert torch.allclose(a, b, atol=1e-5)
    assert mu1.shape == (1, 4, 4, 2, 2) and torch.allclose(mu1, mu2, atol=1e-5)


def test_committed_goldens_are_reproducible(tmp_path):
    """make_golden.py regenerates exactly the committed tests/parity/golden files."""
    import subprocess
    from safetensors.numpy import load_file
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    golden = os.path.join(root, "tests", "parity", "golden")
    if not os.path.isdir(golden):
        pytest.skip("no committed goldens")
    subprocess.run([sys.executable, os.path.join(root, "training", "make_golden.py"), str(tmp_path)],
                   check=True, capture_output=True)
    for dirpath, _, files in os.walk(golden):
        for name in files:
            if not name.endswith(".safetensors"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), golden)
            a, b = load_file(os.path.join(golden, rel)), load_file(os.path.join(tmp_path, rel))
            assert a.keys() == b.keys(), rel
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=f"{rel}:{key}")
