"""Outside text (file, folder and model names, licenses, URLs, a server's reason phrase) is printed as
written: never read as Rich markup, control characters (ANSI escapes) never reach the terminal raw
(io.printable, and every console line that carries such text)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import fake_engine as fe
from helpers import err_of, random_png, run_cli, run_fake_x2
from restorecli.weights.progress import ByteProgress, Reporter

# each of these breaks a line printed as Rich markup (a crash, a restyle, a raw escape)
MARKUP = ["a[/]b", "[/]", "[red]loud[/red]", "x[/x]", "[link=file:///etc/passwd]click[/link]", "[/]\x1b]0;title\x07"]
HOSTILE = [*MARKUP, "\x1b[31mred\x1b[0m", "bell\x07 and nul\x00", "two\nlines"]


def terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=400, color_system="truecolor"), buf


@pytest.mark.parametrize("text", HOSTILE)
def test_status_lines_print_outside_text_as_written(text):
    console, buf = terminal()
    Reporter(console, quiet=False).say(f"failed: HTTP 404 {text} from http://h/{text}; trying the next source")
    out = buf.getvalue()
    shown = text.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\x00", "\\x00").replace("\n", "\\n")
    assert shown in out
    assert "\x1b[31m" not in out and "\x07" not in out and out.count("\n") == 1


@pytest.mark.parametrize("text", [*MARKUP, "\x1b[31mred\x1b[0m"])
def test_progress_labels_print_outside_text_as_written(text):
    from rich.progress import Progress, TextColumn

    console, buf = terminal()
    with Progress(TextColumn("{task.description}"), console=console, auto_refresh=False) as rich_progress:
        ByteProgress(rich_progress).bar(text, 10)
        rich_progress.refresh()
    assert "\x1b[31mred" not in buf.getvalue() and "\x07" not in buf.getvalue()
    assert text.split("\x1b")[0].split("\n")[0].split("\x07")[0] in buf.getvalue()


@pytest.mark.parametrize("name", ["b[/]", "[red]b", "b[/x]"])
def test_convert_names_its_output_as_written(tmp_path, name):
    overlay, _ = fe.write_model(tmp_path / "model")
    import torch

    src = tmp_path / "net.pth"
    torch.save(fe.conv_state(), src)
    out = tmp_path / f"{name}.safetensors"
    res = run_cli(
        "--registry",
        str(overlay),
        "convert",
        "fake-x2",
        f"net={src}",
        "-o",
        str(out),
        cwd=tmp_path,
        timeout=120,
        fake=True,
    )
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert "Traceback" not in err and f"wrote {out}" in err


@pytest.mark.parametrize("license_text", ["MIT [/]", "\x1b[31mGPL\x1b[0m", "[bold]x"])
def test_models_table_prints_registry_text_as_written(tmp_path, license_text):
    overlay, _ = fe.write_model(tmp_path / "model")
    escaped = license_text.replace("\x1b", "\\u001b")
    overlay.write_text(overlay.read_text().replace("scale = 2\n", f'scale = 2\nlicense = "{escaped}"\n', 1))
    res = run_cli("--registry", str(overlay), "models", cwd=tmp_path, timeout=120, fake=True)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, err
    assert "Traceback" not in err and "\x1b[31m" not in out
    assert license_text.replace("\x1b", "\\x1b") in out


@pytest.mark.parametrize("stem", ["[link=x]a", "[red]a", "a\x1b[31m"])
def test_eval_lists_unpartnered_names_as_written(tmp_path, stem):
    restored, reference = tmp_path / "r", tmp_path / "g"
    random_png(restored / "x.png")
    random_png(reference / "x.png")
    random_png(restored / f"{stem}.png")
    res = run_cli("eval", str(restored), str(reference), cwd=tmp_path, timeout=120, fake=True)
    err = res.stderr.decode()
    assert "Traceback" not in err and "\x1b[31m" not in err, err
    assert "without a partner" in err and stem.replace("\x1b", "\\x1b") in err


def test_newlines_in_file_names_stay_on_one_line(tmp_path):
    src = tmp_path / "in"
    random_png(src / "a\nb.png")
    (src / "c\nd.png").write_text("not an image")
    res = run_fake_x2(tmp_path, "sr", str(src), str(tmp_path / "out"))
    assert res.returncode == 1, err_of(res)
    lines = err_of(res).splitlines()
    assert len(lines) == 3, lines  # one progress line, one failure, the summary
    assert any(line.startswith("failed: ") and "c\\nd.png" in line for line in lines), lines
    assert any(line.startswith(("[1/2] ", "[2/2] ")) and "a\\nb.png" in line for line in lines), lines
    assert (tmp_path / "out" / "a\nb.png").is_file()
