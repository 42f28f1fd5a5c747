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


def test_bench_run_takes_turns_within_a_group():
    """Each repetition times every implementation of a group once: a slow phase hits them all."""
    from fastcalc import _bench

    log = []

    def case(kernel, implementation):
        return _bench.Case(kernel, "float64", 10, implementation,
                           lambda: log.append((kernel, implementation)), 80)

    cases = [case("a", "fastcalc numpy"), case("a", "other"), case("b", "fastcalc numpy"),
             case("a", "third")]
    results = _bench.run(cases, repeat=4, min_time=0)
    assert [(r.kernel, r.implementation) for r in results] == [
        (c.kernel, c.implementation) for c in cases]
    assert all(r.repetitions == 4 and r.calls_per_repetition == 1 for r in results)
    # Group "a": warm-up and one timed call per implementation, then three turns; then "b".
    a = [("a", "fastcalc numpy"), ("a", "other"), ("a", "third")]
    calibration = [call for pair in a for call in (pair, pair)]
    assert log == calibration + a * 3 + [("b", "fastcalc numpy")] * 5


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


def _png_size_and_dpi(path):
    """(width, height) in pixels and dots per inch of a PNG, read from its header chunks."""
    import struct

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert b"IEND" in data[-12:], "truncated PNG"
    chunk = data.find(b"pHYs")
    x_per_metre, _, unit = struct.unpack(">IIB", data[chunk + 4:chunk + 13])
    assert chunk > 0 and unit == 1  # pixels per metre
    return width, height, x_per_metre * 0.0254


@pytest.mark.filterwarnings("error")
def test_bench_plot_writes_a_png_1000_pixels_wide(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    chart = tmp_path / "b.png"
    assert cli.main(["bench", "--sizes", "1000", "--dtype", "float32", "--kernels", "sigmoid",
                     "--repeat", "1", "--min-time", "0", "--quiet", "--plot", str(chart)]) == 0
    assert "| fastcalc numpy" in capsys.readouterr().out  # the table is printed as before
    width, height, dpi = _png_size_and_dpi(chart)
    assert (width, round(dpi)) == (1000, 100)  # 10 inches at 100 dpi
    assert 200 < height < 2000  # one case: its bars depend on the peers installed
    from PIL import Image  # a dependency of matplotlib

    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:  # not blank
        assert len(image.convert("L").getcolors(1 << 16)) > 10


def _result(kernel, size, implementation, median_s):
    from fastcalc import _bench

    return _bench.Result(kernel, "float64", size, implementation, median_s, 1, 1, 8 * size)


def test_plot_speedups_draws_the_tables_speedups(tmp_path):
    pytest.importorskip("matplotlib")
    from fastcalc import _bench

    results = [_result("sigmoid", 10, "fastcalc numpy", 1e-3),
               _result("sigmoid", 10, "fastcalc numba", 1e-4),
               _result("sigmoid", 10, "memory copy", 2e-5),
               _result("sigmoid", 10, "torch.sigmoid", 4e-3),
               _result("conv", 20, "fastcalc numpy", 2.0),
               _result("conv", 20, "fastcalc numba", 2e-3),
               _result("conv", 20, "scipy", 1.0),
               _result("no reference", 30, "fastcalc numba", 1.0),
               _result("no reference", 30, "scipy", 2.0)]
    _bench.fill_ratios(results)
    table = _bench.format_table(results)
    path = tmp_path / "chart.png"
    figure = _bench.plot_speedups(results, path, title="fastcalc bench (test machine)")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.get_size_inches()[0] == 10 and figure.get_suptitle() == (
        "fastcalc bench (test machine)")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    drawn = {}  # implementation -> speed-ups, in the order of the cases
    for container in axes.containers:
        drawn[container.get_label()] = [bar.get_x() + bar.get_width() for bar in container]
    # Neither the reference (the 1x line) nor the memory copy; no bar for the case without one.
    assert list(drawn) == ["fastcalc numba", "torch.sigmoid", "scipy"]
    assert drawn["fastcalc numba"] == pytest.approx([10.0, 1000.0])
    assert drawn["torch.sigmoid"] == pytest.approx([0.25])
    assert drawn["scipy"] == pytest.approx([2.0])
    for name, speedups in drawn.items():
        expected = [r.speedup_vs_reference for r in results
                    if r.implementation == name and r.kernel != "no reference"]
        assert speedups == pytest.approx(expected)
        for speedup in expected:
            assert f"| {speedup:.2f}x" in table  # the table's "vs numpy ref" column
    labels = {text.get_text() for text in axes.texts}
    assert {"10x", "1000x", "0.25x", "2x"} <= labels  # each bar annotated with its value
    ticks = [tick.get_text() for tick in axes.get_yticklabels()]
    assert ticks == ["sigmoid\nfloat64, N=10", "conv\nfloat64, N=20"]
    reference = [line for line in axes.get_lines() if line.get_label().startswith("numpy ref")]
    assert len(reference) == 1 and list(reference[0].get_xdata()) == [1, 1]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["numpy reference (fastcalc numpy)", "fastcalc numba", "torch.sigmoid",
                      "scipy"]
    colours = {container.get_label(): container.patches[0].get_facecolor()
               for container in axes.containers}
    assert colours["fastcalc numba"][2] > colours["fastcalc numba"][0]  # fastcalc: blue
    assert colours["scipy"][0] > colours["scipy"][2]  # peers: warm


def test_plot_figure_grows_with_the_cases():
    pytest.importorskip("matplotlib")
    from fastcalc import _bench

    def figure_height(cases):
        results = [_result(f"kernel {i}", 10, name, seconds) for i in range(cases)
                   for name, seconds in (("fastcalc numpy", 1.0), ("fastcalc numba", 0.1))]
        _bench.fill_ratios(results)
        return _bench.plot_speedups(results).get_size_inches()[1]

    # Linear in the cases, and at least half an inch (50 pixels at 100 dpi) per case of one
    # bar: its label's three lines of 8-point text fit.
    per_case = (figure_height(30) - figure_height(10)) / 20
    assert per_case >= 0.5
    assert figure_height(20) - figure_height(10) == pytest.approx(10 * per_case)


def test_bench_plot_without_matplotlib_fails_before_benchmarking(monkeypatch, capsys):
    import builtins

    from fastcalc import _bench

    real_import = builtins.__import__

    def import_without_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    def must_not_run(*args, **kwargs):
        raise AssertionError("benchmarks ran before the matplotlib check")

    monkeypatch.setattr(builtins, "__import__", import_without_matplotlib)
    monkeypatch.setattr(_bench, "run", must_not_run)
    monkeypatch.setattr(_bench, "activation_cases", must_not_run)
    assert cli.main(["bench", "--kernels", "sigmoid", "--plot", "b.png"]) == 1
    captured = capsys.readouterr()
    assert 'pip install "fastcalc[plot]"' in captured.err and "matplotlib" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("plot", ["missing-directory/b.png", "b.unknown-format"])
def test_bench_plot_rejects_an_unwritable_path_before_benchmarking(plot, tmp_path, monkeypatch,
                                                                   capsys):
    pytest.importorskip("matplotlib")
    from fastcalc import _bench

    monkeypatch.setattr(_bench, "run", lambda *args, **kwargs: pytest.fail("benchmarks ran"))
    assert cli.main(["bench", "--kernels", "sigmoid", "--plot", str(tmp_path / plot)]) == 1
    assert "--plot" in capsys.readouterr().err
