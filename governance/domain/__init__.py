"""The pure domain: no web framework, no ORM. Functions take snapshots and return decisions and events."""
