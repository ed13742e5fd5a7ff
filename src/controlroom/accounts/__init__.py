"""Projects, their API keys and (to come) the people who use them, with their roles."""
