// The facescope page: send photos to /api/v1/predict one at a time, show each with numbered boxes and a
// card per face, offer the results as JSON and CSV and each annotated photo, and render the model card
// from /api/v1/model. Plain DOM code; nothing is loaded from elsewhere.
"use strict";

// The same Okabe-Ito colours as the boxes `facescope predict --annotate` draws (inference/draw.py).
const BOX_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"];
// What a folder holds that is worth sending: the server tells any other file apart too, but a folder's
// text files and thumbnails databases would only add error records.
const IMAGE_NAME = /\.(jpe?g|png|gif|bmp|tiff?|webp|heic|heif|avif)$/i;

const $ = (id) => document.getElementById(id);
let photoUrls = [];
let webcamStream = null;
// This run's answers, in order: what the downloads hold.
let analysed = [];
let run = 0;

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

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : noun.endsWith("s") ? "es" : "s"}`;
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

// Whether this browser can show the file itself (if not, the server's annotated copy is shown).
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

// One request per photo, in turn: each photo's answer shows as soon as it comes, one bad file is one
// error card, and no request comes near the server's per-request limits.
async function analyseFiles(files) {
  files = [...files].filter((file) => file.type.startsWith("image/") || IMAGE_NAME.test(file.name));
  if (!files.length) {
    setStatus("No photos there: choose image files (JPEG, PNG, WebP, ...).", true);
    return;
  }
  const thisRun = ++run;
  photoUrls.forEach((url) => URL.revokeObjectURL(url));
  photoUrls = [];
  analysed = [];
  $("photo-results").replaceChildren();
  $("results").hidden = true;
  await modelCardLoaded; // the cards quote its per-group figures
  for (const [index, file] of files.entries()) {
    if (thisRun !== run) return; // a newer choice replaced this one
    setStatus(files.length > 1 ? `Analysing photo ${index + 1} of ${files.length}…` : "Analysing the photo…");
    const answer = await analyse(file, index + 1);
    if (thisRun !== run) return;
    analysed.push(answer);
    showPhoto(answer, index + 1, files.length);
    if (index === files.length - 1) summarise(); // before scrolling: the status line above may change height
    if (index === 0) revealResults();
  }
}

async function analyse(file, number) {
  const name = file.webkitRelativePath || file.name || `photo-${number}.jpg`;
  const url = URL.createObjectURL(file);
  photoUrls.push(url);
  const form = new FormData();
  form.append("file", file, name);
  let response, result;
  try {
    // Annotated by the server: the photo to download, and to show where the browser cannot show the file.
    response = await fetch(`/api/v1/predict?${predictQuery()}`, { method: "POST", body: form });
    result = await response.json();
  } catch (error) {
    return { result: { path: name, faces: [], faces_found: 0, error: `the server could not be reached (${error.message})` } };
  }
  if (!response.ok) {
    const detail = typeof result.detail === "string" ? result.detail : JSON.stringify(result.detail);
    return { result: { path: name, faces: [], faces_found: 0, error: detail } };
  }
  const { annotated_image: annotated, ...plain } = result;
  return { result: plain, annotated, shown: (await browserCanShow(url)) ? url : annotated };
}

function revealResults() {
  $("results").hidden = false;
  // Bring the photo and the first cards into view: on a phone or a short screen they start below the fold.
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("results").scrollIntoView({ behavior: reduceMotion ? "auto" : "smooth", block: "start" });
}

function summarise() {
  const results = analysed.map((answer) => answer.result);
  const faces = results.reduce((total, result) => total + result.faces.length, 0);
  const failed = results.filter((result) => result.error).length;
  if (results.length === 1) {
    const [result] = results;
    setStatus(result.error ? `This photo could not be analysed: ${result.error}`
      : faces ? `Found ${plural(faces, "face")}, numbered from the largest.` : "No face was found in this photo.",
    Boolean(result.error));
  } else {
    setStatus(`Analysed ${plural(results.length, "photo")}: ${plural(faces, "face")} found`
      + (failed ? `; ${failed} could not be analysed.` : "."), failed === results.length);
  }
  $("results-summary").textContent = faces
    ? "How each face appears to the model, with how often the model is wrong for test faces it estimated alike."
      + " Point at or tap a card to find its face, or a box to find its card."
    : "";
}

function showPhoto(answer, index, count) {
  const { result } = answer;
  const article = element("article", { class: "photo-result", id: `photo-${index}`, "aria-label": result.path });
  if (count > 1) article.append(element("h3", { class: "photo-title" }, `${index}. ${result.path}`));
  if (result.error) {
    article.append(element("p", { class: "photo-error" }, `This photo could not be analysed: ${result.error}`));
    $("photo-results").append(article);
    return;
  }
  const faces = result.faces;
  const photo = element("img", {
    class: "photo-image", src: answer.shown,
    alt: faces.length ? `${result.path}, with ${plural(faces.length, "numbered face box")}` : `${result.path}; no face was found`,
  });
  const drawBoxes = answer.shown !== answer.annotated;
  const figure = element("figure", { class: "photo", id: `photo-figure-${index}` },
    element("div", { class: "photo-frame" }, photo,
      element("div", { class: "boxes", "aria-hidden": "true" }, ...(drawBoxes ? faces.map((face, i) => faceBox(face, index, i + 1, result)) : []))),
    element("figcaption", {}, `${result.path} · ${result.width} × ${result.height} pixels`,
      answer.annotated ? element("a", { class: "download-annotated", href: "#", role: "button" }, "Download the annotated photo") : ""));
  figure.querySelector(".download-annotated")?.addEventListener("click", (event) => {
    event.preventDefault();
    download(dataUrlBlob(answer.annotated), `${stem(result.path)}.annotated.jpg`);
  });
  const cards = element("ol", { class: "face-cards", "aria-label": `Faces found in ${result.path}` },
    ...faces.map((face, i) => faceCard(face, index, i + 1)));
  if (!faces.length) cards.append(element("li", { class: "no-faces" }, "No face was found in this photo."));
  article.append(element("div", { class: "results-layout" }, figure, cards));
  $("photo-results").append(article);
}

// A card and its box are one face: pointing at, focusing or tapping either marks both.
function linkFace(photo, number, on) {
  $(`box-${photo}-${number}`)?.classList.toggle("active", on);
  $(`face-${photo}-${number}`)?.classList.toggle("active", on);
}

function clearActive() {
  document.querySelectorAll(".face-card.active, .face-box.active").forEach((node) => node.classList.remove("active"));
}

function faceBox(face, photo, number, result) {
  const [x1, y1, x2, y2] = face.box;
  // Percentages of the photo, so the boxes follow it when it is scaled to fit the page.
  const box = element("div", {
    class: "face-box",
    id: `box-${photo}-${number}`,
    title: `Face ${number}`,
    style: {
      left: `${(100 * x1) / result.width}%`,
      top: `${(100 * y1) / result.height}%`,
      width: `${(100 * (x2 - x1)) / result.width}%`,
      height: `${(100 * (y2 - y1)) / result.height}%`,
      ...colourStyle(number),
    },
  }, element("span", { class: "face-number" }, String(number)));
  box.addEventListener("mouseenter", () => linkFace(photo, number, true));
  box.addEventListener("mouseleave", () => linkFace(photo, number, false));
  box.addEventListener("click", () => {
    clearActive();
    linkFace(photo, number, true);
    $(`face-${photo}-${number}`).scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  return box;
}

// ---------------------------------------------------------------- downloads

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = element("a", { href: url, download: filename, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function dataUrlBlob(dataUrl) {
  const [header, base64] = dataUrl.split(",");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: header.slice(5).split(";")[0] });
}

function stem(path) {
  const base = path.split("/").pop();
  return base.includes(".") ? base.slice(0, base.lastIndexOf(".")) : base;
}

// The top probability, also where the answer was withheld as "uncertain" (as the CLI writes it).
const topProbability = (probs) => Math.max(...Object.values(probs));

// One row per face (one for a photo without any), faces numbered from 1 as on the boxes, the cards, the
// annotated photo and the command line's CSV; each output in the two columns the model card names for it
// (an age output: years, age group; a label output: the answer, its top probability).
function csvRows(result, heads) {
  const base = { path: result.path, model: result.model, width: result.width, height: result.height,
    faces_found: result.faces_found, error: result.error };
  if (!result.faces.length) return [base];
  return result.faces.map((face, index) => {
    const row = { ...base, face: index + 1, x1: face.box[0], y1: face.box[1], x2: face.box[2], y2: face.box[3],
      score: face.score };
    for (const head of heads) {
      const estimate = face[head.name];
      if (!estimate) continue; // left empty, as the CLI leaves it
      const [answer, detail] = head.csv_columns;
      Object.assign(row, isAge(head) ? { [answer]: estimate.years, [detail]: estimate.bin }
        : { [answer]: estimate.label, [detail]: topProbability(estimate.probs) });
    }
    return row;
  });
}

function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  // A spreadsheet runs a cell starting with one of these as a formula: kept as text, as the CLI does.
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// The same columns as `facescope predict --format csv` for this model: the model card lists them.
function resultsCsv() {
  const columns = modelCard.csv_columns;
  const rows = analysed.flatMap((answer) => csvRows(answer.result, modelCard.heads));
  return [columns, ...rows.map((row) => columns.map((column) => row[column]))]
    .map((cells) => cells.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function downloadCsv() {
  if (!modelCard?.csv_columns) {
    setStatus("The CSV needs the model card, which could not be loaded: the JSON download holds every result.", true);
    return;
  }
  download(new Blob([resultsCsv()], { type: "text/csv" }), "facescope-results.csv");
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

// The query of a prediction: the annotated photo, and the confidence every answer must reach (the
// page's one control sets every head's; empty: the defaults).
function predictQuery() {
  const query = new URLSearchParams({ annotate: "true" });
  const sure = $("min-confidence")?.value;
  if (sure !== undefined && sure !== "") {
    const bar = Math.min(100, Math.max(0, Number(sure))) / 100;
    // Every head the model has (the card lists each with its default threshold).
    const heads = Object.keys(modelCard?.thresholds ?? {});
    if (heads.length) query.set("thresholds", heads.map((head) => `${head}=${bar}`).join(","));
  }
  return query.toString();
}

// The model's measured figure for faces estimated like this one (the API's `measured`, from the most
// specific group of estimates with enough test faces), in words.
function measuredNote(estimate) {
  return estimate?.measured?.text ?? null;
}

// ---------------------------------------------------------------- the model's outputs

// What the page calls an output: the usual three as ever ("Gender", and "Gender (apparent)" over its
// probabilities), any other by its name ("race_fairface": "Race fairface").
const HEAD_TITLES = {
  age: ["Age", "Age"], gender: ["Gender", "Gender (apparent)"], race: ["Race", "Race (apparent)"],
};

function headTitle(headName, long = false) {
  const titles = HEAD_TITLES[headName];
  if (titles) return titles[long ? 1 : 0];
  const words = headName.replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// An age output (years and age group, or age group only) as opposed to a label output.
const isAge = (head) => head.kind !== "label";

// Ages first, then the labels, each in the model's order (the order of the CSV columns and of the words on
// the annotated photo): how the cards and the page's tagline list the outputs.
function cardOrder(heads) {
  return [...heads.filter(isAge), ...heads.filter((head) => !isAge(head))];
}

// The outputs a face's card shows, as the model card lists them. Without the model card, those the face
// itself holds.
function shownHeads(face) {
  return cardOrder(modelCard?.heads ?? Object.entries(face)
    .filter(([, value]) => value && typeof value === "object" && ("probs" in value || "bin_probs" in value))
    .map(([headName, value]) => ({ name: headName, kind: "bin_probs" in value ? "age_years" : "label" })));
}

// The tagline and the title name what the loaded model estimates ("age, gender, race and race fairface"):
// the page's own words, for the usual three, stand until the model card arrives.
function showEstimatedOutputs(heads) {
  const words = cardOrder(heads).map((head) => headTitle(head.name).toLowerCase());
  const listed = words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
  $("estimated-outputs").textContent = listed;
  document.title = `facescope: estimates of apparent ${listed}`;
}

function estimateRow(title, value, note) {
  return [element("dt", {}, title), element("dd", {}, value, ...(note ? [element("span", { class: "group-error" }, note)] : []))];
}

// The expected age in words ("about 34 (± 6)"); null for a model that estimates age groups only, or an
// age withheld as uncertain.
function ageYears(age) {
  if (age.years === null || age.years === undefined) return null;
  const spread = age.years_std === null || age.years_std === undefined ? "" : ` (± ${Math.round(age.years_std)})`;
  return `about ${Math.round(age.years)}${spread}`;
}

// An output's line in the card's summary: the age in years (or its group), a label with its probability.
function summaryRow(head, estimate) {
  if (!isAge(head)) return estimateRow(headTitle(head.name), estimateLine(estimate), measuredNote(estimate));
  const years = ageYears(estimate);
  return estimateRow(headTitle(head.name),
    estimate.bin === "uncertain" ? `uncertain${years ? ` (${years})` : ""}` : years ?? `${estimate.bin}`, measuredNote(estimate));
}

// An output under "All estimates": the years and the most likely age group, or every label's probability.
function allEstimates(head, estimate) {
  const heading = element("h5", {}, headTitle(head.name, true));
  if (!isAge(head)) return [heading, probabilityList(estimate, headTitle(head.name))];
  const details = element("dl", { class: "age" });
  const years = ageYears(estimate);
  if (years !== null) details.append(element("dt", {}, "Years"), element("dd", {}, years));
  const [topBin, topShare] = Object.entries(estimate.bin_probs).sort((a, b) => b[1] - a[1])[0];
  details.append(element("dt", {}, "Age bin"), element("dd", {}, `${topBin} (${percent(topShare)})`));
  return [heading, details];
}

function faceCard(face, photo, number) {
  // Every output the model has; one a face lacks (a race head the model was never taught) is left out.
  const heads = shownHeads(face).filter((head) => face[head.name]);
  const card = element("li", { class: "face-card", id: `face-${photo}-${number}`, tabindex: "0", style: colourStyle(number) },
    element("h4", {},
      element("span", { class: "face-number" }, String(number)), `Face ${number}`,
      element("span", { class: "confidence" }, `detector ${percent(face.score)}`)),
    element("dl", { class: "estimates" }, ...heads.flatMap((head) => summaryRow(head, face[head.name]))),
    element("details", { class: "all-probs" },
      element("summary", {}, "All estimates"),
      ...heads.flatMap((head) => allEstimates(head, face[head.name]))));
  card.addEventListener("mouseenter", () => linkFace(photo, number, true));
  card.addEventListener("mouseleave", () => linkFace(photo, number, false));
  card.addEventListener("focus", () => linkFace(photo, number, true));
  card.addEventListener("blur", () => linkFace(photo, number, false));
  // A tap on a phone: show which face it is (the photo sits above the cards there).
  card.addEventListener("click", (event) => {
    if (event.target.closest("summary")) return;
    clearActive();
    linkFace(photo, number, true);
    const box = $(`box-${photo}-${number}`);
    if (box && box.getBoundingClientRect().bottom < 0) $(`photo-figure-${photo}`).scrollIntoView({ behavior: "smooth", block: "start" });
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
  canvas.toBlob((blob) => analyseFiles([new File([blob], "webcam.jpg", { type: "image/jpeg" })]), "image/jpeg", 0.92);
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

// The figures of the model's outputs that a table's groups have: a label output's accuracy (shown as how
// often it is wrong), an age output's mean error in years; labels first, in the model's order.
function figureColumns(groups) {
  const heads = modelCard?.heads ?? [];
  const present = (figure) => Object.values(groups).some((figures) => typeof figures[figure] === "number");
  return [...heads.filter((head) => !isAge(head)), ...heads.filter(isAge)].map((head) => (isAge(head)
    ? { figure: `${head.name}_mae`, title: `${headTitle(head.name)} off by`, cell: (value) => `${value.toFixed(1)} y` }
    : { figure: `${head.name}_accuracy`, title: `${headTitle(head.name)} wrong`, cell: (value) => percent(1 - value) }))
    .filter((column) => present(column.figure));
}

// Per-group figures in words a reader can use: how often each estimate is wrong, and by how much the age is off.
function errorTable(groups) {
  const columns = figureColumns(groups);
  const rows = Object.entries(groups).map(([group, f]) => [
    name(group), (f.n ?? 0).toLocaleString("en"),
    ...columns.map((column) => (typeof f[column.figure] === "number" ? column.cell(f[column.figure]) : null)),
  ]);
  return table(["Group", "Faces", ...columns.map((column) => column.title)], rows, [1, ...columns.map((_, i) => i + 2)]);
}

function renderEvaluation(evaluation) {
  if (!evaluation || !evaluation.overall) {
    return [element("p", {}, "This model's card records no evaluation figures yet: its error rates per group are not known.")];
  }
  const overall = { "All faces": { n: evaluation.faces, ...evaluation.overall } };
  const groups = { ...overall, ...(evaluation.by_race || {}) };
  // Said of each age output the table shows ("Age off by").
  const offBy = figureColumns(groups).filter((column) => column.figure.endsWith("_mae"))
    .map((column) => ` "${column.title}" is the average error in years.`).join("");
  const parts = [
    element("p", {}, `Measured on ${(evaluation.faces ?? 0).toLocaleString("en")} ${evaluation.dataset ?? ""} faces held out from training `
      + `(the ${evaluation.split ?? "test"} split).${offBy}`),
    errorTable(groups),
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
  showEstimatedOutputs(card.heads);
  // The notice links to #figures-per-group.
  const body = [
    element("h3", {}, "Intended use"), element("p", {}, card.intended_use),
    element("h3", {}, "Must not be used for"), element("ul", {}, ...card.must_not_be_used_for.map((item) => element("li", {}, item))),
    element("h3", {}, "Licence"), element("p", {}, card.licence),
    element("h3", { id: "figures-per-group" }, "How often it is wrong, per group"),
    ...renderEvaluation(card.evaluation),
    element("h3", {}, "Training data"), ...renderTrainingData(card.training_data),
  ];
  // The race labels, and those of any further label output (the gender labels go without saying).
  const further = card.heads.filter((head) => !isAge(head) && !(head.name in HEAD_TITLES))
    .map((head) => ` · ${name(head.name)} labels (${head.taxonomy}): ${head.labels.map(name).join(", ")}`);
  target.replaceChildren(
    element("p", {}, element("strong", {}, card.name), ` · ${card.backbone}`,
      card.race_taxonomy ? ` · race labels (${card.race_taxonomy}): ${card.labels.race.map(name).join(", ")}` : " · no race output",
      ...further),
    ...body);
}

// A dropped folder: every file in it and its sub-folders (the browser hands over entries, not files).
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.some((entry) => entry.isDirectory)) return [...dataTransfer.files];
  const files = [];
  async function walk(entry) {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      return;
    }
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child);
    }
  }
  for (const entry of entries) await walk(entry);
  return files.sort((a, b) => a.name.localeCompare(b.name));
}

async function tryExample(button) {
  const response = await fetch(button.dataset.photo);
  const blob = await response.blob();
  analyseFiles([new File([blob], button.dataset.photo.split("/").pop(), { type: blob.type })]);
}

function setUp() {
  const dropZone = $("drop-zone");
  for (const input of [$("file-input"), $("folder-input")]) {
    input.addEventListener("change", (event) => {
      const files = [...event.target.files].sort((a, b) => (a.webkitRelativePath || a.name).localeCompare(b.webkitRelativePath || b.name));
      analyseFiles(files);
      event.target.value = ""; // choosing the same files again analyses them again
    });
  }
  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    analyseFiles(await droppedFiles(event.dataTransfer));
  });
  document.querySelectorAll(".example").forEach((button) => button.addEventListener("click", () => tryExample(button)));
  $("download-json").addEventListener("click", () => download(
    new Blob([JSON.stringify(analysed.map((answer) => answer.result), null, 2) + "\n"], { type: "application/json" }),
    "facescope-results.json"));
  $("download-csv").addEventListener("click", downloadCsv);
  if (navigator.mediaDevices?.getUserMedia) {
    $("webcam-button").hidden = false;
    $("webcam-button").addEventListener("click", startWebcam);
    $("snapshot-button").addEventListener("click", takeSnapshot);
    $("webcam-cancel").addEventListener("click", stopWebcam);
  }
}

const modelCardLoaded = loadModelCard();
setUp();
