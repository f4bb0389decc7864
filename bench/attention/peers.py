"""Peer anchors for bench/attention, run right after sla2_bench in the same job.

Times, at the Wan2.1 shapes: SDPA FlashAttention-2 and SDPA cuDNN (dense), and
FlexAttention block-sparse on the very block lists our router produced
(lut_<shape>_<keep>.bin written by sla2_bench: 128-row query blocks, 64-key
blocks). Prints ms, effective TFLOPS (4 B H L^2 D / t) and % of the ideal
time of docs/kernels.md §4 (kept fraction of the dense work at 989 TFLOPS).

    python3 bench/attention/peers.py LUT_DIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

SHAPES = [("1.3B", 1, 12, 32760, 128), ("14B", 1, 40, 75600, 128)]


def bench(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
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


def main():
    lut_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    flex = torch.compile(flex_attention)
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
        del q, k, v
        torch.cuda.empty_cache()
        for r in rows:
            if r[0] == name:
                ideal = f"{r[5]:7.1f}%" if r[5] is not None else "      -"
                print(f"{r[0]:5s} {r[1]:17s} {r[2]:5s} {r[3]:9.3f} ms {r[4]:10.1f} eff_TFLOPS {ideal}",
                      flush=True)


if __name__ == "__main__":
    main()
