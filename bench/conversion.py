"""The conversion agent's scoring query and store step over a large community, against the same in plain SQL.

    python bench/conversion.py [--quick] [--keep]

The world: 100,000 community people with one platform identity each and 1,000,000 interactions over 90 days
(``--quick``: 10,000 and 100,000), written with raw bulk inserts (executemany on SQLite, COPY on PostgreSQL;
``bench/_world.py``) into a fresh database migrated in-process (see ``bench/_common.py``).

Timed in this process, each the median (and best) of a few runs after a warm-up:

- ``apps.community.selectors.community_user_scores(since, now, weights)`` over a 30-day window with the
  default weights, evaluated two ways: every scored person (what storing the scores reads) and the 100 best
  (``order_by("-score")[:100]``);
- the same aggregate written by hand: one ``GROUP BY community_user_id`` over ``user_interactions`` with
  ``CASE`` on the kind for the weights, ``CASE`` on ``occurred_at`` for the recency buckets and
  ``COUNT(DISTINCT <UTC day>)``, on the raw cursor, both ways too. Both must return the same people and scores
  (checked) before they are compared;
- the store step, ``apps.community.services.scoring.community_user_scores_store``, cold (every score differs
  from the stored one; rolled back after each run) and steady (the scores already stored: nothing to write),
  against the same two UPDATEs written by hand around the plain aggregate (changed scores from it, people
  whose window emptied back to 0). Both must write the same rows (checked).
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
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
    times,
)
from bench._world import CommunitySize, insert_community

FULL = CommunitySize(users=100_000, interactions=1_000_000)
QUICK = CommunitySize(users=10_000, interactions=100_000)
WINDOW = dt.timedelta(days=30)
TOP = 100
REPEAT = 5


def aggregate_sql(
    *, since: dt.datetime, now: dt.datetime, weights: dict[str, float]
) -> tuple[str, list[Any]]:
    """The scoring aggregate by hand: (person, interactions, recent interactions, recent points, older points,
    active days, score) per person, as SQL and its parameters."""
    from django.db import connection

    from apps.community import selectors

    weighted = {kind: weight for kind, weight in weights.items() if weight > 0}
    when = db_datetime()
    recent_since = when(now - dt.timedelta(days=selectors.RECENT_DAYS))
    points = "CASE kind " + " ".join("WHEN %s THEN %s" for _ in weighted) + " ELSE 0.0 END"
    point_params = [value for kind, weight in weighted.items() for value in (str(kind), float(weight))]
    day = "date(occurred_at)" if connection.vendor == "sqlite" else "(occurred_at AT TIME ZONE 'UTC')::date"
    kinds = ", ".join(["%s"] * len(weighted))
    sql = f"""
        SELECT community_user_id, interactions, recent_interactions, recent_points, older_points, active_days,
               recent_points + %s * older_points + %s * active_days AS score
        FROM (
            SELECT community_user_id,
                   COUNT(*) AS interactions,
                   SUM(CASE WHEN occurred_at > %s THEN 1 ELSE 0 END) AS recent_interactions,
                   SUM(CASE WHEN occurred_at > %s THEN {points} ELSE 0.0 END) AS recent_points,
                   SUM(CASE WHEN occurred_at > %s THEN 0.0 ELSE {points} END) AS older_points,
                   COUNT(DISTINCT {day}) AS active_days
            FROM user_interactions
            WHERE occurred_at >= %s AND occurred_at <= %s AND kind IN ({kinds})
            GROUP BY community_user_id
        ) AS per_person
    """  # noqa: S608 - only placeholders and fixed SQL are formatted in
    params = [
        float(selectors.OLDER_FACTOR),
        float(selectors.ACTIVE_DAY_POINTS),
        recent_since,
        recent_since,
        *point_params,
        recent_since,
        *point_params,
        when(since),
        when(now),
        *[str(kind) for kind in weighted],
    ]
    return sql, params


def plain_scores(
    *, since: dt.datetime, now: dt.datetime, weights: dict[str, float], top: int | None
) -> list[Any]:
    """The aggregate on the raw cursor, every person or the ``top`` best."""
    from django.db import connection

    sql, params = aggregate_sql(since=since, now=now, weights=weights)
    if top:
        sql, params = f"{sql} ORDER BY score DESC, community_user_id LIMIT %s", [*params, top]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def plain_store(*, since: dt.datetime, now: dt.datetime, weights: dict[str, float]) -> tuple[int, int]:
    """Store the scores by hand as the store step does (changed scores from the aggregate, people whose window
    emptied back to 0): two UPDATEs on the raw cursor. Returns (changed, zeroed)."""
    from django.db import connection

    sql, params = aggregate_sql(since=since, now=now, weights=weights)
    when = db_datetime()
    kinds = [str(kind) for kind, weight in weights.items() if weight > 0]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE community_users SET engagement_score = s.score, score_updated_at = %s "  # noqa: S608
            f"FROM ({sql}) AS s WHERE community_users.id = s.community_user_id "
            "AND community_users.engagement_score <> s.score",
            [when(now), *params],
        )
        changed = cursor.rowcount
        cursor.execute(
            "UPDATE community_users SET engagement_score = 0.0, score_updated_at = %s "  # noqa: S608
            "WHERE engagement_score <> 0 AND NOT EXISTS (SELECT 1 FROM user_interactions u "
            "WHERE u.community_user_id = community_users.id AND u.occurred_at >= %s AND u.occurred_at <= %s "
            f"AND u.kind IN ({', '.join(['%s'] * len(kinds))}))",
            [when(now), when(since), when(now), *kinds],
        )
        return changed, cursor.rowcount


def stored_scores() -> tuple[int, float]:
    """(people with a score, the sum of the scores), to check two ways of storing agree."""
    from django.db.models import Count, Sum

    from apps.community.models import CommunityUser

    totals = CommunityUser.objects.filter(engagement_score__gt=0).aggregate(
        n=Count("id"), total=Sum("engagement_score")
    )
    return totals["n"], round(totals["total"] or 0.0, 3)


def main() -> None:
    args = parse_args(
        "The conversion agent's scoring query and store step against the same work in plain SQL."
    )
    size = QUICK if args.quick else FULL
    with bench_database("conversion", keep=args.keep) as db:
        migrate_seconds = setup_django(db)
        print_header(
            "Conversion scoring: community_user_scores and its store step vs plain SQL", db, quick=args.quick
        )
        from django.db import transaction

        from apps.community import selectors
        from apps.community.services.scoring import community_user_scores_store

        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        since = now - WINDOW
        weights = dict(selectors.DEFAULT_INTERACTION_WEIGHTS)

        print(f"\nworld ({human(migrate_seconds)} to migrate the empty database):")
        with stopwatch() as took, bulk_load():
            rows = insert_community(size=size, now=now)
        method = "COPY" if db.vendor == "postgresql" else "executemany"
        line(
            f"{size.users:,} people, {size.interactions:,} interactions",
            human(took[0]),
            f"{rows:,} rows, raw {method}, {rows / took[0]:,.0f} rows/s",
        )
        with stopwatch() as took:
            analyzed = analyze()
        if analyzed:
            line("ANALYZE (planner statistics, as autovacuum would gather)", human(took[0]))

        def orm_all() -> list[dict[str, Any]]:
            return list(selectors.community_user_scores(since=since, now=now, weights=weights))

        def orm_top() -> list[dict[str, Any]]:
            scores = selectors.community_user_scores(since=since, now=now, weights=weights)
            return list(scores.order_by("-score", "community_user_id")[:TOP])

        def sql_all() -> list[Any]:
            return plain_scores(since=since, now=now, weights=weights, top=None)

        def sql_top() -> list[Any]:
            return plain_scores(since=since, now=now, weights=weights, top=TOP)

        # Same answer first, or the comparison means nothing.
        by_orm = {row["community_user_id"]: row for row in orm_all()}
        by_sql = {row[0]: row for row in sql_all()}
        assert by_orm.keys() == by_sql.keys(), "the two queries score different people"
        for person, row in by_sql.items():
            mine = by_orm[person]
            counts = (mine["interactions"], mine["recent_interactions"], mine["active_days"])
            assert counts == (row[1], row[2], row[5]), (person, mine, row)
            assert abs(mine["score"] - float(row[6])) < 1e-6, (person, mine, row)
        assert [r["community_user_id"] for r in orm_top()] == [r[0] for r in sql_top()]

        print(
            f"\nscoring {len(by_sql):,} people over {WINDOW.days} days "
            f"(the same rows and scores from both, checked; median of {REPEAT}, run in turn):"
        )
        results = interleaved(
            {"orm_all": orm_all, "sql_all": sql_all, "orm_top": orm_top, "sql_top": sql_top}, repeat=REPEAT
        )
        compare(
            "community_user_scores(), every person",
            "plain SQL, every person",
            results["orm_all"],
            results["sql_all"],
        )
        compare(
            f"community_user_scores(), top {TOP}",
            f"plain SQL, top {TOP}",
            results["orm_top"],
            results["sql_top"],
        )

        # The store step. Cold: every score differs from the one stored (the world's are random), so every
        # scored person is written and everyone else goes back to 0; rolled back after each run. Steady: run
        # again over scores already stored, which writes nothing.
        def store() -> object:
            return community_user_scores_store(since=since, now=now, weights=weights)

        def by_hand() -> object:
            return plain_store(since=since, now=now, weights=weights)

        def cold(fn: Any) -> Any:
            def run() -> Any:
                with transaction.atomic():
                    outcome = fn(), stored_scores()
                    transaction.set_rollback(True)
                return outcome

            return run

        first, checked = cold(store)()
        hand, hand_checked = cold(by_hand)()
        assert checked == hand_checked, (checked, hand_checked)
        assert (first.changed, first.zeroed) == hand, (first, hand)
        print(
            f"\nstoring the scores (both write the same: {first.changed:,} changed, {first.zeroed:,} back to 0, "
            f"{checked[0]:,} scored; cold runs rolled back, the rollback included; median of {REPEAT}):"
        )
        cold_runs = interleaved({"store": cold(store), "by_hand": cold(by_hand)}, repeat=REPEAT)
        compare(
            "community_user_scores_store(), cold",
            "plain SQL, two UPDATEs, cold",
            cold_runs["store"],
            cold_runs["by_hand"],
        )
        with transaction.atomic():
            store()
        again = store()
        assert (again.changed, again.zeroed) == (0, 0), again
        steady_runs = interleaved({"store": store, "by_hand": by_hand, "aggregate": sql_all}, repeat=REPEAT)
        compare(
            "community_user_scores_store(), steady",
            "plain SQL, two UPDATEs, steady",
            steady_runs["store"],
            steady_runs["by_hand"],
        )
        line(
            "store step (steady) / the plain SQL aggregate alone",
            times(statistics.median(steady_runs["store"]) / statistics.median(steady_runs["aggregate"])),
            "what storing adds to computing the scores",
        )


def compare(mine: str, theirs: str, ours: list[float], bare: list[float]) -> None:
    """Two series of timings, their medians and bests, and the ratios."""
    line(mine, human(statistics.median(ours)), f"best {human(min(ours))}")
    line(theirs, human(statistics.median(bare)), f"best {human(min(bare))}")
    line(
        "  ratio",
        times(statistics.median(ours) / statistics.median(bare)),
        f"of the medians; of the bests {times(min(ours) / min(bare))}",
    )


if __name__ == "__main__":
    main()
