#!/usr/bin/env python3
"""Issue 4's speed targets, checked against one run's logs.

Reads the benchmark log (sla2_bench) and the peers log (peers.py) of the
same call, e.g. scripts/gpu_test.sh's OUT_DIR/bench.log and peers.log, and
prints every target with our time, the baseline's time from the same run,
the measured ratio and whether the target is met:

  python3 bench/attention/targets.py OUT_DIR/bench.log OUT_DIR/peers.log [--strict]

The targets are H100's (the issue's); on another device the table is still
printed, with a warning. --strict: exit status 1 when a target is not met
or cannot be checked. A missing or unreadable log is an error (status 2).
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


def main(argv):
    args = [a for a in argv[1:] if a != "--strict"]
    if len(args) != 2:
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
    rows = check(*texts)
    print(format_rows(rows))
    met = sum(r[5] == "met" for r in rows)
    print(f"{met} of {len(rows)} targets met")
    return 1 if "--strict" in argv and met < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
