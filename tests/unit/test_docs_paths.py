"""The README gets a newcomer from clone to an order, its trace in a browser and the analyzer in
its first screen, on the default ports; every link and section pointer in the docs resolves."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from stackctl.ports import Ports

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    inside_code = False
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside_code = not inside_code
        elif not inside_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def test_the_first_100_lines_reach_every_step_of_the_first_hour() -> None:
    head = "\n".join(README.read_text().splitlines()[:100])
    steps = {
        "what it is": "OpenTelemetry",
        "make up": "make up",
        "the curl": "curl -s -X POST localhost:8080/api/orders",
        "the trace in a browser": "http://127.0.0.1:16680/trace/",
        "the analyzer": "python analyze_traces.py 200",
        "Docker": "docker compose up",
        "how long make test takes": "`make test` runs",
        "the quick check": "`make test-unit`",
        "troubleshooting": "(docs/troubleshooting.md",
        "your own system": "(docs/own-system.md",
    }
    missing = [step for step, text in steps.items() if text not in head]
    assert missing == [], f"not in the README's first 100 lines: {missing}"


def test_examples_use_the_default_ports() -> None:
    defaults = {getattr(Ports(), f.name) for f in fields(Ports)}
    for path in DOCS:
        for port in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)\b", path.read_text()):
            assert int(port) in defaults, f"{path.name}: port {port} is not a default port"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name}: no section #{anchor} in {linked.name}"


def test_pointers_to_doc_sections_resolve() -> None:
    """Comments in the installer and .env.example name a doc and a section: both exist."""
    for path in (ROOT / "scripts" / "install_backends.sh", ROOT / ".env.example"):
        for doc, section in re.findall(r"((?:docs/)?[\w-]+\.md) \"([^\"]+)\"", path.read_text()):
            headings = anchors(ROOT / doc)
            assert slug(section) in headings, f"{path.name}: no section {section!r} in {doc}"


def test_the_go_the_readme_asks_for_is_the_one_the_installer_checks() -> None:
    """The installer requires the `go` line of the Jaeger build module; the README says so."""
    go_mod = (ROOT / "jaeger" / "build" / "go.mod").read_text()
    needed = re.search(r"^go (\S+)$", go_mod, re.MULTILINE)
    assert needed is not None
    assert f"Go {needed[1]} or newer" in README.read_text()
