"""The calculator's handler, run inside :class:`gymrl.sandbox.Sandbox`: a restricted grammar
that builds sympy objects directly. The text is never given to ``eval``, ``exec``, ``sympify`` or
``parse_expr``: those accept Python, and a sandbox is a backstop, not a licence.

Grammar (``{}`` repeats, ``[]`` is optional)::

    equation   := expression [ ("=" | "==") expression ]
    expression := term { ("+" | "-") term }
    term       := unary { ("*" | "/" | "%") unary | power }   # a bare power: 2x, 3(x+1), (a)(b)
    unary      := ("+" | "-") unary | power
    power      := postfix [ ("^" | "**") unary ]             # right-associative: 2^3^2 = 2^9
    postfix    := primary { "!" }                             # factorial
    primary    := NUMBER | NAME | FUNCTION "(" expression { "," expression } ")"
                | "(" expression ")"

Numbers are exact (``0.1`` is ``1/10``, ``1e-3`` is ``1/1000``); ``%`` is the remainder;
``-2^2`` is ``-4``; implicit products bind like ``*`` (``1/2x`` is ``x/2``). Names: the
constants ``pi``, ``e`` (or ``E``) and ``I`` (the imaginary unit), the functions of
:data:`FUNCTIONS`, and otherwise variables (letters, digits, ``_``; a name of several letters
directly followed by ``(`` must be a function; :data:`RESERVED` names are refused). ``×``,
``÷``, ``·``, ``−`` and ``π`` are read as ``*``, ``/``, ``*``, ``-`` and ``pi``.

Output (the ``result`` string; an env compares answers with it, so it is stable):

- a value with no variables that is an integer: its digits (``1267650600228229401496703205376``);
  over :data:`MAX_SHOWN_DIGITS` digits: ``<first 20>...<last 20> (<n> digits)``;
- any other value with no variables: ``<exact> = <decimal>``, the exact form first, the decimal
  to 15 significant digits (``3/4 = 0.75``, ``2*sqrt(2) = 2.82842712474619``); the exact form
  alone when the decimals of a call take over :data:`DECIMAL_BUDGET_S` (``exp(3^60000)``);
- a value with variables: sympy's exact form (``2*x + 1``);
- an equation solved for a variable (``solve_for``, or its only variable): each solution as a
  value, in sympy's order, joined by ``"; "``: ``4``; ``-sqrt(2) = -1.4142135623731; sqrt(2) =
  1.4142135623731``; ``no solution``; ``true for every x``;
- an equation without variables: ``true`` or ``false``. An expression with ``solve_for`` is
  solved as ``expression = 0``.

Blow-ups are refused before they are computed: input over :data:`MAX_CHARS` characters,
nesting over :data:`MAX_DEPTH`, powers and binomials of over :data:`MAX_DIGITS` digits, roots
of numbers over :data:`MAX_ROOT_DIGITS` digits, factorials over :data:`MAX_FACTORIAL`. The
sandbox's time and memory limits are the backstop.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sympy

#: Longest input, in characters.
MAX_CHARS = 2000
#: Deepest nesting of parentheses, signs and powers.
MAX_DEPTH = 100
#: Largest exact number computed, in decimal digits (about 0.1 s to print at this size).
MAX_DIGITS = 100_000
#: Largest number whose roots are taken: sympy looks for perfect powers, superlinearly (a 2000-digit
#: square root takes 0.8 s, a 4000-digit one 30 s).
MAX_ROOT_DIGITS = 1000
#: Largest ``n`` whose ``n!`` is computed (20000! has 77,338 digits).
MAX_FACTORIAL = 20_000
#: Longest integer shown in full; longer ones show their ends and their length.
MAX_SHOWN_DIGITS = 1000
#: Longest result string; sympy's form of a huge symbolic expression is cut here.
MAX_RESULT_CHARS = 20_000
#: Longest variable name.
MAX_NAME = 32
#: Time the decimal approximations of one call may take (exp(3^60000) would take minutes); past
#: it values show their exact form alone.
DECIMAL_BUDGET_S = 0.5
#: Longest decimal shown (a complex one has two parts; exp(exp(exp(10))) has a huge exponent).
MAX_DECIMAL_CHARS = 80

if hasattr(sys, "set_int_max_str_digits"):  # the guards above bound what gets printed
    sys.set_int_max_str_digits(0)


class CalcError(ValueError):
    """Input the calculator refuses, with a message for the model."""


# -- tokens -------------------------------------------------------------------------------------

# ASCII only: \d and \s would also take other scripts' digits and spaces.
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z][A-Za-z0-9_]*)
  | (?P<op>\*\*|==|[-+*/^%()!,=])
""", re.VERBOSE)
_ALIASES = {"×": "*", "·": "*", "÷": "/", "−": "-", "π": "pi"}


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` triples; kinds are ``number``, ``name``, ``op`` and ``end``."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        alias = _ALIASES.get(text[pos])
        if alias is not None:
            tokens.append(("name" if alias == "pi" else "op", alias, pos))
            pos += 1
            continue
        match = _TOKEN.match(text, pos)
        if match is None:
            raise CalcError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group(), pos))
        pos = match.end()
    tokens.append(("end", "", len(text)))
    return tokens


# -- guards -------------------------------------------------------------------------------------

def _digits(value: sympy.Rational) -> float:
    """log10 of a rational's larger part: about its number of decimal digits."""
    return math.log10(max(abs(value.p), abs(value.q)))


def _check_size(value: Any) -> Any:
    """Refuse a result (or its direct terms) with more than MAX_DIGITS digits."""
    for part in (value, *getattr(value, "args", ())):
        if isinstance(part, sympy.Rational) and _digits(part) > MAX_DIGITS:
            raise CalcError(f"result too large: about {_digits(part):.0f} digits "
                            f"(limit {MAX_DIGITS})")
    return value


def power(base: Any, exponent: Any) -> Any:
    """``base ** exponent``, refused when the exact result would be too large to compute."""
    if isinstance(exponent, sympy.Rational) and abs(exponent) > 1 and base.is_number:
        # sympy computes rational powers of numbers eagerly, and combines powers of powers and
        # of products ((2*sqrt(3))^n = 2^n*3^(n/2)): bound by every rational inside the base.
        # A base with none (pi, I) stays symbolic.
        size = sum(_digits(r) for r in base.atoms(sympy.Rational))
        digits = float(abs(exponent)) * size
        if digits > MAX_DIGITS:
            raise CalcError(f"power too large: about {digits:.3g} digits (limit {MAX_DIGITS})")
    if isinstance(exponent, sympy.Rational) and not exponent.is_Integer:
        biggest = max((_digits(r) for r in base.atoms(sympy.Rational)), default=0.0)
        if biggest > MAX_ROOT_DIGITS:
            raise CalcError(f"root of a number with about {biggest:.0f} digits "
                            f"(limit {MAX_ROOT_DIGITS})")
    return _check_size(sympy.Pow(base, exponent))


def factorial(n: Any) -> Any:
    if isinstance(n, sympy.Integer) and n > MAX_FACTORIAL:
        raise CalcError(f"factorial argument too large: {n} (limit {MAX_FACTORIAL})")
    return sympy.factorial(n)


def binomial(n: Any, k: Any) -> Any:
    if isinstance(n, sympy.Integer) and isinstance(k, sympy.Integer) and 0 <= k <= n:
        digits = float(min(k, n - k)) * math.log10(max(int(n), 2))
        if digits > MAX_DIGITS:
            raise CalcError(f"binomial too large: about {digits:.3g} digits (limit {MAX_DIGITS})")
    return sympy.binomial(n, k)


def _fold(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def folded(*args: Any) -> Any:
        result = args[0]
        for arg in args[1:]:
            result = fn(result, arg)
        return result
    return folded


#: name -> (least, most arguments (None: any), builder).
FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "sqrt": (1, 1, lambda x: power(x, sympy.Rational(1, 2))),  # through power()'s guards
    "abs": (1, 1, sympy.Abs),
    "exp": (1, 1, sympy.exp),
    "log": (1, 2, sympy.log),  # log(x) is natural; log(x, b) is to base b
    "ln": (1, 1, sympy.log),
    "log10": (1, 1, lambda x: sympy.log(x, 10)),
    "log2": (1, 1, lambda x: sympy.log(x, 2)),
    "sin": (1, 1, sympy.sin),
    "cos": (1, 1, sympy.cos),
    "tan": (1, 1, sympy.tan),
    "asin": (1, 1, sympy.asin),
    "acos": (1, 1, sympy.acos),
    "atan": (1, 1, sympy.atan),
    "sinh": (1, 1, sympy.sinh),
    "cosh": (1, 1, sympy.cosh),
    "tanh": (1, 1, sympy.tanh),
    "factorial": (1, 1, factorial),
    "binomial": (2, 2, binomial),
    "gcd": (2, None, _fold(sympy.gcd)),
    "lcm": (2, None, _fold(sympy.lcm)),
    "floor": (1, 1, sympy.floor),
    "ceiling": (1, 1, sympy.ceiling),
    "ceil": (1, 1, sympy.ceiling),
    "min": (1, None, sympy.Min),
    "max": (1, None, sympy.Max),
    "mod": (2, 2, sympy.Mod),
}
CONSTANTS: dict[str, Any] = {"pi": sympy.pi, "e": sympy.E, "E": sympy.E, "I": sympy.I}
#: Names sympy prints for its own objects: as variables they would read as those objects.
RESERVED = frozenset({"oo", "zoo", "nan", "S", "N", "O", "Q"})


# -- parser -------------------------------------------------------------------------------------

def _number(text: str) -> sympy.Rational:
    """An exact rational from a decimal literal (``1.25e-3`` is ``1/800``)."""
    mantissa, _, exponent = text.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    power10 = (int(exponent) if exponent else 0) - len(fraction)
    if abs(power10) > MAX_DIGITS:
        raise CalcError(f"number too large: {text[:40]} (limit {MAX_DIGITS} digits)")
    value = sympy.Integer(int((whole or "0") + fraction))
    return _check_size(value * sympy.Integer(10) ** power10)


class Parser:
    """Recursive descent over :func:`tokenize`'s tokens; builds sympy values as it goes."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, op: str) -> None:
        kind, text, pos = self.take()
        if (kind, text) != ("op", op):
            raise CalcError(f"expected {op!r} at position {pos}, found {text or 'the end'!r}")

    def at(self, *ops: str) -> bool:
        kind, text, _ = self.peek()
        return kind == "op" and text in ops

    def equation(self) -> tuple[Any, Any | None]:
        """The left side, and the right side when there is an ``=``."""
        left = self.expression()
        right = None
        if self.at("=", "=="):
            self.take()
            right = self.expression()
        kind, text, pos = self.peek()
        if kind != "end":
            raise CalcError(f"unexpected {text!r} at position {pos}")
        return left, right

    def expression(self) -> Any:
        value = self.term()
        while self.at("+", "-"):
            op = self.take()[1]
            right = self.term()
            value = _check_size(value + right if op == "+" else value - right)
        return value

    def term(self) -> Any:
        value = self.unary()
        while True:
            kind, text, _ = self.peek()
            if kind == "op" and text in ("*", "/", "%"):
                self.take()
                right = self.unary()
                if text == "*":
                    value = value * right
                elif text == "/":
                    value = value / right
                else:
                    value = sympy.Mod(value, right)
            elif kind == "name" or (kind == "op" and text == "("):  # implicit product: 2x
                value = value * self.power()
            else:
                return value
            value = _check_size(value)

    def unary(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalcError(f"nested more than {MAX_DEPTH} levels deep")
        try:
            if self.at("-"):
                self.take()
                return -self.unary()
            if self.at("+"):
                self.take()
                return self.unary()
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Any:
        base = self.postfix()
        if self.at("^", "**"):
            self.take()
            return power(base, self.unary())
        return base

    def postfix(self) -> Any:
        value = self.primary()
        while self.at("!"):
            self.take()
            value = factorial(value)
        return value

    def primary(self) -> Any:
        kind, text, pos = self.take()
        if kind == "number":
            return _number(text)
        if kind == "op" and text == "(":
            value = self.expression()  # its unary() counts the depth
            self.expect(")")
            return value
        if kind == "name":
            return self.name(text, pos)
        raise CalcError(f"expected a number, a name or '(' at position {pos}, "
                        f"found {text or 'the end'!r}")

    def name(self, text: str, pos: int) -> Any:
        called = self.at("(")
        if text in FUNCTIONS:
            if not called:
                raise CalcError(f"{text} is a function: write {text}(...)")
            return self.call(text)
        if text in CONSTANTS:
            return CONSTANTS[text]
        if text in RESERVED:
            raise CalcError(f"{text!r} is reserved; use another variable name")
        if called and len(text) > 1:
            known = ", ".join(FUNCTIONS)
            raise CalcError(f"unknown function {text!r} at position {pos}; known: {known}")
        if len(text) > MAX_NAME:
            raise CalcError(f"name longer than {MAX_NAME} characters at position {pos}")
        return sympy.Symbol(text)

    def call(self, name: str) -> Any:
        least, most, build = FUNCTIONS[name]
        self.expect("(")
        args = [self.expression()]
        while self.at(","):
            self.take()
            args.append(self.expression())
        self.expect(")")
        if len(args) < least or (most is not None and len(args) > most):
            wanted = f"{least}" if least == most else f"{least} or more" if most is None else \
                f"{least} to {most}"
            raise CalcError(f"{name} takes {wanted} arguments, got {len(args)}")
        return _check_size(build(*args))


# -- output -------------------------------------------------------------------------------------

def _integer_text(n: int) -> str:
    text = str(abs(n))
    if len(text) <= MAX_SHOWN_DIGITS:
        return str(n)
    sign = "-" if n < 0 else ""
    return f"{sign}{text[:20]}...{text[-20:]} ({len(text)} digits)"


class _OutOfTime(BaseException):
    """Raised by SIGALRM; a BaseException so that sympy's ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`_OutOfTime` in the block after ``seconds`` (main thread only; elsewhere
    the sandbox's time limit is the only bound)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _decimal(value: Any, deadline: float) -> str | None:
    """``value`` to 15 significant digits, trailing zeros dropped; ``None`` if not a number, or
    not computed by ``deadline`` (``time.monotonic()``)."""
    budget = deadline - time.monotonic()
    if budget <= 0:
        return None
    try:
        with _time_budget(budget):
            approx = sympy.N(value, 15)
            text = str(approx)  # printing a float with a huge exponent is slow too
    except (TypeError, ValueError, ArithmeticError, _OutOfTime):
        return None
    if len(text) > MAX_DECIMAL_CHARS or not approx.is_number:
        return None
    if not isinstance(approx, sympy.Float):
        return text
    mantissa, e, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return mantissa + (f"e{exponent}" if e else "")


def _exact_text(value: Any) -> str:
    if isinstance(value, sympy.Rational) and not value.is_Integer:
        return f"{_integer_text(value.p)}/{_integer_text(value.q)}"
    if isinstance(value, sympy.Integer):
        return _integer_text(int(value))
    text = sympy.sstr(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f" ... [{len(text)} characters]"
    return text


def format_value(value: Any, deadline: float) -> tuple[str, str, str | None]:
    """``(shown text, exact text, decimal text or None)`` of a value (see the module doc)."""
    if value.has(sympy.zoo, sympy.nan):
        raise CalcError("undefined (a division by zero, or an undefined operation)")
    exact = _exact_text(value)
    if value.free_symbols or isinstance(value, sympy.Integer):
        return exact, exact, None
    decimal = _decimal(value, deadline)
    if decimal is None or decimal == exact:
        return exact, exact, decimal
    return f"{exact} = {decimal}", exact, decimal


def solve(left: Any, right: Any, variable: str | None) -> dict[str, Any]:
    """Solve ``left = right`` for ``variable`` (or for its only variable)."""
    difference = left - right
    if difference.has(sympy.zoo, sympy.nan):
        raise CalcError("undefined (a division by zero, or an undefined operation)")
    symbols = sorted(difference.free_symbols, key=str)
    if variable is None and not symbols:
        truth = difference.equals(0)  # simplifies, then tests numerically
        if truth is None:
            raise CalcError("cannot decide whether the two sides are equal")
        return {"result": "true" if truth else "false", "truth": bool(truth)}
    if variable is None:
        if len(symbols) > 1:
            names = ", ".join(map(str, symbols))
            raise CalcError(f"several variables ({names}): say which to solve for (solve_for)")
        symbol = symbols[0]
    else:
        symbol = sympy.Symbol(variable)
        if symbol not in difference.free_symbols and symbols:
            raise CalcError(f"{variable} does not appear in the equation")
    solutions = [] if difference == 0 else sympy.solve(sympy.Eq(left, right), symbol)
    if not solutions:
        if difference.equals(0):  # an identity: solve() answers [] for those too
            return {"result": f"true for every {symbol}", "solutions": None}
        return {"result": "no solution", "solutions": []}
    deadline = time.monotonic() + DECIMAL_BUDGET_S
    shown = [format_value(s, deadline) if isinstance(s, sympy.Basic) else (str(s),) * 2 + (None,)
             for s in solutions]
    return {"result": "; ".join(text for text, _, _ in shown),
            "solutions": [exact for _, exact, _ in shown],
            "decimals": [decimal for _, _, decimal in shown]}


def calculate(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``calculate`` handler: ``{"expression": str, "solve_for": str | None}`` in,
    ``{"result": str, ...}`` or ``{"error": str}`` out."""
    expression = payload.get("expression")
    variable = payload.get("solve_for")
    if not isinstance(expression, str):
        return {"error": "expression must be a string"}
    if variable is not None and not (isinstance(variable, str)
                                     and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", variable)):
        return {"error": "solve_for must be a variable name (letters, digits, _)"}
    if len(expression) > MAX_CHARS:
        return {"error": f"expression longer than {MAX_CHARS} characters"}
    if not expression.strip():
        return {"error": "empty expression"}
    if variable is not None and (variable in FUNCTIONS or variable in CONSTANTS):
        return {"error": f"{variable!r} is a function or a constant, not a variable"}
    try:
        left, right = Parser(expression).equation()
        if right is not None or variable is not None:
            return solve(left, sympy.Integer(0) if right is None else right, variable)
        shown, exact, decimal = format_value(left, time.monotonic() + DECIMAL_BUDGET_S)
        return {"result": shown, "exact": exact, "decimal": decimal}
    except CalcError as e:
        return {"error": str(e)}
    except NotImplementedError as e:  # sympy.solve() on what it has no method for
        reason = str(e).strip().splitlines()[-1:] or ["no method"]
        return {"error": f"cannot solve this exactly: {reason[0]}"[:300]}
    except ZeroDivisionError:  # sympy answers zoo for 1/0, but raises for Mod(1, 0)
        return {"error": "division by zero"}
    except RecursionError:
        return {"error": "expression too deeply nested"}


HANDLERS = {"calculate": calculate}
#: Run once by the sandbox worker before it forks: sympy imports its solvers and printers
#: lazily, and every child would otherwise import them again.
WARMUP = [("calculate", {"expression": "1/3 + sqrt(8)*pi - 2^10 + sin(1)"}),
          ("calculate", {"expression": "x^2 - 2 = 0", "solve_for": "x"})]
#: Run by each child before its request, so that a typical call's copy-on-write faults (~450
#: pages here, ~3 ms) happen before the call: integer arithmetic with a fraction, as the tools
#: env asks. A call after it takes ~8 faults and ~0.5 ms. Not WARMUP's first: its decimals
#: (sqrt, pi, sin) took ~5 ms in each child, and left a typical call slower (~50 faults, 0.7
#: ms). Not the solve: ~30 ms in each child, for calls that are rarer.
PREFAULT = [("calculate", {"expression": "12*34 - 5/7 + 2^3"})]
#: One confined child answers up to this many calls in a row (gymrl.sandbox_worker, REUSE):
#: the input is data to the grammar above, never code, so a call cannot change what a later
#: one computes. What a call leaves behind is sympy's caches (which give the same answers),
#: and the SIGALRM timer of the decimal budget, put back in a ``finally``; a call that ends in
#: an error retires its child anyway. A child per call cost ~10 ms of CPU and, with a batch's
#: calls back to back, ~6-9 ms a call: over the tools env's 5 ms target.
REUSE = 64
