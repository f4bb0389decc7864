"""Per-kernel GPU times from an ncu CSV (where an SLA2 module's time goes).

  ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      -k regex:'^(?!Fill)' --launch-count 80 build-gpu/bench_attention/sla2_bench \
      --shapes 1.3B --iters 1 > ncu.csv
  python3 bench/attention/ncu_summary.py ncu.csv

Prints, per kernel (template arguments kept), the launch count and the median
and minimum duration in microseconds.
"""
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hdr = None; acc = collections.OrderedDict()
for r in rows:
    if 'Kernel Name' in r: hdr = r; continue
    if hdr is None or len(r) != len(hdr): continue
    d = dict(zip(hdr, r))
    if d.get('Metric Name') != 'gpu__time_duration.sum': continue
    name = d['Kernel Name'].split('(')[0].split('<')[0].split('::')[-1] + ('<' + d['Kernel Name'].split('<')[1].split('>')[0] + '>' if '<' in d['Kernel Name'] else '')
    v = float(d['Metric Value'].replace(',', ''))
    unit = d.get('Metric Unit', 'nsecond')
    us = v / 1000 if unit.startswith('n') else (v if unit.startswith('u') else v * 1000)
    acc.setdefault(name, []).append(us)
for k, v in acc.items():
    v.sort()
    print(f"{k:60s} n={len(v):3d} median {v[len(v)//2]:9.1f} us  min {v[0]:9.1f}")
