/** A run's, a span's or a request's status as a coloured badge (colours in globals.css). */
export function Status({ status }: { status: string }) {
  return <span className={`badge status-${status}`}>{status}</span>;
}
