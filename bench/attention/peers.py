"""Peer anchors for bench/attention, run right after sla2_bench in the same job.

First the dense bf16 GEMM rate (cuBLAS through torch.matmul), the tensor
ceiling of the module's floor in targets.py. Then times, at the Wan2.1
shapes: SDPA FlashAttention-2 and SDPA cuDNN (dense),
FlexAttention block-sparse on the very block lists our router produced
(lut_<shape>_<keep>.bin written by sla2_bench: 128-row query blocks, 64-key
blocks), and the SLA authors' Triton module (thu-ml/SLA, whole
SparseLinearAttention forward: block routing + sparse kernel + linear branch,
BLKQ 128 / BLKK 64, softmax feature map) when its Python package is found
under SLA_SRC (default .peers, git-ignored: never vendored into the
repository). Prints ms, effective TFLOPS (4 B H L^2 D / t) and % of the ideal
time of docs/kernels.md §4 (kept fraction of the dense work at 989 TFLOPS).
Times are GPU time, the median over the calls, measured as sla2_bench does
(warm-up of at least 3 calls and 50 ms, a GPU spin ahead of each timed call).

    SLA_SRC=.peers python3 bench/attention/peers.py LUT_DIR

SLA_SRC layout: sla_main/sparse_linear_attention (branch main) and
sla_SLA_1/sparse_linear_attention (branch SLA-1), each optional.
"""
import importlib
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

SHAPES = [("1.3B", 1, 12, 32760, 128), ("14B", 1, 40, 75600, 128)]
SLA_BRANCHES = [("main", "sla_main"), ("SLA-1", "sla_SLA_1")]
SLA_BLKQ, SLA_BLKK = 128, 64


def timed_ms(fn, start, end):
    """GPU time of one call, as sla2_bench measures it: the GPU spins for
    about 1 ms first, so the call's host-side work (Python, launches) happens
    while the GPU still has queued work and the events time GPU execution."""
    torch.cuda._sleep(2_000_000)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def bench(fn, iters):
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    # Warm-up as sla2_bench: at least 3 calls and 50 ms of GPU work.
    warm_ms, calls = 0.0, 0
    while calls < 3 or warm_ms < 50.0:
        warm_ms += timed_ms(fn, start, end)
        calls += 1
    times = sorted(timed_ms(fn, start, end) for _ in range(iters))
    return times[len(times) // 2]


def load_lut(path):
    raw = np.fromfile(path, dtype=np.int32)
    b, h, tm, tn, cap = (int(x) for x in raw[:5])
    counts = raw[5:5 + b * h * tm].reshape(b, h, tm)
    lut = raw[5 + b * h * tm:].reshape(b, h, tm, cap)
    return counts, lut, tn


def block_mask_from_lut(counts, lut, tn):
    """Flex BlockMask (Q blocks 128, KV blocks 64) holding exactly our lists."""
    b, h, tm = counts.shape
    dense = np.zeros((b, h, tm, tn), dtype=bool)
    cols = np.arange(lut.shape[-1])[None, None, None, :] < counts[..., None]
    bi, hi, mi, ci = np.nonzero(cols)
    dense[bi, hi, mi, lut[bi, hi, mi, ci]] = True
    # Kept blocks first (ascending), then the rest: what from_kv_blocks expects.
    order = np.argsort(~dense, axis=-1, kind="stable").astype(np.int32)
    num = torch.from_numpy(counts.astype(np.int32)).cuda()
    idx = torch.from_numpy(order).cuda()
    return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=(128, 64))


def load_sla_triton():
    """SparseLinearAttention class of each thu-ml/SLA branch found under SLA_SRC.

    Both branches name their package sparse_linear_attention, so each import
    starts from a clean sys.modules; the loaded classes keep their own module
    globals. A missing package or a failed import prints one line and is skipped.
    """
    root = os.environ.get("SLA_SRC", ".peers")
    found = []
    for branch, folder in SLA_BRANCHES:
        path = os.path.join(root, folder)
        if not os.path.isfile(os.path.join(path, "sparse_linear_attention", "__init__.py")):
            print(f"SLA Triton ({branch}): skipped (no package at "
                  f"{os.path.join(path, 'sparse_linear_attention')})", flush=True)
            continue
        for mod in [m for m in sys.modules if m.split(".")[0] == "sparse_linear_attention"]:
            del sys.modules[mod]
        sys.path.insert(0, os.path.abspath(path))
        try:
            pkg = importlib.import_module("sparse_linear_attention")
            found.append((branch, pkg.SparseLinearAttention))
            print(f"SLA Triton ({branch}): loaded from {os.path.abspath(path)}", flush=True)
        except Exception as ex:  # noqa: BLE001 - report and go on with the other peers
            print(f"SLA Triton ({branch}): import failed: {type(ex).__name__}: {str(ex)[:300]}",
                  flush=True)
        finally:
            sys.path.pop(0)
    return found


def time_sla_triton(sla_class, q, k, v, keep, iters):
    """Median ms of the whole SLA module forward on q, k, v ([B, H, L, D] bf16,
    the layout its forward documents), and the kept fraction of key blocks."""
    head_dim = q.shape[-1]
    module = sla_class(head_dim=head_dim, topk=keep, feature_map="softmax",
                       BLKQ=SLA_BLKQ, BLKK=SLA_BLKK).cuda()
    out, density = module(q, k, v, return_sparsity=True)
    if out.shape != q.shape or not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"output shape {tuple(out.shape)} or non-finite values")
    del out
    return bench(lambda: module(q, k, v), iters), float(density)


def gemm_ceiling():
    """This GPU's dense bf16 tensor-core rate as cuBLAS reaches it (torch.matmul
    on square bf16 matrices, fp32 accumulation), timed as the kernels are.
    targets.py divides the fused kernel's tensor work by the best of them
    for the module's floor ("best bf16 GEMM rate")."""
    best = 0.0
    for n in (4096, 8192, 16384):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        t = bench(lambda: torch.matmul(a, b), 10)
        tflops = 2.0 * n ** 3 / t / 1e9
        best = max(best, tflops)
        print(f"ceiling bf16 GEMM {n}x{n}x{n}: {t:.3f} ms, {tflops:.1f} TFLOPS", flush=True)
        del a, b
    torch.cuda.empty_cache()
    print(f"best bf16 GEMM rate: {best:.1f} TFLOPS", flush=True)


def main():
    lut_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    with torch.no_grad():
        gemm_ceiling()
    flex = torch.compile(flex_attention)
    sla_peers = load_sla_triton()
    rows = []
    wanted = os.environ.get("BENCH_SHAPES", "1.3B,14B").split(",")
    for name, B, H, L, D in SHAPES:
        if name not in wanted:
            continue
        dense_flops = 4.0 * B * H * L * L * D
        iters = 5 if L > 50000 else 10
        q = torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn_like(q)
        with torch.no_grad():
            for label, backend in [("SDPA-FA2", SDPBackend.FLASH_ATTENTION),
                                   ("SDPA-cuDNN", SDPBackend.CUDNN_ATTENTION)]:
                try:
                    with sdpa_kernel(backend):
                        t = bench(lambda: F.scaled_dot_product_attention(q, k, v), iters)
                    rows.append((name, label, "dense", t, dense_flops / t / 1e9, None))
                except Exception as ex:  # noqa: BLE001 - report and go on
                    print(f"{name} {label} failed: {type(ex).__name__}: {str(ex)[:200]}", flush=True)
            for keep in (0.03, 0.05):
                path = os.path.join(lut_dir, f"lut_{name}_{keep:.2f}.bin")
                if not os.path.exists(path):
                    print(f"missing {path}: run sla2_bench first", flush=True)
                    continue
                counts, lut, tn = load_lut(path)
                lp = tn * 64  # = T_m * 128 at both shapes
                pad = lp - L
                qp, kp, vp = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
                try:
                    bm = block_mask_from_lut(counts, lut, tn)
                    t = bench(lambda: flex(qp, kp, vp, block_mask=bm), iters)
                    density = float(counts.mean()) / tn
                    ideal = density * dense_flops / 989e12 * 1e3
                    rows.append((name, "Flex-blocksparse", f"{keep:.2f}", t, dense_flops / t / 1e9,
                                 100.0 * ideal / t))
                except Exception as ex:  # noqa: BLE001
                    print(f"{name} flex keep {keep} failed: {type(ex).__name__}: {str(ex)[:300]}",
                          flush=True)
            for branch, sla_class in sla_peers:
                for keep in (0.03, 0.05):
                    try:
                        t, density = time_sla_triton(sla_class, q, k, v, keep, iters)
                        ideal = density * dense_flops / 989e12 * 1e3
                        rows.append((name, f"SLA-Triton-{branch}", f"{keep:.2f}", t,
                                     dense_flops / t / 1e9, 100.0 * ideal / t))
                    except Exception as ex:  # noqa: BLE001 - Triton/OOM failures must not stop the rest
                        print(f"{name} SLA Triton ({branch}) keep {keep} failed: "
                              f"{type(ex).__name__}: {str(ex)[:300]}", flush=True)
                    torch.cuda.empty_cache()
        del q, k, v
        torch.cuda.empty_cache()
        for r in rows:
            if r[0] == name:
                ideal = f"{r[5]:7.1f}%" if r[5] is not None else "      -"
                print(f"{r[0]:5s} {r[1]:17s} {r[2]:5s} {r[3]:9.3f} ms {r[4]:10.1f} eff_TFLOPS {ideal}",
                      flush=True)


if __name__ == "__main__":
    main()
