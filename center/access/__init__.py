"""Who calls the Center: users, roles, permissions, tokens, node enrolment, nonces, audit."""

__all__: list[str] = []
