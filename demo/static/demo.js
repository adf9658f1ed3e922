// Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
// The demo page: upload (picker, drag-and-drop, samples) -> POST /api/predict -> show, hover, download.
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
  const buffer = await response.arrayBuffer();
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

function readout(event) {
  if (!depthField) return;
  const img = event.currentTarget;
  const rect = img.getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) / rect.width * depthField.width);
  const y = Math.floor((event.clientY - rect.top) / rect.height * depthField.height);
  if (x < 0 || y < 0 || x >= depthField.width || y >= depthField.height) return;
  const value = depthField.values[y * depthField.width + x];
  $("hover-readout").textContent = value > 0  // false for 0 and NaN
    ? `(${x}, ${y}): ${value.toFixed(3)} m`
    : `(${x}, ${y}): no depth`;
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
}

setUp();
