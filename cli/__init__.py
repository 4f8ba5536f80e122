"""ssltheory.cli: the ``ssltheory`` command (Typer). Commands parse flags, call one function, print."""
