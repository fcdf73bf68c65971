"""The bench suite's results table: verdicts against targets, and the section it rewrites."""

from __future__ import annotations

from bench.table import BEGIN, END, Outcome, replace_section, results_section, verdict


def test_a_ratio_target_is_judged_on_the_ratio_and_a_unit_target_on_the_figure() -> None:
    assert verdict({"figure": 9000.0, "ratio": 0.75, "target": ">= 0.7"}) == "met"
    assert verdict({"figure": 9000.0, "ratio": 0.45, "target": ">= 0.7"}) == "**missed**"
    assert verdict({"figure": 12.0, "ratio": None, "target": "<= 20 ms"}) == "met"
    assert verdict({"figure": 140.0, "ratio": None, "target": "<= 100 ms"}) == "**missed**"
    assert verdict({"figure": 19.0, "ratio": 1.26, "target": "ratio <= 1.2"}) == "**missed**"
    assert verdict({"figure": 15.0, "ratio": 3.1, "target": "report"}) == "-"


def section(*outcomes: Outcome) -> str:
    return results_section(
        outcomes,
        command="make bench",
        machine="2 cores",
        date="2026-11-29",
        load="load average 1.00 1.00 1.00 before",
        minutes=12.0,
    )


def test_the_section_lists_every_row_and_says_which_modules_are_missing() -> None:
    relay = Outcome(
        "relay to Kafka",
        "relay_throughput",
        "ok",
        [
            {
                "name": "relay",
                "figure": 9100.0,
                "baseline": 12000.0,
                "ratio": 0.758,
                "unit": "events/s",
                "target": ">= 0.7",
            }
        ],
    )
    text = section(relay, Outcome("consent at scale", "consent_scale", "module missing"))
    assert text.startswith(BEGIN) and text.endswith(END)
    assert "| relay to Kafka | relay | 9,100 events/s | 12,000 | 0.758 | >= 0.7 | met |" in text
    assert "| consent at scale | module missing |" in text
    assert "`make bench` (12 min)" in text


def test_the_section_replaces_the_previous_one_and_leaves_the_rest() -> None:
    old = f"# Benchmarks\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Details\n"
    new = replace_section(old, section())
    assert "old table" not in new
    assert new.startswith("# Benchmarks\n\nintro\n\n" + BEGIN)
    assert new.endswith(END + "\n\n## Details\n")
    assert replace_section("# Readme\n", section()).endswith(END + "\n")
