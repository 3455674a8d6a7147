"""`ghpo run` turns SIGINT and SIGTERM into one clean stop, whatever disposition it inherited."""

from __future__ import annotations

import os
import signal

import pytest

from ghpo.commands.run import stop_cleanly_on_signals


@pytest.fixture
def saved_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_first_signal_stops_the_run_and_later_ones_do_not_cut_the_stop_short(saved_handlers, signum):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts `ghpo run &`

    stop_cleanly_on_signals()
    with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
        os.kill(os.getpid(), signum)

    os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during the stop: ignored, no exception
    os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
