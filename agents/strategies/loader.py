"""Find, check and build the selected strategy.

A reference is one of

- a built-in name: `zscore` (the default), `rsi2`;
- `package.module:ClassName`: a class in an importable module;
- `path/to/file.py:ClassName`: a class in a Python file anywhere (relative paths from the working
  directory), loaded once per process.

Parameters: the strategy's `Params` defaults, then the settings it names in `defaults_from_settings`,
then STRATEGY_PARAMS, then --strategy-param (both already merged into `AppConfig.strategy_params` by
the CLI), validated by the strategy's own model. Every problem is one `StrategyError` line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.strategies.base import RiskExit, Strategy
from agents.strategies.errors import StrategyError
from agents.strategies.rsi2 import Rsi2Strategy
from agents.strategies.zscore import ZScoreStrategy
from config.settings import AppConfig
from core.domain.models import SignalReason

BUILTIN_STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (ZScoreStrategy, Rsi2Strategy)}
REFERENCE_FORMS = "a built-in name ({}), package.module:ClassName or path/to/file.py:ClassName"


def strategy_from_config(config: AppConfig) -> Strategy:
    return load_strategy(config.strategy, config.strategy_params, config)


def load_strategy(reference: str, params: Mapping[str, Any] | None = None,
                  config: AppConfig | None = None) -> Strategy:
    cls = strategy_class(reference)
    values: dict[str, Any] = {}
    if config is not None:
        values = {param: getattr(config, setting) for param, setting in cls.defaults_from_settings.items()}
    values.update(params or {})
    try:
        parameters = cls.Params.model_validate(values)
    except ValidationError as exc:
        raise StrategyError(f"strategy {cls.name!r}: {_describe(exc, values, cls.Params)}") from None
    strategy = cls(parameters)
    needed = strategy.bars_needed()
    if not isinstance(needed, int) or isinstance(needed, bool) or needed < 1:
        raise StrategyError(f"strategy {cls.name!r}: bars_needed() returned {needed!r}: expected a whole number >= 1")
    return strategy


def strategy_class(reference: str) -> type[Strategy]:
    reference = reference.strip()
    if ":" not in reference:
        cls = BUILTIN_STRATEGIES.get(reference)
        if cls is None:
            raise StrategyError(f"strategy {reference!r} is unknown: expected "
                                + REFERENCE_FORMS.format(", ".join(BUILTIN_STRATEGIES)))
        return cls
    target, _, class_name = reference.rpartition(":")
    module = _module_of_file(reference, target) if _is_file(target) else _module(reference, target)
    found = getattr(module, class_name, None)
    if found is None:
        defined = sorted(name for name, obj in vars(module).items()
                         if inspect.isclass(obj) and issubclass(obj, Strategy) and obj is not Strategy)
        raise StrategyError(f"strategy {reference!r}: {target} defines no {class_name!r}"
                            + (f" (its strategies: {', '.join(defined)})" if defined else ""))
    problem = interface_problem(found)
    if problem:
        raise StrategyError(f"strategy {reference!r}: {class_name} does not implement the strategy interface: "
                            f"{problem}")
    return found  # type: ignore[no-any-return]


def interface_problem(cls: object) -> str | None:
    """What keeps `cls` from being a usable strategy class, or None."""
    if not inspect.isclass(cls):
        return f"it is a {type(cls).__name__}, not a class"
    if not issubclass(cls, Strategy):
        return "expected a subclass of agents.strategies.Strategy"
    if inspect.isabstract(cls):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        return f"it does not define {', '.join(missing)}"
    if not isinstance(cls.name, str) or not cls.name.strip():
        return "its `name` is empty: expected a short name such as 'my_strategy'"
    if not (inspect.isclass(cls.Params) and issubclass(cls.Params, BaseModel)):
        return "its `Params` is not a pydantic model: expected a subclass of agents.strategies.Parameters"
    if not (isinstance(cls.entry_reason, SignalReason) and not cls.entry_reason.is_exit):
        return f"its entry_reason {cls.entry_reason!r} is not an entry SignalReason"
    if not (isinstance(cls.exit_reason, SignalReason) and cls.exit_reason.is_exit):
        return f"its exit_reason {cls.exit_reason!r} is not an exit SignalReason"
    if not all(isinstance(e, RiskExit) for e in cls.own_exits):
        return f"its own_exits {set(cls.own_exits)!r} are not all RiskExit members"
    return None


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _module(reference: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise StrategyError(f"strategy {reference!r}: cannot import {name!r} ({exc}): expected "
                            + REFERENCE_FORMS.format(", ".join(BUILTIN_STRATEGIES))) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing: say how, in one line
        raise StrategyError(f"strategy {reference!r}: importing {name} failed: {type(exc).__name__}: {exc}") from None


def _module_of_file(reference: str, target: str) -> ModuleType:
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise StrategyError(f"strategy {reference!r}: {path} is not a file: expected path/to/file.py:ClassName")
    # One module per file and process: loading the same file twice gives the same classes.
    module_name = f"trading_strategy_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StrategyError(f"strategy {reference!r}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the file's annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed while importing: say how, in one line
        del sys.modules[module_name]
        raise StrategyError(f"strategy {reference!r}: loading {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _describe(exc: ValidationError, values: Mapping[str, Any], model: type[BaseModel]) -> str:
    known = ", ".join(model.model_fields)
    problems = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        kind = str(error.get("type"))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        ctx = error.get("ctx") or {}
        if not loc:
            problems.append(message)
            continue
        key = str(loc[0])
        if kind == "extra_forbidden":
            problems.append(f"no parameter {key!r} (its parameters: {known})")
            continue
        bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        if kind in bounds:
            message = f"expected a number {bounds[kind]} {next(iter(ctx.values()), '?')}"
        elif kind.startswith(("float", "int")) or kind == "finite_number":
            message = "expected a whole number" if kind.startswith("int") else "expected a finite number"
        elif kind.startswith("bool"):
            message = "expected true or false"
        problems.append(f"parameter {key}={values.get(key)!r}: {message}")
    return "; ".join(problems)


def describe_builtin(cls: type[Strategy]) -> list[tuple[str, str, str]]:
    """(parameter, default, description) for `trading-daemon strategies`."""
    rows = []
    for key, field in cls.Params.model_fields.items():
        setting = cls.defaults_from_settings.get(key)
        note = f" (default from {setting.upper()})" if setting else ""
        rows.append((key, repr(field.default), (field.description or "") + note))
    return rows
