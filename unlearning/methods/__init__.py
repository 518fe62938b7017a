"""Unlearning methods, one per module, registered by name (see base.py for the plug-in interface).

``gradient_ascent``, ``ewc``, ``gradient_ascent_ewc`` (the default), ``retrain`` and ``federaser``; their names and settings'
schema are declared in :mod:`unlearning.contract`.
"""

from unlearning.contract import DEFAULT_METHOD
from unlearning.methods import ewc, federaser, gradient_ascent, gradient_ascent_ewc, retrain
from unlearning.methods.base import METHODS, MethodContext, UnlearningMethod, get_method, register

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "MethodContext",
    "UnlearningMethod",
    "ewc",
    "federaser",
    "get_method",
    "gradient_ascent",
    "gradient_ascent_ewc",
    "register",
    "retrain",
]
