"""B8 scheduler tick: one `schedule_tick` over N active schedules, against reading the same rows in one query.

Builds a throwaway database with Django's test-database machinery (a temporary SQLite file, or a
database of its own on the PostgreSQL server that DATABASE_URL names; dropped at the end), bulk-loads
N active schedules (random weekly/monthly rules in five zones, their cursors computed by the slot
engine), then measures, interleaved and repeated, each from the same starting state:

- baseline: the N active schedules read in one query (`values_list` of the rule fields);
- a tick when nothing is due;
- a tick when 1 % of them are due at the same minute (each creating its draft post);

and once, at the end, a tick when all N are due at the same minute.

    .venv/bin/python bench/scheduler_tick.py [--schedules 10000] [--repeats 7]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mcn_bench .venv/bin/python bench/scheduler_tick.py
    .venv/bin/python bench/scheduler_tick.py --smoke        # 200 schedules, 2 repeats (CI)

--write-docs: also put the table in docs/benchmarks.md, between the B8 markers of the database used.
"""

import argparse
import random
import sys
import time
import zoneinfo
from datetime import UTC, datetime, timedelta

from harness import Series, interleave, machine, setup_django, table, throwaway_database, write_docs

setup_django()

import django  # noqa: E402 - set up by the harness above
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from artists.models import Artist, Niche, Source, Voice  # noqa: E402
from posts.models import Post  # noqa: E402
from schedules.models import WEEKDAYS, Schedule, ScheduleRun  # noqa: E402
from schedules.services import schedule_tick  # noqa: E402
from schedules.slots import next_slot  # noqa: E402

ZONES = ["Asia/Shanghai", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "UTC"]
SLOT = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # Monday 09:30 in Shanghai: the minute the due ones share
GRACE = timedelta(hours=1)
ARTISTS = 20


def wall(zone: str) -> tuple[str, str]:
    """SLOT's weekday and HH:MM in `zone`."""
    local = SLOT.astimezone(zoneinfo.ZoneInfo(zone))
    return WEEKDAYS[local.weekday()], f"{local:%H:%M}"


def random_rule(rng: random.Random) -> dict:
    times = sorted({f"{rng.randrange(24):02d}:{rng.choice([0, 15, 30, 45]):02d}" for _ in range(rng.randint(1, 3))})
    if rng.random() < 0.8:
        return {"period": "weekly", "weekdays": rng.sample(WEEKDAYS, rng.randint(1, 3)), "times": times}
    return {"period": "monthly", "month_days": rng.sample(range(1, 32), rng.randint(1, 3)), "times": times}


def load(count: int, due: int) -> list[int]:
    """N schedules; the first `due` fire at SLOT, the others later. Returns the due ones' ids."""
    rng = random.Random(8)  # noqa: S311 - the same rules every run, not secrets
    voice = Voice.objects.create(name="Bench voice", speaker_id="zh_female_1")
    artists = Artist.objects.bulk_create(
        Artist(stage_name=f"Bench {n}", slug=f"bench-{n}", niche=Niche.FINANCE, voice=voice, face_anchor="f.png")
        for n in range(ARTISTS)
    )
    sources = Source.objects.bulk_create(
        Source(name=f"Feed {n}", category=Source.Category.FINANCE, url=f"https://example.com/{n}")
        for n in range(ARTISTS * 2)
    )
    for n, artist in enumerate(artists):
        artist.default_sources.set(sources[2 * n : 2 * n + 2])
    schedules = []
    for n in range(count):
        zone = rng.choice(ZONES)
        if n < due:
            weekday, hh_mm = wall(zone)
            rule = {"period": "weekly", "weekdays": [weekday], "times": [hh_mm]}
        else:
            rule = random_rule(rng)
        schedule = Schedule(
            title=f"Bench schedule {n}", artist=artists[n % ARTISTS], timezone=zone, brief="Today's markets.", **rule
        )
        schedule.next_slot_at = next_slot(schedule, SLOT - timedelta(minutes=1) if n < due else SLOT)
        assert (schedule.next_slot_at == SLOT) == (n < due), (n, rule, zone, schedule.next_slot_at)
        schedules.append(schedule)
    Schedule.objects.bulk_create(schedules, batch_size=1000)
    return list(Schedule.objects.filter(title__in=[s.title for s in schedules[:due]]).values_list("pk", flat=True))


def reset(due_ids: list[int]) -> None:
    """Back to the starting state: the due ones' slot not yet handled, no runs, no posts."""
    Post.objects.all().delete()
    ScheduleRun.objects.all().delete()
    Schedule.objects.filter(pk__in=due_ids).update(next_slot_at=SLOT, last_executed_at=None)


def baseline(count: int, due: int) -> None:
    rows = list(
        Schedule.objects.filter(active=True).values_list(
            "pk", "next_slot_at", "kind", "period", "weekdays", "month_days", "times", "timezone", "trigger_at"
        )
    )
    assert len(rows) == count


def tick_idle(count: int, due: int) -> None:
    result = schedule_tick(now=SLOT - timedelta(minutes=1), grace=GRACE)
    assert result.schedules == 0 and not result.created, result


def tick_due(count: int, due: int) -> None:
    result = schedule_tick(now=SLOT, grace=GRACE)
    assert len(result.created) == due, result


def queries(measure, count: int, due: int, due_ids: list[int]) -> int:
    reset(due_ids)
    with CaptureQueriesContext(connection) as captured:
        measure(count, due)
    return len(captured)


def run(count: int, repeats: int) -> list[tuple[Series, int]]:
    due = max(1, count // 100)
    due_ids = load(count, due)
    assert len(due_ids) == due
    measures = {
        f"baseline: read the {count} active schedules in one query": baseline,
        "tick, nothing due": tick_idle,
        f"tick, {due} due at one minute ({due} posts)": tick_due,
    }
    for _ in range(2):  # warm-up: caches, the slot engine's zone files, the first connection
        for measure in measures.values():
            reset(due_ids)
            measure(count, due)

    def timed(measure):
        def sample() -> float:
            reset(due_ids)  # untimed: each measurement starts from the same state
            started = time.perf_counter()
            measure(count, due)
            return (time.perf_counter() - started) * 1000

        return sample

    series = interleave({name: timed(measure) for name, measure in measures.items()}, repeats=repeats)
    rows = [(series[name], queries(measure, count, due, due_ids)) for name, measure in measures.items()]

    # Once: every schedule due at the same minute (a rule edited en masse, or all set to one time).
    reset(due_ids)
    for zone in set(ZONES):
        weekday, hh_mm = wall(zone)
        Schedule.objects.filter(timezone=zone).update(
            period="weekly", weekdays=[weekday], times=[hh_mm], next_slot_at=SLOT
        )
    started = time.perf_counter()
    result = schedule_tick(now=SLOT, grace=GRACE)
    took = (time.perf_counter() - started) * 1000
    rows.append((Series(f"tick, all {count} due at one minute ({count} posts), 1 run", [took]), 0))
    assert len(result.created) == count, result
    return rows


def report(rows: list[tuple[Series, int]], count: int, repeats: int, engine: str) -> str:
    base = rows[0][0].median
    body = [
        [s.name, f"{s.min:.1f}", f"{s.median:.1f}", f"{s.max:.1f}", f"{s.median / base:.2f}", n or "-"] for s, n in rows
    ]
    headers = ["measurement", "min ms", "median ms", "max ms", "median / baseline", "queries"]
    header = (
        f"{count} active schedules, {repeats} interleaved repeats; {engine}, {machine(Django=django.get_version())}"
    )
    return header + "\n\n" + table(headers, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="200 schedules, 2 repeats: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
    args = parser.parse_args()
    count, repeats = (200, 2) if args.smoke else (args.schedules, args.repeats)
    with throwaway_database() as engine:  # never the database DATABASE_URL names
        rows = run(count, repeats)
    text = report(rows, count, repeats, engine)
    print(text)
    if args.write_docs:
        write_docs(f"B8 {connection.vendor}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
