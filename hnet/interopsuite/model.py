"""Outcomes, results and the report: the matrix table, JSON and JUnit XML."""

from __future__ import annotations

import enum
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


class Status(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one scenario came to; ``reason`` says what was expected and what came (a
    failure) or why it did not run (a skip)."""

    status: Status
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS


def passed(note: str = "") -> Outcome:
    return Outcome(Status.PASS, note)


def failed(reason: str) -> Outcome:
    return Outcome(Status.FAIL, reason)


def skipped(why: str) -> Outcome:
    return Outcome(Status.SKIP, why)


class Failure(Exception):
    """Raised inside a scenario: it fails with this message (expected vs got)."""


class Skip(Exception):
    """Raised inside a scenario: it is skipped with this message."""


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    transport: str
    outcome: Outcome
    seconds: float
    #: who opens the connection: "we dial" (the target responds) or "target dials"
    role: str = ""

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.transport}"


@dataclass(slots=True)
class Report:
    target: str
    ours: str
    transports: list[str]
    scenarios: list[str]
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    started: str = ""
    notes: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.outcome.status is status)

    @property
    def ok(self) -> bool:
        """Every scenario that ran passed, and at least one did."""
        return self.count(Status.FAIL) == 0 and self.count(Status.PASS) > 0

    def cell(self, scenario: str, transport: str) -> Result | None:
        for r in self.results:
            if r.scenario == scenario and r.transport == transport:
                return r
        return None

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ours": self.ours,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "transports": self.transports,
            "ok": self.ok,
            "summary": {
                "passed": self.count(Status.PASS),
                "failed": self.count(Status.FAIL),
                "skipped": self.count(Status.SKIP),
            },
            "notes": self.notes,
            "results": [
                {
                    "scenario": r.scenario,
                    "transport": r.transport,
                    "role": r.role,
                    "status": r.outcome.status.value,
                    "reason": r.outcome.reason,
                    "seconds": round(r.seconds, 4),
                }
                for r in self.results
            ],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    # --- JUnit -----------------------------------------------------------------------------

    def to_junit(self) -> ET.ElementTree:
        root = ET.Element("testsuites", name="hnet interop run")
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"interop {self.target}",
            tests=str(len(self.results)),
            failures=str(self.count(Status.FAIL)),
            errors="0",
            skipped=str(self.count(Status.SKIP)),
            time=f"{self.seconds:.3f}",
            timestamp=self.started,
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="target", value=self.target)
        ET.SubElement(props, "property", name="ours", value=self.ours)
        for r in self.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"interop.{r.transport}",
                name=r.scenario,
                time=f"{r.seconds:.4f}",
            )
            if r.outcome.status is Status.FAIL:
                el = ET.SubElement(case, "failure", message=r.outcome.reason, type="InteropFailure")
                el.text = r.outcome.reason
            elif r.outcome.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=r.outcome.reason)
        root.set("tests", str(len(self.results)))
        root.set("failures", str(self.count(Status.FAIL)))
        root.set("time", f"{self.seconds:.3f}")
        tree = ET.ElementTree(root)
        ET.indent(tree)
        return tree

    def write_junit(self, path: str | os.PathLike[str]) -> None:
        self.to_junit().write(path, encoding="utf-8", xml_declaration=True)


# --- the terminal table ----------------------------------------------------------------------


def _cell_text(r: Result | None) -> str:
    if r is None:
        return "-"
    ms = f"{r.seconds * 1000:.0f} ms"
    if r.outcome.status is Status.PASS:
        return f"pass {ms}"
    if r.outcome.status is Status.FAIL:
        return "FAIL"
    return "skip"


def _details(report: Report) -> list[str]:
    lines: list[str] = []
    fails = [r for r in report.results if r.outcome.status is Status.FAIL]
    skips = [r for r in report.results if r.outcome.status is Status.SKIP]
    if fails:
        lines.append("Failures:")
        lines += [f"  FAIL {r.id}: {r.outcome.reason}" for r in fails]
    if skips:
        lines.append("Skipped:")
        seen: dict[str, list[str]] = {}
        for r in skips:  # one line per reason, naming its cells
            seen.setdefault(r.outcome.reason, []).append(r.id)
        for reason, ids in seen.items():
            lines.append(f"  skip {', '.join(ids)}: {reason}")
    return lines


def _summary(report: Report) -> str:
    return (
        f"{report.count(Status.PASS)} passed, {report.count(Status.FAIL)} failed, "
        f"{report.count(Status.SKIP)} skipped in {report.seconds:.1f} s"
        f" -> {'OK' if report.ok else 'FAILED'}"
    )


def plain_table(report: Report) -> list[str]:
    """The matrix as plain text lines (scenario rows, transport columns), then the reasons."""
    header = ["scenario", *report.transports]
    rows = [
        [s, *(_cell_text(report.cell(s, t)) for t in report.transports)] for s in report.scenarios
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    lines = [f"interop: {report.ours} -> {report.target}", fmt(header)]
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows]
    lines += report.notes
    lines += _details(report)
    lines.append(_summary(report))
    return lines


def print_report(report: Report, out: TextIO, *, rich: bool | None = None) -> None:
    """The table on ``out``: with ``rich`` when it is a terminal (or ``rich=True``), else plain."""
    use_rich = out.isatty() if rich is None else rich
    if not use_rich:
        for line in plain_table(report):
            print(line, file=out)
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    table = Table(title=f"interop: {report.ours} -> {report.target}")
    table.add_column("scenario")
    for t in report.transports:
        table.add_column(t)
    style = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "yellow"}
    for s in report.scenarios:
        cells = []
        for t in report.transports:
            r = report.cell(s, t)
            text = _cell_text(r)
            cells.append(text if r is None else f"[{style[r.outcome.status]}]{text}[/]")
        table.add_row(s, *cells)
    console.print(table)
    for line in [*report.notes, *_details(report), _summary(report)]:
        console.print(line, markup=False, highlight=False)
