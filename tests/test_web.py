"""``avsync serve``: a real server process, driven by a real headless Chromium (Debian's chromium and
chromedriver, through selenium), plus the limits and the cleanup checked over HTTP."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import clip_path

pytest.importorskip("fastapi", reason='the web page is an optional extra: pip install "avsync[web]"')

#: A real dev clip under the 1 MB test limit (Real3DPortrait's "May", 5 s, 25 fps).
GOOD = "dev/yerfor__Real3DPortrait__May_5s.mp4"
#: A real dev clip over it (3.5 MB).
BIG = "dev/OpenTalker__SadTalker__WDA_KatieHill_000.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, *args):
        self.port = _free_port()
        self.tmp = tmp
        env = dict(os.environ, TMPDIR=str(tmp))  # its temp root goes here, so the cleanup can be checked
        env.pop("AVSYNC_NATIVE_LOGS", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "avsync", "serve", "--port", str(self.port), *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/limits", timeout=1).read()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.communicate()
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def roots(self) -> list[Path]:
        return sorted(self.tmp.glob("avsync-serve-*"))

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.communicate(timeout=30)


def _request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), "--max-upload-mb", "1", "--max-pending", "1")
    yield srv
    _, err = srv.stop()
    assert "Traceback" not in err, err
    assert srv.roots() == []  # every temp file is gone at shutdown


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason='pip install "avsync[browser-test]"')
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
              "--window-size=1200,1600"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)  # no Selenium Manager
    drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.downloads = downloads
    yield drv
    drv.quit()


def _wait(fn, timeout=180, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out waiting")


def _upload(browser, server, path: Path):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "go").click()
    return By


def test_browser_upload_verdict_plot_download(browser, server):
    import av

    clip = clip_path(GOOD)
    By = _upload(browser, server, clip)
    verdict = _wait(lambda: browser.find_element(By.ID, "verdict").text
                    or ("error" in browser.find_element(By.ID, "status").get_attribute("class") and
                        pytest.fail(browser.find_element(By.ID, "status").text)))
    assert verdict.startswith(("In sync", "Out of sync")), verdict
    sentence = browser.find_element(By.ID, "sentence").text
    assert "confidence" in sentence and " ms" in sentence
    assert _wait(lambda: browser.execute_script("const i = document.getElementById('plot');"
                                                "return i.complete && i.naturalWidth"), timeout=30) == 1300
    # the preview is served, and the slider sets the correction the download applies
    assert _wait(lambda: browser.execute_script("return document.getElementById('video').readyState"), 30) >= 1
    browser.execute_script("const s = document.getElementById('offset'); s.value = 120;"
                           "s.dispatchEvent(new Event('input'));")
    assert browser.find_element(By.ID, "offset-out").text == "120"
    browser.find_element(By.ID, "download").click()
    got = _wait(lambda: [p for p in browser.downloads.iterdir() if not p.name.endswith(".crdownload")], 60)
    assert [p.name for p in got] == [f"{clip.stem}.fixed.mp4"]
    with av.open(str(got[0])) as c:  # a playable video with both streams
        assert c.streams.video and c.streams.audio
        assert abs(float(c.duration / 1e6) - 5.0) < 0.3
    jid = browser.execute_script("return document.getElementById('download').href").split("/")[-2]
    assert _wait(lambda: _request(f"{server.url}/api/jobs/{jid}")[0] == 404, 10)  # its files went with it


def test_browser_oversize_upload_is_refused(browser, server):
    By = _upload(browser, server, clip_path(BIG))
    status = _wait(lambda: "refused" in (t := browser.find_element(By.ID, "status").text) and t)
    assert "larger than the limit of 1 MB" in status
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is not None


def test_browser_non_video_upload_is_refused(browser, server, tmp_path):
    fake = tmp_path / "holiday.mp4"  # a video's name, a text's content
    fake.write_text("not a video at all\n" * 100)
    By = _upload(browser, server, fake)
    status = _wait(lambda: "refused" in (t := browser.find_element(By.ID, "status").text) and t)
    assert "not a video file" in status


def test_http_limits_ids_and_queue(server):
    assert _request(server.url + "/api/jobs/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert _request(server.url + "/api/jobs/" + "0" * 32)[0] == 404
    # a video container that is not what its name says, and a real clip, as raw bodies
    assert _request(server.url + "/api/upload", data=b"")[0] == 400
    clip = clip_path("grid_speakers/pwij3p.mp4").read_bytes()
    code, body = _request(server.url + "/api/upload", data=clip, headers={"X-Filename": "..%2F..%2Fx.mp4"})
    assert code == 200, body
    jid = json.loads(body)["id"]
    # the queue holds one upload (--max-pending 1): a second is refused while the first is analysed
    code, body = _request(server.url + "/api/upload", data=clip)
    assert code == 503, body
    assert _request(f"{server.url}/api/jobs/{jid}/fixed?offset_ms=40")[0] in (409, 200)
    _wait(lambda: json.loads(_request(f"{server.url}/api/jobs/{jid}")[1])["state"] in ("done", "failed"))
    assert _request(f"{server.url}/api/jobs/{jid}/fixed?offset_ms=99999")[0] == 422
    code, _ = _request(f"{server.url}/api/jobs/{jid}/fixed?offset_ms=40")
    assert code == 200


def test_idle_uploads_expire(tmp_path):
    srv = Server(tmp_path, "--ttl-minutes", "0.02")  # 1.2 s
    try:
        code, body = _request(srv.url + "/api/upload", data=clip_path("grid_speakers/pwij3p.mp4").read_bytes())
        assert code == 200
        jid = json.loads(body)["id"]
        _wait(lambda: json.loads(_request(f"{srv.url}/api/jobs/{jid}")[1]).get("state") in ("done", "failed"))
        folders = [p for r in srv.roots() for p in r.iterdir()]
        assert [p.name for p in folders] == [jid]
        _wait(lambda: not [p for r in srv.roots() for p in r.iterdir()], timeout=30)
        assert _request(f"{srv.url}/api/jobs/{jid}")[0] == 404
    finally:
        _, err = srv.stop()
    assert "Traceback" not in err and srv.roots() == []


def test_serve_binds_localhost_by_default(cli):
    proc = cli("serve", "--help")
    assert proc.returncode == 0 and "127.0.0.1" in proc.stdout
