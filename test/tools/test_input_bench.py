"""`sam3d-ros bench-inputs` times every per-frame input step and prints one line per step."""
from sam3d_ros.tools.cli import main
from sam3d_ros.tools.input_bench import format_input_benchmark, run_input_benchmark


def test_input_benchmark_times_every_step(capsys):
    rows = run_input_benchmark(repeats=1, number=1, width=160, height=120)
    assert [name for name, _ in rows][:4] == ["decode compressed jpeg colour", "decode compressedDepth 16UC1",
                                              "decode compressedDepth 32FC1", "undistort colour (bilinear)"]
    assert len(rows) == 7 and all(ms > 0 for _, ms in rows)
    assert len(format_input_benchmark(rows).splitlines()) == 1 + len(rows)
    assert main(["bench-inputs", "--repeats", "1"]) == 0
    assert "undistort depth (nearest)" in capsys.readouterr().out
