"""Weights from the network, against real HTTP servers on 127.0.0.1 (tests/hubserver.py).

The Hub side is driven by the installed huggingface_hub itself (HF_ENDPOINT points at
the loopback server); release URLs by our own downloader. A guard refuses every name
lookup that is not loopback, so nothing here can reach another machine, even on a
failure path. Models are tiny: the fake engine (tests/fake_engine.py) with one Linear layer
per component, registered in ENGINES for the duration of each test.
"""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from helpers import pth_bytes, run_cli, sandbox_env, sha, solid_png, toml_value
from hubserver import HubRepo, LoopbackServer, State
from restorecli import engines
from restorecli.errors import UsageError, WeightsError, WeightsUnavailable
from restorecli.runtime import load
from restorecli.weights import bundle, catalog, download
from restorecli.weights.bundle import read_bundle
from restorecli.weights.cache import bundle_path, is_cached, packaged_bundle
from restorecli.weights.registry import load_registry
from restorecli.weights.sources import SourceKind

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def linear_checkpoint(n: int, seed: int) -> tuple[bytes, dict[str, torch.Tensor]]:
    """An official-style file (a wrapped state dict) of one random Linear(n, n), and its state."""
    gen = torch.Generator().manual_seed(seed)
    state = {"weight": torch.randn(n, n, generator=gen), "bias": torch.randn(n, generator=gen)}
    return pth_bytes({"state_dict": {f"module.{k}": v for k, v in state.items()}}), state


NET, NET_STATE = linear_checkpoint(8, 1)
ENC, ENC_STATE = linear_checkpoint(4, 2)
OTHER, _ = linear_checkpoint(8, 3)


# ---- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """No real host, no user config or cache, no waiting between retries, the fake engine registered."""
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: {host} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    for var in (
        "RESTORECLI_REGISTRY",
        "RESTORECLI_OFFLINE",
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HUGGINGFACE_HUB_CACHE",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("RESTORECLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port unless a test starts a Hub
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setitem(engines.ENGINES, "fake", "fake_engine:FakeEngine")


@pytest.fixture
def servers(monkeypatch):
    """A Hub (HF_ENDPOINT) and its "CDN" on another port, sharing one request log; also serves release URLs."""
    import huggingface_hub.constants

    # huggingface_hub 2.x sends best-effort telemetry (GET {HF_ENDPOINT at import}/api/agent-harnesses)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
    state = State()
    with LoopbackServer(state) as hub, LoopbackServer(state) as cdn:
        state.cdn_base = cdn.url
        state.repos["org/tiny"] = HubRepo(COMMIT, {"tiny_net.pth": NET})
        state.files.update({"tiny_net.pth": NET, "tiny_enc.pth": ENC})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def overlay(tmp_path: Path, body: str, name: str = "overlay.toml") -> Path:
    path = tmp_path / name
    path.write_text('[arch.tiny8]\nkind = "fake.linear"\nn = 8\n\n[arch.tiny4]\nkind = "fake.linear"\nn = 4\n\n' + body)
    return path


def model(name: str, comps: str) -> str:
    return f'[models.{name}]\nmethod = "fake"\ntask = "sr"\nscale = 1\ntrained_steps = 1\nlicense = "test"\n\n' + comps


def comp(
    model_name: str, comp_name: str, arch: str, file: str, sources: list[str], data: bytes | None, check: bool = True
) -> str:
    lines = [f"[models.{model_name}.components.{comp_name}]", f'arch = "{arch}"', f'file = "{file}"']
    if data is not None and check:
        lines += [f"size = {len(data)}", f'sha256 = "{sha(data)}"']
    lines.append("sources = [" + ", ".join(sources) + "]")
    return "\n".join(lines) + "\n\n"


def hub_src(repo: str = "org/tiny", file: str = "tiny_net.pth", revision: str = COMMIT) -> str:
    return f'{{ kind = "hub", repo = "{repo}", filename = "{file}", revision = "{revision}" }}'


def url_src(base: str, file: str) -> str:
    return f'{{ kind = "url", url = "{base}/releases/download/v1/{file}" }}'


def spec_of(path: Path, name: str):
    return load_registry((path,)).get(name)


def tiny_net_model(sources: list[str]) -> str:
    """Model tiny with one component, net (arch tiny8, file tiny_net.pth), pinned to NET, from `sources`."""
    return model("tiny", comp("tiny", "net", "tiny8", "tiny_net.pth", sources, NET))


def tiny_net_spec(tmp_path: Path, sources: list[str], name: str = "overlay.toml"):
    """The spec of `tiny_net_model(sources)`, read from the overlay file `name`."""
    return spec_of(overlay(tmp_path, tiny_net_model(sources), name), "tiny")


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def the_bundle(spec) -> dict:
    return read_bundle(load.ensure_bundle(spec, console=quiet()), spec)


# ---- downloads ------------------------------------------------------------------------


def test_first_download_from_hub_then_cached_rerun_makes_no_request(tmp_path, servers):
    spec = tiny_net_spec(tmp_path, [hub_src()])
    assert not is_cached(spec)
    states = the_bundle(spec)
    torch.testing.assert_close(states["net"], NET_STATE, rtol=0, atol=0)
    log = servers.requests()
    assert [(r.method, r.path) for r in log] == [
        ("HEAD", f"/org/tiny/resolve/{COMMIT}/tiny_net.pth"),
        ("GET", f"/cdn/{sha(NET)}"),
    ]
    assert is_cached(spec)
    # the Hub file sits in the Hub cache, as Hub users expect; the bundle sits in ours
    assert list((tmp_path / "hf" / "hub").glob("models--org--tiny/snapshots/*/tiny_net.pth"))
    assert bundle_path(spec).parent == tmp_path / "cache" / "bundles"
    load.ensure_bundle(spec, console=quiet())
    assert len(servers.requests()) == len(log)  # second run: no network at all


def test_release_url_follows_redirect_and_keeps_only_the_bundle(tmp_path, servers):
    toml = model(
        "tiny",
        comp("tiny", "net", "tiny8", "tiny_net.pth", [url_src(servers.url, "tiny_net.pth")], NET)
        + comp("tiny", "enc", "tiny4", "tiny_enc.pth", [url_src(servers.url, "tiny_enc.pth")], ENC),
    )
    spec = spec_of(overlay(tmp_path, toml), "tiny")
    states = the_bundle(spec)
    torch.testing.assert_close(states["enc"], ENC_STATE, rtol=0, atol=0)
    paths = [r.path for r in servers.requests()]
    assert paths == [
        "/releases/download/v1/tiny_net.pth",
        "/files/tiny_net.pth",
        "/releases/download/v1/tiny_enc.pth",
        "/files/tiny_enc.pth",
    ]
    assert servers.requests()[0].headers["user-agent"].startswith("restorecli/")
    cache = tmp_path / "cache"
    assert [p.name for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts] == [bundle_path(spec).name]


def test_sources_are_tried_in_order(tmp_path, servers):
    srcs = [hub_src(file="missing.pth"), url_src(servers.url, "tiny_net.pth")]
    spec = tiny_net_spec(tmp_path, srcs)
    out = io.StringIO()
    load.ensure_bundle(spec, console=Console(file=out, width=300))
    assert [r.path for r in servers.requests()][0] == f"/org/tiny/resolve/{COMMIT}/missing.pth"
    assert "missing.pth not found in Hub repo org/tiny" in out.getvalue()
    assert is_cached(spec)


@pytest.mark.parametrize("kind", ["hub", "url"])
def test_wrong_checksum_deletes_the_file_and_fails(tmp_path, servers, kind):
    src = hub_src() if kind == "hub" else url_src(servers.url, "tiny_net.pth")
    body = comp("tiny", "net", "tiny8", "tiny_net.pth", [src], None)
    body = body.replace("sources", f'size = {len(NET)}\nsha256 = "{sha(OTHER)}"\nsources')
    spec = spec_of(overlay(tmp_path, model("tiny", body)), "tiny")
    with pytest.raises(WeightsError) as err:
        load.ensure_bundle(spec, console=quiet())
    assert type(err.value) is WeightsError and err.value.exit_code == 3
    msg = str(err.value)
    assert "fails its check" in msg and sha(NET) in msg and sha(OTHER) in msg and "deleted" in msg
    assert not is_cached(spec)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert not [p for p in (tmp_path / "hf").rglob("tiny_net.pth")] + [
        p for p in (tmp_path / "hf").rglob("blobs/*") if p.is_file()
    ]


def test_wrong_size_is_refused_before_the_body(tmp_path, servers):
    body = comp("tiny", "net", "tiny8", "tiny_net.pth", [url_src(servers.url, "tiny_net.pth")], None)
    spec = spec_of(overlay(tmp_path, model("tiny", body.replace("sources", "size = 12\nsources"))), "tiny")
    with pytest.raises(WeightsError, match=f"serves {len(NET)} bytes but the registry expects 12"):
        load.ensure_bundle(spec, console=quiet())
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_cut_connection_resumes_with_range(tmp_path, servers):
    servers.fault("/files/tiny_net.pth", ("cut", 1000))
    spec = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")])
    torch.testing.assert_close(the_bundle(spec)["net"], NET_STATE, rtol=0, atol=0)
    gets = [r for r in servers.requests() if r.path == "/files/tiny_net.pth"]
    assert [r.headers.get("range") for r in gets] == [None, "bytes=1000-"]


def test_hub_cut_connection_is_resumed_by_huggingface_hub(tmp_path, servers):
    servers.fault(f"/cdn/{sha(NET)}", ("cut", 700))
    spec = tiny_net_spec(tmp_path, [hub_src()])
    torch.testing.assert_close(the_bundle(spec)["net"], NET_STATE, rtol=0, atol=0)
    gets = [r for r in servers.requests() if r.path.startswith("/cdn/")]
    # huggingface_hub retries the GET (from byte 0 here: its 10 MB read buffer never handed over the 700 bytes)
    assert len(gets) == 2 and gets[1].headers.get("range") in (None, "bytes=700-")


def test_connection_cut_every_time_fails_cleanly_then_a_retry_works(tmp_path, servers):
    # one cut after 500 bytes (progress: resumed), then cuts before any byte until the tries run out
    servers.fault("/files/tiny_net.pth", ("cut", 500), *[("cut", 0)] * (download.MAX_TRIES - 1))
    spec = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")])
    with pytest.raises(WeightsUnavailable) as err:
        load.ensure_bundle(spec, console=quiet())
    assert err.value.exit_code == 4 and "kept closing" in str(err.value) and "/v1/tiny_net.pth" in str(err.value)
    assert not [
        p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".locks" not in p.parts
    ]  # no partial file left
    assert not servers.state.faults["/files/tiny_net.pth"]  # the server is healthy again
    torch.testing.assert_close(the_bundle(spec)["net"], NET_STATE, rtol=0, atol=0)


def test_http_404_and_500_give_one_line_errors(tmp_path, servers):
    srcs404 = [url_src(servers.url, "nope.pth")]
    spec = tiny_net_spec(tmp_path, srcs404)
    with pytest.raises(WeightsUnavailable) as err:
        load.ensure_bundle(spec, console=quiet())
    msg = str(err.value)
    assert f"HTTP 404 Not Found from {servers.url}/releases/download/v1/nope.pth" in msg
    assert "model 'tiny'" in msg and "\n" not in msg

    servers.fault("/files/tiny_net.pth", *[("status", 500)] * 10)
    spec = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")], "o2.toml")
    with pytest.raises(WeightsUnavailable, match="HTTP 500 Internal Server Error from .*/files/tiny_net.pth"):
        load.ensure_bundle(spec, console=quiet())
    assert sum(r.path == "/files/tiny_net.pth" for r in servers.requests()) == download.MAX_TRIES


def test_hub_errors_name_repo_file_and_status(tmp_path, servers, monkeypatch):
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda s: None)  # its 5xx back-off
    cases = {
        "repo": (hub_src(repo="org/none"), "Hub repo org/none not found or not accessible"),
        "revision": (hub_src(revision="f" * 40), f"revision {'f' * 40} not found in Hub repo org/tiny"),
        "file": (hub_src(file="x.pth"), "x.pth not found in Hub repo org/tiny"),
        "status": (hub_src(), "HTTP 500 from"),
    }
    for key, (src, expected) in cases.items():
        if key == "status":
            servers.fault(f"/org/tiny/resolve/{COMMIT}/tiny_net.pth", *[("status", 500)] * 20)
        spec = tiny_net_spec(tmp_path, [src], f"{key}.toml")
        with pytest.raises(WeightsUnavailable) as err:
            load.ensure_bundle(spec, console=quiet())
        assert expected in str(err.value), str(err.value)
        assert "\n" not in str(err.value)


def test_unreachable_host_fails_at_once(tmp_path):
    # nothing listens on port 9; github.com does not resolve under the guard: both are "no network"
    spec = spec_of(
        overlay(
            tmp_path,
            model(
                "tiny",
                comp(
                    "tiny",
                    "net",
                    "tiny8",
                    "tiny_net.pth",
                    [url_src("http://127.0.0.1:9", "tiny_net.pth"), hub_src()],
                    NET,
                ),
            ),
        ),
        "tiny",
    )
    builtin = load_registry().get("resshift-realsr-x4-v3")
    for s, expected in ((spec, "connection refused by 127.0.0.1"), (builtin, "cannot resolve host github.com")):
        t0 = time.perf_counter()
        with pytest.raises(WeightsUnavailable) as err:
            load.ensure_bundle(s, console=quiet())
        assert time.perf_counter() - t0 < 15.0  # a bound against retry back-off or hanging, not a timing claim
        assert expected in str(err.value) and err.value.exit_code == 4


# ---- offline --------------------------------------------------------------------------


def test_offline_without_cache_names_model_files_sources_and_command(tmp_path, servers, monkeypatch):
    toml = model(
        "tiny", comp("tiny", "net", "tiny8", "tiny_net.pth", [hub_src(), url_src(servers.url, "tiny_net.pth")], NET)
    )
    spec = spec_of(overlay(tmp_path, toml), "tiny")
    for flag, env in ((True, None), (False, "1")):
        if env:
            monkeypatch.setenv("HF_HUB_OFFLINE", env)
        with pytest.raises(WeightsUnavailable) as err:
            load.ensure_bundle(spec, offline=flag, console=quiet())
        msg = str(err.value)
        assert err.value.exit_code == 4 and "\n" not in msg
        assert "model 'tiny'" in msg and "tiny_net.pth" in msg and "restore fetch tiny" in msg
        assert f"{servers.url}/org/tiny/resolve/{COMMIT}/tiny_net.pth" in msg  # the Hub file, on HF_ENDPOINT
        assert f"{servers.url}/releases/download/v1/tiny_net.pth" in msg
        assert ("--offline" if flag else "HF_HUB_OFFLINE=1") in msg
    assert servers.requests() == []


def test_offline_with_cache_works_and_makes_no_request(tmp_path, servers, monkeypatch):
    spec = tiny_net_spec(tmp_path, [hub_src()])
    path = load.ensure_bundle(spec, console=quiet())
    n = len(servers.requests())
    assert load.ensure_bundle(spec, offline=True) == path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load.ensure_bundle(spec) == path
    # the bundle gone, the Hub cache still holds the file: rebuilt offline, still no request
    path.unlink()
    torch.testing.assert_close(read_bundle(load.ensure_bundle(spec), spec)["net"], NET_STATE, rtol=0, atol=0)
    assert len(servers.requests()) == n


# ---- the cache ------------------------------------------------------------------------


def test_changed_registry_entry_never_serves_a_stale_bundle(tmp_path, servers):
    a = spec_of(
        overlay(
            tmp_path,
            model(
                "tiny",
                comp("tiny", "net", "tiny8", "tiny_net.pth", [url_src(servers.url, "tiny_net.pth")], NET, check=False),
            ),
            "a.toml",
        ),
        "tiny",
    )
    load.ensure_bundle(a, console=quiet())
    servers.state.files["tiny_net2.pth"] = OTHER
    b = spec_of(
        overlay(
            tmp_path,
            model(
                "tiny",
                comp(
                    "tiny", "net", "tiny8", "tiny_net.pth", [url_src(servers.url, "tiny_net2.pth")], OTHER, check=False
                ),
            ),
            "b.toml",
        ),
        "tiny",
    )
    assert bundle_path(a) != bundle_path(b) and not is_cached(b)
    got = read_bundle(load.ensure_bundle(b, console=quiet()), b)["net"]
    assert not torch.equal(got["weight"], NET_STATE["weight"])
    # a pinned sha256 decides the content: moving the file to a mirror keeps the cache valid
    c = tiny_net_spec(tmp_path, [hub_src()], "c.toml")
    d = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")], "d.toml")
    assert bundle_path(c) == bundle_path(d)


def test_shared_component_is_reused_from_another_bundle(tmp_path, servers):
    enc = url_src(servers.url, "tiny_enc.pth")
    toml = model(
        "tiny-a",
        comp("tiny-a", "net", "tiny8", "tiny_net.pth", [url_src(servers.url, "tiny_net.pth")], NET)
        + comp("tiny-a", "enc", "tiny4", "tiny_enc.pth", [enc], ENC),
    ) + model(
        "tiny-b",
        comp("tiny-b", "net", "tiny8", "tiny_net.pth", [hub_src()], NET)
        + comp("tiny-b", "enc", "tiny4", "tiny_enc.pth", [enc], ENC),
    )
    path = overlay(tmp_path, toml)
    load.ensure_bundle(spec_of(path, "tiny-a"), console=quiet())
    n = len(servers.requests())
    b = spec_of(path, "tiny-b")
    # both components are in tiny-a's bundle already (same sha256 and architecture): no download at all
    torch.testing.assert_close(the_bundle(b)["enc"], ENC_STATE, rtol=0, atol=0)
    assert len(servers.requests()) == n


def test_manual_source_says_which_file_to_get_and_the_convert_line(tmp_path, servers):
    manual = '{ kind = "manual", url = "https://drive.google.com/drive/folders/XYZ", note = "folder RealSR" }'
    spec = tiny_net_spec(tmp_path, [manual])
    with pytest.raises(WeightsUnavailable) as err:
        load.ensure_bundle(spec, console=quiet())
    msg = str(err.value)
    assert "cannot be downloaded by a program" in msg and "download tiny_net.pth from https://drive.google.com" in msg
    assert "restore convert tiny net=tiny_net.pth -o tiny.safetensors" in msg
    assert "restore fetch tiny --file net=PATH" in msg
    assert servers.requests() == []
    assert catalog.model_rows(load_registry((tmp_path / "overlay.toml",)))[-1]["availability"] == "manual"
    # the file fetched by hand goes into the cache like a download (verified against the registry)
    local = tmp_path / "tiny_net.pth"
    local.write_bytes(NET)
    load.ensure_bundle(spec, files={"net": local}, console=quiet())
    assert is_cached(spec) and local.exists()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(OTHER)
    with pytest.raises(WeightsError, match="fails its check"):
        load.ensure_bundle(spec, files={"net": bad}, console=quiet())
    assert bad.exists()  # the user's own file is never deleted


def test_a_web_page_instead_of_the_file_is_refused(tmp_path, servers):
    servers.fault("/files/tiny_net.pth", ("html",))
    spec = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")])
    with pytest.raises(WeightsUnavailable, match="returned a web page, not tiny_net.pth"):
        load.ensure_bundle(spec, console=quiet())
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_an_unwritable_cache_is_a_weights_error(tmp_path, servers, monkeypatch):
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv("RESTORECLI_CACHE", str(tmp_path / "blocked"))
    spec = tiny_net_spec(tmp_path, [url_src(servers.url, "tiny_net.pth")])
    with pytest.raises(WeightsError, match="cannot write weights of model 'tiny' under .*--cache-dir") as err:
        load.ensure_bundle(spec, console=quiet())
    assert err.value.exit_code == 3


# ---- registry overlays ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ('{ kind = "hub", repo = "org/tiny" }', "needs repo and revision"),
        ('{ kind = "hub", repo = "org/tiny", revision = "main" }', "is not a 40-hex commit id"),
        ('{ kind = "ftp", url = "ftp://x" }', "has kind 'ftp'"),
        ('{ kind = "url" }', "needs url"),
    ],
)
def test_bad_sources_are_registry_errors(tmp_path, source, expected):
    from restorecli.errors import UsageError

    body = model("tiny", comp("tiny", "net", "tiny8", "tiny_net.pth", [source], None))
    with pytest.raises(UsageError, match=f"model 'tiny' component 'net' source 1 .*{expected}"):
        load_registry((overlay(tmp_path, body),))
    # a branch is fine when a sha256 pins the content
    ok = tiny_net_model([hub_src(revision="main")])
    assert (
        load_registry((overlay(tmp_path, ok, "ok.toml"),)).get("tiny").components["net"].sources[0].revision == "main"
    )


def test_overlay_points_a_builtin_model_at_a_private_hub_mirror(tmp_path, servers, monkeypatch):
    """The user's config-dir overlay restates only what differs; the private mirror needs HF_TOKEN."""
    servers.state.repos["corp/resshift"] = HubRepo(COMMIT, {"ae.pth": ENC}, token="s3cret")
    cfg = tmp_path / "config" / "restorecli"
    cfg.mkdir(parents=True)
    (cfg / "weights.toml").write_text(
        '[arch.tiny8]\nkind = "fake.linear"\nn = 8\n[arch.tiny4]\nkind = "fake.linear"\nn = 4\n\n'
        '[models.resshift-realsr-x4-v3]\nmethod = "fake"\n\n'
        "[models.resshift-realsr-x4-v3.components.unet]\n"
        f'arch = "tiny8"\nsize = {len(NET)}\nsha256 = "{sha(NET)}"\n'
        f"sources = [{url_src(servers.url, 'tiny_net.pth')}]\n\n"
        "[models.resshift-realsr-x4-v3.components.autoencoder]\n"
        f'arch = "tiny4"\nsize = {len(ENC)}\nsha256 = "{sha(ENC)}"\n'
        f"sources = [{hub_src(repo='corp/resshift', file='ae.pth')}]\n"
    )
    spec = load_registry().get("resshift-realsr-x4-v3")
    assert spec.task == "sr" and spec.sampler["kappa"] == 2.0  # kept from the built-in entry
    ae = spec.components["autoencoder"]
    assert ae.file == "autoencoder_vq_f4.pth" and ae.sources[0].repo == "corp/resshift"
    with pytest.raises(WeightsUnavailable, match="Hub repo corp/resshift not found or not accessible .*set HF_TOKEN"):
        load.ensure_bundle(spec, console=quiet())
    monkeypatch.setenv("HF_TOKEN", "s3cret")
    states = read_bundle(load.ensure_bundle(spec, console=quiet()), spec)
    torch.testing.assert_close(states["autoencoder"], ENC_STATE, rtol=0, atol=0)
    assert [r.headers.get("authorization") for r in servers.requests() if "/corp/" in r.path][-1] == "Bearer s3cret"


def test_overlay_from_environment_adds_a_model(tmp_path, servers, monkeypatch):
    path = overlay(tmp_path, model("extra", comp("extra", "net", "tiny8", "tiny_net.pth", [hub_src()], NET)))
    monkeypatch.setenv("RESTORECLI_REGISTRY", str(path))
    reg = load_registry()
    assert "extra" in reg.models and "resshift-realsr-x4-v3" in reg.models
    assert load.ensure_bundle(reg.get("extra"), console=quiet()).is_file()


# ---- restore models / restore fetch -------------------------------------------------


def test_models_and_fetch_commands(tmp_path, servers):
    from typer.testing import CliRunner

    from restorecli.cli import app

    path = overlay(tmp_path, tiny_net_model([hub_src()]))
    cache = tmp_path / "c2"
    runner = CliRunner()
    base = ["--registry", str(path), "--cache-dir", str(cache)]
    res = runner.invoke(app, [*base, "models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(load_registry((path,)).models)
    assert rows["tiny"]["cached"] is False and rows["tiny"]["download_bytes"] == len(NET)
    assert rows["resshift-realsr-x4-v3"]["default_steps"] == 4 and rows["resshift-realsr-x4-v3"]["cached"] is False

    res = runner.invoke(app, [*base, "--offline", "fetch", "tiny"])
    assert res.exit_code == 4 and "restore fetch tiny" in res.output
    res = runner.invoke(app, [*base, "fetch", "tiny"])
    assert res.exit_code == 0, res.output
    assert (cache / "bundles").is_dir() and is_cached(load_registry((path,)).get("tiny"), cache)
    res = runner.invoke(app, [*base, "models"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if "tiny " in ln)
    assert "yes" in line and "sr" in line and "fake" in line


def test_a_shorter_file_fails_when_only_its_size_is_pinned(tmp_path, servers):
    """A valid weights file shorter than the registry's size (another upload) is refused after a Hub download."""
    servers.state.repos["org/short"] = HubRepo(COMMIT, {"short.pth": ENC})
    body = comp("tiny", "enc", "tiny4", "short.pth", [hub_src("org/short", "short.pth")], None)
    body = body.replace('arch = "tiny4"', f'arch = "tiny4"\nsize = {len(ENC) + 64}')
    spec = spec_of(overlay(tmp_path, model("tiny", body)), "tiny")
    with pytest.raises(WeightsError, match=f"{len(ENC)} bytes, registry says {len(ENC) + 64}"):
        load.ensure_bundle(spec, console=quiet())
    assert not is_cached(spec)


def test_an_upper_case_sha256_pin_matches(tmp_path, servers):
    body = comp("tiny", "enc", "tiny4", "tiny_enc.pth", [url_src(servers.url, "tiny_enc.pth")], None)
    body = body.replace('arch = "tiny4"', f'arch = "tiny4"\nsha256 = "{sha(ENC).upper()}"')
    spec = spec_of(overlay(tmp_path, model("tiny", body)), "tiny")
    torch.testing.assert_close(the_bundle(spec)["enc"], ENC_STATE, rtol=0, atol=0)


class FolderSource(SourceKind):
    """A source kind the package does not have: files copied from a folder (FOLDER_SOURCE_ROOT)."""

    name = "folder"
    fetchable = True
    copies: list[str] = []

    def validate(self, bad, source, component):
        if not source.get("path"):
            raise UsageError(f"{bad} (folder) needs path")

    def describe(self, src, comp):
        return f"folder {src.path}"

    def download(self, src, comp, dest, progress, *, force, ceiling=None):
        import os
        import shutil

        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(os.environ["FOLDER_SOURCE_ROOT"]) / src.path, dest)
        type(self).copies.append(src.path)
        return dest, True


def test_a_source_kind_defined_outside_the_package_is_used_by_restore_fetch(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from restorecli.cli import app
    from restorecli.weights import sources

    monkeypatch.setitem(sources.KINDS, "folder", FolderSource())
    monkeypatch.setattr(FolderSource, "copies", [])
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "tiny_net.pth").write_bytes(NET)
    monkeypatch.setenv("FOLDER_SOURCE_ROOT", str(tmp_path / "files"))
    src = '{ kind = "folder", path = "tiny_net.pth" }'
    path = overlay(tmp_path, model("tinyf", comp("tinyf", "net", "tiny8", "tiny_net.pth", [src], NET)))
    base = ["--registry", str(path), "--cache-dir", str(tmp_path / "c3")]
    res = CliRunner().invoke(app, [*base, "models", "--json"])
    row = next(r for r in json.loads(res.stdout) if r["name"] == "tinyf")
    assert row["availability"] == "download", row
    res = CliRunner().invoke(app, [*base, "fetch", "tinyf"])
    assert res.exit_code == 0, res.output
    assert FolderSource.copies == ["tiny_net.pth"]
    spec = load_registry((path,)).get("tinyf")
    torch.testing.assert_close(read_bundle(bundle_path(spec, tmp_path / "c3"), spec)["net"], NET_STATE, rtol=0, atol=0)
    bad = overlay(
        tmp_path, model("tinyg", comp("tinyg", "net", "tiny8", "f.pth", ['{ kind = "folder" }'], NET)), "bad.toml"
    )
    res = CliRunner().invoke(app, ["--registry", str(bad), "fetch", "tinyg"])
    assert isinstance(res.exception, UsageError) and "(folder) needs path" in str(res.exception)  # exit 2


# ---- the real entry point, in a subprocess ---------------------------------------------


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE", "no network"])
def test_restore_without_weights_fails_fast_with_exit_4(tmp_path, how):
    args = ["--offline", "--cache-dir", str(tmp_path / "elsewhere")] if how == "--offline" else []
    env = sandbox_env(tmp_path, **({"HF_HUB_OFFLINE": "1"} if how == "HF_HUB_OFFLINE" else {}))
    res = run_cli(*args, "sr", str(solid_png(tmp_path / "x.png")), env=env, timeout=60)
    err = res.stderr.decode().strip()
    assert res.returncode == 4, err
    assert len(err.splitlines()) == 1 and "resshift-realsr-x4-v3" in err
    assert "resshift_realsrx4_s4_v3.pth" in err and "github.com/zsyOAOA/ResShift/releases" in err
    if how == "no network":  # (the closed proxy plays the missing network)
        assert "connection refused" in err and "restore fetch resshift-realsr-x4-v3" in err
    else:
        assert "autoencoder_vq_f4.pth" in err and "restore fetch resshift-realsr-x4-v3" in err
        assert str(tmp_path / ("elsewhere" if how == "--offline" else "cache")) in err  # the cache it looked in


def test_models_command_shows_the_cached_column(tmp_path, servers):
    path = overlay(tmp_path, tiny_net_model([hub_src()]))
    load.ensure_bundle(spec_of(path, "tiny"), console=quiet())
    res = run_cli("--registry", str(path), "models", "--json", env=sandbox_env(tmp_path), timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    cached = {r["name"]: r["cached"] for r in json.loads(res.stdout)}
    assert cached["tiny"] is True
    assert not any(v for k, v in cached.items() if k != "tiny")
    assert set(cached) == set(load_registry((path,)).models)
    res = run_cli("--registry", str(path), "models", env=sandbox_env(tmp_path, COLUMNS="200"), timeout=60)
    rows = {
        ln.split()[0]: ln.split()[-1]
        for ln in res.stdout.decode().splitlines()
        if ln.strip().startswith(("tiny", "resshift"))
    }
    assert rows["tiny"] == "yes" and rows["resshift-realsr-x4-v3"] == "no"


def test_default_model_fetched_from_loopback_then_runs_with_hf_hub_offline(tmp_path, servers, monkeypatch, shared):
    """A user's first download, with the small ResShift fixture in place of the full-size files:
    `restore fetch` through the real entry point, then `restore sr` (the default model) with HF_HUB_OFFLINE=1."""
    case = shared("conformance", "resshift", "sr_x4")
    cfg = json.loads((case / "case.json").read_text())["config"]
    unet, ae = (case / "unet.pth").read_bytes(), (case / "autoencoder.pth").read_bytes()
    servers.state.repos["mirror/resshift"] = HubRepo(COMMIT, {"resshift_realsrx4_s4_v3.pth": unet})
    servers.state.files["autoencoder_vq_f4.pth"] = ae

    def arch(name: str, kind: str, conf: dict) -> str:
        return f'[arch.{name}]\nkind = "{kind}"\n' + "".join(f"{k} = {toml_value(v)}\n" for k, v in conf.items())

    path = tmp_path / "e2e.toml"
    path.write_text(
        arch("e2e-unet", "resshift.unet", cfg["unet"])
        + arch("e2e-vq", "resshift.vq", cfg["autoencoder"])
        + '\n[models.resshift-realsr-x4-v3.components.unet]\narch = "e2e-unet"\n'
        + f'size = {len(unet)}\nsha256 = "{sha(unet)}"\n'
        + f"sources = [{hub_src(repo='mirror/resshift', file='resshift_realsrx4_s4_v3.pth')}]\n"
        + '\n[models.resshift-realsr-x4-v3.components.autoencoder]\narch = "e2e-vq"\n'
        + f'size = {len(ae)}\nsha256 = "{sha(ae)}"\nsources = [{url_src(servers.url, "autoencoder_vq_f4.pth")}]\n'
    )
    res = run_cli(
        "--registry",
        str(path),
        "fetch",
        "resshift-realsr-x4-v3",
        env=sandbox_env(tmp_path, HF_ENDPOINT=servers.url),
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode()
    assert "resshift-realsr-x4-v3: ready" in res.stderr.decode()
    n = len(servers.requests())
    assert n == 4  # HEAD on the Hub, GET on its CDN; the release URL and the file it redirects to
    res = run_cli("--registry", str(path), "models", "--json", env=sandbox_env(tmp_path), timeout=60)
    assert {r["name"]: r["cached"] for r in json.loads(res.stdout)}["resshift-realsr-x4-v3"] is True
    out = tmp_path / "out.png"
    res = run_cli(
        "--registry",
        str(path),
        "sr",
        str(solid_png(tmp_path / "x.png")),
        str(out),
        env=sandbox_env(tmp_path, HF_HUB_OFFLINE="1"),
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode()
    from PIL import Image

    assert Image.open(out).size == (64, 64)
    assert len(servers.requests()) == n


def test_ctrl_c_while_reading_a_bundle_is_an_interrupt_not_a_corrupt_file(tmp_path, monkeypatch):
    """safetensors' native reader turns a KeyboardInterrupt raised inside it into a SafetensorError;
    the read must still end as Ctrl-C (exit 130), not as 'file is corrupt' (exit 3)."""
    import os
    import signal

    from safetensors import SafetensorError

    spec = load_registry().get("rddm-derain-small")
    path = packaged_bundle(spec)

    def interrupted_read(_path):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C mid-read ...
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass  # ... and the native reader swallows it, as safetensors does
        raise SafetensorError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    monkeypatch.setattr(bundle, "load_file", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        read_bundle(path, spec)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


# ---- nothing is downloaded before the inputs are checked; errors name every file -----------


def two_file_model(tmp_path: Path, base: str, task: str = "sr", net_file: str = "tiny_net.pth") -> Path:
    """A model of two downloadable files (like ResShift's UNet and autoencoder) on the loopback server."""
    body = model("tiny2", "").replace('task = "sr"', f'task = "{task}"')
    body += comp("tiny2", "net", "tiny8", "tiny_net.pth", [url_src(base, net_file)], NET)
    body += comp("tiny2", "enc", "tiny4", "tiny_enc.pth", [url_src(base, "tiny_enc.pth")], ENC)
    return overlay(tmp_path, body)


def test_bad_inputs_masks_and_outputs_are_found_before_any_download(tmp_path, servers):
    from restorecli import restore
    from restorecli.errors import UsageError

    path = two_file_model(tmp_path, servers.url, task="inpaint")
    image = solid_png(tmp_path / "photo.png")
    args = {"task": "inpaint", "model": "tiny2", "registry_files": [path]}
    with pytest.raises(UsageError, match="input not found: .*missing.png"):
        restore(str(tmp_path / "missing.png"), str(tmp_path / "out.png"), mask=str(image), **args)
    with pytest.raises(UsageError, match="mask not found: .*nope.png"):
        restore(str(image), str(tmp_path / "out.png"), mask=str(tmp_path / "nope.png"), **args)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    report = restore(str(image), str(blocker / "out.png"), mask=str(image), **args)
    assert report.failed == 1 and "cannot write to" in report.records[0].reason
    assert servers.requests() == []  # not one request: no weights were looked up
    # the same server does serve a good run (the count above can see requests)
    report = restore(str(image), str(tmp_path / "out.png"), mask=str(image), **args)
    assert report.done == 1 and len(servers.requests()) >= 2


def test_cli_missing_input_is_a_usage_error_with_no_network(tmp_path):
    res = run_cli("sr", "missing.png", env=sandbox_env(tmp_path), timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.decode().startswith("error: input not found: missing.png")


def test_download_failure_names_every_missing_file_and_the_by_hand_route(tmp_path, servers):
    path = two_file_model(tmp_path, servers.url, net_file="gone.pth")  # the first file is a 404
    spec = spec_of(path, "tiny2")
    with pytest.raises(WeightsUnavailable) as err:
        load.ensure_bundle(spec, console=quiet())
    msg = str(err.value)
    assert f"{servers.url}/releases/download/v1/gone.pth" in msg
    assert f"{servers.url}/releases/download/v1/tiny_enc.pth" in msg  # not tried, still named
    assert "restore fetch tiny2 --file net=PATH --file enc=PATH" in msg
    with pytest.raises(WeightsUnavailable) as err:
        load.ensure_bundle(spec, offline=True, console=quiet())
    msg = str(err.value)
    assert "gone.pth" in msg and "tiny_enc.pth" in msg and "--file net=PATH --file enc=PATH" in msg


# ---- what the command line says when weights cannot be had ---------------------------------------


def test_fetch_failure_names_the_url_once_on_unwrapped_lines(tmp_path):
    url = "http://127.0.0.1:9/" + "a-long-path-segment/" * 5 + "tiny_net.pth"
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[arch.t]\nkind = "rddm.unet"\n[models.tiny]\nmethod = "rddm"\ntask = "derain"\n'
        f'trained_steps = 1\n[models.tiny.components.net]\narch = "t"\nfile = "tiny_net.pth"\n'
        f'sources = [{{ kind = "url", url = "{url}" }}]\n'
    )
    env = {"COLUMNS": "", "RESTORECLI_CACHE": str(tmp_path / "cache"), "NO_PROXY": "*", "no_proxy": "*"}
    r = run_cli("--registry", str(overlay), "fetch", "tiny", env=env, timeout=120)
    assert r.returncode == 4, r.stderr
    err = r.stderr.decode()
    assert err.count(url) == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and url in errors[0] and "127.0.0.1" in errors[0], err
    assert all(ln.startswith(("error: ", "downloading ")) for ln in err.splitlines() if ln.strip()), err


def test_offline_error_names_the_tasks_that_work_offline(tmp_path):
    solid_png(tmp_path / "a.png", (32, 32), 90)
    r = run_cli("--offline", "sr", "a.png", "b.png", cwd=tmp_path, env={"RESTORECLI_CACHE": str(tmp_path / "cache")})
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert len(err.strip().splitlines()) == 1
    assert "without network these tasks work: derain, lowlight" in err
