"""Imports every metric family so that each registers its functions (one function per metric)."""

from unlearning.verification import cost, extraction, forgetting, format_shift, privacy, robustness, utility

__all__ = ["cost", "extraction", "forgetting", "format_shift", "privacy", "robustness", "utility"]
