"""Budget days: the calendar day in the budget's IANA timezone, DST-correct."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

BUCKET_SECONDS = 900


def local_day(now_ns: int, tz: str) -> date:
    return datetime.fromtimestamp(now_ns / 1e9, ZoneInfo(tz)).date()


def day_bounds_ns(day: date, tz: str) -> tuple[int, int]:
    """[start, end) of a local day in UTC epoch ns (23 or 25 hours long on DST changes)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9


def day_buckets(day: date, tz: str) -> tuple[int, int]:
    """[first, last) 15-minute UTC buckets of a local day."""
    start, end = day_bounds_ns(day, tz)
    return start // 10**9 // BUCKET_SECONDS, end // 10**9 // BUCKET_SECONDS


def utc_seconds(ns: int) -> str:
    """Epoch ns -> RFC 3339 UTC to the second ("2026-03-08T05:00:00Z"), as reset times are shown."""
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
