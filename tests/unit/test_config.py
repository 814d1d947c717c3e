"""AppConfig: defaults, parsing, `.env`, immutability, secret hygiene and every configuration error.

Every error test asserts that exactly one `ConfigError` is raised and that its message names the
environment variable, quotes the bad value and says what is expected.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import pytest
from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError

from config.settings import AppConfig, ConfigError, describe_config, get_config, parse_symbol_tiers
from config.universe import DEFAULT_SYMBOL_TIERS, format_symbol_tiers
from tests.harness.config import REPO_ROOT

API_KEY = "PKTESTKEY0123456789AB"
SECRET_KEY = "sk-test-SECRET-value-9876543210zyxw"
FIELD_ENV_NAMES = frozenset(name.upper() for name in AppConfig.model_fields)


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable AppConfig would read (case-insensitively), so only the test's values count."""
    for name in list(os.environ):
        if name.upper() in FIELD_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)


def _config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """Set the variables, build the config, and return the message of the single ConfigError raised."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None)
    assert type(info.value) is ConfigError
    assert info.value.__suppress_context__, "the pydantic traceback must not be chained into the message"
    return str(info.value)


def _assert_names(message: str, variable: str, value: str, expected: str) -> None:
    assert variable in message, message
    assert value in message, message
    assert expected in message, message
    assert "expected" in message, message


def _assert_no_secret(text: str) -> None:
    assert API_KEY not in text
    assert SECRET_KEY not in text


# --- defaults ------------------------------------------------------------------------------


def test_defaults() -> None:
    config = get_config(env_file=None)
    assert len(config.symbol_tiers) == 29
    assert config.symbols == list(DEFAULT_SYMBOL_TIERS)
    per_tier = {tier: [s for s, t in config.symbol_tiers.items() if t == tier] for tier in ("TIER1", "TIER2", "TIER3")}
    assert per_tier["TIER1"] == ["SPY", "QQQ", "DIA", "IWM"]
    assert per_tier["TIER2"] == ["XLK", "XLF", "XLV", "XLE", "XLY"]
    assert len(per_tier["TIER3"]) == 20
    for symbol in ("AAPL", "MSFT", "GOOGL", "COST"):
        assert config.symbol_tiers[symbol] == "TIER3"
    assert config.enable_tiered_allocation is True
    assert config.tier_allocations == {"TIER1": 0.40, "TIER2": 0.30, "TIER3": 0.30}
    assert config.enable_fractional_shares is True
    assert config.min_order_notional == 10.0
    assert config.use_scanner is True
    assert config.alpaca_api_key is None and config.alpaca_secret_key is None
    assert config.has_credentials is False
    assert config.alpaca_paper is True and config.is_live is False
    assert config.alpaca_data_feed == "iex"
    assert config.alpaca_trading_url is None and config.alpaca_data_url is None
    assert config.candidates_path == Path("candidates.json")
    assert config.state_dir == Path("var")
    assert config.loop_interval_seconds == 60.0


def test_default_symbol_tiers_is_a_fresh_copy() -> None:
    first = get_config(env_file=None)
    second = get_config(env_file=None)
    assert first.symbol_tiers is not DEFAULT_SYMBOL_TIERS
    assert first.symbol_tiers is not second.symbol_tiers


# --- parsing -------------------------------------------------------------------------------


def test_symbol_tiers_parsed_into_a_plain_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOL_TIERS", " spy:tier1 , QQQ:TIER1,XLK:TIER2,AAPL:TIER3,BRK.B:TIER3,")
    config = get_config(env_file=None)
    assert type(config.symbol_tiers) is dict
    assert config.symbol_tiers == {"SPY": "TIER1", "QQQ": "TIER1", "XLK": "TIER2", "AAPL": "TIER3", "BRK.B": "TIER3"}
    assert list(config.symbol_tiers) == ["SPY", "QQQ", "XLK", "AAPL", "BRK.B"]
    assert all(type(k) is str and type(v) is str for k, v in config.symbol_tiers.items())
    assert config.symbols == ["SPY", "QQQ", "XLK", "AAPL", "BRK.B"]


def test_symbol_tiers_round_trip_through_the_env_format() -> None:
    text = format_symbol_tiers(DEFAULT_SYMBOL_TIERS)
    assert parse_symbol_tiers(text) == DEFAULT_SYMBOL_TIERS


def test_symbol_tiers_repeated_in_the_same_tier_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOL_TIERS", "SPY:TIER1,SPY:TIER1,AAPL:TIER3")
    assert get_config(env_file=None).symbol_tiers == {"SPY": "TIER1", "AAPL": "TIER3"}


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIER1_ALLOCATION", "0.5")
    monkeypatch.setenv("TIER2_ALLOCATION", "0.25")
    monkeypatch.setenv("TIER3_ALLOCATION", "0.25")
    monkeypatch.setenv("ENABLE_FRACTIONAL_SHARES", "false")
    monkeypatch.setenv("MIN_ORDER_NOTIONAL", "1")
    monkeypatch.setenv("ALPACA_DATA_FEED", "sip")
    monkeypatch.setenv("ALPACA_TRADING_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("MAX_OPEN_POSITIONS", "7")
    config = get_config(env_file=None)
    assert config.tier_allocations == {"TIER1": 0.5, "TIER2": 0.25, "TIER3": 0.25}
    assert config.enable_fractional_shares is False
    assert config.min_order_notional == 1.0
    assert config.alpaca_data_feed == "sip"
    assert config.alpaca_trading_url == "http://127.0.0.1:8080"
    assert config.max_open_positions == 7


def test_allocation_bounds_are_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIER1_ALLOCATION", "1")
    monkeypatch.setenv("TIER2_ALLOCATION", "0")
    monkeypatch.setenv("TIER3_ALLOCATION", "0")
    assert get_config(env_file=None).tier_allocations == {"TIER1": 1.0, "TIER2": 0.0, "TIER3": 0.0}


def test_empty_keys_mean_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "  ")
    config = get_config(env_file=None)
    assert config.has_credentials is False


def test_keys_are_secret_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    config = get_config(env_file=None)
    assert isinstance(config.alpaca_api_key, SecretStr)
    assert isinstance(config.alpaca_secret_key, SecretStr)
    assert config.alpaca_api_key.get_secret_value() == API_KEY
    assert config.secret_values() == [API_KEY, SECRET_KEY]
    assert config.has_credentials is True


# --- .env ----------------------------------------------------------------------------------


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        "TIER1_ALLOCATION=0.35\n"
        "MIN_ORDER_NOTIONAL=25\n"
        "SYMBOL_TIERS=SPY:TIER1,AAPL:TIER3\n"
        "ENABLE_FRACTIONAL_SHARES=false\n"
        "STATE_DIR=/tmp/some-state\n",
        encoding="utf-8",
    )
    config = get_config(env_file=env_file)
    assert config.tier1_allocation == 0.35
    assert config.min_order_notional == 25.0
    assert config.symbol_tiers == {"SPY": "TIER1", "AAPL": "TIER3"}
    assert config.enable_fractional_shares is False
    assert config.state_dir == Path("/tmp/some-state")


def test_real_environment_beats_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TIER1_ALLOCATION=0.35\nMIN_ORDER_NOTIONAL=25\n", encoding="utf-8")
    monkeypatch.setenv("TIER1_ALLOCATION", "0.2")
    config = get_config(env_file=env_file)
    assert config.tier1_allocation == 0.2
    assert config.min_order_notional == 25.0


def test_env_file_error_quotes_the_value_from_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MIN_ORDER_NOTIONAL=0.25\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        get_config(env_file=env_file)
    _assert_names(str(info.value), "MIN_ORDER_NOTIONAL", "'0.25'", "expected a number >= 1")


def test_missing_env_file_is_not_an_error(tmp_path: Path) -> None:
    assert get_config(env_file=tmp_path / "does-not-exist.env").tier1_allocation == 0.40


def test_env_example_documents_every_field_with_its_default() -> None:
    example = REPO_ROOT / ".env.example"
    documented = {key.upper() for key in dotenv_values(example)}
    assert documented == FIELD_ENV_NAMES
    assert get_config(env_file=example) == get_config(env_file=None)


# --- immutability --------------------------------------------------------------------------


def test_config_is_frozen() -> None:
    config = get_config(env_file=None)
    with pytest.raises(ValidationError):
        config.tier1_allocation = 0.9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.alpaca_paper = False  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.symbol_tiers = {}  # type: ignore[misc]
    assert config.tier1_allocation == 0.40
    assert config.alpaca_paper is True


# --- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TIER1_ALLOCATION", "-0.1", "expected a number >= 0"),
        ("TIER2_ALLOCATION", "-1", "expected a number >= 0"),
        ("TIER1_ALLOCATION", "1.5", "expected a number <= 1"),
        ("TIER3_ALLOCATION", "2", "expected a number <= 1"),
    ],
)
def test_allocation_outside_unit_interval(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    message = _config_error(monkeypatch, **{variable: value})
    _assert_names(message, variable, repr(value), expected)


def test_allocations_summing_above_one(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(monkeypatch, TIER1_ALLOCATION="0.5", TIER2_ALLOCATION="0.4", TIER3_ALLOCATION="0.3")
    for variable in ("TIER1_ALLOCATION", "TIER2_ALLOCATION", "TIER3_ALLOCATION"):
        assert variable in message
    _assert_names(message, "TIER1_ALLOCATION", "0.5 + 0.4 + 0.3", "expected a sum of at most 1")
    assert "= 1.2" in message


def test_unknown_tier_name(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(monkeypatch, SYMBOL_TIERS="SPY:TIER1,AAPL:TIER4")
    _assert_names(message, "SYMBOL_TIERS", "'TIER4'", "expected one of TIER1, TIER2, TIER3")
    assert "'SPY:TIER1,AAPL:TIER4'" in message


@pytest.mark.parametrize(
    ("raw", "entry"),
    [
        ("SPY:TIER1,AAPL", "AAPL"),  # missing colon
        ("SPY:TIER1,:TIER3", ":TIER3"),  # empty symbol
        ("SPY:TIER1,AAPL:", "AAPL:"),  # empty tier
        ("SPY:TIER1:TIER2", "SPY:TIER1:TIER2"),  # extra colon
    ],
)
def test_malformed_symbol_tiers_entry(monkeypatch: pytest.MonkeyPatch, raw: str, entry: str) -> None:
    message = _config_error(monkeypatch, SYMBOL_TIERS=raw)
    _assert_names(message, "SYMBOL_TIERS", repr(raw), "expected SYMBOL:TIER")
    assert f"malformed entry {entry!r}" in message


def test_empty_symbol_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(monkeypatch, SYMBOL_TIERS=" , ")
    _assert_names(message, "SYMBOL_TIERS", "' , '", "expected at least one SYM:TIER entry")


def test_same_symbol_in_two_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(monkeypatch, SYMBOL_TIERS="SPY:TIER1,AAPL:TIER3,spy:TIER2")
    _assert_names(message, "SYMBOL_TIERS", "SPY is given in two tiers (TIER1 and TIER2)", "expected one tier per symbol")
    assert "'SPY:TIER1,AAPL:TIER3,spy:TIER2'" in message


@pytest.mark.parametrize("ticker", ["S/PY", "TOOLONG", "123", "../x", "SP Y", "BRK.", "A.BCD", "$SPY"])
def test_invalid_ticker(monkeypatch: pytest.MonkeyPatch, ticker: str) -> None:
    raw = f"SPY:TIER1,{ticker}:TIER3"
    message = _config_error(monkeypatch, SYMBOL_TIERS=raw)
    _assert_names(message, "SYMBOL_TIERS", repr(raw), "expected 1-5 letters A-Z")
    assert "is not a valid US equity symbol" in message
    assert repr(ticker.upper()) in message


@pytest.mark.parametrize("value", ["0.99", "0", "-5"])
def test_min_order_notional_below_alpaca_floor(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = _config_error(monkeypatch, MIN_ORDER_NOTIONAL=value)
    _assert_names(message, "MIN_ORDER_NOTIONAL", repr(value), "expected a number >= 1")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MIN_ORDER_NOTIONAL", "ten", "expected a number"),
        ("TIER1_ALLOCATION", "forty percent", "expected a number"),
        ("LOOP_INTERVAL_SECONDS", "60s", "expected a number"),
        ("TIER2_ALLOCATION", "", "expected a number"),
        ("MAX_OPEN_POSITIONS", "ten", "expected a whole number"),
        ("MAX_OPEN_POSITIONS", "1.5", "expected a whole number"),
        ("API_RATE_LIMIT_PER_MINUTE", "200/min", "expected a whole number"),
        ("ZSCORE_LOOKBACK", "twenty", "expected a whole number"),
    ],
)
def test_non_numeric_value_in_numeric_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    message = _config_error(monkeypatch, **{variable: value})
    _assert_names(message, variable, repr(value), expected)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
@pytest.mark.parametrize("variable", ["TIER1_ALLOCATION", "MIN_ORDER_NOTIONAL", "ENTRY_Z"])
def test_nan_and_infinity_are_rejected(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    message = _config_error(monkeypatch, **{variable: value})
    _assert_names(message, variable, repr(value), "expected a finite number")


@pytest.mark.parametrize("variable", ["ENABLE_FRACTIONAL_SHARES", "ALPACA_PAPER", "USE_SCANNER"])
@pytest.mark.parametrize("value", ["maybe", "2", "yess"])
def test_bad_bool(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    message = _config_error(monkeypatch, **{variable: value})
    _assert_names(message, variable, repr(value), "expected true or false")


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "TRUE"])
def test_good_bool_spellings(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ENABLE_FRACTIONAL_SHARES", "false")
    monkeypatch.setenv("ALPACA_PAPER", value)
    config = get_config(env_file=None)
    assert config.alpaca_paper is True
    assert config.enable_fractional_shares is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ALPACA_DATA_FEED", "premium", "expected one of 'iex', 'sip' or 'delayed_sip'"),
        ("LOG_LEVEL", "verbose", "expected one of"),
        ("ALPACA_TRADING_URL", "paper-api.alpaca.markets", "expected an http:// or https:// base URL"),
        ("SCANNER_TOP_N", "3", "expected a number >= 5"),
    ],
)
def test_other_field_errors(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str) -> None:
    message = _config_error(monkeypatch, **{variable: value})
    _assert_names(message, variable, repr(value), expected)


@pytest.mark.parametrize(
    ("present", "value", "missing"),
    [("ALPACA_API_KEY", API_KEY, "ALPACA_SECRET_KEY"), ("ALPACA_SECRET_KEY", SECRET_KEY, "ALPACA_API_KEY")],
)
def test_only_one_alpaca_key(monkeypatch: pytest.MonkeyPatch, present: str, value: str, missing: str) -> None:
    message = _config_error(monkeypatch, **{present: value})
    _assert_names(message, missing, "is not set", "expected ALPACA_API_KEY and ALPACA_SECRET_KEY together, or neither")
    _assert_no_secret(message)


def test_several_errors_are_reported_in_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _config_error(
        monkeypatch, TIER1_ALLOCATION="1.5", MIN_ORDER_NOTIONAL="abc", SYMBOL_TIERS="SPY:TIER9"
    )
    lines = message.splitlines()
    assert lines[0] == "Invalid configuration:"
    assert len(lines) == 4
    _assert_names(message, "TIER1_ALLOCATION", "'1.5'", "expected a number <= 1")
    _assert_names(message, "MIN_ORDER_NOTIONAL", "'abc'", "expected a number")
    _assert_names(message, "SYMBOL_TIERS", "'SPY:TIER9'", "expected one of TIER1, TIER2, TIER3")


def test_overrides_are_validated_like_the_environment() -> None:
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None, tier1_allocation=1.5)
    assert type(info.value) is ConfigError
    _assert_names(str(info.value), "TIER1_ALLOCATION", "'1.5'", "expected a number <= 1")


# --- secrets never leak --------------------------------------------------------------------


@pytest.fixture
def keyed_config(monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    return get_config(env_file=None)


def test_secrets_not_in_repr_or_str(keyed_config: AppConfig) -> None:
    _assert_no_secret(repr(keyed_config))
    _assert_no_secret(str(keyed_config))
    _assert_no_secret(repr(keyed_config.alpaca_api_key))
    _assert_no_secret(str(keyed_config.alpaca_secret_key))
    _assert_no_secret(f"{keyed_config}")
    assert "**********" in repr(keyed_config)


def test_secrets_not_in_json_dump(keyed_config: AppConfig) -> None:
    dumped = keyed_config.model_dump_json()
    _assert_no_secret(dumped)
    data = json.loads(dumped)
    assert data["alpaca_api_key"] == "**********"
    assert data["alpaca_secret_key"] == "**********"
    python_dump = keyed_config.model_dump(mode="json")
    _assert_no_secret(json.dumps(python_dump))
    _assert_no_secret(repr(keyed_config.model_dump()))


def test_secrets_not_in_describe_config(keyed_config: AppConfig) -> None:
    rows = describe_config(keyed_config)
    _assert_no_secret(repr(rows))
    shown = dict(rows)
    assert shown["ALPACA_API_KEY"] == "set (masked)"
    assert shown["ALPACA_SECRET_KEY"] == "set (masked)"
    assert [name for name, _ in rows] == [name.upper() for name in AppConfig.model_fields]
    assert shown["SYMBOL_TIERS"].startswith("29 symbols: SPY:TIER1,QQQ:TIER1")


def test_describe_config_without_keys() -> None:
    shown = dict(describe_config(get_config(env_file=None)))
    assert shown["ALPACA_API_KEY"] == "not set"
    assert shown["ALPACA_SECRET_KEY"] == "not set"
    assert shown["ALPACA_TRADING_URL"] == "not set"
    assert shown["ALPACA_PAPER"] == "True"


def _full_error_text(error: BaseException) -> str:
    return str(error) + repr(error) + "".join(traceback.format_exception(error)) + repr(error.__context__)


def test_secrets_not_in_error_for_another_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("TIER1_ALLOCATION", "1.5")
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None)
    _assert_names(str(info.value), "TIER1_ALLOCATION", "'1.5'", "expected a number <= 1")
    _assert_no_secret(_full_error_text(info.value))


def test_secrets_not_in_error_for_bad_value_next_to_keys_in_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"ALPACA_API_KEY={API_KEY}\nMIN_ORDER_NOTIONAL=cheap\nALPACA_SECRET_KEY={SECRET_KEY}\n"
        "TIER1_ALLOCATION=0.9\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        get_config(env_file=env_file)
    message = str(info.value)
    _assert_names(message, "MIN_ORDER_NOTIONAL", "'cheap'", "expected a number")
    _assert_no_secret(_full_error_text(info.value))


def test_secrets_not_in_error_when_sum_and_keys_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("TIER1_ALLOCATION", "0.9")
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None)
    _assert_no_secret(_full_error_text(info.value))


def test_invalid_secret_override_is_hidden() -> None:
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None, alpaca_api_key=987654321012, alpaca_secret_key=SECRET_KEY)
    message = str(info.value)
    assert "ALPACA_API_KEY=<hidden>" in message
    assert "987654321012" not in message
    _assert_no_secret(message)


# --- where settings come from: unknown keys, near misses, encodings, the env file itself ----------


def _file_error(env_file: Path) -> str:
    with pytest.raises(ConfigError) as info:
        get_config(env_file=env_file)
    assert type(info.value) is ConfigError and info.value.__suppress_context__
    return str(info.value)


@pytest.mark.parametrize(("line", "key", "nearest"), [
    ("MAX_OPEN_POSTIONS=1", "MAX_OPEN_POSTIONS", "MAX_OPEN_POSITIONS"),
    ("max_open_postions=1", "MAX_OPEN_POSTIONS", "MAX_OPEN_POSITIONS"),
    ("STOP_LOSS_PERCENT=0.05", "STOP_LOSS_PERCENT", "STOP_LOSS_PCT"),
    ("TIER1_ALOCATION=0.3", "TIER1_ALOCATION", "TIER1_ALLOCATION"),
    ("DAILY_LOSS_LIMIT=0.02", "DAILY_LOSS_LIMIT", "DAILY_LOSS_LIMIT_PCT"),
])
def test_an_unknown_key_in_the_env_file_names_the_nearest_setting(tmp_path: Path, line: str, key: str,
                                                                  nearest: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"SYMBOL_TIERS=SPY:TIER1\n{line}\n", encoding="utf-8")
    message = _file_error(env_file)
    assert f"{key} in {env_file} is not a setting: did you mean {nearest}?" in message, message
    assert "expected" in message


def test_an_unknown_key_that_resembles_no_setting(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TRAILING_STOP=0.05\nPYTHONUNBUFFERED=1\n", encoding="utf-8")
    message = _file_error(env_file)
    assert "TRAILING_STOP in" in message and "PYTHONUNBUFFERED in" in message
    assert message.count("no setting has a similar name; expected one of the names in .env.example") == 2


def test_old_sdk_names_in_the_env_file_are_named_with_ours_and_their_values_hidden(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"APCA_API_KEY_ID={API_KEY}\nAPCA_API_SECRET_KEY={SECRET_KEY}\n", encoding="utf-8")
    message = _file_error(env_file)
    assert "APCA_API_KEY_ID in" in message and "expected ALPACA_API_KEY" in message
    assert "APCA_API_SECRET_KEY in" in message and "expected ALPACA_SECRET_KEY" in message
    _assert_no_secret(message)


def test_unknown_keys_and_bad_values_are_reported_together(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_OPEN_POSTIONS=1\nMIN_ORDER_NOTIONAL=0.5\n", encoding="utf-8")
    lines = _file_error(env_file).splitlines()
    assert lines[0] == "Invalid configuration:" and len(lines) == 3
    assert "MAX_OPEN_POSTIONS" in lines[1] and "MIN_ORDER_NOTIONAL='0.5'" in lines[2]


@pytest.mark.parametrize(("variable", "nearest"), [
    ("MAX_OPEN_POSTIONS", "MAX_OPEN_POSITIONS"),     # one letter dropped
    ("max_open_postions", "MAX_OPEN_POSITIONS"),     # case-insensitive
    ("LOG_LEVLE", "LOG_LEVEL"),                      # two letters swapped: one edit
    ("ENTRYZ", "ENTRY_Z"),
    ("STOP_LOSS_PCTT", "STOP_LOSS_PCT"),
    ("ALPACA_SECERT_KEY", "ALPACA_SECRET_KEY"),
    ("TIER_1_ALLOCATON", "TIER1_ALLOCATION"),        # two edits
])
def test_a_near_miss_in_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                    nearest: str) -> None:
    message = _config_error(monkeypatch, **{variable: "1"})
    assert f"{variable.upper()} is set in the environment and looks like a misspelt setting: did you mean " \
           f"{nearest}?" in message, message
    assert "expected" in message


def test_a_short_setting_allows_one_edit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROT", "8080")   # one swap: a near miss of HTTP_PORT
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None)
    assert "HTTP_PROT is set in the environment and looks like a misspelt setting: did you mean HTTP_PORT?" \
        in str(info.value)
    monkeypatch.delenv("HTTP_PROT")
    monkeypatch.setenv("HTTP_HOST", "example.org")  # two edits from HTTP_PORT: another program's variable
    assert get_config(env_file=None).http_port is None


def test_a_variable_three_edits_away_is_not_a_near_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_OPN_POSTONS", "1")   # three letters missing: not a near miss
    monkeypatch.setenv("ALPACA_IS_PAPER", "true")  # another tool's name, three edits from ALPACA_PAPER
    assert get_config(env_file=None).max_open_positions == 10


UNRELATED_ENVIRONMENT = [
    "PATH", "HOME", "USER", "SHELL", "LANG", "TERM", "PWD", "TZ", "EDITOR", "PAGER", "LC_ALL", "TMPDIR",
    "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
    "VIRTUAL_ENV", "JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
    "STATE_DIRECTORY", "LOGS_DIRECTORY", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY", "HTTP_PROXY",
    "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PYTEST_CURRENT_TEST", "CI",
    "OMP_NUM_THREADS", "MPLBACKEND", "DEBIAN_FRONTEND", "SUDO_USER", "LD_LIBRARY_PATH",
    # a web server's CGI variables: HTTP_HOST is two edits from HTTP_PORT, a short name that allows one
    "HTTP_HOST", "HTTP_USER_AGENT", "SERVER_PORT", "REMOTE_ADDR", "HOSTNAME",
    # other tools' Alpaca variables (lumibot, MCP servers, the old SDK's optional ones)
    "ALPACA_BASE_URL", "ALPACA_ENDPOINT", "ALPACA_API_KEY_ID", "ALPACA_API_SECRET", "ALPACA_API_SECRET_KEY",
    "ALPACA_IS_PAPER", "ALPACA_KEY", "ALPACA_SECRET", "ALPACA_PAPER_TRADING", "ALPACA_OAUTH_TOKEN",
    "APCA_API_BASE_URL", "APCA_API_DATA_URL", "APCA_RETRY_MAX", "APCA_RETRY_WAIT", "APCA_RETRY_CODES",
]


def test_unrelated_environment_variables_never_trip_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in UNRELATED_ENVIRONMENT:
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    config = get_config(env_file=None)  # this machine's whole environment, plus the list above
    assert config.max_open_positions == 10


def test_old_sdk_keys_in_the_environment_are_an_error_only_while_ours_are_unset(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", API_KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET_KEY)
    with pytest.raises(ConfigError) as info:
        get_config(env_file=None)
    message = str(info.value)
    assert "APCA_API_KEY_ID is set in the environment, but it is the old alpaca-trade-api SDK's name: expected " \
           "ALPACA_API_KEY" in message
    assert "APCA_API_SECRET_KEY" in message and "ALPACA_SECRET_KEY" in message
    _assert_no_secret(_full_error_text(info.value))
    # Our own keys set (here in .env): the old names belong to another program and are left alone.
    env_file = tmp_path / ".env"
    env_file.write_text(f"ALPACA_API_KEY={API_KEY}\nALPACA_SECRET_KEY={SECRET_KEY}\n", encoding="utf-8")
    assert get_config(env_file=env_file).has_credentials


@pytest.mark.parametrize(("content", "expected"), [
    ("TIER1_ALLOCATION=0.3\n".encode("utf-16"), "is UTF-16 text"),
    ("TIER1_ALLOCATION=0.3\n".encode("utf-16-le"), "is UTF-16 text"),
    (b"TIER1_ALLOCATION=0.3\nSTATE_DIR=/srv/caf\xe9\n", "line 2: byte 0xe9 is not valid UTF-8"),
    (b"\xef\xbb\xbfSTATE_DIR=/srv/\xff\n", "line 1: byte 0xff is not valid UTF-8"),
])
def test_an_env_file_that_is_not_utf8_is_one_line(tmp_path: Path, content: bytes, expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import EXIT_CONFIG, main

    env_file = tmp_path / ".env"
    env_file.write_bytes(content)
    message = _file_error(env_file)
    assert "\n" not in message and expected in message and "expected" in message and str(env_file) in message
    assert main(["--env-file", str(env_file), "status"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err == f"trading-daemon: {message}\n"  # one line, no traceback


def test_a_missing_env_file_named_on_the_command_line_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import EXIT_CONFIG, EXIT_OK, main

    monkeypatch.chdir(tmp_path)  # no .env here: the default may be absent
    assert main(["demo"]) == EXIT_OK
    capsys.readouterr()
    for path, what in ((tmp_path / "prod.env", "does not exist"), (tmp_path, "is not a regular file")):
        assert main(["--env-file", str(path), "demo"]) == EXIT_CONFIG
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"--env-file {path} {what}: expected a dotenv file" in err


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), ("Info", "INFO"), (" warning ", "WARNING")])
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str, level: str) -> None:
    monkeypatch.setenv("LOG_LEVEL", value)
    assert get_config(env_file=None).log_level == level


def test_edit_distance_counts_a_swap_as_one_edit() -> None:
    from config.env_check import edit_distance

    assert edit_distance("LOG_LEVLE", "LOG_LEVEL", 2) == 1
    assert edit_distance("MAX_OPEN_POSTIONS", "MAX_OPEN_POSITIONS", 2) == 1
    assert edit_distance("ABC", "ABC", 2) == 0
    assert edit_distance("PATH", "STATE_DIR", 2) == 3  # beyond the bound: bound + 1
