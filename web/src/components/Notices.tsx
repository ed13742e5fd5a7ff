"use client";
/**
 * Messages about what just happened ("you approved…", "someone else decided first…"), shown above
 * the page. They outlive the element that caused them: a decided request leaves the pending list
 * at once, and what became of the decision must still be said.
 */
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";

export type NoticeKind = "done" | "error";
interface Notice {
  id: number;
  kind: NoticeKind;
  text: string;
}

interface Notices {
  shown: Notice[];
  notify: (kind: NoticeKind, text: string) => void;
  dismiss: (id: number) => void;
}

const NoticeContext = createContext<Notices>({ shown: [], notify: () => {}, dismiss: () => {} });

export function useNotify(): (kind: NoticeKind, text: string) => void {
  return useContext(NoticeContext).notify;
}

let next = 0;

export function NoticeProvider({ children }: { children: ReactNode }) {
  const [shown, setShown] = useState<Notice[]>([]);
  const notify = useCallback((kind: NoticeKind, text: string) => {
    next += 1;
    const notice = { id: next, kind, text };
    setShown((before) => [notice, ...before].slice(0, 3));
  }, []);
  const dismiss = useCallback((id: number) => setShown((before) => before.filter((n) => n.id !== id)), []);
  const value = useMemo(() => ({ shown, notify, dismiss }), [shown, notify, dismiss]);
  return <NoticeContext.Provider value={value}>{children}</NoticeContext.Provider>;
}

/** Where the notices show: at the top of the page's content, kept in view while scrolling. */
export function NoticeArea() {
  const { shown, dismiss } = useContext(NoticeContext);
  return (
    <div className="notices" aria-live="polite">
      {shown.map((n) => (
        <p key={n.id} className={`notice ${n.kind}`} role={n.kind === "error" ? "alert" : "status"}>
          <span>{n.text}</span>
          <button type="button" className="link" aria-label="dismiss" onClick={() => dismiss(n.id)}>
            ×
          </button>
        </p>
      ))}
    </div>
  );
}
