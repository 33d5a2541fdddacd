"""scripts/run_tests.py (what `make test` runs): one process per file, failures and crashes reported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _runner():
    spec = importlib.util.spec_from_file_location("run_tests", ROOT / "scripts" / "run_tests.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_light_files_share_processes_and_a_crash_is_a_failure(tmp_path, capsys):
    runner = _runner()
    (tmp_path / "test_good.py").write_text("import os\n\ndef test_pid():\n    open(%r, 'a').write(f'{os.getpid()}\\n')\n"
                                           % str(tmp_path / "pids"))
    for name in ("test_good_too.py", "test_good_three.py"):
        (tmp_path / name).write_text((tmp_path / "test_good.py").read_text())
    assert runner.main(["--jobs", "2", "--share", "1", str(tmp_path)]) == 0
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 3  # --share 1: three files, three processes
    assert "3 passed" in capsys.readouterr().out
    (tmp_path / "pids").unlink()
    assert runner.main(["--jobs", "2", "--share", "2", str(tmp_path)]) == 0
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 3 and len(set(pids)) == 2  # two share a process, the third runs alone
    assert "3 passed" in capsys.readouterr().out

    (tmp_path / "test_crash.py").write_text("import os\n\ndef test_crash():\n    os.kill(os.getpid(), 9)\n")
    (tmp_path / "test_wrong.py").write_text("def test_wrong():\n    assert 1 + 1 == 3\n")
    status = runner.main(["--jobs", "1", "--share", "1", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 3  # the worst status: the crash
    assert "test_crash.py died of signal 9" in out
    assert "FAIL" in out and "assert 1 + 1 == 3" in out and "failed: " in out
    assert runner.main(["--jobs", "1", "-k", "nothing_matches", str(tmp_path)]) == 5


def test_files_start_with_the_slowest_and_node_ids_pass_through():
    runner = _runner()
    files = runner.test_files(["tests"])
    assert files[0] == runner.SLOW_FIRST[0]
    assert all((ROOT / f).exists() for f in runner.SLOW_FIRST)  # the list names files that exist
    assert "tests/test_run_tests.py" in files
    assert runner.test_files(["tests/test_cli.py::test_x"]) == ["tests/test_cli.py::test_x"]
    units = runner.work_units(files)
    assert units[0] == [runner.SLOW_FIRST[0]]  # slow files alone, first
    assert all(len(u) == 1 for u in units if u[0] in runner.SLOW_FIRST)
    assert sorted(f for u in units for f in u) == sorted(files) and max(map(len, units)) == runner.SHARE
