"""Monitoring served traffic: drift windows, label-free accuracy, the certified abstention
guarantee (served with --abstain), the accuracy of named groups from feedback, alerts.

    gradwise monitor RUN [--store URL] [--window 1000|1h] [--follow] [--webhook URL]
    gradwise.monitor(run, window="500")      # a MonitorReport; writes RUN/monitor/
    monitor: {window: 1h, accuracy_drop: 0.02}  # the settings' section of the run's config

Exit codes of the verb: 0 no alert, 2 bad input, 3 an alert fired, 1 anything unexpected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gradwise.config import MonitorSettings
from gradwise.errors import ConfigError
from gradwise.monitoring.alerts import ALERT_EXIT_CODE, Alert, announce
from gradwise.monitoring.replay import replay_table
from gradwise.monitoring.report import MonitorReport, build_report, write_outputs
from gradwise.monitoring.results import WindowResult
from gradwise.monitoring.watch import Monitor, check_monitorable
from gradwise.run import Run

__all__ = [
    "ALERT_EXIT_CODE",
    "Monitor",
    "MonitorReport",
    "MonitorSettings",
    "WindowResult",
    "replay_table",
    "watch",
]


def watch(
    run: Run,
    settings: MonitorSettings,
    on_window: Callable[[WindowResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MonitorReport:
    """Evaluate the store's traffic window by window (the layer below `gradwise.monitor`);
    with `settings.follow`, keep watching.

    Writes RUN/monitor/report.json (with the settings), windows.json and timeline.png after
    every pass; alerts are logged and POSTed to `settings.webhook`.

    Args:
        on_window: called with each window as it is evaluated.
        should_stop: with follow: polled after each pass; True ends the watch (Ctrl-C too).

    Raises:
        ConfigError: unreachable store. DataError: the run's data is not at hand for the
            reference.
    """
    from gradwise.serving.store import redact_url, store_url

    check_monitorable(run)
    url = store_url(settings.store, run.path)
    if url is None:
        raise ConfigError("--store off has no traffic to monitor; give the store the server wrote.")
    follow = settings.follow
    monitor = Monitor(run, url, settings)
    alerts: list[Alert] = []
    report = build_report(monitor, redact_url(url), alerts, final=not follow)
    try:
        while True:
            new = monitor.update(final=not follow)
            fired = [a for w in new for a in w.alerts] + monitor.late_alerts()
            announce(fired, str(run.path), settings.webhook)
            alerts += fired
            for w in new:
                if on_window is not None:
                    on_window(w)
            report = build_report(monitor, redact_url(url), alerts, final=not follow, extra=new)
            write_outputs(report, Path(run.path))
            if not follow or (should_stop is not None and should_stop()):
                return report
            time.sleep(settings.poll_s)
    except KeyboardInterrupt:
        return report
