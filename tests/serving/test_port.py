"""`gradwise serve` binds its port before it says it serves: a busy port is one message and
exit 2, before the model loads; "serving on" is printed once requests are answered."""

from __future__ import annotations

import os
import signal
import socket

from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.run import Run
from tests.serving.conftest import Server

runner = CliRunner()


def test_a_busy_port_exits_2_naming_the_port_and_the_fix_without_serving_on(digits_run: Run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["serve", str(digits_run.path), "--port", port])
    assert result.exit_code == 2, result.output
    assert f"port {port}" in result.output and "--port" in result.output
    assert "serving" not in result.output and "Traceback" not in result.output


def test_serving_on_is_printed_once_the_server_answers(server_factory, digits_run: Run):
    server: Server = server_factory(digits_run.path, "--store", "off").wait_ready()
    os.killpg(server.proc.pid, signal.SIGTERM)  # a graceful stop; the output is all there
    output, _ = server.proc.communicate(timeout=60)
    assert output.count(f"on http://127.0.0.1:{server.port}") == 1, output
