#!/usr/bin/env python3
"""Open every page of a built site in headless Chromium and check it as a reader would (`make check-docs`):

    .venv/bin/python tools/check_site.py [--site _site]

Serves <site>/html on a local port and drives Debian's `chromium` over the Chrome DevTools Protocol (a websocket;
no driver to download). Per page: every image loaded, every internal link (and its #anchor) resolves, nothing was
fetched from another host, no script error; a chapter shows an image for each figure its notebook holds and every
audio player loads a sound of non-zero duration and plays (muted). The search page finds a chapter. Screenshots go to
<site>/screenshots/, the counts to <site>/check.json; the exit status is 1 when something is wrong.
"""
import argparse, base64, functools, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading, time
import urllib.parse, urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGE_JS = r"""(async () => {
  const waitAudio = a => new Promise(done => {
    if (a.readyState >= 1) return done(a.duration);
    const t = setTimeout(() => done(a.error ? -1 : 0), 15000);
    a.addEventListener("loadedmetadata", () => { clearTimeout(t); done(a.duration); }, {once: true});
    a.addEventListener("error", () => { clearTimeout(t); done(-1); }, {once: true});
    if (a.preload === "none") { a.preload = "metadata"; a.load(); }
  });
  const audios = [...document.querySelectorAll("audio")];
  const durations = await Promise.all(audios.map(waitAudio));
  const started = await Promise.all(audios.map(a => a.play().then(() => true, () => false)));
  await new Promise(r => setTimeout(r, 400));
  const played = audios.map((a, k) => started[k] ? a.currentTime : -1);
  audios.forEach(a => a.pause());
  await Promise.all([...document.images].map(i => i.complete ? null : new Promise(d => { i.onload = i.onerror = d; })));
  return {
    title: document.title,
    images: [...document.images].map(i => ({src: (i.currentSrc || i.src).slice(0, 200), loaded: i.complete && i.naturalWidth > 0})),
    output_images: document.querySelectorAll(".cell_output img").length,
    audio: audios.map((a, k) => ({src: (a.currentSrc || a.src).slice(0, 40), duration: durations[k], played: played[k]})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    nav: [...document.querySelectorAll(".bd-sidebar-primary nav a.reference")].map(a => a.getAttribute("href")),
    prev_next: [...document.querySelectorAll(".prev-next-area a")].map(a => a.getAttribute("href")),
  };
})()"""

# the theme restores the sidebar's scroll position from the previous page; a reader arriving fresh sees its top
SIDEBAR_TOP = "document.querySelectorAll('.bd-sidebar-primary, .bd-sidebar-primary .sidebar-primary-items__start').forEach(e => e.scrollTop = 0)"

def find_browser() -> str | None:
    "Chromium's path: $MUOMNI_CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH."
    if os.environ.get("MUOMNI_CHROMIUM"): return os.environ["MUOMNI_CHROMIUM"]
    return next((p for p in map(shutil.which, BROWSERS) if p), None)

class Chromium:
    "A headless Chromium and one page of it, driven over the DevTools protocol."
    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 60):
        import websocket
        self.profile, self.timeout, self.events, self.next_id = tempfile.mkdtemp(prefix="muomni-chromium-"), timeout, [], 0
        args = [binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required",     # players may play without a click
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0: args.insert(1, "--no-sandbox")   # Chromium refuses root otherwise
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = Path(self.profile) / "DevToolsActivePort", time.time()
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() - t0 > timeout:
                self.close(); raise RuntimeError(f"{binary} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        for domain in ("Page", "Network", "Runtime", "Log"): self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        "Send one command; return its result (events that arrive meanwhile are kept in `events`)."
        self.next_id += 1
        self.ws.send(json.dumps(dict(id=self.next_id, method=method, params=params)))
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg: self.events.append(msg)
        raise TimeoutError(f"{method}: no answer in {self.timeout}s")

    def wait_for(self, event: str) -> dict:
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            for k, e in enumerate(self.events):
                if e["method"] == event: return self.events.pop(k)
            msg = json.loads(self.ws.recv())
            if "method" in msg: self.events.append(msg)
        raise TimeoutError(f"no {event} in {self.timeout}s")

    def open(self, url: str) -> None:
        self.events = []
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, js: str):
        r = self.call("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r: raise RuntimeError(f"script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None): self.ws.close()
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    "Serve `folder` on a free loopback port in a background thread; (server, base URL)."
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"

def notebook_expectations(src: Path) -> dict:
    "{page: (figures, players)} from the staged notebooks: image outputs and HTML audio players each should show."
    out = {}
    for nb in src.glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        outputs = [o for c in cells if c["cell_type"] == "code" and "remove-cell" not in c.get("metadata", {}).get("tags", [])
                   for o in c.get("outputs", [])]
        figures = sum(1 for o in outputs if any(k.startswith("image/") for k in o.get("data", {})))
        players = sum("".join(o.get("data", {}).get("text/html", "")).count("<audio") for o in outputs)
        out[nb.stem] = (figures, players)
    return out

def page_problems(name: str, seen: dict, expected: tuple | None, base: str) -> list[str]:
    "What is wrong with one page, from what the browser saw there."
    bad = [f"{name}: image did not load: {i['src']}" for i in seen["images"] if not i["loaded"]]
    bad += [f"{name}: audio player without sound (duration {a['duration']}): {a['src']}..." for a in seen["audio"]
            if not (a["duration"] and a["duration"] > 0)]
    bad += [f"{name}: audio player does not play (at {a['played']} s after 0.4 s): {a['src']}..." for a in seen["audio"]
            if not a["played"] > 0]
    bad += [f"{name}: {r}" for r in seen["requests_failed"]]
    bad += [f"{name}: fetched from another host: {u}" for u in seen["external_requests"]]
    bad += [f"{name}: script error: {e}" for e in seen["errors"]]
    bad += [f"{name}: broken link: {u}" for u in seen["broken_links"]]
    if expected:
        figures, players = expected
        if seen["output_images"] < figures: bad.append(f"{name}: {seen['output_images']} figures shown, the notebook has {figures}")
        if len(seen["audio"]) < players: bad.append(f"{name}: {len(seen['audio'])} audio players, the notebook has {players}")
    return bad

def link_problems(links: list[str], base: str, cache: dict) -> list[str]:
    "Internal links (same server) whose page is missing or whose #anchor is not on it."
    broken = []
    for link in sorted(set(links)):
        if not link.startswith(base): continue
        url, _, anchor = link.partition("#")
        if url not in cache:
            try: cache[url] = urllib.request.urlopen(url, timeout=30).read().decode("utf-8", "replace")
            except Exception as e: cache[url] = None
        text = cache[url]
        if text is None or (anchor and not re.search(rf'id="{re.escape(urllib.parse.unquote(anchor))}"', text)):
            broken.append(link)
    return broken

def check_site(site: Path, browser: str | None = None, shots: Path | None = None) -> dict:
    """Open every page of <site>/html; return {pages: {name: what was seen}, problems: [...], screenshots: [...],
    counts: {...}}. <site>/src holds the staged notebooks that say how many figures and players each chapter has."""
    html, shots = site / "html", shots or site / "screenshots"
    browser = browser or find_browser()
    if not browser: raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}); install Debian's `chromium`")
    expected = notebook_expectations(site / "src")
    pages = sorted(p.relative_to(html).with_suffix("").as_posix() for p in html.glob("*.html")
                   if p.stem not in ("genindex", "search"))
    shutil.rmtree(shots, ignore_errors=True)
    server, base = serve(html)
    chrome = Chromium(browser)
    report, problems, cache, screenshots = {}, [], {}, []
    try:
        for name in pages:
            chrome.open(base + name + ".html")
            seen = chrome.evaluate(PAGE_JS)
            chrome.evaluate("new Promise(r => setTimeout(r, 200))")       # let late network events arrive
            events = chrome.events
            urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"}
            seen["requests_failed"] = [f"request failed ({e['params'].get('errorText')}): {urls.get(e['params']['requestId'], '?')[:120]}"
                                       for e in events if e["method"] == "Network.loadingFailed" and not e["params"].get("canceled")]
            seen["requests_failed"] += [f"HTTP {e['params']['response']['status']}: {e['params']['response']['url'][:120]}"
                                        for e in events if e["method"] == "Network.responseReceived" and e["params"]["response"]["status"] >= 400
                                        and not e["params"]["response"]["url"].endswith("/favicon.ico")]   # the browser's own ask
            seen["external_requests"] = sorted({u[:120] for u in urls.values() if urllib.parse.urlsplit(u).scheme in ("http", "https")
                                                and not u.startswith(base)})
            seen["errors"] = [e["params"]["exceptionDetails"].get("text", "") + " " + str(e["params"]["exceptionDetails"].get("exception", {}).get("description", ""))[:200]
                              for e in events if e["method"] == "Runtime.exceptionThrown"]
            seen["errors"] += [e["params"]["entry"]["text"][:200] for e in events if e["method"] == "Log.entryAdded"
                               and e["params"]["entry"]["level"] == "error" and e["params"]["entry"].get("source") != "network"]
            seen["broken_links"] = link_problems(seen["links"], base, cache)
            seen["external_links"] = sorted({l for l in seen["links"] if not l.startswith(base) and l.startswith("http")})
            problems += page_problems(name, seen, expected.get(name), base)
            chrome.evaluate(SIDEBAR_TOP)
            screenshots.append(chrome.screenshot(shots / f"{name}.png"))
            for what, selector in (("figure", ".cell_output img"), ("audio", "audio")):
                if chrome.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                                   f"if (!e) return false; e.scrollIntoView({{block: 'center'}}); return true; }})()"):
                    chrome.evaluate("new Promise(r => setTimeout(r, 100))")
                    screenshots.append(chrome.screenshot(shots / f"{name}-{what}.png"))
            report[name] = {k: seen[k] for k in ("title", "output_images", "audio", "nav", "prev_next", "broken_links",
                                                 "external_links", "external_requests", "requests_failed", "errors")}
        chrome.open(base + "search.html?q=Thinker")
        hits = chrome.evaluate("""new Promise(done => { const t0 = Date.now(); (function poll() {
            const n = document.querySelectorAll("#search-results li").length;
            if (n || Date.now() - t0 > 15000) done(n); else setTimeout(poll, 100); })(); })""")
        screenshots.append(chrome.screenshot(shots / "search.png"))
        if not hits: problems.append("search: no result for 'Thinker'")
        report["search"] = {"query": "Thinker", "results": hits}
    finally:
        chrome.close(); server.shutdown()
    chapters = [n for n in pages if n in expected]
    counts = dict(pages=len(pages), chapters=len(chapters),
                  figures=sum(report[n]["output_images"] for n in chapters),
                  players=sum(len(report[n]["audio"]) for n in chapters),
                  players_with_sound=sum(1 for n in chapters for a in report[n]["audio"] if a["duration"] and a["duration"] > 0),
                  players_that_played=sum(1 for n in chapters for a in report[n]["audio"] if a["played"] > 0),
                  search_results=hits, screenshots=len(screenshots))
    result = dict(counts=counts, problems=problems, screenshots=[str(p) for p in screenshots], pages=report)
    (site / "check.json").write_text(json.dumps(result, indent=1))
    return result

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", default="_site", help="the build folder of tools/build_docs.py (default _site)")
    a = ap.parse_args(argv)
    site = Path(a.site).resolve()
    result = check_site(site)
    for name, seen in result["pages"].items():
        if name != "search":
            print(f"{name:28s} {seen['output_images']:3d} figures {len(seen['audio']):3d} players  {seen['title']}")
    print("counts:", json.dumps(result["counts"]))
    print(f"screenshots: {site / 'screenshots'}/ ({len(result['screenshots'])} files); report: {site / 'check.json'}")
    for p in result["problems"]: print("PROBLEM:", p)
    return 1 if result["problems"] else 0

if __name__ == "__main__": sys.exit(main())
