"""Tests of the tests: the harness pieces the lab scenarios' strongest claims rest on.

- labkit.changed_operations, behind every "a deploy rerun changes nothing": pyinfra's
  JSON lists hosts per operation, so the check must look at every host's outcome,
  not at whether some host had no change.
- labkit.step, behind "a failure names its step": a timeout (pytest.fail, a
  BaseException) must carry the step's name like any assertion does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from labkit import changed_operations, step

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def operation(name: str, changed: list[str], unchanged: list[str], failed=()) -> dict:
    """One entry of results.operations, as pyinfra_cli.prints.build_results_json writes it."""
    return {
        "op_hash": f"hash-{name}",
        "name": name,
        "names": [name],
        "args": [],
        "hosts": len(changed) + len(unchanged) + len(failed),
        "success": sorted(changed),
        "error": sorted(failed),
        "no_change": sorted(unchanged),
    }


def run_json(*operations: dict) -> dict:
    return {"plan": [], "results": {"operations": list(operations), "failed_hosts": []}}


def test_one_host_changing_on_a_rerun_is_reported() -> None:
    """The case the old check let through: changed on mirror1, not on mirror2."""
    result = run_json(
        operation("mirrorfleet common | Harden sshd", [], ["mirror1", "mirror2"]),
        operation("mirrorfleet mirror | Configure the sync agent", ["mirror1"], ["mirror2"]),
    )
    old_check = [op["name"] for op in result["results"]["operations"] if not op["no_change"]]
    assert old_check == []  # what the scenarios asserted before: it passed this run
    assert changed_operations(result) == [
        "mirrorfleet mirror | Configure the sync agent: changed on mirror1"
    ]


def test_a_rerun_that_changed_nothing_reports_nothing() -> None:
    result = run_json(operation("a", [], ["mirror1", "mirror2"]), operation("b", [], ["origin"]))
    assert changed_operations(result) == []


def test_every_changing_or_failing_host_is_named() -> None:
    result = run_json(operation("a", ["mirror2", "mirror1"], ["origin"], failed=["dns1"]))
    assert changed_operations(result) == [
        "a: changed on mirror1, changed on mirror2, failed on dns1"
    ]


def test_a_dry_run_is_not_a_clean_rerun() -> None:
    with pytest.raises(AssertionError, match="dry run"):
        changed_operations({"plan": [], "results": None})


def test_the_shape_is_what_pyinfra_really_prints(tmp_path: Path) -> None:
    """A real `pyinfra -y --json` run on @local: one operation that always changes and
    one that finds nothing to do. If pyinfra ever reshapes its JSON, this fails
    before the lab scenarios silently check the wrong field."""
    (tmp_path / "deploy.py").write_text(
        "from pyinfra.operations import files, server\n"
        "server.shell(name='Always changes', commands=['true'])\n"
        f"files.directory(name='Already there', path={str(tmp_path)!r})\n"
    )
    proc = subprocess.run(
        [PYINFRA, "-y", "--json", "@local", "deploy.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    ops = {op["name"]: op for op in result["results"]["operations"]}
    assert (ops["Always changes"]["success"], ops["Already there"]["no_change"]) == (
        ["@local"],
        ["@local"],
    )
    assert changed_operations(result) == ["Always changes: changed on @local"]


# -- step --------------------------------------------------------------------------


def test_a_timeout_in_a_step_names_the_step() -> None:
    """LabRun.wait_for's timeout is pytest.fail, which `except Exception` misses."""
    with pytest.raises(pytest.fail.Exception) as failed, step("mirrors converge"):
        pytest.fail("condition not met within 30.0s")
    assert "step 'mirrors converge' failed after" in str(failed.value)
    assert "condition not met within 30.0s" in str(failed.value)


def test_an_assertion_in_a_step_names_the_step() -> None:
    served = 1
    with pytest.raises(pytest.fail.Exception) as failed, step("deploy"):
        assert served == 2, "one is not two"
    assert "step 'deploy' failed after" in str(failed.value)
    assert "one is not two" in str(failed.value)


def test_an_interrupt_is_not_turned_into_a_step_failure() -> None:
    with pytest.raises(KeyboardInterrupt), step("deploy"):
        raise KeyboardInterrupt


def test_a_step_that_passes_prints_its_time(capsys: pytest.CaptureFixture[str]) -> None:
    with step("lab up"):
        pass
    assert capsys.readouterr().out.startswith("step 'lab up': ")
