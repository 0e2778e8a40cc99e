"""The guard/effect shim: boolean and arithmetic helpers that work on plain Python values
and on Z3 terms alike (DESIGN.md principle 2).

Every guard, effect and invariant of the spec is written with these helpers instead of
Python's `and`/`or`/`not`/`x if c else y`, which cannot build Z3 terms. Called with plain
values they compute the answer; called with any Z3 term among their arguments they build
the Z3 expression. So one function is the guard the monitor runs and the formula Z3 proves.
"""

from __future__ import annotations

from typing import Any

import z3

Value = Any  # bool | int | z3.ExprRef


def is_symbolic(*values: Value) -> bool:
    """True when any argument is a Z3 term, so the result must be one too."""
    for value in values:  # a plain loop: this runs on every guard of every concrete step
        if isinstance(value, z3.ExprRef):
            return True
    return False


def And(*conditions: Value) -> Value:  # noqa: N802 - reads like the logic it builds
    if is_symbolic(*conditions):
        return z3.And(*conditions)
    return all(bool(condition) for condition in conditions)


def Or(*conditions: Value) -> Value:  # noqa: N802
    if is_symbolic(*conditions):
        return z3.Or(*conditions)
    return any(bool(condition) for condition in conditions)


def Not(condition: Value) -> Value:  # noqa: N802
    if is_symbolic(condition):
        return z3.Not(condition)
    return not condition


def Implies(premise: Value, conclusion: Value) -> Value:  # noqa: N802
    if is_symbolic(premise, conclusion):
        return z3.Implies(premise, conclusion)
    return (not premise) or bool(conclusion)


def If(condition: Value, then: Value, otherwise: Value) -> Value:  # noqa: N802
    if is_symbolic(condition, then, otherwise):
        return z3.If(condition, then, otherwise)
    return then if condition else otherwise


def Min(left: Value, right: Value) -> Value:  # noqa: N802
    return If(left <= right, left, right)


def Max(left: Value, right: Value) -> Value:  # noqa: N802
    return If(left >= right, left, right)


def Sum(*terms: Value) -> Value:  # noqa: N802
    total: Value = 0
    for term in terms:
        total = total + term
    return total


def Count(*conditions: Value) -> Value:  # noqa: N802
    """How many of the conditions hold (an int, or a Z3 Int term)."""
    return Sum(*(If(condition, 1, 0) for condition in conditions))


def In(value: Value, *choices: Value) -> Value:  # noqa: N802
    """value equals one of the choices."""
    return Or(*(value == choice for choice in choices)) if choices else False


def BoolVal(value: Value) -> Value:  # noqa: N802
    """Normalise a Python truthy value to bool; leave Z3 terms alone."""
    return value if is_symbolic(value) else bool(value)


TRUE = True
FALSE = False
