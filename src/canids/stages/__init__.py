"""Training and evaluation of each pipeline stage (paths in, trained objects and metrics out)."""
