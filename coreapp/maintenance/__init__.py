"""coreapp housekeeping: periodic message garbage collection (``gc``) and the free-disk-space guard (``disk``)."""
