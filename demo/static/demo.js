// Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
// The demo page: upload (picker, drag-and-drop, samples) -> POST /api/predict -> show, hover, download;
// camera mode: frames -> POST /api/live/<session>/frame -> live depth, hover, point cloud.
"use strict";

const $ = (id) => document.getElementById(id);
const main = document.querySelector("main");
const maxUploadBytes = Number(main.dataset.maxUploadBytes);
let depthField = null;   // {width, height, values}: float32 metres (0 = no depth), row major
let current = null;      // last JSON answer of /api/predict
let busy = false;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error} (HTTP ${response.status})`;
  } catch (err) { /* not JSON */ }
  return `the server answered HTTP ${response.status}`;
}

// Sends an uploaded file, or the name of a bundled sample (file = null).
async function predict(file, sample = null) {
  if (busy) return;
  clearError();
  if (file && file.size > maxUploadBytes) {
    showError(`the file is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${(maxUploadBytes / 1048576).toFixed(0)} MB`);
    return;
  }
  busy = true;
  document.body.classList.add("busy");
  $("status").textContent = `Estimating depth for ${file ? file.name || "the image" : sample}…`;
  const form = new FormData();
  if (file) form.append("image", file, file.name || "image");
  else form.append("sample", sample);
  form.append("model", $("model-select").value);
  if ($("focal-input").value) form.append("focal", $("focal-input").value);
  try {
    const response = await fetch("/api/predict?format=json", { method: "POST", body: form });
    if (!response.ok) {
      showError(await errorMessage(response));
      return;
    }
    await showResult(await response.json());
  } catch (err) {
    showError(`request failed: ${err.message}`);
  } finally {
    busy = false;
    document.body.classList.remove("busy");
  }
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

// The server's depth.f32: width × height little-endian float32 metres, row major.
async function fetchDepth(url, width, height) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await errorMessage(response));
  return float32Depth(await response.arrayBuffer(), width, height);
}

function float32Depth(buffer, width, height) {
  if (buffer.byteLength !== 4 * width * height) {
    throw new Error(`depth has ${buffer.byteLength} bytes, expected ${4 * width * height}`);
  }
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  if (littleEndian) return new Float32Array(buffer);
  const view = new DataView(buffer), values = new Float32Array(width * height);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

async function showResult(result) {
  current = result;
  const urls = result.urls;
  const values = await fetchDepth(urls.float32, result.width, result.height);
  depthField = { width: result.width, height: result.height, values };
  await Promise.all([loadImage($("input-image"), urls.input), loadImage($("depth-image"), urls.colormap),
                     loadImage($("legend-image"), `/legend/${result.model}.png`)]);
  $("legend-max").textContent = `${result.max_depth} m (far)`;
  $("download-png").href = urls.png;
  $("download-npy").href = urls.npy;
  $("download-ply").href = urls.ply;
  $("png-scale").textContent =
    `Raw PNG: uint16, depth in metres = value / ${result.depth_scale} (0 = no depth); ` +
    `${result.width}×${result.height} px` + (result.resized ? ` (shrunk from ${result.original_width}×${result.original_height})` : "");
  const fmt = (v) => (v === null ? "–" : v.toFixed(2));
  $("stats").textContent = `Depth ${fmt(result.min_m)} – ${fmt(result.max_m)} m, median ${fmt(result.median_m)} m; ` +
    `model ${result.model}, focal ${result.focal_px.toFixed(1)} px, ${result.predict_ms} ms.` +
    groundTruthText(result.ground_truth);
  $("result").hidden = false;
  $("viewer").hidden = true;
  $("status").textContent = "Done.";
  document.body.dataset.state = "done";
}

function groundTruthText(gt) {
  if (!gt) return "";
  const m = gt.metrics, s = gt.median_scaled;
  return ` Against the sample's ground truth (${gt.valid_pixels} px): AbsRel ${m.abs_rel.toFixed(3)}, ` +
    `RMSE ${m.rms.toFixed(2)} m, δ<1.25 ${m.d1.toFixed(3)}; median-scaled AbsRel ${s.abs_rel.toFixed(3)}, ` +
    `δ<1.25 ${s.d1.toFixed(3)}.`;
}

// "(x, y): 1.234 m" for the pixel of `field` under the client point (clientX, clientY) of
// `element` (an image, video or canvas showing that field), or null outside it.
function depthAt(field, element, clientX, clientY) {
  if (!field) return null;
  const rect = element.getBoundingClientRect();
  const x = Math.floor((clientX - rect.left) / rect.width * field.width);
  const y = Math.floor((clientY - rect.top) / rect.height * field.height);
  if (x < 0 || y < 0 || x >= field.width || y >= field.height) return null;
  const value = field.values[y * field.width + x];
  return value > 0  // false for 0 and NaN
    ? `(${x}, ${y}): ${value.toFixed(3)} m`
    : `(${x}, ${y}): no depth`;
}

function readout(event) {
  const text = depthAt(depthField, event.currentTarget, event.clientX, event.clientY);
  if (text) $("hover-readout").textContent = text;
}

function setUp() {
  const drop = $("drop-zone");
  $("file-input").addEventListener("change", (e) => { if (e.target.files[0]) predict(e.target.files[0]); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    const file = e.dataTransfer.files[0];
    if (file) predict(file); else showError("drop an image file");
  });
  document.querySelectorAll("button.sample").forEach((b) =>
    b.addEventListener("click", () => predict(null, b.dataset.sample)));
  ["input-image", "depth-image"].forEach((id) => $(id).addEventListener("mousemove", readout));
  $("view-3d").addEventListener("click", () => {
    if (!current || !depthField) return;
    $("viewer").hidden = false;
    showPointCloud($("viewer-canvas"), depthField, $("input-image"), current.intrinsics);
  });
  $("camera-start").addEventListener("click", startLive);
  $("camera-stop").addEventListener("click", () => stopLive());
  $("live-3d").addEventListener("click", () => {
    $("live-viewer").hidden = !$("live-viewer").hidden;
    live.cloudAt = 0;
    if (!$("live-viewer").hidden) updateLiveCloud();
  });
  ["live-video", "live-depth"].forEach((id) => $(id).addEventListener("mousemove", (e) => {
    live.mouse = { element: e.currentTarget, x: e.clientX, y: e.clientY };
    liveReadout();
  }));
  // A new model or focal needs a new session; the camera keeps running.
  ["model-select", "focal-input"].forEach((id) => $(id).addEventListener("change", () => {
    if (live.info) restartLive();
  }));
  window.addEventListener("pagehide", () => stopLive());
}

// ---------------------------------------------------------------------------------------------
// Camera mode. One frame in flight per session, and the next one no sooner than the server's
// minimum interval after the previous one was sent (the server refuses faster ones with 429).
// Each answer is the frame's float32 depth; the page colours it with the server's colormap table.
// ---------------------------------------------------------------------------------------------
const live = {
  info: null,      // the /api/live/start answer: session, limits, colormap, urls
  starting: false, // asking for the camera or a session
  stream: null,    // the camera's MediaStream
  timer: null,     // the pending next frame
  grab: null,      // canvas holding the frame last sent (the point cloud's colours)
  field: null,     // {width, height, values} of the last depth
  intrinsics: null,
  answers: [],     // arrival times of recent answers, for the frames/s counter
  frames: 0,
  mouse: null,     // last pointer position over the live images, for the read-out
  cloudAt: 0,      // when the point cloud was last rebuilt
};
const LIVE_CLOUD_INTERVAL_MS = 500;

function cameraFallback(state, why) {
  document.body.dataset.live = state;
  const message = $("camera-message");
  message.textContent = `Camera not available: ${why} — upload a photo instead.`;
  message.hidden = false;
}

async function startLive() {
  if (live.info || live.starting) return;
  $("camera-message").hidden = true;
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    // Browsers offer the camera only to secure pages: localhost, 127.0.0.1 or HTTPS.
    cameraFallback("unavailable", "this browser offers no camera to this page (a remote server needs HTTPS)");
    return;
  }
  live.starting = true;
  try {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(
        { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (err) {
      const denied = err.name === "NotAllowedError" || err.name === "SecurityError";
      const why = denied ? "permission refused"
        : err.name === "NotFoundError" ? "no camera found" : `${err.name}: ${err.message}`;
      cameraFallback(denied ? "denied" : "unavailable", why);
      return;
    }
    live.stream = stream;
    const video = $("live-video");
    video.srcObject = stream;
    try {
      await openSession();
      await video.play();
    } catch (err) {
      stopLive();
      showError(`camera mode: ${err.message}`);
      return;
    }
    $("live").hidden = false;
    document.body.dataset.live = "on";
    $("camera-start").disabled = true;
    $("camera-stop").disabled = false;
    sendFrame();
  } finally {
    live.starting = false;
  }
}

async function openSession() {
  const form = new FormData();
  form.append("model", $("model-select").value);
  if ($("focal-input").value) form.append("focal", $("focal-input").value);
  const response = await fetch("/api/live/start", { method: "POST", body: form });
  if (!response.ok) throw new Error(await errorMessage(response));
  const info = await response.json();
  live.info = info;
  live.answers = [];
  live.frames = 0;
  $("live-legend").src = `/legend/${info.model}.png`;
  $("live-legend-max").textContent = `${info.max_depth} m (far)`;
}

async function restartLive() {
  clearTimeout(live.timer);
  const old = live.info;
  live.info = null;
  navigator.sendBeacon(old.urls.stop);
  try {
    await openSession();
  } catch (err) {
    stopLive();
    showError(`camera mode: ${err.message}`);
    return;
  }
  sendFrame();
}

function stopLive() {
  clearTimeout(live.timer);
  live.timer = null;
  if (live.info) navigator.sendBeacon(live.info.urls.stop);  // delivered even as the page unloads
  live.info = null;
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  $("live-video").srcObject = null;
  if (document.body.dataset.live === "on") document.body.dataset.live = "off";
  $("camera-start").disabled = false;
  $("camera-stop").disabled = true;
}

// The camera's current picture as a JPEG, scaled (aspect kept) to the server's pixel limit.
function grabFrame() {
  const video = $("live-video"), limit = live.info.limits.max_frame_pixels;
  const scale = Math.min(1, Math.sqrt(limit / (video.videoWidth * video.videoHeight)));
  const width = Math.max(1, Math.floor(video.videoWidth * scale));
  const height = Math.max(1, Math.floor(video.videoHeight * scale));
  const canvas = live.grab || (live.grab = document.createElement("canvas"));
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  canvas.getContext("2d").drawImage(video, 0, 0, width, height);
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode a camera frame"))),
    "image/jpeg", 0.8));
}

async function sendFrame() {
  live.timer = null;
  const info = live.info;
  if (!info) return;
  const sent = performance.now();
  let next = sent + info.limits.min_interval_ms;
  try {
    if ($("live-video").readyState < 2) {  // no picture yet
      live.timer = setTimeout(sendFrame, 50);
      return;
    }
    const blob = await grabFrame();
    const response = await fetch(info.urls.frame,
      { method: "POST", body: blob, headers: { "Content-Type": blob.type } });
    if (info !== live.info) return;  // stopped or restarted meanwhile
    if (response.status === 429) {
      const body = await response.json();
      next = performance.now() + (Number(body.retry_after_ms) || info.limits.min_interval_ms);
    } else if (!response.ok) {
      throw new Error(await errorMessage(response));
    } else {
      showLiveDepth(response.headers, await response.arrayBuffer(), info);
    }
  } catch (err) {
    if (info !== live.info) return;
    stopLive();
    showError(`camera mode stopped: ${err.message}`);
    return;
  }
  if (info === live.info) live.timer = setTimeout(sendFrame, Math.max(0, next - performance.now()));
}

// Colours float32 metres like the server's colorize_depth: index floor(d / max · 256) in float32
// arithmetic (clipped to 255), black where there is no depth.
function colorize(values, maxDepth, table, rgba) {
  const max = Math.fround(maxDepth);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const d = values[i];
    if (d > 0 && d < Infinity) {
      const entry = table[Math.min(255, Math.floor(Math.fround(Math.min(d / max, 1)) * 256))];
      rgba[j] = entry[0]; rgba[j + 1] = entry[1]; rgba[j + 2] = entry[2];
    } else {
      rgba[j] = 0; rgba[j + 1] = 0; rgba[j + 2] = 0;
    }
    rgba[j + 3] = 255;
  }
}

function showLiveDepth(headers, buffer, info) {
  const width = Number(headers.get("X-Depth-Width")), height = Number(headers.get("X-Depth-Height"));
  const values = float32Depth(buffer, width, height);
  live.field = { width, height, values };
  const [fx, fy, cx, cy] = headers.get("X-Intrinsics").split(",").map(Number);
  live.intrinsics = { fx, fy, cx, cy };
  const canvas = $("live-depth");
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  colorize(values, info.max_depth, info.colormap, image.data);
  ctx.putImageData(image, 0, 0);
  const now = performance.now();
  live.frames += 1;
  live.answers.push(now);
  if (live.answers.length > 10) live.answers.shift();
  const span = (live.answers[live.answers.length - 1] - live.answers[0]) / 1000;
  const fps = live.answers.length > 1 && span > 0 ? (live.answers.length - 1) / span : 0;
  $("live-fps").textContent = `${fps.toFixed(1)} frames/s`;
  $("live-fps").dataset.frames = String(live.frames);
  $("live-fps").dataset.fps = fps.toFixed(2);
  $("live-stats").textContent = `Frame ${headers.get("X-Live-Frame")}: ${width}×${height} px, model ` +
    `${info.model}, ${headers.get("X-Predict-Ms")} ms in the model; at most ${info.limits.max_fps} frames/s.`;
  liveReadout();
  if (!$("live-viewer").hidden && now - live.cloudAt >= LIVE_CLOUD_INTERVAL_MS) updateLiveCloud();
}

function liveReadout() {
  if (!live.mouse) return;
  const text = depthAt(live.field, live.mouse.element, live.mouse.x, live.mouse.y);
  if (text) $("live-readout").textContent = text;
}

function updateLiveCloud() {
  if (!live.field || !live.grab) return;
  live.cloudAt = performance.now();
  showPointCloud($("live-viewer-canvas"), live.field, live.grab, live.intrinsics, { keepView: true });
}

setUp();
