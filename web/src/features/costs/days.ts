/**
 * Calendar days in another timezone than the viewer's: the server's day boundary (the project's
 * and the budgets' timezone) decides which day a cost falls on, and a link to the runs of a day
 * needs that day's first and last instant. No timezone library: Intl knows every zone.
 */

const parts = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = parts.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    parts.set(tz, f);
  }
  return f;
}

/** How far ahead of UTC the zone's wall clock is at that instant, in milliseconds. */
function offsetMs(instant: number, tz: string): number {
  const whole = Math.floor(instant / 1000) * 1000;
  const got: Record<string, number> = {};
  for (const p of formatter(tz).formatToParts(new Date(whole))) {
    if (p.type !== "literal") got[p.type] = Number(p.value);
  }
  const wall = Date.UTC(got.year ?? 1970, (got.month ?? 1) - 1, got.day ?? 1, got.hour ?? 0, got.minute ?? 0, got.second ?? 0);
  return wall - whole;
}

/** "2026-12-04" → the instant that day starts in tz (its local midnight). */
export function dayStart(day: string, tz: string): Date {
  const [y, m, d] = day.split("-").map(Number);
  const wall = Date.UTC(y ?? 1970, (m ?? 1) - 1, d ?? 1);
  let t = wall - offsetMs(wall, tz);
  t = wall - offsetMs(t, tz); // again: the offset at midnight may differ from the guess's (DST)
  return new Date(t);
}

/** The day `n` days after `day` (n may be negative). */
export function addDays(day: string, n: number): string {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, (d ?? 1) + n)).toISOString().slice(0, 10);
}

/** Today's date in tz ("YYYY-MM-DD"). */
export function todayIn(tz: string, now = Date.now()): string {
  return new Date(now + offsetMs(now, tz)).toISOString().slice(0, 10);
}

/** The days from first to last, inclusive. */
export function daysBetween(first: string, last: string): string[] {
  const out: string[] = [];
  for (let d = first; d <= last && out.length < 400; d = addDays(d, 1)) out.push(d);
  return out;
}

/** "Dec 4": a day as a chart label (the day itself, not an instant: no timezone shift). */
export function shortDay(day: string): string {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, d ?? 1)).toLocaleDateString(undefined, {
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });
}
