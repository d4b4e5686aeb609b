"""The Center's web shell: create_app (web.app), app keys, middleware, request helpers, routes.

Route modules of the domains import `center.web.keys` and `center.web.request`; nothing here is
imported eagerly, so that importing one of those never builds the whole app.
"""

__all__: list[str] = []
