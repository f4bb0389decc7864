"""Unit tests of the PromQL metric-name extractor the deploy checks use."""
import unittest

import promql_names


class PromqlNamesTest(unittest.TestCase):

    def test_histogram_quantile_with_grouping_and_grafana_variables(self):
        expr = ('histogram_quantile(0.99, sum by (le, stage) '
                '(rate(sparsevid_worker_stage_seconds_bucket{namespace="$namespace"}[$__rate_interval])))')
        self.assertEqual(list(promql_names.selectors(expr)),
                         [("sparsevid_worker_stage_seconds_bucket", 'namespace=""')])

    def test_binary_operators_offsets_and_numbers(self):
        expr = ("sum(rate(a_total[5m] offset 1h)) / ignoring(code) group_left "
                "sum without (pod) (b) > 1e3 and on(namespace) c:rec:sum")
        self.assertEqual(promql_names.metric_names(expr), {"a_total", "b", "c:rec:sum"})

    def test_label_names_are_not_metric_names(self):
        self.assertEqual(promql_names.metric_names('{__name__="zz", job="x"}'), {"zz"})
        self.assertEqual(promql_names.metric_names('up{job="sparsevid-front"} == 1'), {"up"})

    def test_matcher_labels(self):
        sel = list(promql_names.selectors('x{state="running",code!="OK", m=~"a|b"}'))
        self.assertEqual(promql_names.matcher_labels(sel[0][1]), {"state", "code", "m"})

    def test_strings_cannot_smuggle_names(self):
        self.assertEqual(promql_names.metric_names('label_replace(a, "dst", "$1", "src", "(b_total)")'),
                         {"a"})

    def test_unknown_function_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "unknown PromQL function 'rat'"):
            promql_names.metric_names("rat(a_total[5m])")

    def test_aggregation_with_parameter(self):
        self.assertEqual(promql_names.metric_names("topk(3, sum by (pod) (x_bytes))"), {"x_bytes"})


if __name__ == "__main__":
    unittest.main()
