"""A running worker: the service shell, config books, model registry, scorer, jobs."""
