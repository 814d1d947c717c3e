"""The bad-input corpus (issue 7, section 2): every case under tests/corpus/ gets a clear error or a
reasoned skip, none crashes the daemon, and none leads to an order sized from the bad value.

Each group folder holds small input files and an `index.json` listing the cases:
`{"id", "group", "description", "input", "expect"}` (or `"generate"` instead of `"input"` for inputs
made at test time: a > 1 MB file, a directory, a FIFO) where `expect.kind` is
- "error": one project exception of type `expect.error` whose message holds every `expect.match`;
- "skip": the DataAgent excludes `expect.symbols` ("*": all) with a reason holding `expect.match`;
- "valid": a positive control that must be accepted (`expect.check`, `expect.focus`, `expect.result`).
`expect.orders` (market data) and `expect.orchestrator` (API errors) give the broker's orders per
symbol after one full orchestrator iteration with the same bad input; `expect.iteration` fields of
the recorded iteration. See tests/corpus/README.md.

Market-data and API cases run through the real alpaca-py SDK against the simulated market on
127.0.0.1 (the sim's "transform" and "body" faults shape the answers). Gateway- and DataAgent-level
checks share one market per module; a full orchestrator iteration runs on a fresh market per case,
because an iteration places real orders and the reconciler must start from a broker it knows.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from agents.data_agent import DataAgent
from config.settings import AppConfig, ConfigError, get_config
from config.universe import BASELINE_SYMBOLS
from core.domain.errors import (
    BrokerError,
    CandidatesError,
    DataError,
    TradingDaemonError,
)
from core.domain.market_calendar import get_market_calendar
from core.domain.models import OrderSpec, Side
from tests.harness.config import CORPUS_DIR, SIM_START

CORPUS = CORPUS_DIR
GROUP_MINIMUMS = {"env": 15, "candidates": 15, "market_data": 18, "api_errors": 12}
KINDS = frozenset({"error", "skip", "valid"})
CAL = get_market_calendar()
BARS = "/v2/stocks/bars"
AFFECTED = "JPM"                       # the symbol every market-data mutation targets
DATA_SYMBOLS = ["AAPL", AFFECTED, "SPY"]
# A small universe in which JPM, and only JPM, draws an entry at SIM_START (with ENTRY_Z=1): so a
# market-data case that excludes JPM must leave the broker without a JPM order, and a positive
# control must leave exactly one.
ORCH_TIERS = "SPY:TIER1,QQQ:TIER1,XLF:TIER2,AAPL:TIER3,JPM:TIER3,MSFT:TIER3"
SECRET_NAMES = frozenset({"ALPACA_API_KEY", "ALPACA_SECRET_KEY"})
OLD_SDK_SECRET_NAMES = frozenset({"APCA_API_KEY_ID", "APCA_API_SECRET_KEY"})


# ================================================================================ the index
@dataclass(frozen=True)
class Case:
    id: str
    group: str
    description: str
    input: str | None
    expect: dict[str, Any]
    generate: str | None = None

    @property
    def path(self) -> Path:
        assert self.input is not None
        return CORPUS / self.group / self.input

    @property
    def matches(self) -> list[str]:
        match = self.expect.get("match", [])
        return [match] if isinstance(match, str) else list(match)

    def spec(self) -> Any:
        """The input file parsed as JSON (NaN and Infinity tokens allowed, as in the corpus)."""
        return json.loads(self.path.read_text(encoding="utf-8"))


def load_corpus() -> list[Case]:
    cases: list[Case] = []
    for group in GROUP_MINIMUMS:
        for entry in json.loads((CORPUS / group / "index.json").read_text(encoding="utf-8")):
            assert entry["group"] == group, entry["id"]
            cases.append(Case(id=entry["id"], group=entry["group"], description=entry["description"],
                              input=entry.get("input"), expect=entry["expect"], generate=entry.get("generate")))
    return cases


CORPUS_CASES = load_corpus()


def cases_of(group: str) -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CORPUS_CASES if case.group == group]


def test_corpus_index_is_complete_and_consistent() -> None:
    assert len(CORPUS_CASES) >= 60
    ids = [case.id for case in CORPUS_CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for group, minimum in GROUP_MINIMUMS.items():
        members = [case for case in CORPUS_CASES if case.group == group]
        assert len(members) >= minimum, f"{group}: {len(members)} cases, expected at least {minimum}"
        referenced = {case.input for case in members if case.input}
        if group == "api_errors":  # raw bodies and JSON answers shared by the case files
            for case in members:
                for fault in [*case.spec()["faults"], *case.spec().get("orchestrator_faults", [])]:
                    referenced |= {fault[key] for key in ("body_file", "value_file") if key in fault}
        for case in members:
            assert case.description and case.expect["kind"] in KINDS, case.id
            assert (case.input is None) == (case.generate is not None), case.id
            if case.input is not None:
                assert case.path.is_file(), f"{case.id}: {case.path} is missing"
            if case.expect["kind"] == "error":
                assert case.expect.get("error") and case.matches, case.id
            if case.expect["kind"] == "skip":
                assert case.matches and case.expect.get("symbols"), case.id
        # Every file in the folder is used by a case.
        on_disk = {p.name for p in (CORPUS / group).iterdir() if p.is_file() and p.name != "index.json"}
        assert on_disk <= referenced, f"{group}: files not in the index: {sorted(on_disk - referenced)}"


def _assert_clear_message(message: str, case: Case) -> None:
    for fragment in case.matches:
        assert fragment in message, f"{case.id}: {fragment!r} not in {message!r}"
    assert "Traceback" not in message and 'File "' not in message, message


def _assert_error_type(exc: BaseException, case: Case) -> None:
    expected = case.expect["error"]
    names = [cls.__name__ for cls in type(exc).__mro__]
    assert expected in names, f"{case.id}: expected {expected}, got {type(exc).__name__}: {exc}"
    assert isinstance(exc, TradingDaemonError | ConfigError), f"{case.id}: not a project error: {exc!r}"


# ================================================================================ env/
@pytest.mark.parametrize("case", cases_of("env"))
def test_env_case(case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from core.cli import EXIT_CONFIG, main

    if case.generate == "missing_file":
        # Only the command line knows whether the file was named on purpose (the default may be absent).
        assert main(["--env-file", str(tmp_path / "typo.env"), "status"]) == EXIT_CONFIG
        out = capsys.readouterr()
        _assert_clear_message(out.err, case)
        assert len(out.err.strip().splitlines()) == 1 and str(tmp_path / "typo.env") in out.err
        return
    try:
        secrets = [value for name, value in dotenv_values(case.path).items()
                   if name.upper().lstrip("\ufeff") in SECRET_NAMES | OLD_SDK_SECRET_NAMES and value]
    except UnicodeDecodeError:  # not UTF-8 text (the encoding cases): no value can be shown anyway
        secrets = []
    if case.expect["kind"] == "valid":
        config = get_config(env_file=case.path)
        for name, value in case.expect["check"].items():
            assert getattr(config, name) == value, f"{case.id}: {name}={getattr(config, name)!r}"
        return
    with pytest.raises(ConfigError) as info:
        get_config(env_file=case.path)
    assert type(info.value) is ConfigError
    assert info.value.__cause__ is None and info.value.__suppress_context__, "no chained pydantic traceback"
    message = str(info.value)
    _assert_clear_message(message, case)
    assert "expected" in message
    assert "\r" not in message and "\ufeff" not in message
    for secret in secrets:
        assert secret not in message, f"{case.id}: a secret is in the error message"
    # The daemon's command line prints the same message and exits with the configuration code.
    assert main(["--env-file", str(case.path), "status"]) == EXIT_CONFIG
    out = capsys.readouterr()
    assert message in out.err and "Traceback" not in out.err + out.out
    for secret in secrets:
        assert secret not in out.err + out.out


# ================================================================================ shared market
@pytest.fixture(scope="module")
def market() -> Iterator[Any]:
    from core.domain.clock import SimClock
    from core.sim import start_sim_market

    sim = start_sim_market(clock=SimClock(SIM_START), seed=42, initial_cash=10_000.0, rate_limit_per_minute=10_000)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def module_config(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    root = tmp_path_factory.mktemp("corpus")
    return get_config(env_file=None, state_dir=root / "state", candidates_path=root / "candidates.json",
                      request_timeout_seconds=2.0, retry_backoff_seconds=0.05, api_rate_limit_per_minute=10_000)


@pytest.fixture
def sim(market: Any) -> Iterator[Any]:
    """The module's market with no faults and an empty request log, before and after each case."""
    market.server.faults.clear()
    market.server.clear_log()
    yield market
    market.server.faults.clear()
    market.server.clear_log()


@pytest.fixture
def gateway(sim: Any, module_config: AppConfig) -> Any:
    from tests.harness.market import gateway_for

    return gateway_for(sim, module_config)


# ================================================================================ candidates/
def _generate_candidates(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "candidates.json"
    if kind == "huge":
        padding = {f"X{i:07d}": "y" * 40 for i in range(25_000)}
        path.write_text(json.dumps({"as_of": "2025-03-07", "generated_at": "2025-03-07T21:05:00Z",
                                    "universe_size": 29, "symbols": ["JPM"], "scores": {}, "excluded": padding}))
        assert path.stat().st_size > 1_000_000
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind != "missing":
        raise AssertionError(f"unknown generator {kind!r}")
    return path


@pytest.fixture(scope="module")
def focus_orchestrator(market: Any, module_config: AppConfig) -> Iterator[Any]:
    """An orchestrator whose candidates path is set per case; load_focus_symbols makes no request."""
    from core.orchestrator import Orchestrator
    from core.state.store import StateStore
    from tests.harness.market import gateway_for

    store = StateStore(Path(module_config.state_dir) / "focus", market.clock)
    try:
        yield Orchestrator(module_config, gateway_for(market, module_config), store, market.clock, calendar=CAL)
    finally:
        store.close()


@pytest.mark.parametrize("case", cases_of("candidates"))
def test_candidates_case(case: Case, focus_orchestrator: Any, module_config: AppConfig, tmp_path: Path) -> None:
    from core.state.candidates import load_candidates

    path = _generate_candidates(case.generate, tmp_path) if case.generate else case.path
    universe = module_config.symbols
    now = SIM_START
    focus_orchestrator.config = module_config.model_copy(update={"candidates_path": path, "use_scanner": True})
    if case.expect["kind"] == "valid":
        loaded = load_candidates(path, set(universe), CAL, now)
        assert focus_orchestrator.load_focus_symbols() == case.expect["focus"]
        assert loaded.symbols == [s for s in case.expect["focus"] if s not in BASELINE_SYMBOLS]
        return
    with pytest.raises(CandidatesError) as info:
        load_candidates(path, set(universe), CAL, now)
    assert info.value.__cause__ is None
    _assert_clear_message(str(info.value), case)
    assert str(path) in str(info.value), "the message names the file"
    # The orchestrator falls back to the whole configured universe, with a warning, never a crash.
    assert focus_orchestrator.load_focus_symbols() == universe


# ================================================================================ market_data/
def _bars_transform(spec: dict[str, Any]) -> Callable[[Any], Any]:
    """`fn(payload) -> payload` for the sim's "transform" fault on GET /v2/stocks/bars."""
    symbol = spec["symbol"]

    def apply(payload: Any) -> Any:
        payload = copy.deepcopy(payload)
        for mutation in spec["mutations"]:
            op = mutation["op"]
            if op == "replace_answer":
                payload = copy.deepcopy(mutation["value"])
                continue
            table = payload.get("bars") if isinstance(payload, dict) else None
            if not isinstance(table, dict) or symbol not in table:
                continue
            bars = table[symbol]
            if op == "set":
                bars[mutation["index"]].update(mutation["fields"])
            elif op == "set_all":
                for bar in bars:
                    bar.update(copy.deepcopy(mutation["fields"]))
            elif op == "pop":
                for name in mutation["fields"]:
                    bars[mutation["index"]].pop(name, None)
            elif op == "pop_all":
                for bar in bars:
                    for name in mutation["fields"]:
                        bar.pop(name, None)
            elif op == "duplicate":
                bars.insert(mutation["index"], dict(bars[mutation["index"]]))
            elif op == "swap":
                i, j = mutation["i"], mutation["j"]
                bars[i], bars[j] = bars[j], bars[i]
            elif op == "reverse":
                bars.reverse()
            elif op == "append":
                bars.append(dict(mutation["bar"]))
            elif op == "truncate_tail":
                del bars[-mutation["count"]:]
            elif op == "drop_symbol":
                del table[symbol]
            elif op == "replace_symbol":
                table[symbol] = copy.deepcopy(mutation["value"])
            else:
                raise AssertionError(f"unknown mutation {op!r}")
        return payload

    return apply


def _process(config: AppConfig, gateway: Any, sim: Any) -> tuple[Any, DataError | None]:
    agent = DataAgent(config, market=gateway, clock=sim.clock, calendar=CAL)
    try:
        return agent.process(DATA_SYMBOLS, limit=60), None
    except DataError as exc:   # the one exception DataAgent.process may raise; anything else fails the test
        return None, exc


@pytest.mark.parametrize("case", cases_of("market_data"))
def test_market_data_case(case: Case, sim: Any, gateway: Any, module_config: AppConfig, tmp_path: Path) -> None:
    spec = case.spec()
    transform = _bars_transform(spec)
    sim.server.faults.inject("transform", method="GET", path_prefix=BARS, count=None, fn=transform)
    data, error = _process(module_config, gateway, sim)
    kind = case.expect["kind"]
    if kind == "error":
        assert error is not None, f"{case.id}: expected {case.expect['error']}, got excluded={data.excluded}"
        _assert_error_type(error, case)
        _assert_clear_message(str(error), case)
        assert BARS in str(error)
    else:
        assert error is None, f"{case.id}: unexpected {error!r}"
        excluded = set(DATA_SYMBOLS) if case.expect.get("symbols") == "*" else set(case.expect.get("symbols", []))
        assert set(data.excluded) == excluded, f"{case.id}: excluded {data.excluded}"
        assert set(data) == set(DATA_SYMBOLS) - excluded
        for symbol in excluded:
            reason = data.excluded[symbol]
            assert all(fragment in reason for fragment in case.matches), f"{case.id}: reason {reason!r}"
            assert symbol not in data.current_prices
        for symbol in data:
            frame = data[symbol]
            assert len(frame) > 0 and frame.index.is_monotonic_increasing and frame.index.is_unique
            assert (frame[["open", "high", "low", "close"]] > 0).all().all()
    # One full orchestrator iteration on a fresh market with the same bad answer.
    run = _orchestrate(tmp_path, [{"kind": "transform", "method": "GET", "path_prefix": BARS, "count": None,
                                   "fn": transform}])
    _assert_orders(case, run, case.expect["orders"])
    for name, value in case.expect.get("iteration", {}).items():
        assert run.last_iteration is not None and run.last_iteration[name] == value, run.last_iteration


# ================================================================================ orchestrator runs
@dataclass
class OrchestratorRun:
    broker_orders: list[Any]
    intents: dict[str, str | None]           # client_order_id of each broker order -> its intent state
    last_iteration: dict[str, Any] | None
    error: TradingDaemonError | None
    post_orders: int


def _orchestrate(tmp_path: Path, faults: list[dict[str, Any]]) -> OrchestratorRun:
    """`run(once=True)` (the daemon's own loop) on a fresh market with `faults` injected after start-up."""
    from core.domain.clock import SimClock
    from core.orchestrator import Orchestrator
    from core.sim import start_sim_market
    from core.state.store import StateStore
    from tests.harness.market import gateway_for

    market = start_sim_market(clock=SimClock(SIM_START), seed=42, initial_cash=10_000.0, rate_limit_per_minute=10_000)
    config = get_config(env_file=None, state_dir=tmp_path / "orch", candidates_path=tmp_path / "orch-candidates.json",
                        use_scanner=False, symbol_tiers=ORCH_TIERS, entry_z=1.0, request_timeout_seconds=2.0,
                        retry_backoff_seconds=0.05, api_rate_limit_per_minute=10_000)
    error: TradingDaemonError | None = None
    try:
        with StateStore(Path(config.state_dir), market.clock) as store:
            orchestrator = Orchestrator(config, gateway_for(market, config), store, market.clock, calendar=CAL)
            orchestrator.startup()
            for fault in faults:
                params = dict(fault)
                market.server.faults.inject(params.pop("kind"), **params)
            market.server.clear_log()
            # Start-up read the broker's clock first (and cached it): the faults are about the loop's own read.
            orchestrator.market_clock.invalidate()
            try:
                # Bounded: a broker clock that never answers sends the loop into backoff until `until`.
                orchestrator.run(once=True, until=SIM_START + timedelta(hours=1))
            except TradingDaemonError as exc:  # recorded as a failed iteration; anything else is a crash
                error = exc
            market.server.faults.clear()
            post_orders = market.server.count(path_prefix="/v2/orders", method="POST")
            broker = market.exchange.all_orders()
            intents = {}
            for order in broker:
                intent = store.get_intent(order.client_order_id)
                intents[order.client_order_id] = None if intent is None else str(intent.state)
            return OrchestratorRun(broker, intents, store.last_iteration(), error, post_orders)
    finally:
        market.server.faults.clear()
        market.stop()


def _assert_orders(case: Case, run: OrchestratorRun, expected: dict[str, int]) -> None:
    for symbol, count in expected.items():
        placed = [o for o in run.broker_orders if o.symbol == symbol]
        assert len(placed) == count, f"{case.id}: {symbol} orders at the broker {placed}, expected {count}"
    ids = [o.client_order_id for o in run.broker_orders]
    assert len(ids) == len(set(ids)), "duplicate orders at the broker"
    # The daemon's ledger agrees with the broker: every broker order is known and none is marked rejected.
    for cid, state in run.intents.items():
        assert state is not None, f"{case.id}: broker order {cid} unknown to the state database"
        assert state != "rejected", f"{case.id}: {cid} exists at the broker but was recorded as rejected"


# ================================================================================ api_errors/
def _api_faults(case: Case, spec: dict[str, Any], key: str = "faults") -> list[dict[str, Any]]:
    faults = []
    for raw in spec[key]:
        fault = dict(raw)
        if fault["kind"] == "body":
            if "body_file" in fault:
                fault["body"] = (CORPUS / case.group / fault.pop("body_file")).read_bytes()
            else:
                fault["body"] = json.dumps(fault.pop("body_json"))
        elif fault["kind"] == "transform":
            fault["fn"] = _json_transform(case, fault)
            for name in ("op", "fields", "value", "value_file"):
                fault.pop(name, None)
        faults.append(fault)
    return faults


def _json_transform(case: Case, fault: dict[str, Any]) -> Callable[[Any], Any]:
    op = fault["op"]
    if op == "replace":
        value = (json.loads((CORPUS / case.group / fault["value_file"]).read_text()) if "value_file" in fault
                 else fault["value"])
        return lambda payload: copy.deepcopy(value)
    fields = fault["fields"]

    def apply(payload: Any) -> Any:
        payload = copy.deepcopy(payload)
        for item in payload if isinstance(payload, list) else [payload]:
            if op == "set":
                item.update(fields)
            elif op == "pop":
                for name in fields:
                    item.pop(name, None)
        return payload

    return apply


def _api_call(call: str, gateway: Any, sim: Any, config: AppConfig, client_order_id: str) -> Any:
    if call == "data_agent":
        return DataAgent(config, market=gateway, clock=sim.clock, calendar=CAL).process(DATA_SYMBOLS, limit=60)
    if call == "submit_order":
        return gateway.submit_order(OrderSpec(f"corpus-{uuid.uuid4().hex[:12]}", "AAPL", Side.BUY, qty=1.0))
    if call == "get_asset":
        return gateway.get_asset(AFFECTED)
    if call == "get_order_by_client_id":
        return gateway.get_order_by_client_id(client_order_id)
    return getattr(gateway, call)()


ENDPOINTS = {
    "get_account": "GET /v2/account", "get_positions": "GET /v2/positions", "get_clock": "GET /v2/clock",
    "get_open_orders": "GET /v2/orders", "submit_order": "POST /v2/orders", "get_asset": "GET /v2/assets/",
    "get_fractional_trading": "GET /v2/account/configurations",
    "get_order_by_client_id": "GET /v2/orders:by_client_order_id", "data_agent": "GET /v2/stocks/bars",
}


@pytest.mark.parametrize("case", cases_of("api_errors"))
def test_api_error_case(case: Case, sim: Any, gateway: Any, module_config: AppConfig, tmp_path: Path) -> None:
    from alpaca.common.exceptions import APIError

    spec = case.spec()
    client_order_id = f"corpus-absent-{uuid.uuid4().hex[:12]}"
    if spec.get("setup") == "submit_aapl_order":
        client_order_id = f"corpus-{uuid.uuid4().hex[:12]}"
        gateway.submit_order(OrderSpec(client_order_id, "AAPL", Side.BUY, qty=1.0))
    for fault in _api_faults(case, spec):
        params = dict(fault)
        sim.server.faults.inject(params.pop("kind"), **params)
    result: Any = None
    error: BaseException | None = None
    try:
        result = _api_call(spec["call"], gateway, sim, module_config, client_order_id)
    except (TradingDaemonError, APIError) as exc:   # anything else (a raw SDK or parsing error) fails here
        error = exc
    if case.expect["kind"] == "valid":
        assert error is None, f"{case.id}: {error!r}"
        if "result" in case.expect:
            assert result == case.expect["result"]
    else:
        assert error is not None, f"{case.id}: expected {case.expect['error']}, got {result!r}"
        assert not isinstance(error, APIError), f"{case.id}: a raw SDK exception escaped: {error!r}"
        _assert_error_type(error, case)
        message = str(error)
        _assert_clear_message(message, case)
        assert ENDPOINTS[spec["call"]] in message, f"{case.id}: the message does not name the endpoint: {message}"
        if isinstance(error, BrokerError) and spec["call"] != "data_agent":
            assert error.endpoint.startswith(ENDPOINTS[spec["call"]].rstrip("/"))
    orchestrator = case.expect.get("orchestrator")
    if orchestrator is not None:
        faults = _api_faults(case, spec, "orchestrator_faults" if "orchestrator_faults" in spec else "faults")
        run = _orchestrate(tmp_path, faults)
        assert run.post_orders == orchestrator["post_orders"], f"{case.id}: {run.post_orders} order POSTs"
        if orchestrator.get("status"):
            last = run.last_iteration
            assert last is not None and last["status"] == orchestrator["status"], last
        _assert_orders(case, run, orchestrator["orders"])
