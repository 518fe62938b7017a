"""The Flower app project directory (its pyproject.toml is what the FAB is built from); no code."""
