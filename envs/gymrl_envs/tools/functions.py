"""Simulated functions for BFCL-style function-calling tasks: a schema, and a seeded answer.

Each function is what an API would offer a model (name, description, JSON-schema parameters)
plus a deterministic simulation of its result, so a task can ask for a value that only the
right call returns. Results depend only on the arguments (a stable hash), never on global
state, so every episode, seed and machine sees the same world.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _digits(*parts: Any, lo: int = 0, hi: int = 100) -> int:
    """A stable integer in [lo, hi] from the arguments (sha256, not Python's salted hash)."""
    key = "|".join(str(p).strip().lower() for p in parts).encode()
    return lo + int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % (hi - lo + 1)


@dataclass(frozen=True)
class Function:
    """One callable the model may be offered in a function-calling task."""

    name: str
    description: str
    parameters: dict[str, Any]
    simulate: Callable[[dict[str, Any]], str]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "parameters": self.parameters}


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


_STR = {"type": "string", "minLength": 1, "maxLength": 200}
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88, "CAD": 1.36}


def _weather(a: dict[str, Any]) -> str:
    celsius = _digits("weather", a["city"], lo=-5, hi=35)
    value = celsius if a.get("unit", "celsius") == "celsius" else round(celsius * 9 / 5 + 32)
    sky = ("sunny", "cloudy", "rainy", "windy")[_digits("sky", a["city"], hi=3)]
    return f"{a['city']}: {value} degrees {a.get('unit', 'celsius')}, {sky}"


def _convert(a: dict[str, Any]) -> str:
    src, dst = a["from_currency"].upper(), a["to_currency"].upper()
    if src not in RATES or dst not in RATES:
        raise ValueError(f"unsupported currency; supported: {', '.join(sorted(RATES))}")
    value = round(float(a["amount"]) / RATES[src] * RATES[dst], 2)
    return f"{a['amount']} {src} = {value:.2f} {dst}"


def _stock(a: dict[str, Any]) -> str:
    return f"{a['symbol'].upper()}: {_digits('stock', a['symbol'].upper(), lo=12, hi=950)} USD"


def _distance(a: dict[str, Any]) -> str:
    km = _digits("distance", *sorted([a["origin"].lower(), a["destination"].lower()]),
                 lo=40, hi=2400)
    value = km if a.get("unit", "km") == "km" else round(km * 0.621371)
    return f"{a['origin']} to {a['destination']}: {value} {a.get('unit', 'km')}"


def _population(a: dict[str, Any]) -> str:
    return f"{a['city']}: population {_digits('population', a['city'], lo=20, hi=9000) * 1000}"


def _book(a: dict[str, Any]) -> str:
    code = _digits("booking", a["restaurant"], a["people"], a["time"], lo=1000, hi=9999)
    return f"booked {a['restaurant']} for {a['people']} at {a['time']}; confirmation {code}"


def _alarm(a: dict[str, Any]) -> str:
    alarm_id = _digits("alarm", a["time"], lo=100, hi=999)
    return f"alarm set for {a['time']} ({a.get('label', 'alarm')}); id {alarm_id}"


def _timezone(a: dict[str, Any]) -> str:
    return f"{a['city']}: UTC{_digits('tz', a['city'], lo=-11, hi=12):+d}"


FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("get_weather", "Current weather in a city.",
             _obj({"city": _STR, "unit": {"enum": ["celsius", "fahrenheit"]}}, ["city"]),
             _weather),
    Function("convert_currency", "Convert an amount of money between currencies.",
             _obj({"amount": {"type": "number", "minimum": 0},
                   "from_currency": {"enum": sorted(RATES)},
                   "to_currency": {"enum": sorted(RATES)}},
                  ["amount", "from_currency", "to_currency"]), _convert),
    Function("get_stock_price", "Latest price of a stock, by ticker symbol.",
             _obj({"symbol": {"type": "string", "pattern": "^[A-Za-z]{1,5}$"}}, ["symbol"]),
             _stock),
    Function("get_distance", "Road distance between two cities.",
             _obj({"origin": _STR, "destination": _STR, "unit": {"enum": ["km", "miles"]}},
                  ["origin", "destination"]), _distance),
    Function("get_population", "Population of a city.", _obj({"city": _STR}, ["city"]),
             _population),
    Function("book_table", "Book a restaurant table.",
             _obj({"restaurant": _STR, "people": {"type": "integer", "minimum": 1,
                                                  "maximum": 20},
                   "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}},
                  ["restaurant", "people", "time"]), _book),
    Function("set_alarm", "Set an alarm.",
             _obj({"time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                   "label": _STR}, ["time"]), _alarm),
    Function("get_timezone", "UTC offset of a city.", _obj({"city": _STR}, ["city"]),
             _timezone),
)}
