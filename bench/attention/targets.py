#!/usr/bin/env python3
"""Issue 4's speed targets, checked against one run's logs.

Reads the benchmark log (sla2_bench) and the peers log (peers.py) of the
same call, e.g. scripts/gpu_test.sh's OUT_DIR/bench.log and peers.log, and
prints every target with our time, the baseline's time from the same run,
the measured ratio and whether the target is met:

  python3 bench/attention/targets.py OUT_DIR/bench.log OUT_DIR/peers.log \
      [OUT_DIR/l2_read.log] [--strict]

The targets are H100's (the issue's); on another device the table is still
printed, with a warning. --strict: exit status 1 when a target is not met
or cannot be checked. A missing or unreadable log is an error (status 2).

With the memory-ceiling log (l2_read_bench) it also prints the bf16
module's floor on this machine: the module runs in two serial parts, the
stages before the fused kernel (bound by their DRAM bytes) and the fused
kernel (bound by its tensor work), so no schedule of these parts beats
bytes / best DRAM rate + FLOPs / best bf16 GEMM rate, with the work from
sla2_bench's floor-work line and the GEMM rate from peers.py, all of the
same run. Each part's measured time is printed beside its floor.
"""
import re
import sys

# (label, shape, mode, keep, part, limit in ms or None, baseline peer or None, min ratio)
TARGETS = [
    ("sparse bf16, 1.3B keep 3 %", "1.3B", "bf16", "0.03", "sparse", 0.42, None, None),
    ("sparse bf16 vs FlexAttention, same block lists", "1.3B", "bf16", "0.03", "sparse", None,
     ("Flex-blocksparse", "0.03"), 1.45),
    ("sparse bf16 vs SDPA FlashAttention-2", "1.3B", "bf16", "0.03", "sparse", None,
     ("SDPA-FA2", "dense"), 40.0),
    ("sparse low-bit, 1.3B keep 3 %", "1.3B", "low-bit", "0.03", "sparse", 0.30, None, None),
    ("whole module bf16, 1.3B keep 3 %", "1.3B", "bf16", "0.03", "module", 0.55, None, None),
    ("whole module bf16 vs SLA Triton module", "1.3B", "bf16", "0.03", "module", None,
     ("SLA-Triton-main", "0.03"), 3.3),
    ("sparse bf16, 14B keep 3 %", "14B", "bf16", "0.03", "sparse", 6.0, None, None),
    ("sparse low-bit, 14B keep 3 %", "14B", "low-bit", "0.03", "sparse", 4.0, None, None),
]

_OURS = re.compile(r"^(\S+)\s+(bf16|low-bit)\s+([0-9.]+)\s+(\S+)\s+([0-9.]+)\s")
_PEER = re.compile(r"^(\S+)\s+(\S+)\s+(dense|[0-9.]+)\s+([0-9.]+) ms")


def parse_ours(text):
    """{(shape, mode, keep, part): ms} from sla2_bench's rows (first row wins)."""
    rows = {}
    for line in text.splitlines():
        m = _OURS.match(line)
        if m:
            rows.setdefault(m.group(1, 2, 3, 4), float(m.group(5)))
    return rows


def parse_peers(text):
    """{(shape, peer, keep): ms} from peers.py's rows."""
    rows = {}
    for line in text.splitlines():
        m = _PEER.match(line)
        if m:
            rows.setdefault(m.group(1, 2, 3), float(m.group(4)))
    return rows


def device_of(text):
    for line in text.splitlines():
        if line.startswith("device:"):
            return line[len("device:"):].strip()
    return ""


def check(bench_text, peers_text):
    """One row per target: (label, ours ms, baseline ms, ratio, limit text, status)."""
    ours, peers = parse_ours(bench_text), parse_peers(peers_text)
    rows = []
    for label, shape, mode, keep, part, limit, peer, min_ratio in TARGETS:
        t = ours.get((shape, mode, keep, part))
        if t is None:
            rows.append((label, None, None, None, "", f"not in the run ({shape} {mode} {part})"))
            continue
        if peer is None:
            rows.append((label, t, None, None, f"<= {limit:g} ms", "met" if t <= limit else "NOT MET"))
            continue
        base = peers.get((shape,) + peer)
        if base is None:
            rows.append((label, t, None, None, f">= {min_ratio:g}x",
                         f"no {peer[0]} row in the peers log"))
            continue
        ratio = base / t
        rows.append((label, t, base, ratio, f">= {min_ratio:g}x",
                     "met" if ratio >= min_ratio else "NOT MET"))
    return rows


def format_rows(rows):
    out = [f"{'target':48} {'ours ms':>9} {'base ms':>9} {'ratio':>8} {'needs':>11}  status"]
    for label, t, base, ratio, need, status in rows:
        out.append(f"{label:48} {'' if t is None else f'{t:.3f}':>9} "
                   f"{'' if base is None else f'{base:.3f}':>9} "
                   f"{'' if ratio is None else f'{ratio:.2f}x':>8} {need:>11}  {status}")
    return "\n".join(out)


_WORK = re.compile(r"^floor-work (\S+) bf16 ([0-9.]+) prefix_MB ([0-9.]+) fused_GFLOP ([0-9.]+)")
_DRAM = re.compile(r"^best DRAM rate: ([0-9.]+) TB/s")
_GEMM = re.compile(r"^best bf16 GEMM rate: ([0-9.]+) TFLOPS")


def _first(pattern, text):
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            return m
    return None


def module_floor(bench_text, peers_text, ceilings_text, shape="1.3B", keep="0.03"):
    """The bf16 module's floor at one shape and keep ratio from one run's
    logs, as a dict (ms unless named otherwise), or a string naming the
    first thing the logs lack."""
    work = next((m for m in map(_WORK.match, bench_text.splitlines())
                 if m and m.group(1) == shape and m.group(2) == keep), None)
    if work is None:
        return f"no floor-work line for {shape} bf16 {keep} in the benchmark log"
    dram, gemm = _first(_DRAM, ceilings_text), _first(_GEMM, peers_text)
    if dram is None:
        return "no 'best DRAM rate' line in the memory-ceiling log"
    if gemm is None:
        return "no 'best bf16 GEMM rate' line in the peers log"
    ours = parse_ours(bench_text)
    f = {"shape": shape, "keep": keep,
         "prefix_mb": float(work.group(3)), "fused_gflop": float(work.group(4)),
         "dram_tbs": float(dram.group(1)), "gemm_tflops": float(gemm.group(1))}
    f["prefix"] = f["prefix_mb"] / f["dram_tbs"] / 1e3  # MB / (TB/s) / 1e3 = ms
    f["fused"] = f["fused_gflop"] / f["gemm_tflops"]  # GFLOP / TFLOPS = ms
    f["floor"] = f["prefix"] + f["fused"]
    f["prefix_measured"] = ours.get((shape, "bf16", keep, "t.linear"))
    f["fused_measured"] = ours.get((shape, "bf16", keep, "sparse+bl"))
    f["module"] = ours.get((shape, "bf16", keep, "module"))
    return f


def format_floor(f, peers_text, limit=0.55, min_ratio=3.3):
    if isinstance(f, str):
        return f"module floor: not computed ({f})"

    def measured(x, name):
        return f"measured {x:.3f} ({name})" if x is not None else f"no {name} row"

    lines = [
        f"bf16 module floor, {f['shape']} keep {100 * float(f['keep']):g} % "
        "(its two serial parts at this run's ceilings):",
        f"  stages before the fused kernel: {f['prefix_mb']:.1f} MB at {f['dram_tbs']:.2f} TB/s "
        f"(best DRAM rate) = {f['prefix']:.3f} ms; {measured(f['prefix_measured'], 't.linear')}",
        f"  fused kernel: {f['fused_gflop']:.1f} GFLOP at {f['gemm_tflops']:.1f} TFLOPS "
        f"(best bf16 GEMM rate) = {f['fused']:.3f} ms; {measured(f['fused_measured'], 'sparse+bl')}",
    ]
    floor = f["floor"]
    needs = [(f"<= {limit:g} ms", limit)]
    sla = parse_peers(peers_text).get((f["shape"], "SLA-Triton-main", f["keep"]))
    if sla is not None:
        needs.append((f">= {min_ratio:g}x SLA Triton ({sla:.3f} ms): <= {sla / min_ratio:.3f} ms",
                      sla / min_ratio))
    verdicts = []
    for text, ms in needs:
        if ms < floor:
            verdicts.append(f"{text} is under the floor")
        else:
            verdicts.append(f"{text} needs {100.0 * floor / ms:.0f} % of the ceilings")
    lines.append(f"  floor {floor:.3f} ms" +
                 (f" (the module measured {f['module']:.3f})" if f["module"] is not None else "") +
                 "; " + "; ".join(verdicts))
    return "\n".join(lines)


def main(argv):
    args = [a for a in argv[1:] if a != "--strict"]
    if len(args) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    texts = []
    for path in args:
        try:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        except OSError as e:
            print(f"targets: cannot read {path}: {e.strerror}", file=sys.stderr)
            return 2
    device = device_of(texts[0])
    print(f"device: {device or 'unknown (no device line in the benchmark log)'}")
    if "H100" not in device:
        print("warning: the targets are H100's; this run is not on an H100")
    rows = check(texts[0], texts[1])
    print(format_rows(rows))
    met = sum(r[5] == "met" for r in rows)
    print(f"{met} of {len(rows)} targets met")
    if len(texts) == 3:
        print(format_floor(module_floor(*texts), texts[1]))
    return 1 if "--strict" in argv and met < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
