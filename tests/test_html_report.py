"""The `--report PATH.html` page: thumbnails, escaping, failed/odd files, the pages a task command and
`restore eval` write, and a real headless browser.

The browser test runs Debian's `chromium` (installed by `.ci/run` when missing): the page is
opened with `#selftest`, its inline self-check records image decoding, slider movement and
errors into `<pre id="selftest">`, and `--dump-dom` hands the DOM back; chromium's own console
log (`--enable-logging=stderr`) must show no message from the page. Without chromium the test
skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import IN_CI, ONE_THREAD, run_cli, solid_png
from restorecli.jobs.html_report import (
    ReportEntry,
    entries_from_eval,
    entries_from_records,
    thumbs_dir_for,
    write_html_report,
)

EVIL = "\"><script>alert('x')<img src=x onerror=alert(1)> &amp; 'q'.png"  # no "/": it is a file name
RUN_INFO = {"task": "derain", "model": "rddm-derain-small", "steps": 1, "seed": 0, "device": "cpu"}


def noise(h: int, w: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hi = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, hi + 1, shape, dtype=np.int64).astype(dtype)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return str(path)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: Path) -> Tags:
    t = Tags()
    t.feed(page.read_text(encoding="utf-8"))
    return t


def thumbs_of(page: Path) -> list[tuple[str, dict]]:
    return [(tag, a) for tag, a in parse(page).tags if tag == "img"]


def thumb_size(page: Path, src: str) -> tuple[int, int]:
    with Image.open(page.parent / src) as im:
        return im.size


# ---- unit tests ----------------------------------------------------------------------------


def test_names_and_texts_are_escaped_everywhere(tmp_path):
    evil_in = save(tmp_path / "in" / EVIL, noise(20, 30))
    evil_out = save(tmp_path / "out" / EVIL, noise(20, 30, seed=1))
    entries = [
        ReportEntry(evil_in, evil_out, "done", seconds=0.5, warnings=['<b>bold</b> & "q"']),
        ReportEntry(evil_in, None, "failed", reason="<script>alert(2)</script>"),
        ReportEntry(evil_in, None, "<i>odd</i>"),
    ]
    page = write_html_report(
        tmp_path / "r.html",
        title="<title>x</title><script>alert(3)</script>",
        run_info={"model": "<script>alert(4)</script>", "<k>": None},
        entries=entries,
    )
    text = page.read_text(encoding="utf-8")
    tags = parse(page)
    names = [t for t, _ in tags.tags]
    assert names.count("script") == 1  # only the page's own script
    assert names.count("title") == 1
    assert "b" not in names and "i" not in names and "k" not in names
    assert not any(k.startswith("on") for _, a in tags.tags for k in a)  # no injected event handler
    assert "alert" not in text.split("<script>")[-1].split("</script>")[0]  # our script is untouched
    body = "".join(tags.text)
    assert "alert('x')" in body and "<script>alert(2)</script>" in body and "<b>bold</b>" in body
    # links to the full-size files are percent-encoded and resolve to the real files
    hrefs = [a["href"] for t, a in tags.tags if t == "a" and "href" in a]
    from urllib.parse import unquote

    assert (page.parent / unquote(hrefs[0])).resolve() == Path(evil_in).resolve()
    assert (page.parent / unquote(hrefs[1])).resolve() == Path(evil_out).resolve()


def test_thumbnails_are_small_files_beside_the_page(tmp_path):
    a = save(tmp_path / "in" / "big.png", noise(600, 800))
    b = save(tmp_path / "out" / "big.png", noise(600, 800, seed=1))
    small = save(tmp_path / "in" / "small.png", noise(30, 40))
    page = write_html_report(
        tmp_path / "run.html", title="t", run_info=RUN_INFO, entries=[ReportEntry(a, b), ReportEntry(small, small)]
    )
    files = thumbs_dir_for(page)
    assert files == tmp_path / "run_files" and files.is_dir()
    imgs = thumbs_of(page)
    assert len(imgs) == 4
    for _, attrs in imgs:
        assert attrs["src"].startswith("run_files/")
        assert thumb_size(page, attrs["src"]) == (int(attrs["width"]), int(attrs["height"]))
    sizes = [thumb_size(page, attrs["src"]) for _, attrs in imgs]
    assert sizes == [(320, 240), (320, 240), (40, 30), (40, 30)]  # never upscaled when same size
    assert all(p.stat().st_size < 60_000 for p in files.iterdir())
    # no temporary leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "run.html", "run_files"]


def test_sr_input_is_upscaled_to_the_output_thumbnail_for_the_slider(tmp_path):
    lo = noise(30, 40)
    inp = save(tmp_path / "in" / "x.png", lo)
    out = save(tmp_path / "out" / "x.png", np.asarray(Image.fromarray(lo).resize((160, 120), Image.BICUBIC)))
    big_in = save(tmp_path / "in" / "y.png", noise(150, 200))
    big_out = save(tmp_path / "out" / "y.png", noise(600, 800))
    odd_out = save(tmp_path / "out" / "z.png", noise(90, 121))  # 121 / 40 = 3.025: 1-pixel rounding at x3
    page = write_html_report(
        tmp_path / "sr.html",
        title="sr",
        run_info={"task": "sr"},
        entries=[ReportEntry(inp, out), ReportEntry(big_in, big_out), ReportEntry(inp, odd_out)],
    )
    imgs = [a for _, a in thumbs_of(page)]
    assert [thumb_size(page, a["src"]) for a in imgs] == [(160, 120)] * 2 + [(320, 240)] * 2 + [(121, 90)] * 2
    assert [a["class"] for a in imgs] == ["before", ""] * 3
    ranges = [a for t, a in parse(page).tags if t == "input" and a.get("type") == "range"]
    assert len(ranges) == 3
    assert "input 40\u00d730 \u2192 output 160\u00d7120" in page.read_text(encoding="utf-8")


def test_different_shapes_side_by_side(tmp_path):
    a = save(tmp_path / "a.png", noise(40, 40))
    b = save(tmp_path / "b.png", noise(40, 80))
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(a, b)])
    tags = parse(page).tags
    assert not any(t == "input" for t, _ in tags)
    assert [a_["class"] for t, a_ in tags if t == "img"] == ["solo", "solo"]


def test_failed_skipped_missing_and_unreadable_entries(tmp_path):
    good = save(tmp_path / "in" / "good.png", noise(20, 20))
    junk = tmp_path / "in" / "junk.png"
    junk.write_bytes(b"not an image at all")
    trunc = tmp_path / "in" / "trunc.png"
    trunc.write_bytes((tmp_path / "in" / "good.png").read_bytes()[:60])
    entries = [
        ReportEntry(good, None, "failed", reason="out of memory even with 64-pixel tiles", seconds=0.1),
        ReportEntry(good, good, "skipped", reason="output exists"),
        ReportEntry(str(tmp_path / "gone.png"), str(tmp_path / "gone_out.png"), "failed", reason="cannot decode"),
        ReportEntry(str(junk), None, "failed", reason="cannot decode: not an image"),
        ReportEntry(str(trunc), good, "done"),
        ReportEntry(None, None, "failed", reason="no input"),
    ]
    page = write_html_report(tmp_path / "r.html", title="t", run_info=RUN_INFO, entries=entries)
    text = page.read_text(encoding="utf-8")
    cards = text.split("<article")[1:]
    assert len(cards) == 6
    assert "out of memory even with 64-pixel tiles" in cards[0] and cards[0].count("<img") == 1
    assert "preview unavailable" not in cards[0]
    assert 'data-status="skipped"' in cards[1] and cards[1].count("<img") == 2  # skipped: existing output shown
    assert cards[2].count("preview unavailable") == 1 and "file not found" in cards[2]  # no output placeholder
    assert cards[3].count("preview unavailable") == 1 and "<img" not in cards[3]
    assert cards[4].count("preview unavailable") == 1 and cards[4].count("<img") == 1
    assert "preview unavailable" in cards[5]
    assert "1 skipped" in text and "4 failed" in text and "1 done" in text


def test_16bit_alpha_gray_palette_cmyk_inputs(tmp_path):
    g16 = save(tmp_path / "g16.png", noise(24, 32, 1, dtype=np.uint16))
    rgba = np.dstack([noise(24, 32), np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))])
    alpha = save(tmp_path / "alpha.png", rgba, "RGBA")
    opaque = save(tmp_path / "opaque.png", np.dstack([noise(24, 32), np.full((24, 32), 255, np.uint8)]), "RGBA")
    gray = save(tmp_path / "gray.png", noise(24, 32, 1))
    la = save(tmp_path / "la.png", np.dstack([noise(24, 32, 1), np.full((24, 32), 128, np.uint8)]), "LA")
    pal = tmp_path / "pal.png"
    Image.fromarray(noise(24, 32)).convert("P", palette=Image.Palette.ADAPTIVE).save(pal)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(noise(24, 32)).convert("CMYK").save(cmyk)
    rgb16 = tmp_path / "rgb16.tif"
    try:
        import cv2

        cv2.imwrite(str(rgb16), noise(24, 32, 3, dtype=np.uint16))
    except ImportError:
        rgb16 = Path(g16)
    entries = [
        ReportEntry(g16, alpha),
        ReportEntry(gray, la),
        ReportEntry(str(pal), str(cmyk)),
        ReportEntry(str(rgb16), opaque),
    ]
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=entries)
    imgs = [a for _, a in thumbs_of(page)]
    assert len(imgs) == 8 and "preview unavailable" not in page.read_text(encoding="utf-8")
    srcs = [a["src"] for a in imgs]
    assert srcs[1].endswith("-after.png") and srcs[3].endswith("-after.png")  # transparency kept in PNG
    assert srcs[7].endswith("-after.jpg")  # fully opaque alpha: JPEG
    with Image.open(page.parent / srcs[0]) as im:
        assert im.mode == "L" and np.asarray(im).std() > 10  # 16-bit gray scaled, not clipped
    with Image.open(page.parent / srcs[1]) as im:
        assert im.mode == "RGBA" and im.getextrema()[3][0] < 50


def test_exif_orientation_big_jpeg_and_the_preview_size_limit(tmp_path, monkeypatch):
    photo = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    Image.fromarray(noise(800, 1200)).save(photo, quality=90, exif=exif)
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(str(photo), str(photo))])
    sizes = [thumb_size(page, a["src"]) for _, a in thumbs_of(page)]
    assert sizes == [(213, 320), (213, 320)]  # upright, from a reduced-scale decode
    assert "input 800\u00d71200" in page.read_text(encoding="utf-8")  # the full size, upright
    monkeypatch.setenv("RESTORECLI_MAX_PIXELS", "100")  # previews up to 16 x 100 pixels
    small = save(tmp_path / "s.png", noise(41, 41))  # 1681 > 1600
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(small, small)])
    assert page.read_text(encoding="utf-8").count("too large to preview") == 2


def test_metrics_and_eval_entries(tmp_path):
    ref = save(tmp_path / "ref" / "1.png", noise(16, 16))
    res = save(tmp_path / "res" / "1.png", noise(16, 16, seed=3))
    files = [
        {
            "name": "1",
            "restored": res,
            "reference": ref,
            "psnr_y": 21.5,
            "ssim_y": 0.75,
            "psnr_rgb": 20.25,
            "ssim_rgb": 0.7,
        },
        {
            "name": "2",
            "restored": ref,
            "reference": ref,
            "psnr_y": float("inf"),
            "ssim_y": 1.0,
            "psnr_rgb": float("inf"),
            "ssim_rgb": 1.0,
        },
    ]
    entries = entries_from_eval(files)
    assert entries[0].input == ref and entries[0].output == res and entries[0].metrics["psnr_y"] == 21.5
    page = write_html_report(
        tmp_path / "eval.html",
        title="restore eval res/ ref/",
        run_info={"restored": "res/", "reference": "ref/", "crop border": 0},
        entries=entries,
        labels=("reference", "restored"),
    )
    text = page.read_text(encoding="utf-8")
    assert "PSNR-Y 21.50 dB" in text and "SSIM-Y 0.7500" in text and "PSNR 20.25 dB" in text
    assert "PSNR-Y \u221e dB" in text
    assert "mean over files: PSNR-Y \u221e dB \u00b7 SSIM-Y 0.8750" in text
    assert ">reference</span>" in text and ">restored</span>" in text


def test_entries_from_pipeline_records(tmp_path):
    from restorecli.jobs.report import FileRecord

    a = save(tmp_path / "a.png", noise(8, 8))
    recs = [FileRecord(a, a, "done", None, 1.5, ["written at 8 bits"]), FileRecord(a, None, "failed", "boom", 0.0)]
    entries = entries_from_records(recs)
    assert entries[0] == ReportEntry(a, a, "done", None, 1.5, ["written at 8 bits"])
    assert entries[1].output is None and entries[1].reason == "boom"


def test_rewrite_replaces_thumbnails_and_never_deletes_foreign_folders(tmp_path):
    a = save(tmp_path / "a.png", noise(8, 8))
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(a, a)] * 3)
    assert len(list(thumbs_dir_for(page).glob("*.jpg"))) == 6
    write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(a, a)])
    assert len(list(thumbs_dir_for(page).glob("*.jpg"))) == 2  # stale thumbnails gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "r.html", "r_files"]
    mine = tmp_path / "photos_files"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        write_html_report(tmp_path / "photos.html", title="t", run_info={}, entries=[ReportEntry(a, a)])
    assert (mine / "holiday.jpg").exists() and not (tmp_path / "photos.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "photos_files", "r.html", "r_files"]


def test_undecodable_file_name_bytes(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.png"  # Latin-1 name: not UTF-8
    Image.fromarray(noise(8, 8)).save(raw.decode("utf-8", "surrogateescape"))
    p = os.fsdecode(raw)
    page = write_html_report(tmp_path / "r.html", title="t", run_info={}, entries=[ReportEntry(p, p)])
    text = page.read_text(encoding="utf-8")
    assert "caf\ufffd.png" in text and "caf%E9.png" in text


def test_a_thousand_entries_stay_light_and_quick(tmp_path):
    srcs = [save(tmp_path / "in" / f"{i:02d}.png", noise(96, 128, seed=i)) for i in range(20)]
    entries = [
        ReportEntry(srcs[i % 20], srcs[(i + 1) % 20], "done" if i % 7 else "failed", seconds=1.0) for i in range(1000)
    ]
    t0 = time.perf_counter()
    page = write_html_report(tmp_path / "big.html", title="1000", run_info=RUN_INFO, entries=entries, workers=2)
    took = time.perf_counter() - t0
    files = list(thumbs_dir_for(page).iterdir())
    assert len(files) == 2001  # 2 thumbnails per entry + the marker
    assert took < 60, f"{took:.1f} s for 1000 entries"
    assert page.stat().st_size < 1_500_000
    assert sum(f.stat().st_size for f in files) < 20_000_000
    print(f"1000 entries: {took:.1f} s, page {page.stat().st_size / 1e3:.0f} kB")


# ---- a real headless browser -----------------------------------------------------------------


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    message = "chromium not found (.ci/run installs Debian's chromium: apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(page: Path, tmp_path: Path, *extra: str, fragment: str = "#selftest") -> tuple[str, list[str]]:
    """(DOM after the page's scripts ran, console messages chromium logged for the page)."""
    exe = find_chromium()
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    cmd = [
        exe,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        *extra,
        page.resolve().as_uri() + fragment,
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, env=dict(os.environ, LANG="C.UTF-8"))
    err = proc.stderr.decode("utf-8", "replace")
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    return proc.stdout.decode("utf-8", "replace"), console


def selftest_result(dom: str) -> dict:
    m = re.search(r'<pre id="selftest"[^>]*data-done="1"[^>]*>(.*?)</pre>', dom, re.S)
    assert m, "the page's self-test did not finish:\n" + dom[-3000:]
    import html as htmllib

    return json.loads(htmllib.unescape(m.group(1)))


def browser_page(tmp_path: Path) -> tuple[Path, int]:
    """A report with every kind of entry; returns the page and how many sliders it has."""
    lo = noise(40, 60)
    d = tmp_path / "data"
    entries = [
        ReportEntry(
            save(d / "in" / "rain.png", noise(48, 48)),
            save(d / "out" / "rain.png", noise(48, 48, seed=1)),
            "done",
            seconds=1.2,
            metrics={"psnr_y": 24.0, "ssim_y": 0.8},
        ),
        ReportEntry(
            save(d / "in" / "sr.png", lo),
            save(d / "out" / "sr.png", np.asarray(Image.fromarray(lo).resize((240, 160), Image.BICUBIC))),
            "done",
            seconds=3.0,
        ),
        ReportEntry(
            save(d / "in" / EVIL, noise(48, 48, seed=2)),
            save(d / "out" / EVIL, noise(48, 48, seed=3)),
            "done",
            warnings=["<b>alpha</b> dropped"],
        ),
        ReportEntry(
            save(
                d / "in" / "alpha.png",
                np.dstack([lo, np.tile(np.linspace(0, 255, 60).astype(np.uint8), (40, 1))]),
                "RGBA",
            ),
            save(d / "out" / "g16.png", noise(40, 60, 1, dtype=np.uint16)),
            "done",
        ),
        ReportEntry(str(d / "in" / "sr.png"), None, "failed", reason="out of memory <even> with tiles"),
        ReportEntry(str(d / "in" / "missing.png"), str(d / "out" / "missing.png"), "failed", reason="cannot decode"),
        ReportEntry(
            str(d / "in" / "rain.png"), save(d / "out" / "wide.png", noise(48, 96)), "skipped", reason="output exists"
        ),
    ]
    page = write_html_report(
        tmp_path / "report dir" / "run #1.html", title="restore derain <in>/ out/", run_info=RUN_INFO, entries=entries
    )
    return page, 4


def test_page_in_headless_chromium(tmp_path):
    find_chromium()
    page, sliders = browser_page(tmp_path)
    dom, console = run_chromium(page, tmp_path)
    result = selftest_result(dom)
    assert console == [], console
    assert result["errors"] == [], result
    assert result["cards"] == 7
    assert result["scripts"] == 1  # no injected script element
    assert result["images"] == 11 and result["decoded"] == 11 and result["broken"] == [], result
    assert result["sliders"] == sliders and result["moved"] == sliders, result
    assert "alert('x')" in dom and "&lt;b&gt;alpha&lt;/b&gt; dropped" in dom


def test_headless_chromium_catches_a_broken_image(tmp_path):
    """The browser check is not vacuous: a missing thumbnail is reported as not decoded."""
    find_chromium()
    page, _ = browser_page(tmp_path)
    victim = sorted(thumbs_dir_for(page).glob("*-after.*"))[0]
    victim.unlink()
    dom, _console = run_chromium(page, tmp_path)
    result = selftest_result(dom)
    assert result["decoded"] == result["images"] - 1
    assert len(result["broken"]) == 1 and result["broken"][0].endswith(victim.name)
    assert any("failed to load IMG" in e for e in result["errors"])


@pytest.mark.parametrize("dangling", [False, True])
def test_a_linked_thumbnail_folder_is_replaced_and_nothing_is_left_behind(tmp_path, dangling):
    """The link itself goes (the folder it points to is left as it was), and no `.X_files.old-*` stays."""
    elsewhere = tmp_path / "elsewhere"
    if not dangling:
        elsewhere.mkdir()
        (elsewhere / ".restorecli-report").write_text("")
        (elsewhere / "keep.txt").write_text("keep me")
    (tmp_path / "run_files").symlink_to(elsewhere, target_is_directory=True)
    a = save(tmp_path / "in" / "a.png", noise(30, 40))
    write_html_report(tmp_path / "run.html", title="t", run_info=RUN_INFO, entries=[ReportEntry(a, a)])
    files = tmp_path / "run_files"
    assert files.is_dir() and not files.is_symlink()
    assert not list(tmp_path.glob(".run_files.old-*"))
    if not dangling:
        assert (elsewhere / "keep.txt").read_text() == "keep me"


# ---- the pages a task command and `restore eval` write -------------------------------------------


def _page_text(page):
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.imgs = [], []

        def handle_data(self, data):
            self.parts.append(data)

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs).get("src"))

    parser = Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split()), parser.imgs


def test_task_report_page_with_thumbnails_names_files_and_settings(tmp_path):
    solid_png(tmp_path / "in" / "a.png", (40, 56), 90)
    solid_png(tmp_path / "in" / "b.png", (48, 32), 160)
    r = run_cli(
        "--offline",
        "derain",
        "in",
        "out",
        "--report",
        "run.html",
        "--seed",
        "3",
        "--device",
        "cpu",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert r.returncode == 0, r.stderr
    page = tmp_path / "run.html"
    text, imgs = _page_text(page)
    for needle in (
        "a.png",
        "b.png",
        "derain",
        "rddm-derain-small",
        "seed",
        "3",
        "cpu",
        "fp32",
        "steps",
        "done",
        "bundled with restorecli",
    ):
        assert needle in text, (needle, text)
    # the run's wall time, and the files' own times labelled as a sum (they overlap), never "in total"
    assert re.search(r"wall time\s*\d+\.\d\d s", text) and "summed over files" in text, text
    assert "in total" not in text
    thumbs = sorted(p.name for p in (tmp_path / "run_files").iterdir() if not p.name.startswith("."))
    assert len(thumbs) == 4, thumbs  # input and output of each file
    assert all(src and src.startswith("run_files/") for src in imgs) and len(imgs) >= 4
    assert "wrote report run.html" in r.stderr.decode()

    # a rerun that skips everything still writes the page (the outputs exist)
    r = run_cli("--offline", "derain", "in", "out", "--report", "run.html", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    text, _ = _page_text(page)
    assert "skipped" in text and "a.png" in text


def test_eval_report_page_shows_metrics(tmp_path):
    solid_png(tmp_path / "ref" / "a.png", (40, 56), 100)
    solid_png(tmp_path / "res" / "a_derain.png", (40, 56), 104)
    r = run_cli("eval", "res", "ref", "--strip-suffix", "_derain", "--report", "eval.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text, _ = _page_text(tmp_path / "eval.html")
    assert "a.png" in text and "reference" in text and "restored" in text
    assert "a_derain.png" in (tmp_path / "eval.html").read_text()  # the link to the restored file
    assert "PSNR" in text and "SSIM" in text, text
    assert len([p for p in (tmp_path / "eval_files").iterdir() if not p.name.startswith(".")]) == 2
