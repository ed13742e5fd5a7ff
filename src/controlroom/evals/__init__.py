"""Evals over recorded runs: evaluators (plain functions over a read-only run snapshot), the
built-ins, the jobs that run them post-run, on a schedule or as a backfill, and the regressions
found in their scores. Evaluators read recorded runs only: they never invoke the agent."""
