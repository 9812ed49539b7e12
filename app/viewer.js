// The Attribution page's viewer (a Streamlit v2 component): three linked orthogonal views per map, drawn on
// 2-D canvases from the volumes hyperfusion.explain.viewer.scene sends. Everything interactive happens here:
// a click or drag moves the crosshair in every view, the wheel scrolls slices (Ctrl + wheel zooms), a right or
// Shift drag pans. The view (cursor, zoom, centre) goes back to Python once an interaction ends.
const CROSS = "#00e5ff";
const VIEWS = [ // [name, horizontal axis, vertical axis, slice axis]
  ["axial", 0, 1, 2],
  ["coronal", 0, 2, 1],
  ["sagittal", 1, 2, 0],
];
const AXIS = "xyz";

async function gunzip(b64) {
  const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function fmt(v) {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  const s = a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(2) : v.toPrecision(3);
  return s.replace("-", "−");
}

function makeViewer(root) {
  const st = { scene: null, cursor: [0, 0, 0], centre: [0, 0, 0], zoom: 1, revision: null, vols: new Map(),
               drag: null, timer: null, token: 0, setState: null };
  root.innerHTML = '<div class="hfv-bar"><button data-z="in" title="zoom in">+</button>' +
    '<button data-z="out" title="zoom out">−</button><button data-z="reset" title="whole scan">reset</button>' +
    '<span class="hfv-readout"></span></div><div class="hfv-rows"></div>' +
    '<div class="hfv-help">click or drag: move the crosshair · wheel: scroll slices · Ctrl + wheel or +/−: ' +
    "zoom · right or Shift drag: pan</div>";
  const rowsEl = root.querySelector(".hfv-rows");
  const readoutEl = root.querySelector(".hfv-readout");

  async function volume(entry, type) {
    if (!entry || !entry.data) return null;
    if (!st.vols.has(entry.id)) {
      const bytes = await gunzip(entry.data);
      const arr = type === "i16" ? new Int16Array(bytes.buffer) : type === "u16" ? new Uint16Array(bytes.buffer) : bytes;
      st.vols.set(entry.id, arr);
    }
    return st.vols.get(entry.id);
  }

  const sc = () => st.scene;
  const idx = (a, mm) => Math.min(sc().shape[a] - 1, Math.max(0, Math.round((mm - sc().origin[a]) / sc().spacing[a])));
  const world = (a, i) => sc().origin[a] + i * sc().spacing[a];

  function valueAt(row, arr, i, j, k) { // a map's value at display voxel (i, j, k); 0 outside its box
    if (!arr) return 0;
    const [i0, j0, k0, ni, nj, nk] = row.box;
    const a = i - i0, b = j - j0, c = k - k0;
    if (a < 0 || b < 0 || c < 0 || a >= ni || b >= nj || c >= nk) return 0;
    return arr[a + ni * (b + nj * c)] * row.scale;
  }

  function colour(row, v) { // [r, g, b] or null when hidden by the threshold / sign
    let t;
    if (v === 0) return null;
    if (row.sign === "absolute") { if (Math.abs(v) < row.threshold) return null; t = Math.abs(v) / row.vmax; }
    else if (row.sign === "positive") { if (v < row.threshold || v <= 0) return null; t = v / row.vmax; }
    else if (row.sign === "negative") { if (-v < row.threshold || v >= 0) return null; t = -v / row.vmax; }
    else { if (Math.abs(v) < row.threshold) return null; t = 0.5 + 0.5 * Math.max(-1, Math.min(1, v / row.vmax)); }
    const n = Math.max(0, Math.min(255, Math.round(Math.min(1, t) * 255)));
    return [row.lutBytes[3 * n], row.lutBytes[3 * n + 1], row.lutBytes[3 * n + 2]];
  }

  function layout() {
    const s = sc();
    const width = Math.max(300, root.clientWidth || 900);
    const cw = Math.floor((width - 12 - 16) / 3); // the root's padding, the gaps between views
    const ext = s.shape.map((n, a) => n * Math.abs(s.spacing[a]));
    const fit = Math.min(...VIEWS.map(([, h]) => cw / ext[h]));
    const ch = Math.ceil(fit * Math.max(...VIEWS.map(([, , v]) => ext[v])));
    return { cw, ch, fit };
  }

  function build() { // one row per map: a title, three canvases, a colour bar and its label
    rowsEl.innerHTML = "";
    const { cw, ch } = layout();
    st.size = layout();
    for (const [r, row] of sc().rows.entries()) {
      const el = document.createElement("div");
      el.className = "hfv-row";
      el.innerHTML = `<div class="hfv-title"></div><div class="hfv-views"></div>` +
        `<canvas class="hfv-cbar" width="${cw}" height="16"></canvas><div class="hfv-clabel"></div>`;
      el.querySelector(".hfv-title").textContent = row.title;
      for (const [v, [name]] of VIEWS.entries()) {
        const c = document.createElement("canvas");
        c.width = cw; c.height = ch; c.className = "hfv-view"; c.dataset.view = name; c.dataset.row = r;
        c.addEventListener("pointerdown", (e) => down(e, v, c));
        c.addEventListener("pointermove", (e) => move(e, v, c));
        c.addEventListener("pointerup", (e) => up(e, c));
        c.addEventListener("wheel", (e) => wheel(e, v), { passive: false });
        c.addEventListener("contextmenu", (e) => e.preventDefault());
        el.querySelector(".hfv-views").appendChild(c);
      }
      rowsEl.appendChild(el);
    }
    if (!sc().rows.length) rowsEl.innerHTML = '<div class="hfv-title">scan</div>';
  }

  function screen(v, h, vv) { // world (h, v) of view v -> canvas px
    const [, ah, av] = VIEWS[v];
    const { cw, ch, fit } = st.size;
    const S = fit * st.zoom, sgn = flipped(v) ? -1 : 1;
    return [cw / 2 + sgn * (h - st.centre[ah]) * S, ch / 2 - (vv - st.centre[av]) * S];
  }
  function unscreen(v, x, y) {
    const [, ah, av] = VIEWS[v];
    const { cw, ch, fit } = st.size;
    const S = fit * st.zoom, sgn = flipped(v) ? -1 : 1;
    return [st.centre[ah] + (x - cw / 2) / (sgn * S), st.centre[av] - (y - ch / 2) / S];
  }
  const flipped = (v) => (v === 2 ? true : !!sc().view.radiological);

  function draw() {
    const s = sc();
    if (!s || !st.size) return;
    const scan = st.vols.get(s.scan.id), atlas = st.vols.get(s.atlas.id);
    const truth = s.truth && s.view.layers.includes("truth") ? st.vols.get(s.truth.id) : null;
    const showAtlas = s.view.layers.includes("atlas");
    const [nx, ny] = s.shape;
    const cur = [0, 1, 2].map((a) => idx(a, st.cursor[a]));
    const canvases = rowsEl.querySelectorAll("canvas.hfv-view");
    for (const c of canvases) {
      const v = VIEWS.findIndex(([name]) => name === c.dataset.view);
      const row = s.rows[Number(c.dataset.row)];
      const shown = row.difference ? s.view.layers.includes("difference") : s.view.layers.includes("map");
      const arr = shown ? st.vols.get(row.id) : null;
      const [, ah, av, as] = VIEWS[v];
      const nh = s.shape[ah], nv = s.shape[av];
      const img = new ImageData(nh, nv);
      const ijk = [0, 0, 0];
      ijk[as] = cur[as];
      const lab = (p, q) => { const t = [0, 0, 0]; t[as] = cur[as]; t[ah] = p; t[av] = q; return atlas[t[0] + nx * (t[1] + ny * t[2])]; };
      const op = s.view.opacity;
      for (let q = 0; q < nv; q++) {
        for (let p = 0; p < nh; p++) {
          ijk[ah] = p; ijk[av] = q;
          const o = ijk[0] + nx * (ijk[1] + ny * ijk[2]);
          let r = scan[o], g = r, b = r;
          const col = arr ? colour(row, valueAt(row, arr, ijk[0], ijk[1], ijk[2])) : null;
          if (col) { r = (1 - op) * r + op * col[0]; g = (1 - op) * g + op * col[1]; b = (1 - op) * b + op * col[2]; }
          if (truth) {
            const t = valueAt(s.truth, truth, ijk[0], ijk[1], ijk[2]) > 0.2 * s.truth.vmax;
            const edge = t && ((p + 1 < nh && !(valueAt(s.truth, truth, ...swap(ijk, ah, p + 1)) > 0.2 * s.truth.vmax)) ||
              (q + 1 < nv && !(valueAt(s.truth, truth, ...swap(ijk, av, q + 1)) > 0.2 * s.truth.vmax)) ||
              (p > 0 && !(valueAt(s.truth, truth, ...swap(ijk, ah, p - 1)) > 0.2 * s.truth.vmax)) ||
              (q > 0 && !(valueAt(s.truth, truth, ...swap(ijk, av, q - 1)) > 0.2 * s.truth.vmax)));
            if (edge) { r = 40; g = 230; b = 90; }
          }
          if (showAtlas && atlas) {
            const here = lab(p, q);
            if ((p + 1 < nh && lab(p + 1, q) !== here) || (q + 1 < nv && lab(p, q + 1) !== here)) {
              r = 0.4 * r + 0.6 * 255; g = 0.4 * g + 0.6 * 255; b = 0.4 * b + 0.6 * 200;
            }
          }
          const px = 4 * (p + nh * (nv - 1 - q));
          img.data[px] = r; img.data[px + 1] = g; img.data[px + 2] = b; img.data[px + 3] = 255;
        }
      }
      paint(c, v, img, ah, av, nh, nv);
    }
    for (const [r, el] of [...rowsEl.querySelectorAll(".hfv-row")].entries()) colourbar(el, s.rows[r]);
    readout(cur);
    root.dataset.cursor = st.cursor.map((x) => x.toFixed(1)).join(",");
    root.dataset.zoom = String(st.zoom);
  }
  const swap = (ijk, a, value) => { const t = ijk.slice(); t[a] = value; return t; };

  function paint(c, v, img, ah, av, nh, nv) {
    const s = sc();
    const off = st.off || (st.off = document.createElement("canvas"));
    off.width = nh; off.height = nv;
    off.getContext("2d").putImageData(img, 0, 0);
    const ctx = c.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "black"; ctx.fillRect(0, 0, c.width, c.height);
    ctx.imageSmoothingEnabled = true;
    const [x0, y0] = screen(v, world(ah, -0.5), world(av, nv - 0.5));
    const [x1, y1] = screen(v, world(ah, nh - 0.5), world(av, -0.5));
    ctx.save();
    if (x1 < x0) { ctx.translate(x0, 0); ctx.scale(-1, 1); ctx.drawImage(off, 0, y0, x0 - x1, y1 - y0); }
    else ctx.drawImage(off, x0, y0, x1 - x0, y1 - y0);
    ctx.restore();
    const [cx, cy] = screen(v, st.cursor[ah], st.cursor[av]);
    ctx.strokeStyle = CROSS; ctx.globalAlpha = 0.8; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(cx, 0); ctx.lineTo(cx, c.height); ctx.moveTo(0, cy); ctx.lineTo(c.width, cy); ctx.stroke();
    ctx.globalAlpha = 1; ctx.fillStyle = "white"; ctx.font = "bold 13px sans-serif";
    const [name, , , as] = VIEWS[v];
    const lr = v === 2 ? ["A", "P"] : s.view.radiological ? ["R", "L"] : ["L", "R"];
    ctx.textBaseline = "middle";
    ctx.fillText(lr[0], 4, c.height / 2);
    ctx.fillText(lr[1], c.width - 14, c.height / 2);
    ctx.fillText(v === 0 ? "A" : "S", c.width / 2 - 4, 12);
    ctx.font = "12px sans-serif";
    ctx.fillText(`${name} · ${AXIS[as]} = ${fmt(st.cursor[as])} mm`, 4, c.height - 10);
  }

  function colourbar(el, row) {
    const c = el.querySelector(".hfv-cbar"), ctx = c.getContext("2d");
    const w = c.width, h = c.height;
    for (let x = 0; x < w; x++) {
      const f = x / (w - 1);
      const v = row.sign === "both" ? (2 * f - 1) * row.vmax : row.sign === "negative" ? -f * row.vmax : f * row.vmax;
      const col = colour(row, v === 0 ? 1e-30 : v);
      ctx.fillStyle = col ? `rgb(${col[0]},${col[1]},${col[2]})` : "#333";
      ctx.fillRect(x, 0, 1, h);
    }
    const ends = row.sign === "both" ? [-row.vmax, row.vmax] : row.sign === "negative" ? [0, -row.vmax] : [0, row.vmax];
    el.querySelector(".hfv-clabel").textContent =
      `${fmt(ends[0])} … ${fmt(ends[1])} · ${row.label} · hidden: |value| < ${fmt(row.threshold)} (grey) · ` +
      `colours saturate at ${fmt(row.vmax)} · the map's range: ${fmt(row.range[0])} … ${fmt(row.range[1])}`;
  }

  function readout(cur) {
    const s = sc();
    const scan = st.vols.get(s.scan.id), atlas = st.vols.get(s.atlas.id);
    const o = cur[0] + s.shape[0] * (cur[1] + s.shape[1] * cur[2]);
    const [lo, hi] = s.scan.window;
    const parts = [`x = ${fmt(st.cursor[0])}, y = ${fmt(st.cursor[1])}, z = ${fmt(st.cursor[2])} mm`,
                   `scan ≈ ${fmt(lo + (scan[o] / 255) * (hi - lo))}`];
    for (const row of s.rows) parts.push(`${row.title} ${fmt(valueAt(row, st.vols.get(row.id), ...cur))}`);
    parts.push(s.atlas.names[atlas[o]] || "no atlas label");
    readoutEl.textContent = parts.join(" · ");
  }

  function setCursor(v, c, e) {
    const [h, vv] = unscreen(v, e.offsetX * (c.width / c.clientWidth), e.offsetY * (c.height / c.clientHeight));
    const [, ah, av] = VIEWS[v];
    st.cursor[ah] = world(ah, idx(ah, h));
    st.cursor[av] = world(av, idx(av, vv));
    draw();
  }
  function down(e, v, c) {
    c.setPointerCapture(e.pointerId);
    if (e.button === 0 && !e.shiftKey) { st.drag = { kind: "cursor", v }; setCursor(v, c, e); }
    else st.drag = { kind: "pan", v, x: e.clientX, y: e.clientY, centre: st.centre.slice() };
  }
  function move(e, v, c) {
    if (!st.drag || st.drag.v !== v) return;
    if (st.drag.kind === "cursor") return setCursor(v, c, e);
    const [, ah, av] = VIEWS[v];
    const S = st.size.fit * st.zoom, sgn = flipped(v) ? -1 : 1;
    st.centre[ah] = st.drag.centre[ah] - (e.clientX - st.drag.x) / (sgn * S);
    st.centre[av] = st.drag.centre[av] + (e.clientY - st.drag.y) / S;
    draw();
  }
  function up(e, c) {
    if (c.hasPointerCapture(e.pointerId)) c.releasePointerCapture(e.pointerId);
    if (st.drag) { st.drag = null; report(); }
  }
  function wheel(e, v) {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) zoomBy(e.deltaY < 0 ? 1.25 : 0.8);
    else {
      const as = VIEWS[v][3];
      st.cursor[as] = world(as, idx(as, st.cursor[as]) + (e.deltaY < 0 ? 1 : -1));
      draw();
    }
    report();
  }
  function zoomBy(f) { st.zoom = Math.max(1, Math.min(16, st.zoom * f)); draw(); }
  root.querySelector(".hfv-bar").addEventListener("click", (e) => {
    const z = e.target.dataset && e.target.dataset.z;
    if (!z) return;
    if (z === "reset") { st.zoom = 1; st.centre = gridCentre(); draw(); }
    else zoomBy(z === "in" ? 1.5 : 1 / 1.5);
    report();
  });
  const gridCentre = () => [0, 1, 2].map((a) => world(a, (sc().shape[a] - 1) / 2));

  function report() { // the view back to Python (a rerun there), once the interaction settles
    clearTimeout(st.timer);
    st.timer = setTimeout(() => {
      if (st.setState) st.setState("view", { cursor: st.cursor.slice(), centre: st.centre.slice(), zoom: st.zoom });
    }, 250);
  }

  async function update(scene) {
    const token = ++st.token;
    const rows = scene.rows;
    await volume(scene.scan, "u8");
    await volume(scene.atlas, scene.atlas.names.length > 255 ? "u16" : "u8");
    for (const row of rows) await volume(row, "i16");
    if (scene.truth) await volume(scene.truth, "i16");
    if (token !== st.token) return; // a newer scene arrived meanwhile
    for (const row of rows) row.lutBytes = Uint8Array.from(atob(row.lut), (ch) => ch.charCodeAt(0));
    const rebuild = !st.scene || JSON.stringify(st.scene.rows.map((r) => r.title)) !== JSON.stringify(rows.map((r) => r.title)) ||
      JSON.stringify(st.scene.shape) !== JSON.stringify(scene.shape);
    st.scene = scene;
    if (scene.view.revision !== st.revision) { // Python set the view (a link, a new subject, a peak button)
      st.revision = scene.view.revision;
      st.cursor = scene.view.cursor ? scene.view.cursor.slice() : gridCentre();
      st.centre = scene.view.centre ? scene.view.centre.slice() : gridCentre();
      st.zoom = scene.view.zoom || 1;
    }
    if (rebuild) build();
    draw();
    root.dataset.ready = String(st.revision);
  }
  return { st, update };
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let root = parentElement.querySelector(".hfv");
  if (!root) {
    root = document.createElement("div");
    root.className = "hfv";
    parentElement.appendChild(root);
    root.viewer = makeViewer(root);
  }
  root.viewer.st.setState = setStateValue;
  if (data) root.viewer.update(data);
}
