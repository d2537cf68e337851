// avsync serve: upload, follow the analysis, preview with the audio shifted, download the fix.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const file = $("file"), go = $("go"), bar = $("bar"), status = $("status");
  const video = $("video"), audio = $("audio"), slider = $("offset"), out = $("offset-out");
  let jobId = null;

  fetch("/api/limits").then((r) => r.json()).then((l) => {
    $("limit").textContent = "Largest upload: " + Math.round(l.max_upload_bytes / 1048576 * 10) / 10 + " MB.";
  });

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  file.addEventListener("change", () => { go.disabled = !file.files.length; });

  go.addEventListener("click", () => {
    const f = file.files[0];
    if (!f) return;
    go.disabled = true;
    $("result").hidden = true;
    bar.hidden = false;
    bar.value = 0;
    say("Uploading…");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/upload");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-Filename", encodeURIComponent(f.name));
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status !== 200) {
        bar.hidden = true;
        go.disabled = false;
        say("Upload refused: " + (body.detail || ("HTTP " + xhr.status)), true);
        return;
      }
      jobId = body.id;
      bar.value = 0;
      say("Analysing…");
      poll();
    };
    xhr.onerror = () => { bar.hidden = true; go.disabled = false; say("Upload failed (connection lost).", true); };
    xhr.send(f);
  });

  function poll() {
    fetch("/api/jobs/" + jobId).then((r) => r.json().then((b) => [r.status, b])).then(([code, job]) => {
      if (code !== 200) { say(job.detail || "Lost the upload.", true); go.disabled = false; return; }
      if (job.state === "failed") {
        bar.hidden = true; go.disabled = false;
        say("Could not judge this video: " + job.error, true);
        return;
      }
      if (job.state !== "done") {
        bar.value = job.progress;
        say(job.state === "queued" ? "Waiting for the analyser…" : "Analysing… " + Math.round(job.progress * 100) + "%");
        setTimeout(poll, 500);
        return;
      }
      bar.hidden = true;
      go.disabled = false;
      say("Done.");
      show(job);
    }).catch(() => setTimeout(poll, 1000));
  }

  function show(job) {
    const r = job.result;
    const v = $("verdict");
    v.textContent = r.headline;
    v.className = r.in_sync ? "ok" : "bad";
    $("sentence").textContent = r.sentence;
    const src = "/api/jobs/" + jobId + "/video";
    video.src = src;
    audio.src = src;
    const span = Math.max(1000, Math.ceil(r.search_ms / 100) * 100);
    slider.min = -span; slider.max = span;
    slider.value = Math.round(r.offset_ms / 5) * 5;
    offsetChanged();
    if (job.plot) { const img = $("plot"); img.src = "/api/jobs/" + jobId + "/plot.png"; img.hidden = false; }
    $("result").hidden = false;
  }

  // The preview: the picture plays muted, the sound plays from a second element, advanced by the slider.
  function correction() { return Number(slider.value) / 1000; }
  function align() {
    const want = video.currentTime + correction();
    if (want < 0 || (audio.duration && want > audio.duration)) { audio.pause(); return; }
    if (Math.abs(audio.currentTime - want) > 0.04) audio.currentTime = want;
    if (!video.paused && audio.paused) audio.play().catch(() => {});
  }
  function offsetChanged() {
    out.textContent = slider.value;
    $("download").href = "/api/jobs/" + jobId + "/fixed?offset_ms=" + encodeURIComponent(slider.value);
    align();
  }
  slider.addEventListener("input", offsetChanged);
  video.addEventListener("play", align);
  video.addEventListener("pause", () => audio.pause());
  video.addEventListener("seeked", align);
  video.addEventListener("timeupdate", align);
})();
