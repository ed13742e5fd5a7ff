"""Human approvals of sensitive actions: requests bound to their arguments, decided only by a
person with the right role, claimed once by the agent that asked. The server is the only
authority; see ``requests`` for the states and ``policies`` for who may decide what."""
