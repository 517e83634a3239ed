"""Per-instance figures of the services that ran as several processes, and the instance that
stands out: the one bad replica behind a load balancer.

An instance is a ``service.instance.id`` (a resource attribute, a Jaeger process tag). For each
service seen with two instances or more, every span of each instance is counted: spans, errors,
p50/p95 of their durations. Errors are the failures that started there: a failing span none of
whose children failed (as the first failure of a trace is found), so a caller whose callee
failed is not blamed for it. An instance stands out against its peers (the service's
other instances, their spans pooled) when, one-sided, at ``ALPHA`` divided by the number of
the service's instances (a Bonferroni correction: each instance is one test):

* errors: its error rate is higher and Fisher's exact test on the 2x2 table (failed / fine,
  instance / peers) gives p below that;
* p95: its p95 is higher by more than ``DEFAULT_MIN_CHANGE`` (relative) and
  ``DEFAULT_MIN_CHANGE_US`` (absolute), as a comparison with a baseline requires, and a
  Mann-Whitney U test says its durations tend to be larger with p below that.

Spans without an instance id (older data, Zipkin) are not counted here. scipy (over a second
of start-up) is imported only when a test is to be run: some instance's error rate is above its
peers', or its p95 above theirs by the minimum change; instances alike cost nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from trace_analysis.analyses.significance import (
    ALPHA,
    DEFAULT_MIN_CHANGE,
    DEFAULT_MIN_CHANGE_US,
    relative,
)
from trace_analysis.analyses.summary import percentiles
from trace_analysis.formats.jaeger import Span
from trace_analysis.model.results import ErrorOrigin, InstanceFinding, InstanceStats


class InstanceCounter:
    """Fed the spans of one trace at a time; :meth:`finish` gives the figures and findings."""

    def __init__(self) -> None:
        # service -> instance -> (durations of its spans in µs, how many failed)
        self._services: dict[str, dict[str, tuple[array, list[int]]]] = {}

    def add(self, spans: list[Span], by_id: dict[str, Span]) -> None:
        """Count one trace's ``spans`` (``by_id``: the same by span id, for their parents)."""
        services = self._services
        failed: list[tuple[Span, list[int]]] = []
        for span in spans:
            instance = span.instance
            if not instance:
                continue
            instances = services.get(span.service)
            if instances is None:
                instances = services[span.service] = {}
            group = instances.get(instance)
            if group is None:
                group = instances[instance] = (array("q"), [0])
            group[0].append(span.duration)
            if span.error:
                failed.append((span, group[1]))
        if failed:
            # a failure passed on (a caller failing because its callee did) is counted once,
            # on the instance where it started: a failing span with a failing child is not
            passed_on = {
                id(parent)
                for span in spans
                if span.error and span.parent_id and (parent := by_id.get(span.parent_id))
            }
            for span, errors in failed:
                if id(span) not in passed_on:
                    errors[0] += 1

    def finish(self) -> tuple[list[InstanceStats], list[InstanceFinding]]:
        """Each instance of the services with several (by service, then instance), and the
        instances that stand out (by service, errors before p95)."""
        stats: list[InstanceStats] = []
        findings: list[InstanceFinding] = []
        for service, instances in sorted(self._services.items()):
            if len(instances) < 2:
                continue
            for instance, (durations, failed) in sorted(instances.items()):
                stats.append(InstanceStats(service, instance, percentiles(durations), failed[0]))
            findings += _outliers(service, instances)
        findings.sort(key=lambda f: (f.service, f.measure != "errors", f.instance))
        return stats, findings


def mark_outliers(origins: Iterable[ErrorOrigin | None], findings: list[InstanceFinding]) -> None:
    """Point each first failure whose instance stands out to that finding (errors first)."""
    if not findings:
        return
    by_instance: dict[tuple[str, str], InstanceFinding] = {}
    for finding in findings:
        by_instance.setdefault((finding.service, finding.instance), finding)
    for origin in origins:
        if origin is not None and origin.instance:
            origin.outlier = by_instance.get((origin.service, origin.instance))


def _outliers(service: str, instances: dict[str, tuple[array, list[int]]]) -> list[InstanceFinding]:
    alpha = ALPHA / len(instances)
    peers_count = len(instances) - 1
    found = []
    for instance, (durations, failed) in instances.items():
        peers = array("q")
        peer_errors = 0
        for other, (other_durations, other_failed) in instances.items():
            if other != instance:
                peers.extend(other_durations)
                peer_errors += other_failed[0]
        spans, errors = len(durations), failed[0]
        rate, peer_rate = errors / spans, peer_errors / len(peers)
        if rate > peer_rate:
            table = [[errors, spans - errors], [peer_errors, len(peers) - peer_errors]]
            from scipy.stats import fisher_exact  # only now: seconds of start-up (module doc)

            p_value = float(fisher_exact(table, alternative="greater").pvalue)
            if p_value < alpha:
                found.append(
                    InstanceFinding(
                        service, instance, "errors", rate, peer_rate, peers_count, p_value
                    )
                )
        p95, peer_p95 = percentiles(durations).p95_us, percentiles(peers).p95_us
        grown = relative(peer_p95, p95)
        if p95 - peer_p95 > DEFAULT_MIN_CHANGE_US and (grown is None or grown > DEFAULT_MIN_CHANGE):
            from scipy.stats import mannwhitneyu

            p_value = float(mannwhitneyu(durations, peers, alternative="greater").pvalue)
            if p_value < alpha:
                found.append(
                    InstanceFinding(service, instance, "p95", p95, peer_p95, peers_count, p_value)
                )
    return found
