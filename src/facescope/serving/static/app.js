// The facescope page: send one photo to /api/v1/predict, show numbered boxes on it and a card per face,
// and render the model card from /api/v1/model. Plain DOM code; nothing is loaded from elsewhere.
"use strict";

// The same Okabe-Ito colours as the boxes `facescope predict --annotate` draws (serving/annotate.py).
const BOX_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"];

const $ = (id) => document.getElementById(id);
let photoUrl = null;
let webcamStream = null;

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "style") for (const [property, v] of Object.entries(value)) node.style.setProperty(property, v);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

function colourStyle(number) {
  const colour = BOX_COLOURS[(number - 1) % BOX_COLOURS.length];
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  const ink = 0.299 * r + 0.587 * g + 0.114 * b > 110 ? "#000" : "#fff";
  return { "--box-colour": colour, "--number-ink": ink };
}

function setStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// Whether this browser can show the file itself (if not, the server draws the boxes onto it).
async function browserCanShow(url) {
  const probe = new Image();
  probe.src = url;
  try {
    await probe.decode();
    return true;
  } catch {
    return false;
  }
}

async function analyse(file) {
  if (!file) return;
  $("results").hidden = true;
  setStatus("Analysing the photo…");
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const shownAsIs = await browserCanShow(photoUrl);

  const form = new FormData();
  form.append("file", file, file.name || "photo.jpg");
  let response, result;
  try {
    response = await fetch(`/api/v1/predict${shownAsIs ? "" : "?annotate=true"}`, { method: "POST", body: form });
    result = await response.json();
  } catch (error) {
    setStatus(`The server could not be reached (${error.message}).`, true);
    return;
  }
  if (!response.ok) {
    const detail = typeof result.detail === "string" ? result.detail : JSON.stringify(result.detail);
    setStatus(`This photo could not be analysed: ${detail}`, true);
    return;
  }
  showResult(result, shownAsIs ? photoUrl : result.annotated_image, shownAsIs);
}

function showResult(result, imageSource, drawBoxes) {
  const faces = result.faces;
  const photo = $("photo");
  photo.src = imageSource;
  photo.alt = faces.length
    ? `The photo, with ${faces.length} numbered face box${faces.length > 1 ? "es" : ""}`
    : "The photo; no face was found";
  $("photo-caption").textContent = `${result.path} · ${result.width} × ${result.height} pixels`;
  $("boxes").replaceChildren(...(drawBoxes ? faces.map((face, i) => faceBox(face, i + 1, result)) : []));
  $("face-cards").replaceChildren(...faces.map((face, i) => faceCard(face, i + 1)));
  $("results").hidden = false;
  setStatus(faces.length
    ? `Found ${faces.length} face${faces.length > 1 ? "s" : ""}, numbered from the largest.`
    : "No face was found in this photo.");
}

function faceBox(face, number, result) {
  const [x1, y1, x2, y2] = face.box;
  // Percentages of the photo, so the boxes follow it when it is scaled to fit the page.
  return element("div", {
    class: "face-box",
    id: `box-${number}`,
    style: {
      left: `${(100 * x1) / result.width}%`,
      top: `${(100 * y1) / result.height}%`,
      width: `${(100 * (x2 - x1)) / result.width}%`,
      height: `${(100 * (y2 - y1)) / result.height}%`,
      ...colourStyle(number),
    },
  }, element("span", { class: "face-number" }, String(number)));
}

function probabilityList(estimate, name) {
  const rows = Object.entries(estimate.probs)
    .sort((a, b) => b[1] - a[1])
    .map(([label, p]) => element("li", { class: label === estimate.label ? "prob-row top" : "prob-row" },
      element("span", { class: "prob-label" }, label.replaceAll("_", " ")),
      element("span", {
        class: "prob-bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": String(Math.round(p * 100)), "aria-label": `${name}: ${label} ${percent(p)}`,
      }, element("span", { class: "prob-fill", style: { width: `${100 * p}%` } })),
      element("span", { class: "prob-value" }, percent(p))));
  return element("ul", { class: "probs" }, ...rows);
}

function faceCard(face, number) {
  const age = face.age;
  const ageDetails = element("dl", { class: "age" });
  if (age.years !== null) {
    const spread = age.years_std !== null ? ` (± ${Math.round(age.years_std)})` : "";
    ageDetails.append(element("dt", {}, "Years"), element("dd", {}, `about ${Math.round(age.years)}${spread}`));
  }
  ageDetails.append(element("dt", {}, "Age bin"), element("dd", {}, `${age.bin} (${percent(age.bin_probs[age.bin])})`));

  const card = element("li", { class: "face-card", id: `face-${number}`, tabindex: "0", style: colourStyle(number) },
    element("h3", {},
      element("span", { class: "face-number" }, String(number)), `Face ${number}`,
      element("span", { class: "confidence" }, `detector confidence ${percent(face.score)}`)),
    element("h4", {}, "Age"), ageDetails,
    element("h4", {}, "Gender (apparent)"), probabilityList(face.gender, "Gender"),
    element("h4", {}, "Race (apparent)"), probabilityList(face.race, "Race"));
  // Pointing at or focusing a card highlights its box on the photo.
  const highlight = (on) => $(`box-${number}`)?.classList.toggle("active", on);
  card.addEventListener("mouseenter", () => highlight(true));
  card.addEventListener("mouseleave", () => highlight(false));
  card.addEventListener("focus", () => highlight(true));
  card.addEventListener("blur", () => highlight(false));
  return card;
}

// Webcam snapshots, where the browser offers a camera (only on https or localhost).
async function startWebcam() {
  try {
    webcamStream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (error) {
    setStatus(`The webcam could not be started (${error.message}).`, true);
    return;
  }
  $("webcam-video").srcObject = webcamStream;
  $("webcam").hidden = false;
  $("snapshot-button").focus();
}

function stopWebcam() {
  if (webcamStream) webcamStream.getTracks().forEach((track) => track.stop());
  webcamStream = null;
  $("webcam").hidden = true;
}

function takeSnapshot() {
  const video = $("webcam-video");
  const canvas = element("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  stopWebcam();
  canvas.toBlob((blob) => analyse(new File([blob], "webcam.jpg", { type: "image/jpeg" })), "image/jpeg", 0.92);
}

// The model card: what the model is for and not for, and its figures per group.
function formatValue(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  if (value === null || value === undefined) return "–";
  return String(value);
}

function isScalar(value) {
  return value === null || typeof value !== "object";
}

function cell(value, header = false) {
  return element(header ? "th" : "td", typeof value === "number" ? { class: "number" } : {}, formatValue(value));
}

// Nested figures as tables: {group: {metric: value}} is one table with a row per group,
// {metric: value} a two-column table; anything deeper gets a heading per key.
function renderFigures(value, depth = 3) {
  if (isScalar(value)) return element("p", {}, formatValue(value));
  if (Array.isArray(value)) {
    return value.every(isScalar)
      ? element("p", {}, value.map(formatValue).join(", "))
      : renderFigures(Object.fromEntries(value.entries()), depth);
  }
  const entries = Object.entries(value);
  if (entries.every(([, v]) => isScalar(v))) {
    return element("table", {}, element("tbody", {}, ...entries.map(([k, v]) => element("tr", {}, cell(k, true), cell(v)))));
  }
  if (entries.every(([, v]) => !isScalar(v) && !Array.isArray(v) && Object.values(v).every(isScalar))) {
    const columns = [...new Set(entries.flatMap(([, v]) => Object.keys(v)))];
    return element("table", {},
      element("thead", {}, element("tr", {}, element("th", {}, ""), ...columns.map((c) => element("th", { scope: "col" }, c)))),
      element("tbody", {}, ...entries.map(([k, v]) => element("tr", {}, cell(k, true), ...columns.map((c) => cell(v[c]))))));
  }
  const scalars = entries.filter(([, v]) => isScalar(v));
  const heading = `h${Math.min(depth, 6)}`;
  return element("div", {},
    ...(scalars.length ? [renderFigures(Object.fromEntries(scalars), depth)] : []),
    ...entries.filter(([, v]) => !isScalar(v))
      .flatMap(([k, v]) => [element(heading, {}, k.replaceAll("_", " ")), renderFigures(v, depth + 1)]));
}

async function loadModelCard() {
  const target = $("model-details");
  let card;
  try {
    const response = await fetch("/api/v1/model");
    card = await response.json();
  } catch (error) {
    target.replaceChildren(element("p", {}, `The model card could not be loaded (${error.message}).`));
    return;
  }
  const evaluated = Object.keys(card.evaluation).length > 0;
  target.replaceChildren(
    element("p", {}, element("strong", {}, card.name), ` · ${card.backbone} · race labels (${card.race_taxonomy}): `,
      card.labels.race.map((label) => label.replaceAll("_", " ")).join(", ")),
    element("h3", {}, "Intended use"), element("p", {}, card.intended_use),
    element("h3", {}, "Must not be used for"), element("ul", {}, ...card.must_not_be_used_for.map((item) => element("li", {}, item))),
    element("h3", {}, "Licence"), element("p", {}, card.licence),
    element("h3", { id: "figures-per-group" }, "Evaluation figures, overall and per group"),
    evaluated
      ? element("div", { class: "figures" }, renderFigures(card.evaluation, 4))
      : element("p", {}, "This model's card records no evaluation figures yet: its error rates per group are not known."),
    element("h3", {}, "Training data"), element("div", { class: "figures" }, renderFigures(card.training_data, 4)));
}

function setUp() {
  const dropZone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => {
    analyse(event.target.files[0]);
    event.target.value = ""; // choosing the same file again analyses it again
  });
  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    analyse(event.dataTransfer.files[0]);
  });
  if (navigator.mediaDevices?.getUserMedia) {
    $("webcam-button").hidden = false;
    $("webcam-button").addEventListener("click", startWebcam);
    $("snapshot-button").addEventListener("click", takeSnapshot);
    $("webcam-cancel").addEventListener("click", stopWebcam);
  }
  loadModelCard();
}

setUp();
