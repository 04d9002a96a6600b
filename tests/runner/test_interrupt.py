"""Stop requests and the abort watchdog Ray's native signal handler leaves behind (matrix/runner/interrupt.py)."""
import signal
import time

from matrix.runner.interrupt import StopRequests, disarm_native_failure_alarm


def test_the_watchdog_a_native_handler_left_armed_is_cancelled_and_reported():
    # What absl's failure handler does on a signal during Ray's start-up: SIGALRM set to abort, alarm(3).
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.alarm(1)
        assert disarm_native_failure_alarm() is True  # it was pending: the handler had run
        assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
        time.sleep(1.3)  # past the moment the watchdog would have fired
        assert fired == [] and signal.alarm(0) == 0
        assert disarm_native_failure_alarm() is False  # nothing pending: nothing had caught a signal
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_stop_signal_is_recorded_and_a_second_one_stops_at_once():
    # A signal ignored when the process started stays ignored (the user asked, e.g. `make test &` ignores
    # SIGINT): give both their default first, so the handlers under test are installed whatever started us.
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _stop_twice()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _stop_twice():
    with StopRequests() as stops:
        signal.raise_signal(signal.SIGTERM)
        assert stops.requested and stops.signum == signal.SIGTERM and stops.exit_code == 143
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("a second signal must raise KeyboardInterrupt")
    assert signal.getsignal(signal.SIGTERM) is not stops._handle
