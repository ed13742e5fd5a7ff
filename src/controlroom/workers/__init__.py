"""The worker runtime: followers of the run log and periodic jobs, run in the background.

- A **log consumer** (``consumer.Consumer``) reads the run log in sequence order, a batch at a time,
  after a position of its own stored in ``consumer_positions`` under its name. The read model's
  projector is the first (``read_model``); post-run evals and notifications will be others.
  Resetting one consumer (``controlroom rebuild`` resets the read model) never moves another.
- A **periodic job** (``jobs.PeriodicJob``) runs every so often: the abandoned-run sweeper and
  budget hold expiry today.
- The **runtime** (``runtime.Runtime``) runs them all in one thread: ``serve``'s child process
  (SQLite, and PostgreSQL by default), or any number of ``controlroom worker`` processes on
  PostgreSQL, where each consumer and each job runs in one process at a time (advisory locks named
  after them). Ingest in the same process wakes it at once; otherwise it polls.
"""
