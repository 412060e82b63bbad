"""The tools' shared argument types: a bad count is argparse's one-line error, exit 2."""

from __future__ import annotations

import pytest

from suhd_ros.tools.evaluate import main as evaluate


@pytest.mark.parametrize(("value", "message"), [("0", "must be at least 1, found 0"),
                                                ("-2", "must be at least 1, found -2"),
                                                ("two", "expected an integer, found 'two'")])
def test_a_count_below_one_or_not_an_integer_is_refused(value: str, message: str,
                                                        capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        evaluate(["--images", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"suhd-eval: error: argument --images: {message}" in err
