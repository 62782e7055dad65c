"""The Makefile's choice of Python, with fake `python3.x` scripts on a PATH of their own: `make -n`
prints what it would run, and the Makefile looks for its Python while it does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make") or "make"
# A name that exists but does not run, as a pyenv shim of a version that is not selected.
BROKEN = "broken"


def fake_pythons(tmp_path: Path, versions: dict[str, str]) -> Path:
    """A folder of scripts named like Pythons that print `Python VERSION`, and the tools the Makefile
    itself runs; nothing else, so no real Python of this machine is found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("awk", "id"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    for name, version in versions.items():
        body = 'echo "pyenv: not selected" >&2; exit 127' if version == BROKEN else f'echo "Python {version}"'
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        script.chmod(0o755)
    return bin_dir


def make(tmp_path: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`make -f Makefile ARGS` in an empty project folder (no .venv yet) with only `bin_dir` on PATH."""
    (tmp_path / "pyproject.toml").touch()
    return subprocess.run(
        [MAKE, "--no-print-directory", "-f", str(ROOT / "Makefile"), *args],
        cwd=tmp_path,
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("versions", "picked", "version"),
    [
        ({"python3.13": "3.13.1", "python3.12": "3.12.4", "python3": "3.11.2"}, "python3.13", "3.13.1"),
        ({"python3.12": "3.12.4", "python3.11": "3.11.9"}, "python3.12", "3.12.4"),
        ({"python3.13": "3.13.1", "python3": "3.14.0"}, "python3", "3.14.0"),
        ({"python3.13": BROKEN, "python3.12": BROKEN, "python3.11": "3.11.7"}, "python3.11", "3.11.7"),
        ({"python3.11": "3.11.7", "python3": "3.9.2"}, "python3.11", "3.11.7"),
    ],
    ids=["newest-named", "no-3.13", "python3-newest", "shims-that-do-not-run", "python3-too-old"],
)
def test_make_picks_the_newest_python_of_at_least_3_11_and_says_which(
    tmp_path: Path, versions: dict[str, str], picked: str, version: str
) -> None:
    done = make(tmp_path, fake_pythons(tmp_path, versions), "-n", "demo")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        f'echo "make: creating .venv with {picked} (Python {version})"',
        f"{picked} -m venv .venv",
    ]
    assert ".venv/bin/locust -f locustfiles/chat.py" in done.stdout


def test_python_given_is_used_and_checked(tmp_path: Path) -> None:
    bin_dir = fake_pythons(tmp_path, {"python3.13": "3.13.1", "custom-py": "3.12.0", "old-py": "3.10.4"})
    given = make(tmp_path, bin_dir, "-n", "install", f"PYTHON={bin_dir / 'custom-py'}")
    assert given.returncode == 0, given.stderr
    assert f"{bin_dir / 'custom-py'} -m venv .venv" in given.stdout.splitlines()
    old = make(tmp_path, bin_dir, "-n", "install", "PYTHON=old-py")
    assert old.returncode == 2 and old.stdout == ""
    [line] = old.stderr.splitlines()
    assert "no Python 3.11 or newer among old-py (old-py is 3.10.4)" in line, line


def test_with_only_older_pythons_make_stops_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    done = make(tmp_path, fake_pythons(tmp_path, {"python3": "3.9.2", "python3.13": BROKEN}), "-n", "demo")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "no Python 3.11 or newer among python3.13 python3.12 python3.11 python3 (python3 is 3.9.2)" in line
    assert line.endswith(
        "install Python 3.11 or newer, or name one with make PYTHON=/path/to/python3.x.  Stop."
    )


def with_venv(tmp_path: Path) -> None:
    """A .venv whose Python is this one (3.11 or newer): the smoke test compares the newest with it."""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)


def test_make_test_runs_a_smoke_test_on_a_newer_python_in_a_venv_of_its_own(tmp_path: Path) -> None:
    name, newer = f"python3.{sys.version_info.minor + 1}", f"3.{sys.version_info.minor + 1}.0"
    with_venv(tmp_path)
    done = make(tmp_path, fake_pythons(tmp_path, {name: newer}), "-n", "test", f"PYTHONS={name}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    smoke = lines[lines.index(".venv/bin/python -m tests.sharding -q") + 1 :]
    assert (
        smoke[0]
        == f'echo "make: smoke test on {name} (Python {newer}), newer than .venv\'s, in .venv-newest"'
    )
    assert f"{name} -m venv --clear .venv-newest" in smoke[1]
    assert "-m pip install --quiet -e '.[test]'" in smoke[1]
    assert smoke[2].startswith(".venv-newest/bin/locust -f locustfiles/chat.py --headless -u 2 -r 2 -t 3s")
    assert smoke[3].startswith(".venv-newest/bin/python -m pytest -q -m 'not timing' tests/test_options.py")


def test_without_a_newer_python_the_smoke_test_says_so_and_does_nothing(tmp_path: Path) -> None:
    same = f"3.{sys.version_info.minor}.99"  # a newer patch release is the same Python for this
    with_venv(tmp_path)
    done = make(tmp_path, fake_pythons(tmp_path, {f"python3.{sys.version_info.minor}": same}), "smoke-newest")
    assert done.returncode == 0, done.stderr
    version = ".".join(map(str, sys.version_info[:3]))
    assert done.stdout.splitlines() == [
        f"make: no Python newer than .venv's (Python {version}) here: no smoke test on a newer one"
    ]
    assert not (tmp_path / ".venv-newest").exists()
