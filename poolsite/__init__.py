"""poolsite: the Django project that operates the pool_core engine."""
