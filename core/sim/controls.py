"""HTTP controls for the simulated market's real-market events: `POST /_sim/<name>` with a JSON body
calls `SimExchange.<name>(...)`, so a test whose market runs in another process (the kill -9 tests'
`tests/harness/daemon_child.py`) drives the same events as an in-process test.

    POST /_sim/set_trading_blocked {"blocked": true}
    POST /_sim/set_bad_print {"symbol": "SPY", "session": "2025-03-10", "factor": 0.1}
    POST /_sim/clear_bad_prints {}
    POST /_sim/set_asset {"symbol": "AAPL", "tradable": false}
    POST /_sim/add_split {"symbol": "NVDA", "ex_date": "2025-03-12", "ratio": 10}
    POST /_sim/add_dividend {"symbol": "JPM", "ex_date": "2025-03-12", "amount": 1.5}
    POST /_sim/deposit {"amount": 5000}      POST /_sim/withdraw {"amount": 2500}
    POST /_sim/add_closure {"date": "2025-03-12"}
    POST /_sim/trade_externally {"symbol": "AAPL", "side": "buy", "qty": 5}

Answers: 200 {"ok": true, ...}; 400 for a body that is not a JSON object or a parameter of the wrong
type; 422 when the exchange refuses the values (its ValueError's message); 404 for an unknown name.
The list of controls and their parameters is `CONTROLS`; docs/simulated-market.md describes each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from core.sim.exchange import SimExchange


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "str", "date", "number", "bool"
    required: bool = True


@dataclass(frozen=True)
class Control:
    params: tuple[Param, ...]
    call: Callable[[SimExchange, dict[str, Any]], Any]


def _action_json(action: Any) -> dict[str, Any]:
    return {"id": action.id, "symbol": action.symbol, "ex_date": action.ex_date.isoformat()}


def _set_asset(ex: SimExchange, a: dict[str, Any]) -> Any:
    flags = {k: v for k, v in a.items() if k != "symbol"}
    return ex.set_asset(a["symbol"], **flags).to_json()


CONTROLS: dict[str, Control] = {
    "set_trading_blocked": Control(
        (Param("blocked", "bool"),), lambda ex, a: ex.set_trading_blocked(a["blocked"])
    ),
    "set_bad_print": Control(
        (Param("symbol", "str"), Param("session", "date"), Param("factor", "number")),
        lambda ex, a: ex.set_bad_print(a["symbol"], a["session"], a["factor"]),
    ),
    "clear_bad_prints": Control((), lambda ex, a: ex.clear_bad_prints()),
    "add_split": Control(
        (Param("symbol", "str"), Param("ex_date", "date"), Param("ratio", "number")),
        lambda ex, a: _action_json(ex.add_split(a["symbol"], a["ex_date"], a["ratio"])),
    ),
    "add_dividend": Control(
        (Param("symbol", "str"), Param("ex_date", "date"), Param("amount", "number")),
        lambda ex, a: _action_json(ex.add_dividend(a["symbol"], a["ex_date"], a["amount"])),
    ),
    "deposit": Control((Param("amount", "number"),), lambda ex, a: ex.deposit(a["amount"])),
    "withdraw": Control((Param("amount", "number"),), lambda ex, a: ex.withdraw(a["amount"])),
    "add_closure": Control((Param("date", "date"),), lambda ex, a: ex.add_closure(a["date"])),
    "trade_externally": Control(
        (Param("symbol", "str"), Param("side", "str"), Param("qty", "number")),
        lambda ex, a: ex.trade_externally(a["symbol"], a["side"], a["qty"]),
    ),
    "close_position_externally": Control(
        (Param("symbol", "str"),), lambda ex, a: ex.close_position_externally(a["symbol"])
    ),
    "set_asset": Control(
        (
            Param("symbol", "str"),
            Param("tradable", "bool", False),
            Param("fractionable", "bool", False),
            Param("shortable", "bool", False),
            Param("status", "str", False),
        ),
        _set_asset,
    ),
}


def _value(param: Param, raw: Any) -> Any:
    if param.kind == "str" and isinstance(raw, str) and raw:
        return raw
    if param.kind == "bool" and isinstance(raw, bool):
        return raw
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if param.kind == "number" and number and math.isfinite(raw):
        return float(raw)
    if param.kind == "date" and isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    expected = {"str": "a non-empty string", "bool": "true or false", "number": "a finite number",
                "date": "a date YYYY-MM-DD"}[param.kind]
    raise ControlError(400, f"{param.name} must be {expected}, not {raw!r}")


def run_control(exchange: SimExchange, name: str, raw_body: bytes) -> dict[str, Any]:
    """Parse the body against the control's parameters and call it; raises ControlError."""
    control = CONTROLS.get(name)
    if control is None:
        raise ControlError(404, f"no control endpoint POST /_sim/{name}; known: {', '.join(sorted(CONTROLS))}")
    try:
        body = json.loads(raw_body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ControlError(400, "expected a JSON object body")
    known = {p.name for p in control.params}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(400, f"unknown parameter(s) {', '.join(unknown)}; expected: {', '.join(sorted(known))}")
    args: dict[str, Any] = {}
    for param in control.params:
        if param.name in body:
            args[param.name] = _value(param, body[param.name])
        elif param.required:
            raise ControlError(400, f"missing parameter {param.name}")
    try:
        result = control.call(exchange, args)
    except KeyError as exc:  # SimExchange's unknown or removed symbol
        raise ControlError(422, f"unknown symbol {exc.args[0]!r}") from None
    except ValueError as exc:
        raise ControlError(422, str(exc)) from None
    out: dict[str, Any] = {"ok": True}
    if result is not None:
        out["result"] = result
    return out
