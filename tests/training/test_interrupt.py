import os
import signal

import pytest

from training.interrupt import StopRequest


def test_sigterm_asks_to_stop_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.requested
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_ctrl_c_aborts() -> None:
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_disabled_it_leaves_the_signals_alone() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(enabled=False):
        assert signal.getsignal(signal.SIGTERM) is before
