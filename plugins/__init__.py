"""Built-in xaibench plugins (installed as ``xaibench_plugins``)."""
