import pytest

from relook.errors import ConfigError
from relook.registry import Registry


def test_register_and_create():
    reg = Registry("widget")

    @reg.register("box")
    class Box:
        def __init__(self, size=1):
            self.size = size

    assert reg.create("box", size=3).size == 3
    assert reg.names() == ["box"] and "box" in reg and len(reg) == 1


def test_bad_input_lists_known_names():
    reg = Registry("reranker")
    reg.register("gv")(lambda: 1)
    reg.register("aqe")(lambda: 2)
    with pytest.raises(ConfigError, match=r"unknown reranker 'gvv'; known: aqe, gv.*Did you mean 'gv'"):
        reg.create("gvv")


def test_duplicate_name_rejected():
    reg = Registry("x")
    reg.register("a")(lambda: 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_bad_option_names_the_part():
    reg = Registry("dataset")

    @reg.register("toy")
    def toy(root, split="test"):
        return split

    assert reg.create("toy", root="x", split="train") == "train"
    with pytest.raises(ConfigError, match=r"dataset 'toy': unknown option\(s\) \['note'\]; known: \['split'\]"):
        reg.create("toy", root="x", note="hi")
