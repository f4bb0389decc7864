#!/usr/bin/env python3
"""Writes the sparsevid Grafana dashboard (sparsevid.json next to this file).

The dashboard is generated so that panels stay uniform (datasource and
namespace variables, units, layout) and the PromQL lives in one readable
list. Edit PANELS, run this script, commit both files; tests/deploy fails
when sparsevid.json is not what this script writes, and checks every
series the queries read against the /metrics output of a real front and
worker.
"""
import json
import os
import sys

# Every query is scoped to the namespace chosen at the top of the
# dashboard; `namespace` is a target label added by Prometheus.
NS = 'namespace="$namespace"'
RATE = "$__rate_interval"


def q(expr, legend=""):
    return {"expr": expr, "legend": legend}


def quantiles(metric, by="", extra=""):
    """p50/p90/p99 of a histogram, optionally split by a label."""
    by_clause = "le, " + by if by else "le"
    suffix = " {{%s}}" % by if by else ""
    sel = NS + ("," + extra if extra else "")
    return [
        q("histogram_quantile(%s, sum by (%s) (rate(%s_bucket{%s}[%s])))" % (p, by_clause, metric, sel, RATE),
          "p%s%s" % (int(round(float(p) * 100)), suffix))
        for p in ("0.5", "0.9", "0.99")
    ]


# (row title, [(panel title, unit, [queries], description)])
PANELS = [
    ("Queue", [
        ("Queue depth", "short",
         [q("sum(sparsevid_queue_depth{%s})" % NS, "queued")],
         "Jobs waiting for a worker. KEDA scales workers on this (plus running jobs)."),
        ("Jobs by state", "short",
         [q("sum by (state) (sparsevid_jobs{%s})" % NS, "{{state}}")],
         "Jobs the front tracks, by state."),
        ("Queue wait", "s", quantiles("sparsevid_queue_wait_seconds"),
         "Time from submit to a worker starting the job."),
        ("Rejected submits /s", "reqps",
         [q("sum by (reason) (rate(sparsevid_rejections_total{%s}[%s]))" % (NS, RATE), "{{reason}}")],
         "queue_full means clients got RESOURCE_EXHAUSTED: add workers or raise queue capacity."),
    ]),
    ("Latency", [
        ("End-to-end job latency", "s", quantiles("sparsevid_request_duration_seconds", extra='outcome="succeeded"'),
         "Submit to completion of succeeded jobs."),
        ("Time to first progress", "s", quantiles("sparsevid_time_to_first_progress_seconds"),
         "Submit to the first progress event the client sees."),
        ("Denoise step time", "s", quantiles("sparsevid_worker_denoise_step_seconds"),
         "Wall time of one denoise step on the workers (all CFG branches)."),
        ("Stage time (p90)", "s",
         [q("histogram_quantile(0.9, sum by (le, stage) (rate(sparsevid_worker_stage_seconds_bucket{%s}[%s])))"
            % (NS, RATE), "{{stage}}")],
         "Text encoding, denoising, VAE decoding and video encoding per job."),
    ]),
    ("Throughput", [
        ("Frames generated /s", "short",
         [q("sum(rate(sparsevid_worker_frames_generated_total{%s}[%s]))" % (NS, RATE), "frames/s")],
         "Video frames produced by all workers."),
        ("Denoise steps /s", "short",
         [q("sum(rate(sparsevid_worker_denoise_step_seconds_count{%s}[%s]))" % (NS, RATE), "steps/s")],
         "Denoise steps completed by all workers."),
        ("Jobs finished /s by outcome", "reqps",
         [q("sum by (outcome) (rate(sparsevid_jobs_finished_total{%s}[%s]))" % (NS, RATE), "{{outcome}}")],
         "succeeded, failed, cancelled, expired (deadline)."),
        ("Tokens generated /s", "short",
         [q("sum(rate(sparsevid_worker_tokens_generated_total{%s}[%s]))" % (NS, RATE), "tokens/s")],
         "DiT video tokens per second, all workers."),
    ]),
    ("Attention (SLA2)", [
        ("Attention density", "percentunit",
         [q("avg(sparsevid_worker_attention_density_ratio{%s})" % NS, "mean over workers"),
          q("sparsevid:model_keep_ratio:trained", "trained keep ratio")],
         "Kept fraction of key blocks in the last step, against the model's trained keep ratio."),
        ("Attention share of step time", "percentunit",
         [q("sum(rate(sparsevid_worker_attention_seconds_sum{%s}[%s])) / "
            "sum(rate(sparsevid_worker_denoise_step_seconds_sum{%s}[%s]))" % (NS, RATE, NS, RATE),
            "attention / step")],
         "How much of the denoise time self-attention takes."),
        ("Density per layer", "percentunit",
         [q("avg by (layer) (sparsevid_worker_layer_attention_density_ratio{%s})" % NS, "layer {{layer}}")],
         "Kept fraction per DiT layer (mean over workers)."),
        ("Blend ratio (alpha) p50", "percentunit",
         [q("histogram_quantile(0.5, sum by (le) (rate(sparsevid_worker_blend_ratio_bucket{%s}[%s])))"
            % (NS, RATE), "alpha p50")],
         "SLA2 sparse-branch share of the blend, per step."),
    ]),
    ("Cancellations and errors", [
        ("Cancel latency", "s", quantiles("sparsevid_cancel_latency_seconds"),
         "Cancel request to the worker's slot being free (or the job leaving the queue)."),
        ("RPC errors /s by code", "reqps",
         [q('sum by (method, code) (rate(sparsevid_grpc_requests_total{%s,code!="OK"}[%s]))'
            % (NS, RATE), "{{method}} {{code}}")],
         "Non-OK answers of the public API and the worker link, by method and status code."),
        ("Worker job outcomes /s", "reqps",
         [q("sum by (outcome) (rate(sparsevid_worker_jobs_total{%s}[%s]))" % (NS, RATE), "{{outcome}}")],
         "How jobs ended on the workers."),
        ("Requeues /s", "reqps",
         [q("sum(rate(sparsevid_jobs_requeued_total{%s}[%s]))" % (NS, RATE), "requeued")],
         "Jobs put back in the queue after their worker vanished."),
        ("Job journal writes /s", "reqps",
         [q("sum by (kind, outcome) (rate(sparsevid_journal_writes_total{%s}[%s]))" % (NS, RATE),
            "{{kind}} {{outcome}}"),
          q("max(sparsevid_journal_records{%s})" % NS, "records in the file")],
         "Writes of the front's job journal in state.dir (records, result files, compactions) "
         "and its size; any error means jobs or videos are not durable (docs/operations.md)."),
    ]),
    ("Workers and memory", [
        ("Workers", "short",
         [q("sum(sparsevid_workers_connected{%s})" % NS, "connected (front)"),
          q("sum(sparsevid_worker_front_connected{%s})" % NS, "linked (workers)"),
          q('sum(sparsevid_worker_slots{%s,state="busy"})' % NS, "busy slots")],
         "Workers the front sees, workers that report a live link, busy job slots."),
        ("Worker memory peak", "bytes",
         [q("max by (pod) (sparsevid_worker_memory_peak_bytes{%s})" % NS, "{{pod}}")],
         "Largest engine memory peak per worker (device memory on GPU workers)."),
        ("Container memory vs limit", "bytes",
         [q('max by (pod, container) (container_memory_working_set_bytes{%s,container=~"front|worker"})'
            % NS, "{{pod}}"),
          q('max by (container) (kube_pod_container_resource_limits{%s,container=~"front|worker",'
            'resource="memory"})' % NS, "limit {{container}}")],
         "Working set from the kubelet (cAdvisor) against the limit from kube-state-metrics; "
         "an OOM kill of a worker requeues its job."),
        ("Model load time", "s",
         [q("max by (pod) (sparsevid_worker_engine_load_seconds{%s})" % NS, "{{pod}}")],
         "Start-up cost of a new worker: relevant to scale-up speed and scale to zero."),
        ("Front reconnects /s", "reqps",
         [q("sum(rate(sparsevid_worker_front_reconnects_total{%s}[%s]))" % (NS, RATE), "re-dials")],
         "Workers re-dialling the front (front restarts, network trouble)."),
        ("Refused calls /s (API keys)", "reqps",
         [q("sum by (reason) (rate(sparsevid_auth_failures_total{%s}[%s]))" % (NS, RATE),
            "{{reason}}")],
         "Calls the front refused: missing, malformed or unknown API keys, or a key of the "
         "wrong role (docs/operations.md, \"API keys\")."),
    ]),
]


def build():
    panels = []
    y = 0
    next_id = 1
    for row_title, row_panels in PANELS:
        panels.append({"type": "row", "title": row_title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        for i, (title, unit, queries, description) in enumerate(row_panels):
            panels.append({
                "type": "timeseries",
                "id": next_id,
                "title": title,
                "description": description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 6, "x": 6 * (i % 4), "y": y + 8 * (i // 4)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [
                    {"refId": chr(ord("A") + j), "expr": t["expr"], "legendFormat": t["legend"],
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for j, t in enumerate(queries)
                ],
            })
            next_id += 1
        y += 8 * ((len(row_panels) + 3) // 4)
    return {
        "uid": "sparsevid-overview",
        "title": "sparsevid",
        "description": "sparsevid text-to-video service: queue, latency, throughput, SLA2 attention, "
                       "errors, workers. Generated by generate_dashboard.py.",
        "tags": ["sparsevid"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
             "current": {}, "hide": 0},
            {"name": "namespace", "type": "query", "label": "Namespace",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(sparsevid_build_info, namespace)", "refId": "ns"},
             "definition": "label_values(sparsevid_build_info, namespace)",
             "refresh": 2, "current": {}, "hide": 0},
        ]},
        "panels": panels,
    }


def render():
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sparsevid.json")
    with open(out, "w") as f:
        f.write(render())
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
