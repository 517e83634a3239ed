"""The comparison against a baseline as terminal tables (rich): regressions first, then
improvements; unchanged operations are counted, not listed."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trace_analysis.analyses.compare import Comparison, OperationChange
from trace_analysis.reports import comparison as compared


def render_comparison_table(comparison: Comparison, candidate: str, console: Console) -> None:
    regressed = [op for op in comparison.operations if op.verdict == "regressed"]
    improved = [op for op in comparison.operations if op.verdict == "improved"]
    problem = comparison.unjudged()
    console.print(Text(compared.headline(comparison), style="bold yellow" if problem else "bold"))
    console.print(f"candidate: {candidate}")
    console.print(f"baseline:  {compared.side_text(comparison.baseline_source)}")
    console.print(compared.sides_line(comparison))
    console.print(Text(compared.criteria_line(comparison), style="dim"))
    console.print(Text(compared.counts_line(comparison), style="bold"))
    for title, group, style in (
        ("Regressed", regressed, "red"),
        ("Improved", improved, "green"),
    ):
        if group:
            console.print()
            console.print(_changes_table(title, group, style))
            console.print(Text(compared.PATH_SELF_NOTE, style="dim"))
            attributions = [(op, compared.attribution_text(op)) for op in group]
            if any(text for _, text in attributions):
                console.print(
                    Text("Where the time went: critical-path self time per request", style="bold")
                )
            for op, text in attributions:
                if text:
                    console.print(f"  {op.service} {op.operation}: {text}")
    for title, items in compared.listed_groups(comparison):
        console.print()
        console.print(Text(f"{title}:", style="bold"))
        for item in items:
            console.print(f"  {item}")
    if comparison.new_errors:
        console.print()
        console.print(Text("Error messages seen only in the candidate:", style="bold"))
        for error in comparison.new_errors[: compared.MAX_LISTED]:
            console.print(
                f"  {error.service} {error.operation}: {error.message} ({error.count:,}x)"
            )
    for warning in comparison.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _changes_table(title: str, group: list[OperationChange], style: str) -> Table:
    table = Table(title=title, title_justify="left", title_style=f"bold {style}", show_lines=True)
    table.add_column("operation", overflow="fold")  # never cut: it names what regressed
    table.add_column("why", no_wrap=True)
    table.add_column("spans", justify="right", no_wrap=True)
    # a change is one line of values and one of deltas: wrapping would strand a long
    # percentage on a line of its own, so the operation column gives way instead
    for name, _ in compared.STAT_COLUMNS:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    for op in group:
        b, c = op.baseline, op.candidate
        assert b is not None and c is not None
        name = Text(op.service, style="bold")
        name.append(f"\n{op.operation}")
        table.add_row(
            name,
            compared.reason_text(op),
            f"{b.count:,} →\n{c.count:,}",
            *(_cell(getattr(b, field), getattr(c, field)) for _, field in compared.STAT_COLUMNS),
            f"{compared.errors_text(b)} →\n{compared.errors_text(c)}",
        )
    return table


def _cell(before: float, after: float) -> Text:
    text = compared.change_text(before, after)
    values, _, change = text.partition(" (")
    return Text(f"{values}\n({change}")
