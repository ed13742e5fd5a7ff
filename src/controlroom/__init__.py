"""controlroom: the control layer for AI agents in production."""

__version__ = "0.1.0"
