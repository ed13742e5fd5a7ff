import { formatTime, fromNow } from "@/lib/time";

/** A moment in the viewer's timezone, with how long ago or how soon. */
export function Time({ value, now }: { value: string; now: number }) {
  return (
    <time dateTime={value} title={value}>
      {formatTime(value)} <span className="quiet">({fromNow(value, now)})</span>
    </time>
  );
}
