"""The results table the bench suite writes into BENCHMARKS.md and the README, between markers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

BEGIN = "<!-- bench:results -->"
END = "<!-- /bench:results -->"


@dataclass(frozen=True)
class Outcome:
    """What one benchmark of the suite gave: its status and the rows it saved."""

    name: str
    module: str
    status: str
    rows: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    args: str = ""


def verdict(row: dict[str, object]) -> str:
    """'met' or 'missed' for a target such as '>= 0.7' (on the ratio), '<= 20 ms' (on the
    figure, since it names a unit) or 'ratio <= 1.2'; '-' when the target only asks for a report."""
    target = str(row.get("target", ""))
    match = re.fullmatch(r"(ratio\s+)?(>=|<=)\s*([\d.,]+)\s*([A-Za-z/%]*)", target.strip())
    if match is None:
        return "-"
    on_ratio, sign, number, unit = match.groups()
    value = row.get("figure") if unit and not on_ratio else row.get("ratio")
    if not isinstance(value, int | float):
        return "-"
    limit = float(number.replace(",", ""))
    met = value >= limit if sign == ">=" else value <= limit
    return "met" if met else "**missed**"


def _number(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _ratio(value: object) -> str:
    # Three decimals: a ratio just under its target (0.296 for >= 0.3) never reads as the target.
    return f"{value:.3f}" if isinstance(value, int | float) and abs(value) < 10 else _number(value)


def results_section(
    outcomes: Sequence[Outcome], *, command: str, machine: str, date: str, load: str, minutes: float
) -> str:
    lines = [
        BEGIN,
        f"Command: `{command}` ({minutes:.0f} min). Machine: {machine}.",
        f"Date: {date}. {load[0].upper()}{load[1:]}.",
        "",
        "| benchmark | figure | value | baseline (same run) | ratio | target | |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for outcome in outcomes:
        if not outcome.rows or not outcome.status.startswith("ok"):
            lines.append(f"| {outcome.name} | {outcome.status} | | | | | |")
        for row in outcome.rows:
            cells = [
                outcome.name,
                str(row.get("name", "")),
                f"{_number(row.get('figure'))} {row.get('unit', '')}".strip(),
                _number(row.get("baseline")),
                _ratio(row.get("ratio")),
                str(row.get("target", "")),
                verdict(row),
            ]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """The document with its results section replaced (or appended, when it has none yet)."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), flags=re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    return document.rstrip("\n") + "\n\n" + section + "\n"
