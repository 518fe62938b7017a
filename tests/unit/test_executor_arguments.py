"""The ClientApp and ServerApp executors share one command line (unlearning.federation.node_runtime's
executor_parser): the same options, the same usage errors (exit code 2, never a traceback)."""

from __future__ import annotations

import pytest

from unlearning.federation.node_runtime import run_clientapp_executor
from unlearning.federation.serverapp_runtime import main as serverapp_main

ADDRESS = ["--runtime-api-address", "127.0.0.1:1"]


@pytest.mark.parametrize("run", [run_clientapp_executor, serverapp_main])
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [*ADDRESS, "--root-certificates", "/nonexistent/ca.pem"],
            "cannot read /nonexistent/ca.pem: No such file or directory",
        ),
        ([*ADDRESS, "--parent-pid", "1"], "one of the arguments --insecure --root-certificates is required"),
    ],
)
def test_bad_arguments_are_usage_errors(
    run: object, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run(argv)  # type: ignore[operator]
    assert stopped.value.code == 2 and message in capsys.readouterr().err
