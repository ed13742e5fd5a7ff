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

const NoticeContext = createContext<(kind: NoticeKind, text: string) => void>(() => {});

export function useNotify(): (kind: NoticeKind, text: string) => void {
  return useContext(NoticeContext);
}

let next = 0;

export function NoticeProvider({ children }: { children: ReactNode }) {
  const [notices, setNotices] = useState<Notice[]>([]);
  const notify = useCallback((kind: NoticeKind, text: string) => {
    next += 1;
    const notice = { id: next, kind, text };
    setNotices((shown) => [notice, ...shown].slice(0, 3));
  }, []);
  const value = useMemo(() => notify, [notify]);
  return (
    <NoticeContext.Provider value={value}>
      <div className="notices" aria-live="polite">
        {notices.map((n) => (
          <p key={n.id} className={`notice ${n.kind}`} role={n.kind === "error" ? "alert" : "status"}>
            <span>{n.text}</span>
            <button
              type="button"
              className="link"
              aria-label="dismiss"
              onClick={() => setNotices((shown) => shown.filter((s) => s.id !== n.id))}
            >
              ×
            </button>
          </p>
        ))}
      </div>
      {children}
    </NoticeContext.Provider>
  );
}
