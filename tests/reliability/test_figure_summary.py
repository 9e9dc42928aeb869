"""The figures at the end of a run: one line by default, an aligned table with -v."""

from __future__ import annotations

from collections import Counter

from .harness import summary

FIGURES = Counter(
    {
        "cancellation outcomes: send broken": 3,
        "cancellation outcomes: verify_client_post_handshake[anyio-1.3] completed": 12,
        "fuzz: random bytes fed": 1234567,
    }
)


def test_a_default_run_shows_one_line() -> None:
    title, lines = summary(FIGURES, verbose=False, full=False)
    assert title is None
    assert lines == ["reliability: 3 figures recorded (-v shows them)"]


def test_verbose_shows_every_figure_in_columns() -> None:
    title, lines = summary(FIGURES, verbose=True, full=False)
    assert title is not None
    assert title.startswith("reliability figures")
    assert len(lines) == 3
    assert len({len(line) for line in lines}) == 1  # amounts end in one column
    names = [line.rsplit("  ", 1)[0].rstrip() for line in lines]
    assert names == sorted(FIGURES)
    starts = {line.index(name) for line, name in zip(lines, names, strict=True)}
    assert starts == {0}
    assert lines[-1].endswith("1,234,567")


def test_the_heavy_form_always_shows_the_table() -> None:
    title, lines = summary(FIGURES, verbose=False, full=True)
    assert title == "reliability figures, full"
    assert len(lines) == 3


def test_nothing_recorded_shows_nothing() -> None:
    assert summary(Counter(), verbose=True) == (None, [])
