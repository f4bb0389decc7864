"""Extracts the metric names a PromQL expression reads.

The deploy tests use it to check that every series used by alerting rules,
recording rules, the KEDA trigger and the Grafana dashboard is one the real
binaries export. It is a tokenizer, not a full parser: it removes the parts
of an expression that can hold identifiers which are not metric names
(strings, label matchers, grouping clauses, range/offset durations, Grafana
variables) and keeps the identifiers that are not PromQL functions or
keywords.
"""
import re

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month",
    "predict_linear", "present_over_time", "quantile_over_time", "rate",
    "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "time",
    "timestamp", "vector", "year",
}
AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
# Clauses whose parenthesised argument is a list of label names.
LABEL_LIST_CLAUSES = ("by", "without", "on", "ignoring", "group_left", "group_right")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:%s)\s*\([^()]*\)" % "|".join(LABEL_LIST_CLAUSES))
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+")
# An identifier starts after a non-word character, so "5m" or "1e3" never
# yields "m" or "e3".
_TOKEN = re.compile(r"\{[^{}]*\}|(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")


def selectors(expr):
    """Yields (metric_name, matcher_text) for each `name{...}` or bare name."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("1", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _RANGE.sub(" ", text)
    # Walk identifiers and matcher blocks in order. A block right after a
    # metric name belongs to it; any other block ({__name__="x"}) holds only
    # label names, which are not metric names.
    tokens = list(_TOKEN.finditer(text))
    i = 0
    while i < len(tokens):
        tok = tokens[i].group(0)
        i += 1
        if tok.startswith("{"):
            continue
        rest = text[tokens[i - 1].end():].lstrip()
        if tok.lower() in KEYWORDS or tok in FUNCTIONS or tok in AGGREGATORS:
            continue
        if rest.startswith("("):
            raise ValueError("unknown PromQL function %r in %r" % (tok, expr))
        matcher = ""
        if rest.startswith("{") and i < len(tokens) and tokens[i].group(0).startswith("{"):
            matcher = tokens[i].group(0)[1:-1]
            i += 1
        yield tok, matcher


def metric_names(expr):
    """The set of metric names an expression reads."""
    # A bare matcher block ({__name__="x"}) names its metric in the matcher.
    names = set()
    for name, _ in selectors(expr):
        names.add(name)
    for m in re.finditer(r'__name__\s*=\s*"([^"]+)"', expr):
        names.add(m.group(1))
    return names


def matcher_labels(matcher):
    """Label names used in the text between a selector's braces."""
    return set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matcher))
