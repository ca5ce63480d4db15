"""Multiconnect and high availability: leases on the database, roles and shards built on them (DESIGN §12)."""
