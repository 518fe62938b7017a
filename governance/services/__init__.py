"""Use cases. Each public function opens and owns one transaction (governance/db/engine.py)."""
