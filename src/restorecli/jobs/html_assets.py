"""The HTML run report's inline style sheet and script (kept apart from the page builder)."""

METRIC_LABELS = {
    "psnr_y": ("PSNR-Y", "dB"),
    "ssim_y": ("SSIM-Y", ""),
    "psnr": ("PSNR", "dB"),
    "psnr_rgb": ("PSNR", "dB"),
    "ssim": ("SSIM", ""),
    "ssim_rgb": ("SSIM", ""),
}

_CSS = """
:root{color-scheme:light dark;--bg:#f6f6f4;--fg:#1d1d1f;--card:#fff;--mut:#6b6b70;--line:#dedee2;
--ok:#1f7a3a;--skip:#8a6d00;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#161618;--fg:#e8e8ea;--card:#222226;--mut:#a0a0a8;--line:#38383e;
--ok:#5cc17a;--skip:#e0c050;--bad:#ff7b72}}
*{box-sizing:border-box}
body{margin:0;padding:16px 20px;background:var(--bg);color:var(--fg);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:20px;margin:0 0 12px;word-break:break-all}
.run{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:16px}
.info{border-collapse:collapse}.info th{text-align:left;color:var(--mut);font-weight:500;padding:1px 16px 1px 0;vertical-align:top}
.info td{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.summary{margin:10px 0 4px;font-weight:600}.means{margin:4px 0}
.c-done{color:var(--ok)}.c-skipped{color:var(--skip)}.c-failed{color:var(--bad)}
.filters button{font:inherit;margin:6px 6px 0 0;padding:2px 10px;border:1px solid var(--line);border-radius:12px;
background:transparent;color:inherit;cursor:pointer}.filters button.on{background:var(--fg);color:var(--bg)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(THUMBpx,1fr));gap:14px;align-items:start}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px;min-width:0}
.card header{display:flex;gap:8px;align-items:baseline;margin-bottom:8px}
.name{flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:600}
.secs{color:var(--mut);white-space:nowrap}
.badge{font-size:11px;text-transform:uppercase;letter-spacing:.04em;padding:1px 7px;border-radius:9px;color:#fff;background:var(--mut)}
.st-done .badge{background:var(--ok)}.st-skipped .badge{background:var(--skip)}.st-failed .badge{background:var(--bad)}
.st-failed{border-color:var(--bad)}
.cmp{max-width:100%;margin:0 auto}
.stage{position:relative;width:100%;overflow:hidden;border-radius:4px;user-select:none;
background:repeating-conic-gradient(#ccc 0 25%,#eee 0 50%) 0 0/16px 16px}
.stage img{position:absolute;inset:0;width:100%;height:100%;display:block}
.after{position:absolute;inset:0}
.divider{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;box-shadow:0 0 3px rgba(0,0,0,.7);pointer-events:none}
.divider::after{content:"";position:absolute;top:50%;left:50%;width:22px;height:22px;margin:-11px;border-radius:50%;
background:#fff;box-shadow:0 0 4px rgba(0,0,0,.6)}
.tag{position:absolute;top:6px;font-size:11px;padding:1px 6px;border-radius:3px;background:rgba(0,0,0,.55);color:#fff;pointer-events:none}
.tag.l{left:6px}.tag.r{right:6px}
.range{position:absolute;inset:0;width:100%;height:100%;margin:0;opacity:0;cursor:ew-resize}
.range:focus-visible{opacity:.3}
.dims{color:var(--mut);font-size:12px;margin-top:4px}
.pair{display:flex;gap:8px;flex-wrap:wrap}
.pair figure{margin:0;flex:1 1 0;min-width:0}
.frame{display:inline-block;max-width:100%;vertical-align:top;line-height:0;border-radius:4px;
background:repeating-conic-gradient(#ccc 0 25%,#eee 0 50%) 0 0/16px 16px}
.frame img{max-width:100%;height:auto}
figcaption{color:var(--mut);font-size:12px;margin-top:3px}
.na{display:flex;flex-direction:column;justify-content:center;align-items:center;text-align:center;min-height:120px;
border:1px dashed var(--line);border-radius:4px;color:var(--mut);padding:8px;word-break:break-word}
.metrics{margin-top:6px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.reason{margin-top:6px;color:var(--bad);word-break:break-word}
.warn{margin-top:4px;color:var(--skip);word-break:break-word}
.links{margin-top:6px;font-size:12px;color:var(--mut)}.links a{color:inherit;margin-right:8px}
body.f-done .card:not(.st-done),body.f-skipped .card:not(.st-skipped),body.f-failed .card:not(.st-failed){display:none}
"""

# Kept free of any run data (which lives only in escaped HTML), so its CSP hash is fixed.
_SCRIPT = r"""
(function () {
  "use strict";
  var selftest = location.hash === "#selftest";
  var errors = [];
  if (selftest) {
    window.addEventListener("error", function (e) {
      var t = e.target;
      errors.push(t && t.tagName ? "failed to load " + t.tagName + " " + (t.currentSrc || t.src || "") : String(e.message));
    }, true);
    window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
    var origError = console.error;
    console.error = function () { errors.push("console.error: " + Array.prototype.join.call(arguments, " ")); return origError.apply(console, arguments); };
  }
  function move(range) {
    var stage = range.parentNode;
    var v = Math.max(0, Math.min(100, parseFloat(range.value) || 0));
    stage.querySelector(".after").style.clipPath = "inset(0 0 0 " + v + "%)";
    stage.querySelector(".divider").style.left = v + "%";
  }
  document.addEventListener("input", function (e) {
    if (e.target && e.target.classList && e.target.classList.contains("range")) move(e.target);
  });
  var buttons = document.querySelectorAll(".filters button");
  Array.prototype.forEach.call(buttons, function (b) {
    b.addEventListener("click", function () {
      Array.prototype.forEach.call(buttons, function (o) { o.classList.toggle("on", o === b); });
      document.body.className = b.dataset.filter === "all" ? "" : "f-" + b.dataset.filter;
    });
  });
  if (!selftest) return;
  var imgs = Array.prototype.slice.call(document.images);
  imgs.forEach(function (img) { img.loading = "eager"; });
  var out = document.getElementById("selftest");
  // wait for every image's load or error event (resource loads hold chromium's virtual time,
  // so `--dump-dom --virtual-time-budget` sees the result), then check each one decoded
  Promise.all(imgs.map(function (img) {
    return new Promise(function (done) {
      if (img.complete) return done();
      img.addEventListener("load", done);
      img.addEventListener("error", done);
    });
  })).then(function () {
    var broken = imgs.filter(function (img) {
      return !(img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
    }).map(function (img) { return img.getAttribute("src"); });
    var moved = 0, ranges = document.querySelectorAll("input.range");
    Array.prototype.forEach.call(ranges, function (r) {
      var after = r.parentNode.querySelector(".after");
      var before = after.style.clipPath;
      r.value = "20";
      r.dispatchEvent(new Event("input", {bubbles: true}));
      var now = after.style.clipPath;
      if (now !== before && now.indexOf("20%") >= 0) moved++;
      r.value = "50";
      r.dispatchEvent(new Event("input", {bubbles: true}));
    });
    out.textContent = JSON.stringify({
      images: imgs.length, decoded: imgs.length - broken.length, broken: broken,
      sliders: ranges.length, moved: moved, cards: document.querySelectorAll(".card").length,
      scripts: document.scripts.length, errors: errors
    });
    out.setAttribute("data-done", "1");
  });
})();
"""
