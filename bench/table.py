"""The table of `make bench` (pure: no broker, no processes): ratios, verdicts, rows and their text.

    rows = build_rows(measurements)     # measurements: what bench/run.py measured (None = not measured)
    print(render(rows))

A verdict is PASS when every target of the row is met, MISS when one is missed, `-` for a row without a
target (context only) and `n/a` when a number it needs is missing (that measurement failed).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from dts.reports.console import table_lines
from dts.reports.load_report import percentile

PASS, MISS, NO_TARGET, NO_DATA = "PASS", "MISS", "-", "n/a"

# the targets (issue 21; the round-trip, publish-rate and RSS ones from issue 11)
THROUGHPUT_VS_NAIVE = 0.8  # no-op throughput with results, the defaults: >= 0.8x naive
CPU_VS_NAIVE = 1.2  # CPU per no-op task, all, the defaults: <= 1.2x naive
FAST_VS_NAIVE = 2.0  # the fast profile's no-op throughput: >= 2x naive
FAST_VS_CEILING = 0.8  # ... and >= 0.8x the raw publish + consume ceiling
RTT_P50_VS_NAIVE = 0.5  # single-task round trip p50 <= 0.5x naive
RTT_P99_VS_NAIVE = 1.0  # ... p99 <= naive
SEED_VS_NAIVE = 0.8  # seed-scenario overhead median <= 0.8x naive
FIRST_VS_WARM = 1.5  # the first dispatch after a fresh start: overhead <= 1.5x the warm one
WALL_MAX_S = 0.35  # `python dispatch.py` process wall, warm workers, median <= 0.35 s
PUBLISH_VS_CONSUME = 2.0  # load-generator publish rate >= 2x the consume rate of 1+1 workers
RSS_LARGE_VS_SMALL = 1.5  # peak RSS at 100k tasks <= 1.5x RSS at 10k
CALL_VS_BUILTIN = 1.1  # a no-op callable's round trip p50 <= 1.1x the built-in no-op's (issue 31)
COMMAND_EXTRA_MS = 2.0  # a no-op command's round trip p50 - the built-in's <= fork/exec of true + 2 ms


@dataclass(frozen=True)
class Row:
    measurement: str
    unit: str
    ours: float | None = None
    naive: float | None = None
    ceiling: float | None = None
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio divides by: "naive", "ceiling", "consume", "10k"
    target: str = ""
    verdict: str = NO_TARGET

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def round_trips(times: list[float], rate: float, wall: float) -> dict[str, Any]:
    """A round-trip measurement's numbers: tasks, offered and achieved rate, p50/p99/max/mean (seconds)."""
    return {
        "tasks": len(times),
        "offered_rate": rate,
        "achieved_rate": len(times) / wall,
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "max": max(times),
        "mean": statistics.fmean(times),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is unknown or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def meets(value: float | None, op: str, bound: float | None) -> bool | None:
    """value >= bound ('>='), <= ('<='), < ('<'); None when either is unknown."""
    if value is None or bound is None:
        return None
    return {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]


def verdict(checks: list[bool | None]) -> str:
    """PASS if every check holds, MISS if one fails, n/a if one cannot be decided (and none failed)."""
    if not checks:
        return NO_TARGET
    if any(c is False for c in checks):
        return MISS
    if any(c is None for c in checks):
        return NO_DATA
    return PASS


def _get(m: dict[str, Any], *keys: str) -> float | None:
    value: Any = m
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, int | float) else None


def build_rows(m: dict[str, Any]) -> list[Row]:
    """The table's rows from the measurements (see bench/run.py for their keys; all optional)."""
    return [
        *_ceiling_rows(m),
        *_throughput_rows(m),
        *_latency_rows(m),
        *_kind_rows(m),
        *_cpu_rows(m),
        *_generator_rows(m),
    ]


def _kind_rows(m: dict[str, Any]) -> list[Row]:
    """Your own tasks' cost: a no-op callable and a no-op command beside the built-in no-op, one run."""
    builtin, call, command = (_ms(_get(m, "ours", "kinds", kind, "p50")) for kind in ("builtin", "call", "command"))
    fork = _ms(_get(m, "ours", "kinds", "fork_exec", "p50"))
    extra = None if command is None or builtin is None else command - builtin
    bound = None if fork is None else fork + COMMAND_EXTRA_MS
    return [
        Row("round trip p50: built-in no-op (task_a, duration 0)", "ms", builtin),
        _target(
            "  a no-op callable (os:getpid), vs the built-in", "ms", call, builtin, "built-in", "<=", CALL_VS_BUILTIN
        ),
        Row(
            "  a no-op command (true), minus the built-in",
            "ms",
            extra,
            target="<= fork/exec + 2 ms" + (f" ({bound:.2f})" if bound is not None else ""),
            verdict=verdict([meets(extra, "<=", bound)]),
        ),
        Row("  (context) bare fork/exec of true from Python", "ms", fork),
    ]


def _target(measurement: str, unit: str, ours, other, of: str, op: str, bound: float, **cells) -> Row:
    """A row whose target is a ratio: ours / other `op` bound."""
    r = ratio(ours, other)
    return Row(
        measurement,
        unit,
        ours,
        ratio=r,
        ratio_of=of,
        target=f"{op} {bound:g}x {of}",
        verdict=verdict([meets(r, op, bound)]),
        **cells,
    )


def _ceiling_rows(m: dict[str, Any]) -> list[Row]:
    rows = [
        Row("ceiling: raw kombu publish (confirms)", "msg/s", ceiling=_get(m, "ceiling", "publish_rate")),
        Row("ceiling: raw kombu publish + consume", "msg/s", ceiling=_get(m, "ceiling", "publish_consume_rate")),
        Row("  (context) raw publish, no confirms", "msg/s", ceiling=_get(m, "ceiling", "publish_no_confirms", "rate")),
        Row(
            "  (context) raw publish + consume, no confirms",
            "msg/s",
            ceiling=_get(m, "ceiling", "publish_consume_no_confirms", "rate"),
        ),
    ]
    for q in ("p50", "p99"):
        trip = _ms(_get(m, "ceiling", "round_trip", q))
        rows.append(Row(f"ceiling: raw kombu round trip {q} at 100/s", "ms", ceiling=trip))
    return rows


def _throughput_rows(m: dict[str, Any]) -> list[Row]:
    ceiling_pc = _get(m, "ceiling", "publish_consume_rate")
    ours_tp, naive_tp = _get(m, "ours", "throughput"), _get(m, "naive", "throughput")
    fast = _get(m, "ours", "short", "throughput")
    r, r_ceiling = ratio(fast, naive_tp), ratio(fast, ceiling_pc)
    return [
        _target(
            "no-op throughput, results collected",
            "tasks/s",
            ours_tp,
            naive_tp,
            "naive",
            ">=",
            THROUGHPUT_VS_NAIVE,
            naive=naive_tp,
        ),
        Row(
            "no-op throughput vs ceiling",
            "tasks/s",
            ours_tp,
            ceiling=ceiling_pc,
            ratio=ratio(ours_tp, ceiling_pc),
            ratio_of="ceiling",
        ),
        Row(
            f"  the same, fast profile ({_profile(m)})",
            "tasks/s",
            fast,
            naive_tp,
            ceiling_pc,
            ratio=r,
            ratio_of="naive",
            target=f">= {FAST_VS_NAIVE:g}x naive, >= {FAST_VS_CEILING:g}x ceiling",
            verdict=verdict([meets(r, ">=", FAST_VS_NAIVE), meets(r_ceiling, ">=", FAST_VS_CEILING)]),
        ),
    ]


def _profile(m: dict[str, Any]) -> str:
    """'threads x4, prefetch 16': the fast profile's pool settings, as measured."""
    pools = (m.get("ours") or {}).get("short", {}).get("pools") or {}
    if not pools:
        return "not measured"
    text = f"{pools.get('execution_pool')} x{pools.get('concurrency')}, prefetch {pools.get('prefetch_multiplier')}"
    return text + (f", log {pools['log_level']}" if pools.get("log_level") else "")


def _latency_rows(m: dict[str, Any]) -> list[Row]:
    rows = []
    rate = _get(m, "ours", "rtt", "offered_rate")
    for q, bound in (("p50", RTT_P50_VS_NAIVE), ("p99", RTT_P99_VS_NAIVE)):
        ours, naive = _ms(_get(m, "ours", "rtt", q)), _ms(_get(m, "naive", "rtt", q))
        at = f" at {rate:g}/s" if rate else ""
        rows.append(_target(f"single-task round trip {q}{at}", "ms", ours, naive, "naive", "<=", bound, naive=naive))
    ours, naive = _ms(_get(m, "ours", "seed_overhead")), _ms(_get(m, "naive", "seed_overhead"))
    rows.append(_target("seed-scenario overhead, median", "ms", ours, naive, "naive", "<=", SEED_VS_NAIVE, naive=naive))
    cold, warm = _ms(_get(m, "ours", "first", "cold_median")), _ms(_get(m, "ours", "first", "warm_median"))
    starts = _get(m, "ours", "first", "starts")
    label = (
        f"  first dispatch after a fresh start ({starts:g} starts), vs warm"
        if starts
        else "  first dispatch after a fresh start"
    )
    rows.append(_target(label, "ms", cold, warm, "warm", "<=", FIRST_VS_WARM))
    wall = _get(m, "ours", "wall", "median")
    rows.append(
        Row(
            "`python dispatch.py` process wall, median",
            "s",
            wall,
            target=f"<= {WALL_MAX_S:g} s",
            verdict=verdict([meets(wall, "<=", WALL_MAX_S)]),
        )
    )
    return rows


def _cpu_rows(m: dict[str, Any]) -> list[Row]:
    rows = [Row("consume rate of 1+1 workers", "tasks/s", _get(m, "ours", "consume_rate"))]
    for key, what in (("workers_ms", "workers"), ("broker_ms", "broker"), ("generator_ms", "load generator")):
        ours, naive = _get(m, "ours", "cpu", key), _get(m, "naive", "cpu", key)
        rows.append(Row(f"CPU per no-op task: {what}", "ms", ours, naive, None, ratio(ours, naive), "naive"))
    ours, naive = _get(m, "ours", "cpu", "all_ms"), _get(m, "naive", "cpu", "all_ms")
    rows.append(_target("CPU per no-op task: all", "ms", ours, naive, "naive", "<=", CPU_VS_NAIVE, naive=naive))
    ours = _get(m, "ours", "short", "cpu", "all_ms")
    rows.append(Row("  all, fast profile", "ms", ours, naive, None, ratio(ours, naive), "naive"))
    ours, naive = _pct(_get(m, "ours", "cpu", "busy")), _pct(_get(m, "naive", "cpu", "busy"))
    rows.append(Row("machine CPU busy during the no-op load", "%", ours, naive))
    return rows


def _generator_rows(m: dict[str, Any]) -> list[Row]:
    consume, publish = _get(m, "ours", "consume_rate"), _get(m, "ours", "publish_rate")
    small, large = _get(m, "ours", "rss", "small", "peak_rss_mib"), _get(m, "ours", "rss", "large", "peak_rss_mib")
    n_small, n_large = _get(m, "ours", "rss", "small", "tasks"), _get(m, "ours", "rss", "large", "tasks")
    return [
        _target("load-generator publish rate", "tasks/s", publish, consume, "consume", ">=", PUBLISH_VS_CONSUME),
        Row(f"load-generator peak RSS, {_count(n_small)} tasks", "MiB", small),
        _target(
            f"load-generator peak RSS, {_count(n_large)} tasks",
            "MiB",
            large,
            small,
            _count(n_small),
            "<=",
            RSS_LARGE_VS_SMALL,
        ),
    ]


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _count(n: float | None) -> str:
    """10000 -> '10k', 1500 -> '1.5k', 500 -> '500', None -> '?'."""
    if n is None:
        return "?"
    return f"{n / 1000:g}k" if n >= 1000 else f"{n:g}"


def number(value: float | None, unit: str = "") -> str:
    """A cell: 3 significant digits at least (seconds: milliseconds shown), thousands grouped, '-' when unknown."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_cell(row: Row) -> str:
    return f"{row.ratio:.2f}x {row.ratio_of}" if row.ratio is not None else "-"


COLUMNS = ("measurement", "unit", "ours", "naive", "ceiling", "ratio")
TARGET_COLUMNS = ("measurement", "ratio", "target", "verdict")


def render(rows: list[Row]) -> str:
    """The rows as two plain-text tables of at most 88 columns, a rule under each header, the numbers
    right-aligned, a long measurement's name wrapped: every measurement with its numbers and ratio, then
    each one with a target, its ratio again and its verdict."""
    numbers = [
        (
            r.measurement,
            r.unit,
            number(r.ours, r.unit),
            number(r.naive, r.unit),
            number(r.ceiling, r.unit),
            ratio_cell(r),
        )
        for r in rows
    ]
    targets = [(r.measurement, ratio_cell(r), r.target, r.verdict) for r in rows if r.target]
    return "\n".join(
        [
            *columns([COLUMNS, *numbers], right={2, 3, 4, 5}, align_headers=False),
            "",
            *columns([TARGET_COLUMNS, *targets], right={1}, align_headers=False),
        ]
    )


def summary(rows: list[Row]) -> str:
    """'targets: 3 PASS, 4 MISS' (and n/a when some could not be measured)."""
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in (PASS, MISS, NO_DATA)}
    text = f"targets: {counts[PASS]} PASS, {counts[MISS]} MISS"
    return text + (f", {counts[NO_DATA]} n/a (not measured)" if counts[NO_DATA] else "")


def columns(lines: list[tuple[str, ...]], **layout: Any) -> list[str]:
    """Rows of cells (the first the header) as aligned columns, a rule under the header, at most 88 wide:
    the first column's long cells wrapped (table_lines, `layout`: its other options)."""
    return table_lines(lines[0], lines[1:], rule=True, shrink=0, wrap=True, **layout)
