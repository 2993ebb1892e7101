"""Persistence kernel: engine, base classes, the tenant chokepoint, units of work."""
