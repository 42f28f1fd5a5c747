"""The ``fastcalc`` command line: ``fastcalc bench``."""

import contextlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

from fastcalc import _bench, cli

# Every kernel at sizes that take seconds, not the default's minute (the RNN's are fixed).
TINY = ["--sizes", "300", "--image-sizes", "40", "--kernel-sizes", "3", "--batch", "1",
        "--problems", "2", "--repeat", "2", "--min-time", "0", "--quiet"]


def rows(output, implementation):
    """The lines of a table that are rows of ``implementation``."""
    return [line for line in output.splitlines()
            if line.startswith(f"  {implementation}  ")]


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert cli.main(["bench", "--sizes", "300", "--dtype", "float32", "--kernels", "sigmoid",
                     "--repeat", "3", "--min-time", "0", "--full", "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "[1/" in captured.err  # progress
    table = captured.out
    header = next(line for line in table.splitlines() if line.startswith("implementation"))
    for column in ("median", "IQR", "vs numpy", "throughput", "peak", "/ copy", "note"):
        assert column in header
    assert "sigmoid N=300, float32" in table.splitlines()
    for row in ("fastcalc numpy", "fastcalc auto", "memory copy", "numpy 1/(1+exp(-x))"):
        assert len(rows(table, row)) == 1
    records = json.loads(report.read_text())["results"]
    reference = next(r for r in records if r["implementation"] == "fastcalc numpy")
    assert reference["speedup_vs_reference"] == 1.0 and reference["median_s"] > 0
    assert {r["kernel"] for r in records} == {"sigmoid"}
    assert {r["size"] for r in records} == {300}
    assert all(r["iqr_s"] >= 0 and r["repetitions"] == 3 and r["scale"] == 1 for r in records)
    assert all(r["noisy"] == (r["iqr_s"] > 0.1 * r["median_s"]) for r in records)


def test_bench_default_shows_reference_auto_and_the_fastest_peer(capsys):
    assert cli.main(["bench", "--sizes", "300", "--kernels", "sigmoid", "--repeat", "2",
                     "--min-time", "0", "--quiet"]) == 0
    output = capsys.readouterr().out
    assert "throughput" not in output and "memory copy" not in output
    assert len(rows(output, "fastcalc numpy")) == len(rows(output, "fastcalc auto")) == 1
    assert not rows(output, "fastcalc cython") and not rows(output, "fastcalc numba")
    implementations = [line.split("  ")[1] for line in output.splitlines()
                       if line.startswith("  ")]
    assert len(implementations) == 3  # the reference, auto and one peer
    summary = output[output.index("Summary:"):].splitlines()
    assert summary[-1].startswith("sigmoid N=300: auto ") and implementations[2] in summary[-1]


def _logging_cases(log):
    def case(kernel, implementation):
        return _bench.Case(kernel, "float64", 10, implementation,
                           lambda: log.append((kernel, implementation)), 80)

    return [case("a", "fastcalc numpy"), case("a", "other"), case("b", "fastcalc numpy"),
            case("a", "third")]


def test_bench_run_takes_turns_within_a_group(monkeypatch):
    """The implementations of a group take turns, in two passes of half the repetitions
    (the second reversed): a slow phase hits them all."""
    monkeypatch.setattr(_bench, "SETTLE_SECONDS", 0.0)
    log = []
    cases = _logging_cases(log)
    results = _bench.run(cases, repeat=4, min_time=0, scale_above=0)
    assert [(r.kernel, r.implementation) for r in results] == [
        (c.kernel, c.implementation) for c in cases]
    assert all(r.repetitions == 4 and r.calls_per_repetition == 1 for r in results)
    # Group "a": warm-up and calibrating call per implementation, then two passes of two
    # repetitions each; then "b".
    a = [("a", "fastcalc numpy"), ("a", "other"), ("a", "third")]
    twice = [call for pair in a for call in (pair, pair)]
    assert log == twice + twice + twice[::-1] + [("b", "fastcalc numpy")] * 6


def test_bench_run_settles_each_implementation_before_timing_it(monkeypatch):
    """Another implementation's thread pools poll for a while after its calls: each one runs
    untimed for SETTLE_SECONDS before its repetitions of a pass."""
    monkeypatch.setattr(_bench, "SETTLE_SECONDS", 0.01)
    log = []
    results = _bench.run(_logging_cases(log), repeat=2, min_time=0, scale_above=0)
    assert all(r.repetitions == 2 for r in results)
    runs = [[log[0], 1]]  # consecutive calls of one implementation
    for call in log[1:]:
        if call == runs[-1][0]:
            runs[-1][1] += 1
        else:
            runs.append([call, 1])
    # Calibration, then a pass each way for "a" (the turn at the end of the first pass
    # and the start of the second is one run); "b", alone in its group, is one run.  A
    # settled run holds more calls than the one repetition of each pass counted.
    assert [call for call, _ in runs] == [
        ("a", "fastcalc numpy"), ("a", "other"), ("a", "third"),
        ("a", "fastcalc numpy"), ("a", "other"), ("a", "third"),
        ("a", "other"), ("a", "fastcalc numpy"), ("b", "fastcalc numpy")]
    assert all(count > 3 for _, count in runs[3:])


def test_bench_covers_convolution(capsys):
    assert cli.main(["bench", "--kernels", "correlate2d", "--image-sizes", "40",
                     "--kernel-sizes", "3", "--dtype", "float64", "--repeat", "1",
                     "--min-time", "0", "--quiet", "--full"]) == 0
    table = capsys.readouterr().out
    assert "correlate2d 3x3 same on 40x40, float64" in table.splitlines()
    assert "GFLOP/s" in table
    assert rows(table, "fastcalc numpy") and rows(table, "fastcalc auto")


def test_bench_covers_the_cnn_layer(capsys):
    assert cli.main(["bench", "--kernels", "conv2d", "--batch", "1", "--dtype", "float32",
                     "--repeat", "1", "--min-time", "0", "--quiet", "--full"]) == 0
    table = capsys.readouterr().out
    for group in ("conv2d forward x(1,16,64,64)w(32,16,3,3), float32",
                  "conv2d forward+backward x(1,16,64,64)w(32,16,3,3), float32"):
        assert group in table.splitlines()
    assert rows(table, "fastcalc numpy") and rows(table, "fastcalc auto") and "GFLOP/s" in table


def test_bench_covers_batched_gradient_descent(capsys):
    assert cli.main(["bench", "--kernels", "gradient_descent", "fit_logistic", "--problems", "2",
                     "--dtype", "float64", "--repeat", "1", "--min-time", "0", "--quiet",
                     "--full"]) == 0
    table = capsys.readouterr().out
    for group in ("gradient_descent 2,000 quadratics x 100 steps, float64",
                  "fit_logistic 2x(256x8) x 500 steps, full batch, float64",
                  "fit_logistic 2x(256x8) x 500 steps, batches of 32, float64"):
        assert group in table.splitlines()
    assert rows(table, "fastcalc numba") and rows(table, "fastcalc auto")


def test_the_peak_is_measured_and_plausible():
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
    assert rows(capsys.readouterr().out, "fastcalc numpy")  # the table is printed as before
    width, height, dpi = _png_size_and_dpi(chart)
    assert (width, round(dpi)) == (1000, 100)  # 10 inches at 100 dpi
    assert 200 < height < 2000  # one case: its bars depend on the peers installed
    from PIL import Image  # a dependency of matplotlib

    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:  # not blank
        assert len(image.convert("L").getcolors(1 << 16)) > 10


def _result(kernel, size, implementation, median_s):
    return _bench.Result(kernel, "float64", size, implementation, median_s, 1, 1, 8 * size)


def test_plot_speedups_draws_the_tables_speedups(tmp_path):
    pytest.importorskip("matplotlib")
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
            assert f" {_bench._format_speedup(speedup)} " in table  # the "vs numpy" column
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
    monkeypatch.setattr(_bench, "run", lambda *args, **kwargs: pytest.fail("benchmarks ran"))
    assert cli.main(["bench", "--kernels", "sigmoid", "--plot", str(tmp_path / plot)]) == 1
    assert "--plot" in capsys.readouterr().err


def test_every_line_fits_in_120_columns(monkeypatch, capsys):
    """Default and --full output of every kernel, with scaled rows (the longest notes)."""
    timed = []

    def run_once(*args, **kwargs):  # the second command prints the first one's results
        if not timed:
            timed.append(run(*args, **kwargs))
        return timed[0]

    run = _bench.run
    monkeypatch.setattr(_bench, "run", run_once)
    outputs = []
    for full in ([], ["--full"]):
        assert cli.main(["bench", *TINY, "--scale-above", "0", *full]) == 0
        outputs.append(capsys.readouterr().out)
    default, complete = outputs
    assert "scaled" in default and "fit_logistic" in default and "Summary:" in default
    assert len(complete.splitlines()) > len(default.splitlines())
    for output in outputs:
        long_lines = [line for line in output.splitlines() if len(line) > 120]
        assert not long_lines


def result(kernel, implementation, median_s, iqr_s=0.0, dtype="float64", size=10, **fields):
    return _bench.Result(kernel, dtype, size, implementation, median_s, 5, 1, 8 * size,
                         iqr_s=iqr_s, **fields)


def test_a_noisy_row_is_flagged_in_the_table_and_the_summary():
    results = [result("k", "fastcalc numpy", 1.0, iqr_s=0.05),
               result("k", "fastcalc auto", 0.1, iqr_s=0.011),  # 11% of its median
               result("k", "torch", 0.2, iqr_s=0.02)]  # 10%: not above
    _bench.fill_ratios(results)
    assert [r.noisy for r in results] == [False, True, False]
    table = _bench.format_table(results, full=False)
    assert rows(table, "fastcalc auto")[0].split()[2:5] == ["100", "ms", "11%"]
    assert rows(table, "fastcalc auto")[0].split()[5] == "!"
    assert "!" not in rows(table, "fastcalc numpy")[0] + rows(table, "torch")[0]
    summary = _bench.format_summary(results).splitlines()[-1]
    assert summary == "k (float64): auto 100 ms ! vs torch 200 ms: 2.00x, auto faster"


def test_summary_compares_auto_with_the_fastest_peer_in_float32():
    """Peers are other libraries' kernels: the copy and numpy's exp are yardsticks."""
    results = []
    for dtype, scale in (("float64", 2.0), ("float32", 1.0)):
        results += [result("sigmoid", "fastcalc numpy", 9.0, dtype=dtype, shape="N=10"),
                    result("sigmoid", "fastcalc auto", 2.0 * scale, dtype=dtype, shape="N=10"),
                    result("sigmoid", "fastcalc cython", 0.5, dtype=dtype, shape="N=10"),
                    result("sigmoid", "memory copy", 0.1, dtype=dtype, shape="N=10"),
                    result("sigmoid", "numpy exp(x)", 0.2, dtype=dtype, shape="N=10"),
                    result("sigmoid", "scipy", 3.0 * scale, dtype=dtype, shape="N=10"),
                    result("sigmoid", "torch", 4.0 * scale, dtype=dtype, shape="N=10")]
    results += [result("descent", "fastcalc auto", 1.0), result("descent", "fastcalc numba", 1.0)]
    _bench.fill_ratios(results)
    lines = _bench.format_summary(results).splitlines()
    assert lines[-2:] == ["sigmoid N=10: auto 2 s vs scipy 3 s: 1.50x, auto faster",
                          "descent (float64): auto 1 s, no peer timed"]
    results[8].median_s = 6.0  # float32's auto, now slower than scipy
    line = _bench.format_summary(results).splitlines()[-2]
    assert line == "sigmoid N=10: auto 6 s vs scipy 3 s: 0.50x, peer faster"


def test_run_times_a_share_of_a_slow_case_and_scales_it(monkeypatch):
    monkeypatch.setattr(_bench, "SETTLE_SECONDS", 0.0)
    calls = {"full": 0, "share": 0}

    def work(name, seconds):
        def call():
            calls[name] += 1
            time.sleep(seconds)
        return call

    share = _bench.Reduced(work("share", 0.002), 8.0, "1 of 8 steps, scaled")
    case = _bench.Case("k", "float64", 10, "fastcalc numpy", work("full", 0.016), 80,
                       note="allocates", reduced=share)
    [scaled] = _bench.run([case], repeat=3, min_time=0, scale_above=0.001)
    assert calls["full"] == 0 and calls["share"] == 5  # warm-up, calibration, 3 repetitions
    assert scaled.scale == 8.0 and scaled.note == "allocates; 1 of 8 steps, scaled"
    assert scaled.median_s >= 8 * 0.002 and scaled.iqr_s >= 0
    calls.update(full=0, share=0)
    for scale_above in (None, 1.0):  # never scaled, or a full call faster than the threshold
        [full] = _bench.run([case], repeat=3, min_time=0, scale_above=scale_above)
        assert full.scale == 1.0 and full.note == "allocates" and full.median_s >= 0.016
    assert calls["full"] == 10 and calls["share"] == 2  # 1.0: the share's warm-up and one call
    table = _bench.format_table([scaled])
    assert rows(table, "fastcalc numpy")[0].endswith("allocates; 1 of 8 steps, scaled")
    assert "scaled: timed on the share of the work" in table


def test_fit_cases_scale_the_python_step_loops_by_their_steps():
    cases = _bench.fit_cases((4, 16, 2, 64), dtypes=("float32",), batch_sizes=(None, 8))
    reduced = {case.implementation for case in cases if case.reduced is not None}
    assert reduced == {"fastcalc numpy"} | ({"torch bmm"} if _bench._peer_torch() else set())
    for case in cases:
        if case.reduced is not None:
            assert case.reduced.scale == 16 and case.reduced.note == "4 of 64 steps, scaled"
    reference = next(case for case in cases if case.implementation == "fastcalc numpy")
    assert reference.reduced.function().loss.shape == (4, 4)  # 4 problems, 4 steps
    assert reference.function().loss.shape == (4, 64)


def test_thread_count_sets_and_restores_the_threads():
    setting = _bench._dispatch.thread_setting()
    with _bench.thread_count(3):
        assert _bench._dispatch.thread_setting() == 3
    assert _bench._dispatch.thread_setting() == setting
    with pytest.raises(RuntimeError), _bench.thread_count(1):
        raise RuntimeError
    assert _bench._dispatch.thread_setting() == setting


def gone(pid):
    """Whether no process has this id (a killed competitor was also waited for)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("failure", [None, KeyboardInterrupt, RuntimeError])
def test_competing_processes_are_stopped_whatever_happens(failure):
    with pytest.raises(failure) if failure else contextlib.nullcontext():
        with _bench.competing_processes(2) as competitors:
            pids = [competitor.pid for competitor in competitors]
            assert len(pids) == 2 and all(competitor.poll() is None for competitor in competitors)
            if failure:
                raise failure
    assert all(gone(pid) for pid in pids)


@pytest.fixture
def contention(monkeypatch):
    """``--contended`` on two tiny cases; records the competitors and what the cases saw."""
    import numpy as np

    import fastcalc

    started = []  # the competitors of each state: idle (none), then contended
    seen = []  # per call of the auto case: (state index, its competitors all running)
    competing_processes = _bench.competing_processes

    @contextlib.contextmanager
    def recording(count):
        with competing_processes(count) as competitors:
            started.append(competitors)
            yield competitors

    x = np.ones(1000)

    def auto():
        seen.append((len(started), all(p.poll() is None for p in started[-1])))
        return fastcalc.sigmoid(x)

    cases = [_bench.Case("sigmoid", "float64", 1000, "fastcalc auto", auto, 16000,
                         shape="N=1,000"),
             _bench.Case("sigmoid", "float64", 1000, "fastcalc numpy",
                         lambda: fastcalc.sigmoid(x, backend="numpy"), 16000, shape="N=1,000")]
    monkeypatch.setattr(_bench, "competing_processes", recording)
    monkeypatch.setattr(_bench, "contention_cases", lambda: cases)
    return started, seen, cases


def test_bench_contended_times_beside_competitors_and_stops_them(contention, capsys):
    started, seen, _ = contention
    cli.main(["bench", "--contended", "--threads", "2", "--repeat", "3", "--min-time", "0",
              "--quiet"])
    output = capsys.readouterr().out
    assert [len(competitors) for competitors in started] == [0, _bench._dispatch.usable_cores()]
    assert {state for state, _ in seen} == {1, 2} and all(running for _, running in seen)
    assert all(gone(p.pid) for competitors in started for p in competitors)
    assert "idle" in output and "contended" in output and "sigmoid N=1,000, float64" in output
    header = next(line for line in output.splitlines() if line.startswith("implementation"))
    assert header.split() == ["implementation", "2", "threads", "1", "thread", "2", "threads",
                              "1", "thread", "2", "/", "1"]
    for implementation in ("fastcalc auto", "fastcalc numpy"):
        [row] = rows(output, implementation)
        assert re.search(r"  \d+\.\d\dx( \*)?$", row)
    assert all(len(line) <= 120 for line in output.splitlines())


def test_bench_contended_stops_the_competitors_on_ctrl_c(contention):
    started, seen, cases = contention
    auto = cases[0].function

    def interrupted():
        if len(started) == 2:  # contended
            raise KeyboardInterrupt
        return auto()

    cases[0].function = interrupted
    with pytest.raises(KeyboardInterrupt):
        cli.main(["bench", "--contended", "--repeat", "2", "--min-time", "0", "--quiet"])
    assert len(started) == 2 and len(started[1]) == _bench._dispatch.usable_cores()
    assert all(gone(p.pid) for p in started[1])


def test_contention_cases_are_the_benchmarks_kernels():
    cases = _bench.contention_cases()
    names = [(case.heading, case.implementation) for case in cases]
    expected = [("sigmoid N=1,048,576, float32", "fastcalc auto"),
                ("sigmoid N=16,777,216, float32", "fastcalc auto"),
                ("correlate2d 5x5 same on 2048x2048, float32", "fastcalc auto"),
                ("conv2d forward+backward x(32,16,64,64)w(32,16,3,3), float32", "fastcalc auto"),
                ("rnn forward+backward (T,B,I,H,O)=(100,32,64,128,64), float32", "fastcalc auto"),
                ("fit_logistic 1000x(256x8) x 500 steps, full batch, float32", "fastcalc auto")]
    assert [name for name in names if name[1] == "fastcalc auto"] == expected
    if "numba" in _bench._dispatch.available_backends():
        assert ("sigmoid N=16,777,216, float32", "fastcalc numba") in names
    if _bench._peer_torch() is not None:
        assert ("sigmoid N=1,048,576, float32", "torch.sigmoid") in names
    assert all(case.threads is None for case in cases)
