"""Built-in executors: where a run's jobs execute (one plugin file per engine)."""
