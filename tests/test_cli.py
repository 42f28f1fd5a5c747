"""The ``fastcalc`` command line: ``fastcalc bench``."""

import json
import subprocess
import sys

import pytest

from fastcalc import cli


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert cli.main(["bench", "--sizes", "300", "--dtype", "float32", "--kernels", "sigmoid",
                     "--repeat", "2", "--min-time", "0", "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "[1/" in captured.err  # progress
    table = captured.out
    for column in ("implementation", "median", "vs numpy ref", "throughput", "time / copy"):
        assert column in table
    for row in ("fastcalc numpy", "fastcalc auto", "memory copy", "numpy 1/(1+exp(-x))"):
        assert f"| {row}" in table
    records = json.loads(report.read_text())["results"]
    reference = next(r for r in records if r["implementation"] == "fastcalc numpy")
    assert reference["speedup_vs_reference"] == 1.0 and reference["median_s"] > 0
    assert {r["kernel"] for r in records} == {"sigmoid"}
    assert {r["size"] for r in records} == {300}


def test_bench_covers_convolution(capsys):
    assert cli.main(["bench", "--kernels", "correlate2d", "--image-sizes", "40",
                     "--kernel-sizes", "3", "--dtype", "float64", "--repeat", "1",
                     "--min-time", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "correlate2d 3x3 same" in table and "GFLOP/s" in table
    assert "| fastcalc numpy" in table and "| fastcalc auto" in table


def test_bench_covers_the_cnn_layer(capsys):
    assert cli.main(["bench", "--kernels", "conv2d", "--batch", "1", "--dtype", "float32",
                     "--repeat", "1", "--min-time", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    for group in ("conv2d forward x(1,16,64,64)w(32,16,3,3)",
                  "conv2d forward+backward x(1,16,64,64)w(32,16,3,3)"):
        assert f"| {group}" in table
    assert "| fastcalc numpy" in table and "| fastcalc auto" in table and "GFLOP/s" in table


def test_bench_covers_batched_gradient_descent(capsys):
    assert cli.main(["bench", "--kernels", "gradient_descent", "fit_logistic", "--problems", "2",
                     "--dtype", "float64", "--repeat", "1", "--min-time", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    for group in ("gradient_descent 2,000 quadratics x 100 steps",
                  "fit_logistic 2x(256x8) x 500 steps, full batch",
                  "fit_logistic 2x(256x8) x 500 steps, batches of 32"):
        assert f"| {group}" in table
    assert "| fastcalc numba" in table and "| fastcalc auto" in table


def test_the_peak_is_measured_and_plausible():
    from fastcalc import _bench

    peak = _bench.peak_gflop_per_s("float32")
    if peak is None:
        pytest.skip("no Cython extensions: no peak probe")
    # At least one scalar multiply-add per cycle at 0.5 GHz; under 100 TFLOP/s.
    assert 1.0 < peak < 1e5
    assert _bench.peak_gflop_per_s("float64") < peak


@pytest.mark.parametrize("argument", [["--sizes", "0"], ["--sizes", "1.5"], ["--dtype", "int8"],
                                      ["--kernels", "tanh"], ["--batch", "0"],
                                      ["--problems", "0"]])
def test_bench_rejects_bad_options(argument):
    with pytest.raises(SystemExit) as error:
        cli.main(["bench", *argument])
    assert error.value.code == 2


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "fastcalc", "bench", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--json" in result.stdout
