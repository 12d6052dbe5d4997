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
    response = await fetch(`/api/v1/predict?${predictQuery(shownAsIs)}`, { method: "POST", body: form });
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
  await modelCardLoaded; // the cards quote its per-group figures
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
  $("results-summary").textContent = faces.length
    ? "How each face appears to the model, with its measured error for faces of that group."
      + (faces.length > 1 ? " Point at or tap a card to find its face, or a box to find its card." : "")
    : "";
  $("results").hidden = false;
  setStatus(faces.length
    ? `Found ${faces.length} face${faces.length > 1 ? "s" : ""}, numbered from the largest.`
    : "No face was found in this photo.");
  // Bring the photo and the first cards into view: on a phone or a short screen they start below the fold.
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("results").scrollIntoView({ behavior: reduceMotion ? "auto" : "smooth", block: "start" });
}

// A card and its box are one face: pointing at, focusing or tapping either marks both.
function linkFace(number, on) {
  $(`box-${number}`)?.classList.toggle("active", on);
  $(`face-${number}`)?.classList.toggle("active", on);
}

function faceBox(face, number, result) {
  const [x1, y1, x2, y2] = face.box;
  // Percentages of the photo, so the boxes follow it when it is scaled to fit the page.
  const box = element("div", {
    class: "face-box",
    id: `box-${number}`,
    title: `Face ${number}`,
    style: {
      left: `${(100 * x1) / result.width}%`,
      top: `${(100 * y1) / result.height}%`,
      width: `${(100 * (x2 - x1)) / result.width}%`,
      height: `${(100 * (y2 - y1)) / result.height}%`,
      ...colourStyle(number),
    },
  }, element("span", { class: "face-number" }, String(number)));
  box.addEventListener("mouseenter", () => linkFace(number, true));
  box.addEventListener("mouseleave", () => linkFace(number, false));
  box.addEventListener("click", () => {
    document.querySelectorAll(".face-card.active, .face-box.active").forEach((node) => node.classList.remove("active"));
    linkFace(number, true);
    $(`face-${number}`).scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  return box;
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

// Below this probability an estimate reads as a guess: "likely X (39%)", with the runner-up beside it.
const CONFIDENT = 0.8;

function estimateLine(estimate) {
  const ranked = Object.entries(estimate.probs).sort((a, b) => b[1] - a[1]);
  const [[label, p], runnerUp] = ranked;
  const name = (value) => value.replaceAll("_", " ");
  if (estimate.label === "uncertain") {
    return element("span", { class: "estimate uncertain" }, "uncertain",
      element("span", { class: "runner-up" }, ` (${name(label)} at most ${percent(p)})`));
  }
  if (p >= CONFIDENT) {
    return element("span", { class: "estimate confident" }, name(label), element("span", { class: "share" }, ` ${percent(p)}`));
  }
  return element("span", { class: "estimate uncertain" },
    `likely ${name(label)} (${percent(p)})`,
    runnerUp ? element("span", { class: "runner-up" }, `, or ${name(runnerUp[0])} (${percent(runnerUp[1])})`) : "");
}

// The query of a prediction: the annotated photo where the browser cannot show the file itself, and
// the confidence every answer must reach (the page's one control sets every head's; empty: the defaults).
function predictQuery(shownAsIs) {
  const query = new URLSearchParams();
  if (!shownAsIs) query.set("annotate", "true");
  const sure = $("min-confidence")?.value;
  if (sure !== undefined && sure !== "") {
    const bar = Math.min(100, Math.max(0, Number(sure))) / 100;
    query.set("thresholds", ["gender", "race", "age"].map((head) => `${head}=${bar}`).join(","));
  }
  return query.toString();
}

// The model's measured figure for faces estimated like this one (the API's `measured`, from the most
// specific group of estimates with enough test faces), in words.
function measuredNote(estimate) {
  return estimate?.measured?.text ?? null;
}

function estimateRow(title, value, note) {
  return [element("dt", {}, title), element("dd", {}, value, ...(note ? [element("span", { class: "group-error" }, note)] : []))];
}

function faceCard(face, number) {
  const age = face.age;
  const years = age.years !== null
    ? `about ${Math.round(age.years)}${age.years_std !== null ? ` (± ${Math.round(age.years_std)})` : ""}`
    : null;
  const summary = element("dl", { class: "estimates" },
    ...estimateRow("Age", age.bin === "uncertain" ? `uncertain${years ? ` (${years})` : ""}` : years ?? `${age.bin}`,
      measuredNote(age)),
    ...estimateRow("Gender", estimateLine(face.gender), measuredNote(face.gender)),
    ...estimateRow("Race", estimateLine(face.race), measuredNote(face.race)));
  const ageDetails = element("dl", { class: "age" });
  if (years !== null) ageDetails.append(element("dt", {}, "Years"), element("dd", {}, years));
  const [topBin, topShare] = Object.entries(age.bin_probs).sort((a, b) => b[1] - a[1])[0];
  ageDetails.append(element("dt", {}, "Age bin"), element("dd", {}, `${topBin} (${percent(topShare)})`));

  const card = element("li", { class: "face-card", id: `face-${number}`, tabindex: "0", style: colourStyle(number) },
    element("h3", {},
      element("span", { class: "face-number" }, String(number)), `Face ${number}`,
      element("span", { class: "confidence" }, `detector ${percent(face.score)}`)),
    summary,
    element("details", { class: "all-probs" },
      element("summary", {}, "All estimates"),
      element("h4", {}, "Age"), ageDetails,
      element("h4", {}, "Gender (apparent)"), probabilityList(face.gender, "Gender"),
      element("h4", {}, "Race (apparent)"), probabilityList(face.race, "Race")));
  card.addEventListener("mouseenter", () => linkFace(number, true));
  card.addEventListener("mouseleave", () => linkFace(number, false));
  card.addEventListener("focus", () => linkFace(number, true));
  card.addEventListener("blur", () => linkFace(number, false));
  // A tap on a phone: show which face it is (the photo sits above the cards there).
  card.addEventListener("click", (event) => {
    if (event.target.closest("summary")) return;
    document.querySelectorAll(".face-card.active, .face-box.active").forEach((node) => node.classList.remove("active"));
    linkFace(number, true);
    const box = $(`box-${number}`);
    if (box && box.getBoundingClientRect().bottom < 0) $("photo-figure").scrollIntoView({ behavior: "smooth", block: "start" });
  });
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

// The model card: what the model is for and not for, and how often it is wrong, per group.
let modelCard = null;

const name = (value) => String(value).replaceAll("_", " ");

function table(columns, rows, numeric = []) {
  return element("div", { class: "table-wrap" }, element("table", {},
    element("thead", {}, element("tr", {}, ...columns.map((c, i) => element("th", { scope: "col", class: numeric.includes(i) ? "number" : "" }, c)))),
    element("tbody", {}, ...rows.map((row) => element("tr", {},
      ...row.map((value, i) => element(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : { class: numeric.includes(i) ? "number" : "" }, value ?? "–")))))));
}

// Per-group figures in words a reader can use: how often each estimate is wrong, and by how much the age is off.
function errorTable(groups) {
  const rows = Object.entries(groups).map(([group, f]) => [
    name(group), (f.n ?? 0).toLocaleString("en"),
    typeof f.gender_accuracy === "number" ? percent(1 - f.gender_accuracy) : null,
    typeof f.race_accuracy === "number" ? percent(1 - f.race_accuracy) : null,
    typeof f.age_mae === "number" ? `${f.age_mae.toFixed(1)} y` : null,
  ]);
  return table(["Group", "Faces", "Gender wrong", "Race wrong", "Age off by"], rows, [1, 2, 3, 4]);
}

function renderEvaluation(evaluation) {
  if (!evaluation || !evaluation.overall) {
    return [element("p", {}, "This model's card records no evaluation figures yet: its error rates per group are not known.")];
  }
  const overall = { "All faces": { n: evaluation.faces, ...evaluation.overall } };
  const parts = [
    element("p", {}, `Measured on ${(evaluation.faces ?? 0).toLocaleString("en")} ${evaluation.dataset ?? ""} faces held out from training `
      + `(the ${evaluation.split ?? "test"} split). "Age off by" is the average error in years.`),
    errorTable({ ...overall, ...(evaluation.by_race || {}) }),
  ];
  if (evaluation.by_race_gender) {
    parts.push(element("details", {}, element("summary", {}, "By race and gender"), errorTable(evaluation.by_race_gender)));
  }
  const readings = (evaluation.age_standardised_gaps || []).map((gap) => gap.reading).filter(Boolean);
  if (readings.length) {
    parts.push(element("details", {}, element("summary", {}, "Gaps between races at the same ages"),
      element("ul", {}, ...readings.map((text) => element("li", {}, text)))));
  }
  const others = Object.values(evaluation.other_datasets ?? {});
  if (others.length) {
    parts.push(element("div", { id: "other-test-sets" }, element("p", {}, "On the other data sets' own held-out test photos:"),
      errorTable(Object.fromEntries(others.map((other) => [other.dataset, { n: other.faces, ...other.overall }])))));
  }
  const commands = [evaluation, ...others].map((e) => e.command).filter(Boolean);
  if (commands.length) {
    parts.push(element("p", { class: "small" }, "Reproduce: ", ...commands.flatMap((command, i) =>
      [i ? element("br") : "", element("code", {}, command)])));
  }
  return parts;
}

// Each data set the model learned from: its photos per split, whose people, and its licence.
function renderTrainingData(data) {
  const datasets = data?.datasets ?? [];
  if (!datasets.length) return [element("p", {}, "This model's card does not say what it was trained on.")];
  return datasets.flatMap((dataset) => {
    const splits = Object.entries(dataset.splits ?? {}).map(([k, v]) => `${v.toLocaleString("en")} ${k}`).join(", ");
    const people = dataset.people ? ` of ${dataset.people.toLocaleString("en")} people` : "";
    const parts = [element("p", {}, element("strong", {}, dataset.title), `: ${splits} photos${people}. Licence: ${dataset.licence}`)];
    const byRace = Object.entries(dataset.train_by_race ?? {});
    if (byRace.length) {
      parts.push(element("p", { class: "small" }, "Training photos by race: ",
        byRace.map(([k, v]) => `${name(k)} ${v.toLocaleString("en")}`).join(", "), "."));
    }
    return parts;
  });
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
  modelCard = card;
  // The notice links to #figures-per-group.
  const body = [
    element("h3", {}, "Intended use"), element("p", {}, card.intended_use),
    element("h3", {}, "Must not be used for"), element("ul", {}, ...card.must_not_be_used_for.map((item) => element("li", {}, item))),
    element("h3", {}, "Licence"), element("p", {}, card.licence),
    element("h3", { id: "figures-per-group" }, "How often it is wrong, per group"),
    ...renderEvaluation(card.evaluation),
    element("h3", {}, "Training data"), ...renderTrainingData(card.training_data),
  ];
  target.replaceChildren(
    element("p", {}, element("strong", {}, card.name), ` · ${card.backbone} · race labels (${card.race_taxonomy}): `,
      card.labels.race.map(name).join(", ")),
    ...body);
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
}

const modelCardLoaded = loadModelCard();
setUp();
