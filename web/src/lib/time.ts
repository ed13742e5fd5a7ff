/**
 * Times as people read them: in the viewer's own timezone, with how long ago (or how soon).
 * The server writes RFC 3339 with nanoseconds ("2026-12-11T07:00:00.123456789Z"); JavaScript's
 * Date parser is only specified for milliseconds, so the fraction is cut to three digits first.
 */
import { useEffect, useState } from "react";

export function parseTime(value: string): Date {
  const cut = value.replace(/(\.\d{3})\d+/, "$1");
  return new Date(cut);
}

const full = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/** "4 Dec 2026, 12:19:03" in the viewer's timezone (named in the page footer). */
export function formatTime(value: string): string {
  return full.format(parseTime(value));
}

export function viewerTimezone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["day", 86_400],
  ["hour", 3_600],
  ["minute", 60],
  ["second", 1],
];
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "5 minutes ago", "in 3 hours": the largest whole unit. */
export function fromNow(value: string, now: number): string {
  const seconds = (parseTime(value).getTime() - now) / 1000;
  const size = Math.abs(seconds);
  for (const [unit, length] of UNITS) {
    if (size >= length || unit === "second") {
      return relative.format(Math.trunc(seconds / length), unit);
    }
  }
  return relative.format(0, "second");
}

/** The current time, renewed every `everyMs` so that ages and countdowns move on by themselves. */
export function useNow(everyMs = 10_000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), everyMs);
    return () => window.clearInterval(timer);
  }, [everyMs]);
  return now;
}
