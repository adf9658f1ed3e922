// Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
// A small point-cloud viewer in plain WebGL (no library): back-projects the float32 depth with the
// intrinsics the server reports (x = (u - cx) z / fx, y = (v - cy) z / fy), coloured by the input.
"use strict";

const MAX_POINTS = 250000;
const scratch = document.createElement("canvas");  // reads the colour image's pixels; reused

function buildPoints(field, colourImage, k) {
  const { width, height, values } = field;  // values: float32 metres
  const step = Math.max(1, Math.ceil(Math.sqrt((width * height) / MAX_POINTS)));
  scratch.width = width; scratch.height = height;
  const ctx = scratch.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(colourImage, 0, 0, width, height);
  const rgb = ctx.getImageData(0, 0, width, height).data;
  const positions = [], colours = [];
  let zSum = 0;
  for (let v = 0; v < height; v += step) {
    for (let u = 0; u < width; u += step) {
      const z = values[v * width + u];
      if (!(z > 0)) continue;  // 0 (no depth) or NaN
      positions.push((u - k.cx) * z / k.fx, -(v - k.cy) * z / k.fy, -z);  // y up, camera looks at -z
      const i = 4 * (v * width + u);
      colours.push(rgb[i] / 255, rgb[i + 1] / 255, rgb[i + 2] / 255);
      zSum += z;
    }
  }
  const count = positions.length / 3;
  return { positions: new Float32Array(positions), colours: new Float32Array(colours), count,
           centreZ: count ? zSum / count : 1 };
}

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

function perspective(fovY, aspect, near, far) {
  const f = 1 / Math.tan(fovY / 2), nf = 1 / (near - far);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
}

// Draws the cloud of `field` on `canvas`. The GL program, buffers and mouse handlers are made once
// per canvas and reused, so the live camera view can call this for every new depth frame;
// `keepView` keeps the user's rotation and zoom across such updates.
function showPointCloud(canvas, field, colourImage, intrinsics, { keepView = false } = {}) {
  if (canvas.btsViewer === undefined) canvas.btsViewer = makeViewer(canvas);
  const viewer = canvas.btsViewer;
  if (!viewer) return;  // no WebGL: the canvas says so
  const cloud = buildPoints(field, colourImage, intrinsics);
  viewer.upload(cloud);
  if (!keepView || viewer.view.dist === null) viewer.reset();
  viewer.draw();
}

function makeViewer(canvas) {
  const gl = canvas.getContext("webgl", { antialias: false });
  if (!gl) { canvas.replaceWith(document.createTextNode("WebGL is not available in this browser.")); return null; }
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, `
    attribute vec3 position; attribute vec3 colour; uniform mat4 projection; uniform float yaw, pitch, dist, centre;
    varying vec3 vColour;
    void main() {
      vec3 p = position + vec3(0.0, 0.0, centre);           // orbit around the cloud's middle
      float cy = cos(yaw), sy = sin(yaw), cp = cos(pitch), sp = sin(pitch);
      p = vec3(cy * p.x + sy * p.z, p.y, -sy * p.x + cy * p.z);
      p = vec3(p.x, cp * p.y - sp * p.z, sp * p.y + cp * p.z);
      gl_Position = projection * vec4(p - vec3(0.0, 0.0, dist), 1.0);
      gl_PointSize = 2.0; vColour = colour;
    }`));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, `
    precision mediump float; varying vec3 vColour; void main() { gl_FragColor = vec4(vColour, 1.0); }`));
  gl.linkProgram(program);
  gl.useProgram(program);
  const buffers = {};
  for (const name of ["position", "colour"]) {
    buffers[name] = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers[name]);
    const location = gl.getAttribLocation(program, name);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribPointer(location, 3, gl.FLOAT, false, 0, 0);
  }
  const u = (name) => gl.getUniformLocation(program, name);
  const viewer = { view: { yaw: 0, pitch: 0, dist: null }, cloud: { count: 0, centreZ: 1 } };
  viewer.upload = (cloud) => {
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers.position);
    gl.bufferData(gl.ARRAY_BUFFER, cloud.positions, gl.DYNAMIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers.colour);
    gl.bufferData(gl.ARRAY_BUFFER, cloud.colours, gl.DYNAMIC_DRAW);
    viewer.cloud = cloud;
  };
  viewer.reset = () => { Object.assign(viewer.view, { yaw: 0, pitch: 0, dist: viewer.cloud.centreZ }); };
  viewer.draw = () => {
    const view = viewer.view;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.07, 0.07, 0.07, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.uniformMatrix4fv(u("projection"), false, perspective(0.9, canvas.width / canvas.height, 0.01, 1000));
    gl.uniform1f(u("yaw"), view.yaw); gl.uniform1f(u("pitch"), view.pitch);
    gl.uniform1f(u("dist"), view.dist); gl.uniform1f(u("centre"), viewer.cloud.centreZ);
    gl.drawArrays(gl.POINTS, 0, viewer.cloud.count);
  };
  let drag = null;
  canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY }; });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("mousemove", (e) => {
    if (!drag) return;
    viewer.view.yaw += (e.clientX - drag.x) * 0.01; viewer.view.pitch += (e.clientY - drag.y) * 0.01;
    drag = { x: e.clientX, y: e.clientY }; viewer.draw();
  });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); viewer.view.dist *= Math.exp(e.deltaY * 0.001); viewer.draw(); },
                          { passive: false });
  canvas.addEventListener("dblclick", () => { viewer.reset(); viewer.draw(); });
  return viewer;
}
