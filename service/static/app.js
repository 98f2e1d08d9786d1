// digitserve page: upload images to /v1/detect once, draw the boxes, and re-read the number through
// /v1/assemble (the service's own rule) whenever the threshold or the number it should show changes.
// No build step, no CDN.
"use strict";

const state = { results: [], timer: null };
const $ = (selector) => document.querySelector(selector);

function apiHeaders(extra = {}) {
  const key = $("#api-key").value.trim();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

async function describeFailure(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      const id = body.error.request_id;
      const quote = id && !body.error.message.includes(id) ? `, request id ${id}` : "";
      return `${body.error.message} (HTTP ${response.status}${quote})`;
    }
  } catch (_) { /* not JSON */ }
  return `the server answered HTTP ${response.status}`;
}

async function checkStatus() {
  const status = $("#status");
  try {
    const ready = await fetch("/health/ready");
    const body = await ready.json();
    if (ready.ok) {
      const model = await fetch("/v1/model", { headers: apiHeaders() });
      if (model.ok) {
        const info = await model.json();
        status.textContent = `Ready: ${info.arch} on ${info.device}, version ${info.version}`;
        const threshold = info.thresholds.score_threshold;
        if (typeof threshold === "number" && !state.results.length) setThreshold(threshold);
      } else {
        status.textContent = `Ready, but model details are hidden: ${await describeFailure(model)}`;
      }
      status.classList.remove("bad");
    } else {
      status.textContent = `Not ready: ${body.reason || body.status}`;
      status.classList.add("bad");
    }
  } catch (err) {
    status.textContent = `Cannot reach the service: ${err.message}`;
    status.classList.add("bad");
  }
}

function setThreshold(value) {
  $("#threshold").value = value;
  $("#threshold-value").textContent = Number(value).toFixed(2);
}

function addCard(name) {
  const card = $("#result-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  $("#results").prepend(card);
  return card;
}

async function handleFiles(files) {
  for (const file of files) {
    if (file.type && !file.type.startsWith("image/")) {
      addCard(file.name).querySelector(".error").textContent = `${file.name} is not an image`;
      continue;
    }
    await processFile(file);
  }
}

async function processFile(file) {
  const card = addCard(file.name || "pasted image");
  const result = { card, image: null, size: null, sites: [], boxes: [], timing: null };
  try {
    // Most browsers cannot show a phone's HEIC, which the service reads: then the boxes go on a blank.
    result.image = await loadImage(file).catch(() => null);
    if (result.image) {
      result.size = { width: result.image.naturalWidth, height: result.image.naturalHeight };
      drawResult(result, []);
    }
    const form = new FormData();
    form.append("image", file, file.name || "pasted.png");
    const response = await fetch("/v1/detect", { method: "POST", body: form, headers: apiHeaders() });
    if (!response.ok) throw new Error(await describeFailure(response));
    const read = (await response.json()).results[0];
    result.size = { width: read.width, height: read.height }; // upright, as the boxes' pixels are
    result.sites = read.sites; // one box per digit place: what the number is read from
    result.boxes = read.detections; // the detector's own: the verifier looks at them too
    result.timing = read.timing;
    state.results.push(result);
    await reassemble(result);
  } catch (err) {
    card.querySelector(".number").textContent = "";
    card.querySelector(".error").textContent = `Could not read this image: ${err.message}`;
  }
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("the browser cannot display this file"));
    };
    img.src = url;
  });
}

function expectedNumbers() {
  // one number, or several (a street's) apart by spaces or commas; anything else: nothing asked
  const parts = $("#expected").value.split(/[\s,]+/).filter((p) => p !== "");
  return parts.length && parts.length <= 100 && parts.every((p) => /^[0-9]{1,15}$/.test(p)) ? parts : null;
}

async function reassemble(result) {
  const threshold = Number($("#threshold").value);
  const expected = expectedNumbers();
  const response = await fetch("/v1/assemble", {
    method: "POST",
    headers: apiHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({
      detections: result.sites,
      boxes: result.boxes,
      score_threshold: threshold,
      alternatives: 3, // readings one edit away, surest first: what else the photo may say
      ...(expected === null ? {} : { confirm: expected }), // as /v1/confirm answers, at its default min_score
    }),
  });
  if (!response.ok) throw new Error(await describeFailure(response));
  const number = await response.json();
  showNumber(result, number, threshold);
}

function showNumber(result, number, threshold) {
  const card = result.card;
  const el = card.querySelector(".number");
  el.dataset.number = String(number.number);
  el.classList.toggle("none", number.number === -1);
  el.textContent = number.number === -1 ? "no digit found (-1)" : number.text;
  // p_correct (the verifier's estimate that the number is right) holds at the served threshold only
  const trust = number.p_correct === null || number.p_correct === undefined
    ? ""
    : `, p_correct ${(number.p_correct * 100).toFixed(1)} %`;
  card.querySelector(".confidence").textContent =
    number.number === -1 ? "" : `confidence ${(number.confidence * 100).toFixed(1)} %${trust}`;
  const others = number.alternatives.map((a) => a.text);
  card.querySelector(".alternatives").textContent = others.length ? `or perhaps: ${others.join(", ")}` : "";
  showConfirmation(card.querySelector(".confirm"), number.confirm);
  const list = card.querySelector(".digits");
  list.replaceChildren(...number.digits.map((d) => {
    const li = document.createElement("li");
    li.textContent = `${d.digit}  ${(d.score * 100).toFixed(0)} %`;
    return li;
  }));
  const t = result.timing;
  card.querySelector(".timing").textContent =
    `${result.size.width}x${result.size.height} px; server ${t.total_ms.toFixed(1)} ms ` +
    `(decode ${t.decode_ms.toFixed(1)}, model ${t.inference_ms.toFixed(1)})` +
    (result.image ? "" : "; this browser cannot show the image, so its boxes are drawn on a blank");
  card.querySelector(".error").textContent = "";
  drawResult(result, result.sites.filter((d) => d.score >= threshold), number.digits);
}

const EDITS = { insert: "with a digit it left out", swap: "with one digit read otherwise", drop: "without a digit it read" };

function showConfirmation(el, confirm) {
  el.classList.toggle("yes", Boolean(confirm && confirm.shown));
  el.classList.toggle("no", Boolean(confirm && !confirm.shown));
  el.dataset.shown = confirm ? String(confirm.shown) : "";
  el.dataset.expected = confirm ? confirm.expected.join(",") : "";
  if (!confirm) {
    el.textContent = "";
  } else if (confirm.how === "read") {
    el.textContent = `\u2713 shows ${confirm.match}: the number read`;
  } else if (confirm.shown) {
    el.textContent = `\u2713 shows ${confirm.match}, ${EDITS[confirm.edit]} (score ${confirm.score.toFixed(2)})`;
  } else {
    const asked = confirm.expected.length === 1 ? confirm.expected[0] : `any of ${confirm.expected.join(", ")}`;
    el.textContent = `\u2717 does not show ${asked}`;
  }
}

function drawResult(result, shown, used = []) {
  const canvas = result.card.querySelector("canvas");
  const { width, height } = result.size;
  const scale = Math.min(4, 480 / width, 320 / height);
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  canvas.dataset.boxes = String(shown.length);
  const ctx = canvas.getContext("2d");
  if (result.image) {
    ctx.drawImage(result.image, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = "#d9d9d9";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  const usedKeys = new Set(used.map((d) => d.bbox.join(",")));
  ctx.font = "bold 13px system-ui, sans-serif";
  for (const d of shown) {
    const [x, y, w, h] = d.bbox.map((v) => v * scale);
    const isUsed = usedKeys.has(d.bbox.join(","));
    ctx.lineWidth = 2;
    ctx.strokeStyle = isUsed ? "#00c853" : "#ffab00";
    ctx.setLineDash(isUsed ? [] : [4, 3]);
    ctx.strokeRect(x, y, w, h);
    const label = `${d.digit} ${(d.score * 100).toFixed(0)}%`;
    const width = ctx.measureText(label).width + 6;
    ctx.fillStyle = isUsed ? "#00c853" : "#ffab00";
    ctx.fillRect(x, Math.max(0, y - 16), width, 16);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x + 3, Math.max(12, y - 4));
  }
}

function onThresholdInput() {
  $("#threshold-value").textContent = Number($("#threshold").value).toFixed(2);
  rereadAll();
}

function rereadAll() {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    for (const result of state.results) {
      reassemble(result).catch((err) => {
        result.card.querySelector(".error").textContent = `Could not re-read the number: ${err.message}`;
      });
    }
  }, 80);
}

function setup() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (e) => { handleFiles([...e.target.files]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handleFiles([...e.dataTransfer.files]);
  });
  document.addEventListener("paste", (e) => {
    const files = [...e.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) handleFiles(files);
  });
  $("#threshold").addEventListener("input", onThresholdInput);
  $("#expected").addEventListener("input", rereadAll);
  const key = $("#api-key");
  key.value = localStorage.getItem("digitserve-api-key") || "";
  key.addEventListener("change", () => { localStorage.setItem("digitserve-api-key", key.value); checkStatus(); });
  checkStatus();
}

setup();
