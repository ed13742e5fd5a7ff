"""The daily cost cap: budgets, reservations before a paid call, settlement after it."""
