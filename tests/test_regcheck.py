"""Each registry file is validated as it is read (weights.regcheck): a mistake in an overlay is one
line naming the file, the model and the field, exit 2, for `restore models` and `restore fetch` alike."""

from __future__ import annotations

import json

import pytest

import fake_engine as fe
from helpers import CLOSED, err_of, one_line, run_sandboxed
from restorecli.errors import UsageError
from restorecli.weights.registry import load_registry

BAD_OVERLAYS = {
    "sources-string": ("sources", lambda url: fe.model_toml(sources=json.dumps(url))),
    "trained-steps-text": (
        "trained_steps",
        lambda url: fe.model_toml(sources=fe.url_source(url)).replace("trained_steps = 1", 'trained_steps = "two"'),
    ),
    "sha256-short": ("sha256", lambda url: fe.model_toml(sources=fe.url_source(url), comp_extra='sha256 = "abc123"\n')),
    "size-negative": ("size", lambda url: fe.model_toml(sources=fe.url_source(url), comp_extra="size = -5\n")),
    "file-url": ("url", lambda url: fe.model_toml(sources=fe.url_source("file:///etc/passwd"))),
    "malformed-url": ("url", lambda url: fe.model_toml(sources=fe.url_source("http//127.0.0.1/x.pth"))),
    "url-without-host": ("url", lambda url: fe.model_toml(sources=fe.url_source("http:///x.pth"))),
    "source-not-a-table": ("sources", lambda url: fe.model_toml(sources=f"[{json.dumps(url)}]")),
    "default-for-string": (
        "default_for",
        lambda url: fe.model_toml(sources=fe.url_source(url), extra='default_for = "sr"\n'),
    ),
    "unknown-source-field": (
        "filname",
        lambda url: fe.model_toml(sources=f'[{{ kind = "url", url = {json.dumps(url)}, filname = "x.pth" }}]'),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERLAYS))
def test_overlay_mistakes_are_one_line_usage_errors(tmp_path, case):
    field, make = BAD_OVERLAYS[case]
    ov = fe.write_overlay(tmp_path, make(CLOSED + "/fake_net.pth"))
    for args in (["models", "--json"], ["fetch", "fakenet"]):
        res = run_sandboxed(tmp_path, "--registry", str(ov), *args, timeout=120)
        assert res.returncode == 2, (args, err_of(res))
        err = one_line(res)
        assert str(ov) in err and "'fakenet'" in err and f"'{field}'" in err, err


def test_an_overlay_cannot_claim_a_check_without_a_pin(tmp_path):
    overlay = tmp_path / "o.toml"
    overlay.write_text(
        '[models.resshift-realsr-x4-v3.components.unet]\nsha256_checked = "trust me"\n', encoding="utf-8"
    )
    with pytest.raises(UsageError, match="sha256_checked"):
        load_registry((overlay,))
