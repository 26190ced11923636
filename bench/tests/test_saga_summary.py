"""The saga section's summary lines: the side with in-process running on, and the cost of tracing."""

from __future__ import annotations

from bench.saga_bench import in_process_rows, tracing_cost, tracing_ratios


def side(cpu_ms: float, per_s: float, p50: float, p99: float) -> dict:
    return {
        "cpu": {"client_ms": cpu_ms * 0.75, "server_ms": cpu_ms * 0.25},
        "per_s": per_s,
        "latency": {"rate": 10.0, "p50": p50, "p99": p99},
    }


def results(**median: dict) -> dict:
    return {"median": {"plain": side(100.0, 20.0, 0.05, 0.2), **median}}


def test_each_figure_against_the_default_below_one_when_the_default_wins():
    rows = in_process_rows(
        results(shelfwise=side(100.0, 20.0, 0.1, 0.3), in_process=side(80.0, 25.0, 0.2, 0.3)),
    )

    assert rows == [
        {
            "what": "the whole saga, in-process running on: CPU per confirmed order",
            "figure": "80.0 ms",
            "ceiling": "handlers in the relays only (default) 100.0 ms",
            "ratio": "1.25",
            "cpu_ratio": "1.25",
        },
        {
            "what": "the whole saga, in-process running on: confirmed orders/s, closed loop",
            "figure": "25.0 orders/s",
            "ceiling": "handlers in the relays only (default) 20.0 orders/s",
            "ratio": "1.25",
            "cpu_ratio": "—",
        },
        {
            "what": "the whole saga, in-process running on: place→confirmed p50 at 10.0 orders/s",
            "figure": "200.0 ms",
            "ceiling": "handlers in the relays only (default) 100.0 ms",
            "ratio": "0.50",
            "cpu_ratio": "—",
        },
        {
            "what": "the whole saga, in-process running on: place→confirmed p99 at 10.0 orders/s",
            "figure": "300.0 ms",
            "ceiling": "handlers in the relays only (default) 300.0 ms",
            "ratio": "1.00",
            "cpu_ratio": "—",
        },
    ]


def test_no_lines_when_the_side_did_not_run():
    assert in_process_rows(results(shelfwise=side(100.0, 20.0, 0.1, 0.3))) == []


def test_the_cost_of_tracing_is_the_median_of_each_rounds_ratio_not_the_ratio_of_medians():
    # Tracing off: 100, 60, 90 ms; on: 105, 95, 94 ms, the second round slow on the traced side only.
    # Each round against its own loop with tracing off: 1.05, 1.58, 1.04; the median is 1.05. The
    # ratio of the medians, 95 / 90, would be 1.06: the one slow loop would move it.
    rounds = [
        {"shelfwise": side(100.0, 20.0, 0.1, 0.3), "traced": {"cpu": side(105.0, 20.0, 0, 0)["cpu"]}},
        {"shelfwise": side(60.0, 20.0, 0.1, 0.3), "traced": {"cpu": side(95.0, 20.0, 0, 0)["cpu"]}},
        {"shelfwise": side(90.0, 20.0, 0.1, 0.3), "traced": {"cpu": side(94.0, 20.0, 0, 0)["cpu"]}},
    ]

    assert [round(r, 2) for r in tracing_ratios(rounds)] == [1.05, 1.58, 1.04]
    assert round(tracing_cost(rounds), 3) == 1.05


def test_rounds_without_a_traced_loop_are_left_out():
    rounds = [
        {"shelfwise": side(100.0, 20.0, 0.1, 0.3), "traced": {"cpu": side(110.0, 20.0, 0, 0)["cpu"]}},
        {"shelfwise": side(50.0, 20.0, 0.1, 0.3)},
    ]

    assert [round(r, 3) for r in tracing_ratios(rounds)] == [1.1]
