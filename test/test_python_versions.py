"""The package runs on Python 3.10 (Humble, JetPack 6) to 3.12 (Jazzy): `vermin` finds no construct newer than 3.10.

Only a 3.11 interpreter is installable here; vermin reads the source and knows which version each language feature,
module and function needs, so a 3.11-only construct fails this test before it reaches a robot.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERMIN = [str(Path(sys.executable).parent / "vermin"), "--target=3.10-", "--violations", "--eval-annotations", "--no-tips",
          "--no-parse-comments"]


def _vermin(*paths):
    return subprocess.run([*VERMIN, *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_package_launch_and_tests_need_at_most_python_3_10():
    result = _vermin(ROOT / "sam3d_ros", ROOT / "launch", ROOT / "setup.py", ROOT / "test")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_3_11_construct_fails_the_check(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("import tomllib\n\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    result = _vermin(newer)
    assert result.returncode != 0
    assert "tomllib" in result.stdout and "3.11" in result.stdout
