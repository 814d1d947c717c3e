"""The daemon's clock: the host's, measured against the broker's on every clock request.

Every `GET /v2/clock` carries the broker's timestamp. The skew is the broker's time minus the
midpoint of the host's readings just before the request left and just after its answer arrived;
half the round trip is its error bar, and a skew is only believed as far as it exceeds that bar.

- Beyond CLOCK_SKEW_WARN_SECONDS: one warning line when it starts (and one when it ends), never one
  per iteration. Decisions keep the host's time: a few seconds change no decision, because the
  broker's clock itself (core/broker_calendar.py) says whether the session is open and which bar is
  complete, on the broker's timeline.
- Beyond MAX_CLOCK_SKEW_SECONDS: the host's clock is not trusted. `now()` becomes the broker's time
  (host time + measured skew) for every decision that depends on time: session open or closed, the
  last completed session, bar freshness and the in-progress bar cut, the drift check's price, the
  candidates' age, sleeps towards the open and the scanner's schedule. Entries and exits both go on:
  with the correction every decision is the one a right clock would take. One error line says so.

Between two clock requests the correction is host time + the last skew. If the host's wall clock
jumps (an NTP step, a suspend) it no longer agrees with the monotonic clock; `host_stepped()` then
tells the market clock to ask the broker again at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from core.domain.clock import Clock

log = structlog.get_logger("broker_time")

CLOCK_SKEW_WARN_SECONDS = 2.0
HOST_STEP_SECONDS = 2.0
HOST_STEP_CHECK_SECONDS = 30.0   # the monotonic clock is read at most this often for the step check

_OK, _WARN, _BEYOND = "ok", "warn", "beyond"


class BrokerTimeClock:
    """A `Clock` that is the host's, or the broker's when the two disagree beyond `max_skew_seconds`."""

    def __init__(self, host: Clock, max_skew_seconds: float,
                 warn_skew_seconds: float = CLOCK_SKEW_WARN_SECONDS) -> None:
        if not max_skew_seconds > 0:
            raise ValueError(f"max_skew_seconds {max_skew_seconds!r} must be > 0")
        self.host = host
        self.max_skew_seconds = max_skew_seconds
        self.warn_skew_seconds = warn_skew_seconds
        self.skew_seconds = 0.0          # broker minus host, last measurement (0 before any)
        self.uncertainty_seconds = 0.0   # half the round trip of that measurement
        self.correction_seconds = 0.0    # what now() adds to host time (0 unless beyond the bound)
        self._state = _OK
        self._anchor: tuple[datetime, float] | None = None   # host wall and monotonic at the last measurement
        self._last_step_check: datetime | None = None

    # ------------------------------------------------------------------ Clock
    def now(self) -> datetime:
        return self.host.now() + timedelta(seconds=self.correction_seconds)

    def sleep(self, seconds: float) -> bool:
        return self.host.sleep(seconds)

    def interrupt(self) -> None:
        self.host.interrupt()

    def monotonic(self) -> float:
        return self.host.monotonic()

    # ------------------------------------------------------------------ measuring
    @property
    def corrected(self) -> bool:
        return self._state == _BEYOND

    def to_broker(self, moment: datetime) -> datetime:
        """The broker's time at daemon time `moment` (the best estimate, whatever the bound)."""
        return moment + timedelta(seconds=self.skew_seconds - self.correction_seconds)

    def observe(self, broker_time: datetime, sent_at: datetime, received_at: datetime) -> None:
        """Measure the skew from one clock answer; host readings around its request."""
        round_trip = max(0.0, (received_at - sent_at).total_seconds())
        midpoint = sent_at + timedelta(seconds=round_trip / 2)
        skew = (broker_time - midpoint).total_seconds()
        uncertainty = round_trip / 2
        certain = max(0.0, abs(skew) - uncertainty)   # the least the clocks can differ by
        self.skew_seconds, self.uncertainty_seconds = skew, uncertainty
        self._anchor = (received_at, self.host.monotonic())
        self._last_step_check = received_at
        previous, previous_correction = self._state, self.correction_seconds
        if certain > self.max_skew_seconds:
            self._state, self.correction_seconds = _BEYOND, skew
        elif certain > self.warn_skew_seconds:
            self._state, self.correction_seconds = _WARN, 0.0
        else:
            self._state, self.correction_seconds = _OK, 0.0
        self._report(previous, previous_correction)

    def host_stepped(self, now: datetime) -> bool:
        """True when the host's wall clock moved differently from its monotonic clock since the last
        measurement (a step or a suspend): the measured skew no longer holds. `now` is daemon time;
        the monotonic clock is read at most every HOST_STEP_CHECK_SECONDS (a read can be costly)."""
        if self._anchor is None:
            return False
        host_wall = now - timedelta(seconds=self.correction_seconds)
        last = self._last_step_check
        if last is not None and timedelta(0) <= host_wall - last < timedelta(seconds=HOST_STEP_CHECK_SECONDS):
            return False
        self._last_step_check = host_wall
        wall0, mono0 = self._anchor
        wall = (host_wall - wall0).total_seconds()
        mono = self.host.monotonic() - mono0
        return abs(wall - mono) > HOST_STEP_SECONDS

    # ------------------------------------------------------------------ one line per change
    def _describe(self) -> str:
        direction = "ahead of" if self.skew_seconds < 0 else "behind"
        return f"the host clock is {abs(self.skew_seconds):.1f} s {direction} the broker's (±{self.uncertainty_seconds:.2f} s)"

    def _report(self, previous: str, previous_correction: float) -> None:
        fields = {"skew_s": round(self.skew_seconds, 3), "uncertainty_s": round(self.uncertainty_seconds, 3),
                  "max_clock_skew_s": self.max_skew_seconds}
        if self._state == _BEYOND:
            if previous != _BEYOND:
                log.error("clock_skew_beyond_bound", **fields,
                          message=f"{self._describe()}, beyond MAX_CLOCK_SKEW_SECONDS={self.max_skew_seconds:g}: every "
                                  f"decision that depends on time now uses the broker's time (host "
                                  f"{self.correction_seconds:+.1f} s); fix the host's time sync (NTP)")
            elif abs(self.correction_seconds - previous_correction) > self.warn_skew_seconds:
                log.warning("clock_skew_correction_changed", **fields, correction_s=round(self.correction_seconds, 3),
                            message=f"{self._describe()}: the broker's time is now host {self.correction_seconds:+.1f} s")
        elif self._state == _WARN:
            if previous == _BEYOND:
                log.warning("clock_skew_within_bound", **fields,
                            message=f"{self._describe()}: within MAX_CLOCK_SKEW_SECONDS again; the host's time is used")
            elif previous == _OK:
                log.warning("clock_skew_warning", **fields,
                            message=f"{self._describe()}; decisions still use the host's time (within "
                                    f"MAX_CLOCK_SKEW_SECONDS={self.max_skew_seconds:g}); fix the host's time sync (NTP)")
        elif previous != _OK:
            log.info("clock_skew_resolved", **fields, message="the host clock agrees with the broker's again")
        log.debug("clock_skew_measured", **fields, state=self._state)
