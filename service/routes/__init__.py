"""HTTP routes, one module per feature."""
