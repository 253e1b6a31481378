"""drkit.textspec: the shared ``HEAD?k=v&k2=v2`` / ``HEAD@k=v,k2=v2`` grammar of spec strings."""
from __future__ import annotations

from urllib.parse import unquote

import pytest

from drkit.augment import get_recipe
from drkit.errors import RecipeError, SourceError, TeacherError
from drkit.sources import SourceSpec
from drkit.teachers import parse_teacher_spec
from drkit.textspec import (
    SpecSyntaxError,
    format_query,
    parse_pairs,
    parse_scalar,
    parse_value,
    split_head,
    split_options,
    split_query,
)


def test_typed_values() -> None:
    assert parse_scalar("true") is True and parse_scalar("False") is False
    assert parse_scalar("5") == 5 and isinstance(parse_scalar("5"), int)
    assert parse_scalar("0.25") == 0.25 and parse_scalar("1e-3") == 0.001
    assert parse_scalar("bilinear") == "bilinear"
    assert parse_value(" 'bilinear' ") == "bilinear" and parse_value(' "3" ') == 3
    _, opts = split_options("ra@m=9,n=2,p=0.5,flip=true,interp='nearest'")
    assert opts == {"m": 9, "n": 2, "p": 0.5, "flip": True, "interp": "nearest"}
    assert [type(v) for v in opts.values()] == [int, int, float, bool, str]


def test_split_head_and_empty_settings() -> None:
    assert split_head("timm:resnet18?size=3", ":") == ("timm", "resnet18?size=3")
    assert split_head("digits", ":") == ("digits", None)
    assert split_query("digits:test") == ("digits:test", {})
    assert split_options("rrc") == ("rrc", {}) and split_options("rrc@") == ("rrc", {})
    assert split_query("x?a=1&&b=2&") == ("x", {"a": 1, "b": 2})  # empty items skipped by default
    with pytest.raises(SpecSyntaxError, match="is not KEY=VALUE"):
        split_query("x?a=1&&b=2", keep_empty=True)


@pytest.mark.parametrize(
    "head, pairs",
    [("digits:test", {}), ("digits", {"n": 7, "mode": "RGB"}), ("f:/a/b=c:train", {"n": 1}),
     ("timm:vit_tiny", {"img_size": 32, "flag": True, "p": 0.5, "file": "/w/a.safetensors"})],
)
def test_query_round_trip(head: str, pairs: dict) -> None:
    text = format_query(head, pairs)
    assert split_query(text) == (head, pairs)
    assert format_query(*split_query(text)) == text


def test_value_keeps_later_separators() -> None:
    assert split_query("t?file=a?b=c") == ("t", {"file": "a?b=c"})
    assert split_options("op@k=a@b") == ("op", {"k": "a@b"})


@pytest.mark.parametrize("text", ["x?n=1&n=2", "x?N=1&n=2"])
def test_duplicate_key_refused(text: str) -> None:
    with pytest.raises(SpecSyntaxError, match="key 'n' given twice"):
        split_query(text, key=lambda k: k.strip().lower())


@pytest.mark.parametrize("text", ["x?=1", "x? =1&b=2", "x?a=1&=2"])
def test_empty_key_refused(text: str) -> None:
    with pytest.raises(SpecSyntaxError, match="empty key"):
        split_query(text, context="my spec")
    with pytest.raises(SpecSyntaxError, match="^my spec: "):
        split_query(text, context="my spec")


def test_error_class_is_the_callers() -> None:
    with pytest.raises(TeacherError, match="no_equals"):
        parse_pairs("a=1,no_equals", ",", error=TeacherError)
    assert issubclass(SpecSyntaxError, ValueError)


def test_custom_key_and_value() -> None:
    head, opts = split_query("ckpt:a%3Fb?file=%2Fw%2Fx&k%26=v", key=unquote, value=unquote)
    assert (head, opts) == ("ckpt:a%3Fb", {"file": "/w/x", "k&": "v"})


def test_three_parsers_share_the_grammar() -> None:
    """Sources, teachers and recipes refuse a repeated or empty key, each with its own error."""
    assert SourceSpec.parse("DIGITS:test?mode=rgb&n=7") == SourceSpec("digits", None, "test", 7, "RGB")
    assert SourceSpec.parse("digits:test?n=7&mode=RGB").format() == "digits:test?n=7&mode=RGB"
    with pytest.raises(SourceError, match="given twice"):
        SourceSpec.parse("digits?n=1&N=2")
    with pytest.raises(SourceError, match="empty key"):
        SourceSpec.parse("digits?=3")
    spec = parse_teacher_spec("timm:resnet18?file=/w/a%26b.safetensors&&size=64")
    assert spec.options == {"file": "/w/a&b.safetensors", "size": "64"}  # teacher values stay text
    with pytest.raises(TeacherError, match="given twice"):
        parse_teacher_spec("timm:resnet18?size=1&size=2")
    with pytest.raises(TeacherError, match="empty key"):
        parse_teacher_spec("timm:resnet18?=2")
    assert get_recipe("rrc@flip=0.0").ops[0].settings["flip"] == 0.0
    with pytest.raises(RecipeError, match="given twice"):
        get_recipe("rrc@flip=0.1,flip=0.2")
    with pytest.raises(RecipeError, match="empty key"):
        get_recipe("rrc@=1")
