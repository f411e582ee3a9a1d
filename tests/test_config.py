"""``merge_conf``: unknown options and values of the wrong type or sign raise ``ConfigError`` naming the key."""

import pytest

from relook.config import check_type, merge_conf
from relook.errors import ConfigError

DEFAULT = {
    "k": 10,
    "threshold": 2.5,
    "flag": True,
    "name": "flat",
    "scales": [1.0],
    "size": (2, 2),
    "opts": {},
    "anything": None,
    "offset": 0.0,
}


def test_smoke():
    given = {
        "k": 3,
        "threshold": 1,
        "flag": False,
        "name": "ivfpq",
        "scales": (0.5, 1.0),
        "size": [3, 3],
        "opts": {"a": 1},
        "anything": "x",
        "offset": -1.0,
    }
    assert merge_conf(DEFAULT, given, "part")["threshold"] == 1
    assert merge_conf(DEFAULT, {"k": None}, "part")["k"] is None  # null asks for the built-in behaviour


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("k", "abc", ["'k'", "integer", "'abc'"]),
        ("k", 2.5, ["'k'", "integer"]),
        ("k", True, ["'k'", "integer"]),
        ("threshold", "abc", ["'threshold'", "number"]),
        ("flag", "yes", ["'flag'", "boolean"]),
        ("flag", 1, ["'flag'", "boolean"]),
        ("name", 3, ["'name'", "string"]),
        ("scales", 1.0, ["'scales'", "list"]),
        ("opts", [1], ["'opts'", "mapping"]),
        ("k", -1, ["'k'", ">= 0"]),
        ("threshold", -0.5, ["'threshold'", ">= 0"]),
        ("bogus", 1, ["unknown", "bogus"]),
    ],
)
def test_bad_input(key, value, words):
    with pytest.raises(ConfigError) as err:
        merge_conf(DEFAULT, {key: value}, "reranker 'gv'")
    for w in ["reranker 'gv'", *words]:
        assert w in str(err.value), (w, str(err.value))


def test_bad_input_registered_part():
    from relook.models.rrt import RRT

    with pytest.raises(ConfigError, match="RRT: option 'num_layers' must be an integer"):
        RRT(num_layers="six")
    check_type(None, 3, "x")  # null always allowed: it asks for the built-in behaviour


def test_numpy_scalars_accepted():
    import numpy as np

    assert merge_conf(DEFAULT, {"k": np.int64(3), "threshold": np.float32(0.5)}, "part")["k"] == 3
    with pytest.raises(ConfigError):
        merge_conf(DEFAULT, {"k": np.float32(3.0)}, "part")
