"""Paths and URLs, atomic files, the prepared-record format (§2's squares), event logs,
messages and the process environment: the bottom layer, importing no JAX."""
