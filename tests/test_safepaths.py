"""Names from a registry are names, never paths (weights.safepaths): a file, filename, path, model or
component name that could leave its folder is refused in one line, and nothing outside the cache is
ever written or deleted. Each case runs the real `restore` entry point with the fake method, in a
sandbox of its own (helpers.run_sandboxed); network cases use rogueserver.RogueServer on 127.0.0.1.
"""

from __future__ import annotations

import pytest

import fake_engine as fe
from helpers import CLOSED, err_of, one_line, pth_bytes, random_png, run_sandboxed
from rogueserver import RogueServer

NET = pth_bytes(fe.conv_state())  # the fake model's official file


def test_an_absolute_file_name_is_refused_and_never_deleted_offline(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    ov = fe.write_overlay(
        tmp_path, fe.model_toml(file=str(precious), sources=fe.url_source(CLOSED + "/x.pth"), comp_extra="size = 1\n")
    )
    res = run_sandboxed(tmp_path, "--offline", "--registry", str(ov), "fetch", "fakenet")
    assert precious.read_text() == "keep me"
    assert res.returncode == 2, err_of(res)
    err = one_line(res)
    assert str(ov) in err and "fakenet" in err and "'file'" in err


def test_a_dotdot_file_name_is_refused_online_and_never_written(tmp_path):
    victim = tmp_path / "victim" / "y.txt"
    victim.parent.mkdir()
    victim.write_text("original")
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        # CACHE/downloads/KEY/../../../victim/y.txt is tmp_path/victim/y.txt
        ov = fe.write_overlay(tmp_path, fe.model_toml(file="../../../victim/y.txt", sources=fe.url_source(url)))
        res = run_sandboxed(tmp_path, "--registry", str(ov), "fetch", "fakenet")
        assert not srv.hits()
    assert victim.read_text() == "original"
    assert res.returncode == 2, err_of(res)
    assert "'file'" in one_line(res)


def test_a_task_command_never_deletes_outside_the_cache(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = fe.write_overlay(
            tmp_path, fe.model_toml(file=str(precious), sources=fe.url_source(url), comp_extra="size = 1\n")
        )
        res = run_sandboxed(
            tmp_path,
            "--registry",
            str(ov),
            "sr",
            str(random_png(tmp_path / "a.png")),
            str(tmp_path / "out"),
            "--model",
            "fakenet",
        )
    assert precious.read_text() == "keep me"
    assert res.returncode == 2, err_of(res)
    one_line(res)


@pytest.mark.parametrize("case", ["hub-filename", "bundled-path", "model-name", "component-name", "backslash"])
def test_every_path_like_value_must_be_a_plain_relative_name(tmp_path, case):
    if case == "hub-filename":
        body = fe.model_toml(
            sources='[{ kind = "hub", repo = "org/x", filename = "../../../etc/passwd", '
            'revision = "0123456789abcdef0123456789abcdef01234567" }]'
        )
    elif case == "bundled-path":
        body = fe.model_toml(sources='[{ kind = "bundled", path = "../../../../etc/passwd" }]')
    elif case == "model-name":
        body = fe.model_toml('"../../escape"', sources=fe.url_source(CLOSED + "/x.pth"))
    elif case == "component-name":
        body = fe.model_toml(sources=fe.url_source(CLOSED + "/x.pth")).replace("components.net]", 'components."../n"]')
    else:
        body = fe.model_toml(file="..\\..\\x.pth", sources=fe.url_source(CLOSED + "/x.pth"))
    ov = fe.write_overlay(tmp_path, body)
    res = run_sandboxed(tmp_path, "--registry", str(ov), "models", "--json")
    assert res.returncode == 2, err_of(res)
    assert str(ov) in one_line(res)
    assert not (tmp_path / "cache").exists()
