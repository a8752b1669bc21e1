"""The ordered parallel map: same results, same order, errors surface."""

import os

import pytest

from farense.parallel import ordered_map


def _square_and_pid(x):
    return x * x, os.getpid()


def _fail_on_three(x):
    if x == 3:
        raise ValueError("item 3 is bad")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_input_order(workers):
    results = list(ordered_map(_square_and_pid, iter(range(50)), workers=workers, ahead=2))
    assert [r for r, _ in results] == [x * x for x in range(50)]
    pids = {pid for _, pid in results}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)


def test_a_worker_error_reaches_the_caller():
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(ordered_map(_fail_on_three, range(10), workers=2))
