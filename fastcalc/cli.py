"""The ``fastcalc`` command: ``bench``, ``demo`` and ``warmup`` (or ``python -m fastcalc``)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys

__all__ = ["main"]

_ACTIVATIONS = ("sigmoid", "sigmoid_derivative")
_KERNELS = (*_ACTIVATIONS, "correlate2d", "conv2d", "rnn", "gradient_descent", "fit_logistic")


def _positive_int(text: str) -> int:
    value = int(float(text))  # accepts 1e6 and 2**24 written out as 16777216
    if value < 1 or value != float(text):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcalc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="time every kernel on every backend and the installed peers",
        description="Time every kernel on every available backend next to the peers a user "
        "would pick instead (numpy, scipy, OpenCV, torch, JAX when installed), in about a "
        "minute, and print a table and a summary.  The table has one block per kernel, dtype "
        "and size: median time per call, its spread (the interquartile range of the "
        "repetitions, flagged with ! above 10%% of the median) and speed-up over the numpy "
        "reference, for the numpy reference, fastcalc auto and the fastest peer (--full: every "
        "implementation, with the throughput, GB/s or GFLOP/s and share of the measured peak, "
        "and the ratio to a plain memory copy of the same bytes).  The summary compares "
        "fastcalc auto with the fastest peer, one line per kernel and size.  A call that "
        "would take longer than --scale-above seconds is timed on a share of its work along "
        "a dimension its time is linear in (fit_logistic's steps, for the numpy reference "
        "and torch) and scaled up; its note says so.  The RNN runs at (T, B, I, H, O) = "
        "(100, 32, 64, 128, 64) and at the seed's (4, 1, 2, 3, 2).  --contended times "
        "threaded kernels beside competing processes instead.",
    )
    bench.add_argument("--sizes", type=_positive_int, nargs="+", default=[1000, 1_000_000],
                       metavar="N", help="elementwise array sizes (default: 1000 1000000)")
    bench.add_argument("--image-sizes", type=_positive_int, nargs="+", default=[1024],
                       metavar="N", help="side of the N x N convolution images (default: 1024)")
    bench.add_argument("--kernel-sizes", type=_positive_int, nargs="+", default=[3, 5, 11],
                       metavar="K", help="side of the K x K convolution kernels (default: 3 5 11)")
    bench.add_argument("--batch", type=_positive_int, default=32, metavar="N",
                       help="batch of the CNN layer x (N, 16, 64, 64), w (32, 16, 3, 3) "
                       "(default: 32)")
    bench.add_argument("--problems", type=_positive_int, default=1000, metavar="P",
                       help="fit_logistic: P logistic regressions of 256 x 8 (default: 1000); "
                       "gradient_descent: 1000 P scalar problems")
    bench.add_argument("--dtype", choices=("float32", "float64", "all"), default="float32",
                       help="dtype to time (default: float32; gradient_descent always runs "
                       "in float64)")
    bench.add_argument("--kernels", nargs="+", choices=_KERNELS, default=list(_KERNELS),
                       help="kernels to time (default: all)")
    bench.add_argument("--repeat", type=_positive_int, default=5,
                       help="repetitions per case; the median and interquartile range are "
                       "reported (default: 5)")
    bench.add_argument("--min-time", type=float, default=0.005, metavar="SECONDS",
                       help="minimum duration of one repetition (default: 0.005)")
    bench.add_argument("--scale-above", type=float, default=0.25, metavar="SECONDS",
                       help="time a call estimated to take longer than this on a share of its "
                       "work, where its time is linear in it, and scale the time up (default: "
                       "0.25; inf: time every call in full)")
    bench.add_argument("--full", action="store_true",
                       help="print every implementation, with throughput and memory-copy "
                       "ratio, not only the numpy reference, fastcalc auto and the fastest peer")
    bench.add_argument("--contended", action="store_true",
                       help="instead: time the threaded kernels (sigmoid, correlate2d, the CNN "
                       "layer and the RNN forward + backward, fit_logistic) on the default "
                       "thread count and on 1 thread, idle and then beside one CPU-bound "
                       "process per usable core, which are stopped after")
    bench.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for fastcalc and torch (default: every usable core)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="FILE",
                       help="also draw the speed-ups over the numpy reference as a bar chart, "
                       "one group of bars per case, 1000 pixels wide at 100 dpi (PNG, or any "
                       "format matplotlib writes, by FILE's extension; needs matplotlib: "
                       'pip install "fastcalc[plot]")')
    bench.add_argument("--quiet", action="store_true", help="no progress lines")
    demo = commands.add_parser(
        "demo",
        help="reproduce every slide of the seed deck: its printed results and its figures",
        description="Run every slide of 'Why Calculus is Essential for Machine Learning' with "
        "fastcalc's kernels: print each slide's results as the slide does, write each figure "
        "as a PNG and an index.html that shows them.  Needs matplotlib (the plot extra).",
    )
    demo.add_argument("--out", default="fastcalc-demo", metavar="DIR",
                      help="directory for the PNGs and index.html (default: ./fastcalc-demo)")
    warmup = commands.add_parser(
        "warmup",
        help="compile every Numba kernel now and cache it on disk (no first-call latency)",
        description="Compile every Numba kernel for float32 and float64 (serial and "
        "multi-threaded variants) through the public functions, so that Numba's on-disk "
        "cache holds them and later processes only load them.  Prints the seconds each "
        "kernel family took: compile times on the first run, cache loads afterwards.",
    )
    warmup.add_argument("--dtype", choices=("float32", "float64", "all"), default="all",
                        help="dtype to compile for (default: all)")
    return parser


def _progress(index: int, total: int, case, state: str = "") -> None:
    threads = "" if case.threads is None else f" on {case.threads} thread(s)"
    line = f"{state}[{index + 1}/{total}] {case.heading} {case.implementation}{threads}"
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + line)
        if index + 1 == total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _plot_problem(path: str) -> str | None:
    """Why ``--plot path`` would fail after the benchmarks, or None: checked before them."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return 'fastcalc bench --plot needs matplotlib: pip install "fastcalc[plot]"'
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        return f"fastcalc bench --plot: {path}: no directory {directory}"
    extension = os.path.splitext(path)[1].lstrip(".").lower()  # none: matplotlib writes a PNG
    formats = FigureCanvasBase.get_supported_filetypes()
    if extension and extension not in formats:
        return (f"fastcalc bench --plot: matplotlib cannot write {extension!r} files; "
                f"use one of {', '.join(sorted(formats))}")
    return None


def _bench(args: argparse.Namespace) -> int:
    if args.plot is not None:  # before the benchmarks, which take a minute
        problem = _plot_problem(args.plot)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
    import fastcalc
    from fastcalc import _bench

    if args.threads is not None:
        fastcalc.set_num_threads(args.threads)
    timing = f"median of {args.repeat} repetitions of at least {args.min_time:g} s"
    if args.contended:
        return _contended(args, timing)
    results = _bench.run(_cases(args), repeat=args.repeat, min_time=args.min_time,
                         progress=None if args.quiet else _progress,
                         scale_above=args.scale_above)
    machine = _machine()
    heading = "\n".join(_bench.wrap(f"fastcalc bench ({timing}): {machine}"))
    print(heading, end="\n\n")
    print(_bench.format_table(results, full=args.full), end="\n\n")
    print(_bench.format_summary(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "results": _bench.as_records(results)}, handle, indent=1)
    if args.plot is not None:
        _bench.plot_speedups(results, args.plot, title=heading)
    return 0


def _machine() -> str:
    """The machine, the versions of fastcalc and of the peers imported, and the threads."""
    from fastcalc import _config

    info = _config.config()
    versions = [f"Python {info['python']}", f"fastcalc {info['fastcalc']}",
                f"numpy {info['numpy']}"]
    if info["numba"] is not None:
        versions.append(f"numba {info['numba']}")
    versions += [f"{name} {sys.modules[name].__version__}"
                 for name in ("scipy", "torch", "jax", "cv2") if name in sys.modules]
    return (f"{platform.machine()}, {', '.join(versions)}; "
            f"threads {_config.threads_summary(info)}")


def _cases(args: argparse.Namespace) -> list:
    """The cases the options ask for."""
    from fastcalc import _bench

    dtypes = ("float32", "float64") if args.dtype == "all" else (args.dtype,)
    activations = [kernel for kernel in args.kernels if kernel in _ACTIVATIONS]
    cases = _bench.activation_cases(args.sizes, dtypes, activations) if activations else []
    if "correlate2d" in args.kernels:
        cases += _bench.convolution_cases(args.image_sizes, dtypes, args.kernel_sizes)
    if "conv2d" in args.kernels:
        cases += _bench.conv2d_cases(batch=args.batch, dtypes=dtypes)
    if "rnn" in args.kernels:
        cases += _bench.rnn_cases(dtypes=dtypes)
    if "gradient_descent" in args.kernels:
        cases += _bench.descent_cases(problems=1000 * args.problems, dtypes=("float64",))
    if "fit_logistic" in args.kernels:
        problems, samples, features, steps = _bench.FIT_SIZE
        cases += _bench.fit_cases((args.problems, samples, features, steps), dtypes=dtypes)
    return cases


def _contended(args: argparse.Namespace, timing: str) -> int:
    """``fastcalc bench --contended``: the threaded kernels idle, then beside busy processes."""
    from fastcalc import _bench, _dispatch

    counts = sorted({_dispatch.thread_setting(), 1}, reverse=True)
    cases = [dataclasses.replace(case, threads=count) for case in _bench.contention_cases()
             for count in counts]
    competitors = _dispatch.usable_cores()
    results = {}
    for state, count in (("idle", 0), ("contended", competitors)):
        progress = None if args.quiet else functools.partial(_progress, state=f"{state} ")
        with _bench.competing_processes(count):
            results[state] = _bench.run(cases, repeat=args.repeat, min_time=args.min_time,
                                        progress=progress)
    machine = _machine()
    heading = (f"fastcalc bench --contended ({timing}; idle, then beside {competitors} "
               f"CPU-bound processes, one per usable core): {machine}")
    print("\n".join(_bench.wrap(heading)), end="\n\n")
    print(_bench.format_contention(results["idle"], results["contended"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, **{state: _bench.as_records(found)
                                              for state, found in results.items()}},
                      handle, indent=1)
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('fastcalc demo needs matplotlib: pip install "fastcalc[plot]"', file=sys.stderr)
        return 1
    from fastcalc import _demo

    _demo.run(args.out, sys.stdout)
    return 0


def _warmup(args: argparse.Namespace) -> int:
    from fastcalc import _warmup

    dtypes = _warmup.DTYPES if args.dtype == "all" else (args.dtype,)
    try:
        seconds = _warmup.warmup(dtypes, sys.stdout)
    except RuntimeError as error:
        print(f"fastcalc warmup: {error}", file=sys.stderr)
        return 1
    print(f"{'total':<39} {sum(seconds.values()):6.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastcalc`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "bench" and args.contended and (args.plot or args.full):
        parser.error("--plot and --full do not apply to --contended")
    commands = {"bench": _bench, "demo": _demo, "warmup": _warmup}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
