"""Methods: how one seed is trained, one class per method in one module each, and the registry that holds them.

A new method is one class in one file (see the README, "Adding a method"): subclass `Method`, say its fine-tunes,
decorate it with `register`, and load the file with `--plugin` or the `mte.methods` entry-point group.
"""

from mte.methods.base_lt import imp
from mte.methods.method import GROUP_SIZE, Method, Param, Seed, Step
from mte.methods.registry import (
    PAPER,
    all_methods,
    declared_params,
    find,
    forget,
    get,
    label,
    names,
    order,
    register,
)

__all__ = ["GROUP_SIZE", "PAPER", "Method", "Param", "Seed", "Step", "all_methods", "declared_params", "find",
           "forget", "get", "imp", "label", "names", "order", "register"]
