"""A run's verdict, the same for a dispatch and a load test: its exit code and, for a run that ended on a
lost broker (exit 3) or on a pool that lost all its consumers with tasks still unknown (exit 4), the one
line of error the CLI prints on stderr after the (partial) report.

    code, problem = verdict(report.exit_code, waits, unknown=2, unknown_text=": 2 task(s) unknown (a, b)")
    if problem:
        raise CliError(problem, code)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dts.errors import ExitCode


def verdict(
    code: int, endings: Iterable[Any], unknown: int, unknown_text: str, broker_fix: str = "", pool_fix: str = ""
) -> tuple[int, str | None]:
    """`code` and None, unless a wait ended on a lost broker or a lost pool. `endings`: what each wait saw,
    objects with `broker_lost` (why, or None) and `pools_lost` (pool -> its queue without consumers): a
    dts.amqp.replies.Collected, a dts.reports.load_report.LoadRun. `unknown`: how many tasks have no result, and
    `unknown_text` what the error says of them; `broker_fix` and `pool_fix` end the two errors."""
    endings = list(endings)
    lost = next((e.broker_lost for e in endings if e.broker_lost), None)
    if lost:
        return ExitCode.BROKER_UNREACHABLE, (
            f"lost the broker connection ({lost}) and it did not come back before the deadline{unknown_text}{broker_fix}"
        )
    pools = next((e.pools_lost for e in endings if e.pools_lost), None)
    if pools and unknown:
        names = ", ".join(f"{pool} ({queue})" for pool, queue in pools.items())
        return ExitCode.NO_CONSUMER, (
            f"pool {names} lost all its consumers and none came back before the deadline{unknown_text}; "
            f"start its workers{pool_fix}"
        )
    return code, None
