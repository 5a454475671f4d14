"""One cycle of the phase 1 and 2 agents on a generated world, agent by agent, against a bare NumPy pass.

    python bench/pipeline.py [--quick] [--keep]

The world: 50 symbols x 2,000 hourly candles from the market simulator, 48 hours of social sentiment per
symbol, 10,000 community people with 200,000 interactions (``--quick``: 10 x 500, 1,000 and 20,000), in a
fresh database migrated in-process (see ``bench/_common.py``); WATCHLIST is overridden to the 50 symbols.

The cycle runs through the framework, as ``run_pipeline --once`` does: ``pipeline_run_start`` with Celery
eager, every agent wrapped in its AgentRun. The clock is set (time-machine, ticking) to a fixed time of day so
that the strategist, creation and publishing find the same slots on every run: a warm-up cycle at 08:50 UTC
(it loads what a first run loads and leaves drafts that fall due), then the measured cycle at 10:50 UTC. The
candles stop at 07:00, so the measured scan is incremental: two new candles per symbol, no backfill.

Printed: the wall time of the cycle and each agent's AgentRun.duration_ms, with its queries and their time;
then the analysis agent against the same computation done bare in this process: one raw query for the same
candles (the newest 200 per symbol, the analysis' lookback), NumPy arrays, and the same
``apps.market.indicators`` functions the agent calls (returns, RSI, MACD, Bollinger bands, volume z-score).
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    QueryCounter,
    analyze,
    bench_database,
    bulk_load,
    db_datetime,
    human,
    interleaved,
    line,
    parse_args,
    print_header,
    setup_django,
    stopwatch,
    table,
    times,
)
from bench._world import CommunitySize, insert_community

COINS = (
    "BTC",
    "ETH",
    "SOL",
    "XRP",
    "DOGE",
    "ADA",
    "AVAX",
    "DOT",
    "LINK",
    "TRX",
    "TON",
    "LTC",
    "BCH",
    "ATOM",
    "UNI",
    "XLM",
    "ETC",
    "FIL",
    "APT",
    "ARB",
    "OP",
    "NEAR",
    "ICP",
    "HBAR",
    "VET",
    "ALGO",
    "AAVE",
    "MKR",
    "SAND",
    "MANA",
    "AXS",
    "THETA",
    "EGLD",
    "XTZ",
    "EOS",
    "FLOW",
    "CHZ",
    "GRT",
    "CRV",
    "LDO",
    "RNDR",
    "INJ",
    "SUI",
    "SEI",
    "TIA",
    "IMX",
    "STX",
    "RUNE",
    "KAS",
    "PEPE",
)
SYMBOLS = [f"{coin}/USDT" for coin in COINS]
AGENTS = (
    "market_scanner",
    "analysis",
    "content_strategist",
    "content_creation",
    "publishing",
    "image_generation",
    "engagement",
    "analytics",
    "content_repurposing",
)
FULL = {"symbols": 50, "candles": 2000, "community": CommunitySize(users=10_000, interactions=200_000)}
QUICK = {"symbols": 10, "candles": 500, "community": CommunitySize(users=1_000, interactions=20_000)}
TIMEFRAME = "1h"
EXCHANGE = "simulated"
# The measured cycle runs at this UTC time of day; the warm-up cycle two hours earlier.
CYCLE_TIME = dt.time(10, 50)
WARMUP_BEFORE = dt.timedelta(hours=2)
BARE_REPEAT = 7


def anchor_time() -> dt.datetime:
    """The latest past CYCLE_TIME."""
    now = dt.datetime.now(dt.UTC)
    today = dt.datetime.combine(now.date(), CYCLE_TIME, dt.UTC)
    return today if today <= now else today - dt.timedelta(days=1)


def build_market(symbols: list[str], candles: int, *, end: dt.datetime) -> tuple[int, int, float]:
    """``candles`` simulated candles per symbol opening before ``end``, and 48 hourly sentiment windows ending
    at ``end``; returns (candles, windows) inserted and the seconds the simulator took."""
    import numpy as np

    from apps.integrations.market_simulator import simulate_ohlcv
    from apps.market.models import MarketData, SentimentData

    started = time.perf_counter()
    simulated = {symbol: simulate_ohlcv(symbol, TIMEFRAME, end, candles) for symbol in symbols}
    simulating = time.perf_counter() - started
    rows = [
        MarketData(
            exchange=EXCHANGE,
            symbol=symbol,
            timeframe=TIMEFRAME,
            ts=c.ts,
            open=c.open,
            high=c.high,
            low=c.low,
            close=c.close,
            volume=c.volume,
        )
        for symbol, series in simulated.items()
        for c in series
    ]
    MarketData.objects.bulk_create(rows, batch_size=2000)
    rng = np.random.default_rng(3)
    windows = []
    for symbol in symbols:
        for hour in range(48):
            window_end = end - dt.timedelta(hours=hour)
            n = int(rng.integers(20, 200))
            positive = int(rng.integers(0, n // 2))
            negative = int(rng.integers(0, n // 3))
            windows.append(
                SentimentData(
                    symbol=symbol,
                    source="files",
                    window_start=window_end - dt.timedelta(hours=1),
                    window_end=window_end,
                    sample_size=n,
                    score=round((positive - negative) / n, 4),
                    positive=positive,
                    neutral=n - positive - negative,
                    negative=negative,
                )
            )
    SentimentData.objects.bulk_create(windows, batch_size=2000)
    return len(rows), len(windows), simulating


def run_cycle(counter: QueryCounter) -> dict[str, Any]:
    """One pipeline run of AGENTS, as ``run_pipeline --once`` runs it; returns its wall time, its rows, and
    the calls of the live-dashboard broadcast and their time."""
    from unittest import mock

    from django.db import connection, transaction

    from apps.agents.models import AgentRun, AgentRunStatus, RunTrigger
    from apps.agents.services import agent_run_changed, pipeline_run_start
    from apps.core import live

    broadcasts = [0, 0.0]
    original = live.broadcast

    def timed_broadcast(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            original(*args, **kwargs)
        finally:
            broadcasts[0] += 1
            broadcasts[1] += time.perf_counter() - started

    def follow(sender: Any, run: AgentRun, **kwargs: Any) -> None:
        # Queries while an agent holds its run are the agent's; the rest are the framework's.
        counter.label = run.agent_name if run.status == AgentRunStatus.RUNNING else "(framework)"

    agent_run_changed.connect(follow, sender=AgentRun)
    counter.label = "(framework)"
    try:
        # The canvas is sent when the atomic block commits, and runs eagerly right then.
        with (
            mock.patch.object(live, "broadcast", timed_broadcast),
            connection.execute_wrapper(counter),
            stopwatch() as wall,
            transaction.atomic(),
        ):
            pipeline = pipeline_run_start(agent_names=list(AGENTS), trigger=RunTrigger.MANUAL)
    finally:
        agent_run_changed.disconnect(follow, sender=AgentRun)
    pipeline.refresh_from_db()
    runs = {run.agent_name: run for run in AgentRun.objects.filter(pipeline_run=pipeline)}
    return {"wall": wall[0], "pipeline": pipeline, "runs": runs, "broadcasts": broadcasts}


def bare_pass(symbols: list[str], *, since: dt.datetime, until: dt.datetime) -> tuple[float, float, int]:
    """The analysis' computation without the agent: one query on the raw cursor for the candles, arrays, the
    same indicators. Returns (seconds in all, seconds of query and arrays, candles)."""
    import numpy as np
    from django.db import connection

    from apps.market import indicators, services

    when = db_datetime()
    started = time.perf_counter()
    marks = ", ".join(["%s"] * len(symbols))
    with connection.cursor() as cursor:
        cursor.execute(
            # Only placeholders are formatted in.
            "SELECT symbol, close, volume FROM market_data "  # noqa: S608
            f"WHERE timeframe = %s AND ts >= %s AND ts <= %s AND symbol IN ({marks}) ORDER BY symbol, ts",
            [TIMEFRAME, when(since), when(until), *symbols],
        )
        rows = cursor.fetchall()
    series = {}
    for symbol, group in itertools.groupby(rows, key=lambda row: row[0]):
        candles = list(group)
        series[symbol] = (
            np.fromiter((c[1] for c in candles), dtype=np.float64, count=len(candles)),
            np.fromiter((c[2] for c in candles), dtype=np.float64, count=len(candles)),
        )
    loaded = time.perf_counter()
    for close, volume in series.values():
        for hours in services.PRICE_WINDOWS_HOURS:
            indicators.pct_change(close[-1 - hours :], hours)
        indicators.rsi(close, services.RSI_PERIOD)
        indicators.macd(close, services.MACD_FAST, services.MACD_SLOW, services.MACD_SIGNAL)
        indicators.bollinger(close, services.BOLLINGER_PERIOD, services.BOLLINGER_K)
        indicators.zscore_vs_trailing(volume[-1 - services.VOLUME_WINDOW :], services.VOLUME_WINDOW)
    finished = time.perf_counter()
    return finished - started, loaded - started, len(rows)


def main() -> None:
    args = parse_args("One cycle of the phase 1+2 agents on a generated world.")
    sizes = QUICK if args.quick else FULL
    symbols = SYMBOLS[: sizes["symbols"]]
    community: CommunitySize = sizes["community"]
    with bench_database("pipeline", keep=args.keep) as db:
        migrate_seconds = setup_django(db)
        print_header("Pipeline: one cycle of the phase 1+2 agents", db, quick=args.quick)

        from unittest import mock

        import time_machine
        from django.db import connection, transaction
        from django.test import override_settings

        from apps.agents.models import RunTrigger
        from apps.agents.services import agent_run_create, agent_run_execute
        from apps.market import services
        from apps.market.selectors import timeframe_step

        anchor = anchor_time()
        warmup_at = anchor - WARMUP_BEFORE
        # The newest stored candle is the last one closed at the warm-up cycle's time.
        candles_end = warmup_at.replace(minute=0, second=0, microsecond=0)

        print(f"\nworld (built once; {human(migrate_seconds)} to migrate the empty database):")
        with stopwatch() as took, bulk_load():
            n_candles, n_windows, simulating = build_market(symbols, sizes["candles"], end=candles_end)
        line(
            f"{len(symbols)} symbols x {sizes['candles']:,} candles, {n_windows:,} sentiment windows",
            human(took[0]),
            f"{n_candles:,} candles: simulator {human(simulating)}, ORM bulk_create {human(took[0] - simulating)}",
        )
        with stopwatch() as took, bulk_load():
            rows = insert_community(size=community, now=warmup_at)
        line(
            f"{community.users:,} people, {community.interactions:,} interactions",
            human(took[0]),
            f"{rows:,} rows, raw {'COPY' if db.vendor == 'postgresql' else 'executemany'}",
        )
        with stopwatch() as took:
            analyzed = analyze()
        if analyzed:
            line("ANALYZE (planner statistics, as autovacuum would gather)", human(took[0]))

        counter = QueryCounter()
        with override_settings(WATCHLIST=symbols, MARKET_TIMEFRAME=TIMEFRAME):
            with time_machine.travel(warmup_at, tick=True):
                warmup = run_cycle(QueryCounter())
            with time_machine.travel(anchor, tick=True):
                cycle = run_cycle(counter)

        print(
            f"\ncycle: {len(AGENTS)} agents, Celery eager, clock set to {anchor:%Y-%m-%d %H:%M} UTC "
            f"(warm-up cycle at {warmup_at:%H:%M}, not counted)"
        )
        rows_out = []
        for name in AGENTS:
            run = cycle["runs"].get(name)
            before = warmup["runs"].get(name)
            if run is None:
                rows_out.append([name, "missing", "", "", "", "", ""])
                continue
            ms = run.duration_ms
            summary = run.summary if run.status == "succeeded" else (run.error or run.summary)
            rows_out.append(
                [
                    name,
                    run.status,
                    f"{before.duration_ms:,}" if before and before.duration_ms is not None else "-",
                    f"{ms:,}" if ms is not None else "-",
                    f"{counter.counts[name]:,}",
                    f"{counter.seconds[name] * 1000:,.0f}",
                    summary[:90],
                ]
            )
        table(["agent", "status", "warm-up ms", "ms", "queries", "exec ms", "summary"], rows_out, left=2)
        agent_ms = sum(run.duration_ms or 0 for run in cycle["runs"].values())
        framework = counter.counts["(framework)"]
        print()
        line("whole cycle, wall", human(cycle["wall"]), f"pipeline run {cycle['pipeline'].status}")
        line("  of which in the agents (sum of duration_ms)", human(agent_ms / 1000))
        line(
            "  of which framework (claims, AgentRun rows, ...)",
            human(cycle["wall"] - agent_ms / 1000),
            f"{framework} queries, {counter.seconds['(framework)'] * 1000:.0f} ms in them",
        )
        calls, in_broadcast = cycle["broadcasts"]
        line(
            "  of which live-dashboard broadcasts",
            human(in_broadcast),
            f"{calls} calls of apps.core.live.broadcast, {in_broadcast / max(calls, 1) * 1000:.1f} ms each",
        )
        line("warm-up cycle, wall", human(warmup["wall"]))
        print("\nslowest statements of the cycle (all executions):")
        table(
            ["agent", "n", "ms", "statement"],
            [
                [label, f"{count}", f"{seconds * 1000:,.0f}", sql[:150]]
                for label, count, seconds, sql in counter.slowest(6)
            ],
        )

        # The analysis against the same work done bare, in this process, on the same candles.
        analysis = cycle["runs"]["analysis"]
        now = analysis.started_at
        step = timeframe_step(TIMEFRAME)
        newest_closed = now - step
        since = newest_closed - (services.LOOKBACK_CANDLES - 1) * step
        loading_series: list[float] = []
        loading_bare: list[float] = []
        series_selector = services.selectors.market_data_series

        def timed_series(**kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return series_selector(**kwargs)
            finally:
                loading_series.append(time.perf_counter() - began)

        def bare() -> None:
            loading_bare.append(bare_pass(symbols, since=since, until=newest_closed)[1])

        def detect() -> None:
            with (
                transaction.atomic(),
                mock.patch.object(services.selectors, "market_data_series", timed_series),
            ):
                services.insights_detect(now=now, symbols=symbols, timeframe=TIMEFRAME, counters=Counter())
                transaction.set_rollback(True)

        def agent_run() -> None:
            with transaction.atomic():
                run = agent_run_create(agent_name="analysis", trigger=RunTrigger.MANUAL)
                agent_run_execute(run_id=run.pk)
                transaction.set_rollback(True)

        detect_counter, agent_counter = QueryCounter(), QueryCounter()
        with override_settings(WATCHLIST=symbols), time_machine.travel(now, tick=True):
            with connection.execute_wrapper(detect_counter):
                detect()
            with connection.execute_wrapper(agent_counter):
                agent_run()
            loading_series.clear()
            runs = interleaved({"agent": agent_run, "detect": detect, "bare": bare}, repeat=BARE_REPEAT)
        n = bare_pass(symbols, since=since, until=newest_closed)[2]
        median = {name: statistics.median(seconds) for name, seconds in runs.items()}
        # The warm-up calls (the first of each) are left out.
        series_median = statistics.median(loading_series[1:])
        loading_median = statistics.median(loading_bare[1:])
        agent_seconds = (analysis.duration_ms or 0) / 1000
        print(
            f"\nanalysis vs a bare pass over the same {n:,} candles ({len(symbols)} symbols, the analysis' "
            f"{services.LOOKBACK_CANDLES}-candle window; medians of {BARE_REPEAT}, run in turn):"
        )
        line("analysis agent in the cycle (duration_ms)", human(agent_seconds), "one run")
        line(
            "analysis agent again, through the framework",
            human(median["agent"]),
            f"rolled back; {agent_counter.counts['-']} queries",
        )
        line(
            "insights_detect() alone (the agent's service)",
            human(median["detect"]),
            f"rolled back; {detect_counter.counts['-']} queries",
        )
        line(
            "  of which market_data_series() (ORM rows)",
            human(series_median),
            "the same candles through the ORM, with their open times",
        )
        line(
            "bare pass: raw query + the same NumPy indicators",
            human(median["bare"]),
            f"best {human(min(runs['bare']))}; of which query and arrays {human(loading_median)}",
        )
        line("ratio analysis agent (cycle) / bare pass", times(agent_seconds / median["bare"]))
        line("ratio analysis agent (median) / bare pass", times(median["agent"] / median["bare"]))
        line("ratio insights_detect / bare pass", times(median["detect"] / median["bare"]))


if __name__ == "__main__":
    main()
