"""Telling people: outgoing webhooks for approval requests, decisions and expiries, signed with
HMAC-SHA256, retried with backoff, every attempt logged. Deliveries run in the worker, never on
the agent's or the decider's request."""
