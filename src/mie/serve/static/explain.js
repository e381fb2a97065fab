// The explanations of `mie serve`'s page (loaded after app.js, whose helpers it uses): a heat map beside
// each searched image and the words behind each safety verdict. Everything is asked for lazily, a few at a
// time, and every text from the server is put in the page with textContent.
"use strict";

// ---- heat maps beside the search results (POST /api/explain/image) -----------------------------
const AUTO_MAPS = 4;
const SIDE = 120;  // the shown size of a result, in CSS pixels
let searches = 0;

// The jet colour map: 0 blue, 0.5 green-yellow, 1 red.
function jet(v) {
  const c = (x) => Math.round(255 * Math.max(0, Math.min(1, 1.5 - Math.abs(x))));
  return [c(4 * v - 3), c(4 * v - 2), c(4 * v - 1)];
}

async function showHeat(item) {
  const canvas = el("canvas", null, "heat");
  canvas.width = SIDE; canvas.height = SIDE;
  canvas.title = "computing the heat map…";
  item.pair.appendChild(canvas);
  try {
    const data = await api("/api/explain/image", postJSON("/api/explain/image",
      { row: item.hit.row, query: item.query, method: item.method }));
    await item.img.decode();
    drawHeat(canvas, item.img, data);
    canvas.dataset.peak = data.peak.join(",");
    canvas.title = (item.method === "gradcam" ? "Grad-CAM" : "attention rollout") + " for “" + data.query + "”" +
      (data.score !== null ? ", similarity " + data.score.toFixed(3) : "") + ", peak at (" + data.peak.join(", ") +
      ") (" + data.elapsed_ms + " ms" + (data.cached ? ", cached" : "") + ")";
  } catch (err) {
    canvas.remove();
    el("p", err.message, "message", item.figure);
  }
}

// The image with the map (a grid over the centre crop the model saw) over it, half transparent, and a
// white cross at the peak; the browser smooths the small grid as it scales it up.
function drawHeat(canvas, img, data) {
  const ctx = canvas.getContext("2d");
  const sx = SIDE / data.width, sy = SIDE / data.height;
  ctx.drawImage(img, 0, 0, SIDE, SIDE);
  const rows = data.map.length, cols = data.map[0].length;
  const grid = document.createElement("canvas");
  grid.width = cols; grid.height = rows;
  const gctx = grid.getContext("2d");
  const pixels = gctx.createImageData(cols, rows);
  data.map.forEach((line, r) => line.forEach((v, c) => {
    const [red, green, blue] = jet(v);
    pixels.data.set([red, green, blue, 255], 4 * (r * cols + c));
  }));
  gctx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.globalAlpha = 0.5;
  const [x, y, w, h] = data.box;
  ctx.drawImage(grid, x * sx, y * sy, w * sx, h * sy);
  ctx.globalAlpha = 1;
  const px = (data.peak[0] + 0.5) * sx, py = (data.peak[1] + 0.5) * sy;
  ctx.strokeStyle = "white"; ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(px - 5, py - 5); ctx.lineTo(px + 5, py + 5); ctx.moveTo(px + 5, py - 5); ctx.lineTo(px - 5, py + 5);
  ctx.stroke();
}

// ---- token attributions beside the safety verdicts (POST /api/explain/safety) ---------------------
const AUTO_WHY = 2;

// The tokens under a verdict row, red for those that pushed the principle's logit up, blue for down.
async function showWhy(row, principle, text) {
  const line = document.createElement("tr");
  row.after(line);
  const cell = el("td", "attributing…", "tokens", line);
  cell.colSpan = row.cells.length;
  try {
    const data = await api("/api/explain/safety", postJSON("/api/explain/safety", { text: text, principle: principle }));
    cell.replaceChildren();
    const shown = data.tokens.filter((t) => t.token !== "[PAD]");
    const top = Math.max(1e-9, ...shown.map((t) => Math.abs(t.score)));
    for (const t of shown) {
      const chip = el("span", t.token, null, cell);
      const alpha = (0.85 * Math.abs(t.score) / top).toFixed(2);
      chip.style.background = t.score >= 0 ? "rgba(215, 25, 28, " + alpha + ")" : "rgba(44, 123, 182, " + alpha + ")";
      chip.title = (t.score >= 0 ? "+" : "") + t.score.toFixed(3);
    }
    const best = shown.filter((t) => t.score > 0).sort((a, b) => b.score - a.score).slice(0, 3)
      .map((t) => t.token + " +" + t.score.toFixed(2)).join(", ");
    const change = data.output - (data.baseline_output ?? 0);
    el("div", "why " + data.principle + ": " + (best || "no word raised it") + " of " + change.toFixed(2) +
       " (" + data.target + ", " + data.method + (data.steps ? ", " + data.steps + " steps from " + data.baseline : "") +
       "; " + data.elapsed_ms + " ms)", "meta", cell);
  } catch (err) {
    cell.replaceChildren();
    el("span", err.message, "message", cell);
  }
}
