"""Turn the measured runs into medians and ratios, a printed table, JSON and a chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def per_round_ratio(runs: list[dict[str, Any]], name: str, base: str, key: str,
                    invert: bool = False) -> float | None:
    """Median over rounds of run[key] of `name` divided by that of `base` in the same round."""
    ratios = []
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["system"]] = run
    for pair in by_round.values():
        if name in pair and base in pair and pair[base][key] and pair[name][key]:
            a, b = pair[name][key], pair[base][key]
            ratios.append(b / a if invert else a / b)
    return median_of(ratios)


def system_summary(name: str, timed: list[dict[str, Any]], kill: dict[str, Any] | None,
                   baselines: dict[str, str]) -> dict[str, Any]:
    """Medians of one system's timed runs, its ratios to the baselines and its kill test."""
    mine = [r for r in timed if r["system"] == name]
    # Memory of a run that never got going (a start-up failure) is not the system's.
    whole = [r for r in mine if r["pos_ok"] == r["pos_total"]] or mine
    summary: dict[str, Any] = {
        "system": name,
        "concurrency": mine[0]["concurrency"],
        "rounds": len(mine),
        "wall_s": median_of([r["wall_s"] for r in whole]),
        "pos_per_min": median_of([r["pos_per_min"] for r in mine]),
        "pos_per_min_range": [min(r["pos_per_min"] for r in mine),
                              max(r["pos_per_min"] for r in mine)],
        "pss_peak_per_unit_mb": median_of([r["pss_peak_per_unit_mb"] for r in whole]),
        "pss_median_per_unit_mb": median_of([r["pss_median_per_unit_mb"] for r in whole]),
        "pss_peak_mb": median_of([r["pss_peak_mb"] for r in whole]),
        "files_ok": sum(r["files_ok"] for r in mine),
        "files_expected": sum(r["files_expected"] for r in mine),
        "pos_ok": sum(r["pos_ok"] for r in mine),
        "pos_total": sum(r["pos_total"] for r in mine),
        "runs_incomplete": len(mine) - len(whole),
        "kill": kill,
    }
    for label, base in baselines.items():
        summary[f"throughput_vs_{label}"] = per_round_ratio(timed, name, base, "pos_per_min")
        summary[f"memory_vs_{label}"] = per_round_ratio(
            timed, name, base, "pss_peak_per_unit_mb")
    return summary


def kill_text(kill: dict[str, Any] | None) -> str:
    if kill is None:
        return "-"
    if kill.get("killed_browser") is None:
        return "no browser killed"
    lost = kill["pos_total"] - kill["pos_ok"] - kill["reported_failed"]
    relaunch = "a new browser started" if kill["browser_relaunched"] else "no new browser"
    return (f"{kill['pos_ok']}/{kill['pos_total']} POs verified, {kill['reported_failed']} "
            f"reported failed, {max(lost, 0)} lost, {kill.get('pos_retried', 0)} retried; "
            f"{relaunch}; {kill['wall_s']:.0f} s; exit {kill['exit_code']}"
            + (f"; {kill['strays_killed']} processes left behind" if kill["strays_killed"] else ""))


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# (heading, width, summary key, format); ratio columns appear only when measured.
COLUMNS = (
    ("system", 13, "system", "s"),
    ("conc", 5, "concurrency", "d"),
    ("wall s", 8, "wall_s", ".1f"),
    ("POs/min", 9, "pos_per_min", ".1f"),
    ("x seq", 7, "throughput_vs_seq", ".2f"),
    ("x crawlee", 10, "throughput_vs_crawlee", ".2f"),
    ("x crawlee-pd", 13, "throughput_vs_crawlee_pd", ".2f"),
    ("peak MB/unit", 13, "pss_peak_per_unit_mb", ".0f"),
    ("med MB/unit", 12, "pss_median_per_unit_mb", ".0f"),
    ("mem x crawlee", 14, "memory_vs_crawlee", ".2f"),
    ("mem x crawlee-pd", 17, "memory_vs_crawlee_pd", ".2f"),
)


def table_format(summaries: list[dict[str, Any]], conditions: dict[str, Any]) -> str:
    """The printed table: one line per system (medians, per-round ratios), then kill tests."""
    columns = [c for c in COLUMNS if any(s.get(c[2]) is not None for s in summaries)]
    head = "".join(f"{c[0]:<{c[1]}}" if i == 0 else f"{c[0]:>{c[1]}}"
                   for i, c in enumerate(columns)) + f"{'files ok':>12}"
    lines = [conditions_line(conditions)]
    if conditions.get("code_before"):
        lines.append(f"code: {conditions['code_before']}" + (
            "" if conditions["code_after"] == conditions["code_before"]
            else f"; at the end: {conditions['code_after']}"))
    lines += [head, "-" * len(head)]
    for s in summaries:
        cells = [f"{s['system']:<{columns[0][1]}}"]
        cells += [f"{fmt(s.get(key), spec):>{width}}" for _, width, key, spec in columns[1:]]
        cells.append(f"{str(s['files_ok']) + '/' + str(s['files_expected']):>12}")
        lines.append("".join(cells))
    for s in summaries:
        if s.get("runs_incomplete"):
            lines.append(f"{s['system']}: {s['runs_incomplete']} of {s['rounds']} runs did not "
                         "finish the batch (POs/min counts them; time and memory do not)")
    lines.append("")
    lines.append("kill test (SIGKILL one browser after "
                 f"{conditions['kill_after']} PO pages were served; one run each):")
    for s in summaries:
        lines.append(f"  {s['system']:<13}{kill_text(s['kill'])}")
    return "\n".join(lines)


def conditions_line(c: dict[str, Any]) -> str:
    shape = c.get("shape", "simple")  # results from before the coupa shape were simple
    if shape == "coupa":
        shape += (f" (comments after {c.get('comments_delay')} s, "
                  f"{len(c.get('specials') or [])} specials)")
    return (f"{shape} pages, {c['batch']} POs ({c['files_per_round']} attachments), latency "
            f"{c['latency']} s, {c['rounds']} rounds alternating {'/'.join(c['systems'])}, "
            f"medians; {c['cpus']} CPUs, load {c['load_before']:.1f} before; {c['browser']}")


def json_write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def family_colour(name: str) -> str:
    if name.startswith("pool"):
        return "#4c78a8"
    return "#f58518" if name.startswith("crawlee") else "#9d9d9d"


def chart_write(path: Path, summaries: list[dict[str, Any]], conditions: dict[str, Any]) -> None:
    """Two panels: throughput (median, min-max whiskers) and PSS per concurrency unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["system"] for s in summaries]
    colours = [family_colour(n) for n in names]
    xs = list(range(len(names)))
    ppm = [s["pos_per_min"] or 0.0 for s in summaries]
    low = [p - s["pos_per_min_range"][0] for p, s in zip(ppm, summaries, strict=True)]
    high = [s["pos_per_min_range"][1] - p for p, s in zip(ppm, summaries, strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    bars = left.bar(xs, ppm, yerr=[low, high], capsize=4, color=colours)
    left.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    left.set_title("Throughput, POs per minute (median; whiskers: min-max)", fontsize=10)
    peak = [s["pss_peak_per_unit_mb"] or 0.0 for s in summaries]
    med = [s["pss_median_per_unit_mb"] or 0.0 for s in summaries]
    bars = right.bar([x - 0.2 for x in xs], peak, width=0.4, label="peak", color=colours)
    right.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    right.bar([x + 0.2 for x in xs], med, width=0.4, label="median", color=colours,
              alpha=0.45)
    right.set_title("PSS of the whole process tree per concurrency unit, MB\n"
                    "(solid: peak, light: median)", fontsize=10)
    for axis in (left, right):
        axis.set_xticks(xs, names, fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle(conditions_line(conditions), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
