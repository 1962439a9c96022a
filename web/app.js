// gmserve's web page: plain JavaScript over the public API, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
let models = [];          // GET /v1/models
const typical = {};       // model name -> {lo, hi, source}

// ---- API -------------------------------------------------------------------
// Every call goes through here: the API key when given, and the API's own
// error message ({"error": {"status", "message"}}, as every API error) when it fails.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  const key = $('api-key').value.trim();
  if (key) headers.Authorization = 'Bearer ' + key;
  const reply = await fetch(path, Object.assign({}, options, { headers }));
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    try {
      const body = await reply.json();
      if (body.error && body.error.message) message = `${reply.status}: ${body.error.message}`;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return reply;
}

const postJSON = (path, body) =>
  api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json());

function showError(err) {
  const box = $('error');
  box.textContent = err ? err.message : '';
  box.hidden = !err;
}

// Runs fn with every control of the section disabled, showing its error.
async function withBusy(section, fn) {
  const controls = [...section.querySelectorAll('button, input, select')].filter((c) => !c.disabled);
  controls.forEach((c) => { c.disabled = true; });
  section.setAttribute('aria-busy', 'true');
  try {
    showError(null);
    await fn();
  } catch (err) {
    showError(err);
  } finally {
    controls.forEach((c) => { c.disabled = false; });
    section.removeAttribute('aria-busy');
  }
}

const modelByName = (name) => models.find((m) => m.name === name);
const pngSrc = (b64) => 'data:image/png;base64,' + b64;
const fmt = (x, digits = 2) => (x === null || x === undefined ? '—' : Number(x).toFixed(digits));

// ---- Models ----------------------------------------------------------------
function modelCard(m) {
  const card = document.createElement('article');
  card.className = 'card';
  const facts = [
    ['family', m.family],
    ['image', `${m.image.height}×${m.image.width}×${m.image.channels}`],
    ['latent', m.latent_dim || '—'],
    ['operations', m.operations.join(', ')],
  ];
  if (m.num_classes) facts.push(['classes', m.class_names.join(', ')]);
  for (const [k, v] of Object.entries(m.metadata || {})) {
    if (['gm.format', 'gm.family', 'gm.image', 'gm.latent_dim', 'gm.class_names', 'gm.num_classes'].includes(k)) continue;
    facts.push([k.replace(/^gm\./, ''), v]);
  }
  const h = document.createElement('h3');
  h.textContent = m.name;
  card.append(h, factList(facts));
  return card;
}

// Metadata values that are JSON objects (training, metrics) fold into a
// <details> with one line per field; numbers get 4 significant digits.
const plain = (v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v);
function factList(facts) {
  const dl = document.createElement('dl');
  for (const [k, v] of facts) {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      summary.textContent = `${Object.keys(v).length} fields`;
      details.append(summary, factList(Object.entries(v)));
      dd.append(details);
    } else {
      dd.textContent = Array.isArray(v) ? v.map(plain).join(', ') : String(plain(v));
    }
    dl.append(dt, dd);
  }
  return dl;
}

function fillSelect(select, names) {
  select.replaceChildren(...names.map((n) => new Option(n, n)));
}

// ---- Gallery ---------------------------------------------------------------
function onSampleModel() {
  const m = modelByName($('s-model').value);
  document.body.classList.toggle('has-cond', !!m.num_classes);
  document.body.classList.toggle('is-gan', m.family === 'gan');
  document.body.classList.toggle('is-vae', m.family === 'vae');
  const label = $('s-label');
  label.replaceChildren(new Option('random', ''), ...(m.class_names || []).map((n, i) => new Option(n, String(i))));
}

async function sample() {
  const m = modelByName($('s-model').value);
  const body = { n: Number($('s-n').value), temperature: Number($('s-temp').value), scale: Number($('s-scale').value), format: 'json' };
  if ($('s-seed').value !== '') body.seed = Number($('s-seed').value);
  if (m.num_classes && $('s-label').value !== '') body.label = Number($('s-label').value);
  if (m.family === 'gan' && Number($('s-trunc').value) > 0) body.truncation = Number($('s-trunc').value);
  if (m.family === 'vae') body.mode = $('s-mode').value;
  const reply = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/sample`, body);
  $('s-seed').value = reply.seed;
  const gallery = $('gallery');
  gallery.replaceChildren(...reply.images.map((img, i) => {
    const a = document.createElement('a');
    a.href = pngSrc(img.png);
    a.download = `${m.name}-seed${reply.seed}-${i}.png`;
    const el = document.createElement('img');
    el.src = a.href;
    const what = [img.class, img.logp !== undefined ? `log p ${fmt(img.logp)} nats` : ''].filter(Boolean).join(', ');
    el.alt = `${m.name} sample ${i + 1}${what ? ' (' + what + ')' : ''}`;
    el.title = el.alt;
    a.append(el);
    return a;
  }));
}

// ---- Scoring ---------------------------------------------------------------
const pad = $('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });

function clearPad() {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
}

// A white line on canvas c (its 2D context g), brush in pixels of a 28-wide image.
function stroke(c, g, from, to, brush) {
  g.strokeStyle = '#fff';
  g.lineCap = 'round';
  g.lineWidth = brush * c.width / 28;
  g.beginPath();
  g.moveTo(from[0], from[1]);
  g.lineTo(to[0], to[1]);
  g.stroke();
}

// Mouse, touch and pen drawing on a canvas; onEnd runs after each stroke.
function drawable(c, g, brush, onEnd) {
  let at = null;
  const point = (ev) => {
    const r = c.getBoundingClientRect();
    return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height];
  };
  c.addEventListener('pointerdown', (ev) => {
    c.setPointerCapture(ev.pointerId);
    at = point(ev);
    stroke(c, g, at, at, brush());
  });
  c.addEventListener('pointermove', (ev) => {
    if (!at) return;
    const p = point(ev);
    stroke(c, g, at, p, brush());
    at = p;
  });
  const end = () => {
    if (!at) return;
    at = null;
    onEnd();
  };
  c.addEventListener('pointerup', end);
  c.addEventListener('pointercancel', end);
}

function scorable() {
  return models.filter((m) => m.operations.includes('logp') && m.image.channels === 1 &&
    m.image.height === pad.height && m.image.width === pad.width);
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
}

// The typical log p of a model: its file's test figure when stored, else the
// 5th-95th percentile of 32 of its own samples' scores.
async function typicalRange(m) {
  if (typical[m.name]) return typical[m.name];
  const metrics = (m.metadata || {})['gm.metrics'];
  if (metrics && typeof metrics === 'object' && metrics.test_nll_nats !== undefined) {
    typical[m.name] = { text: `test NLL ${fmt(metrics.test_nll_nats, 1)} nats`, lo: -Infinity };
    return typical[m.name];
  }
  const s = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/sample`, { n: 32, seed: 12345, format: 'json' });
  let scores = s.images.map((i) => i.logp);
  if (scores.some((x) => x === undefined)) {
    const r = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/logp`, { images: s.images.map((i) => ({ png: i.png })), k: 100 });
    scores = r.results.map((x) => x.logp);
  }
  scores.sort((a, b) => a - b);
  const lo = percentile(scores, 0.05);
  const hi = percentile(scores, 0.95);
  typical[m.name] = { text: `${fmt(lo, 1)} to ${fmt(hi, 1)} nats (own samples)`, lo };
  return typical[m.name];
}

async function score() {
  const blob = await new Promise((resolve) => pad.toBlob(resolve, 'image/png'));
  const rows = [];
  for (const m of scorable()) {
    const k = m.exact_logp ? '' : `?k=${$('pad-k').value}`;
    const reply = await api(`/v1/models/${encodeURIComponent(m.name)}/logp${k}`,
      { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: blob }).then((r) => r.json());
    const r = reply.results[0];
    const t = await typicalRange(m);
    const how = reply.method === 'exact' ? 'exact' : `K = ${reply.k}${r.se !== undefined ? ', ± ' + fmt(r.se) : ''}`;
    rows.push([`${m.name} (${how})`, r.logp, r.bits_per_dim, t]);
  }
  const tbody = $('scores').querySelector('tbody');
  tbody.replaceChildren(...rows.map(([name, logp, bpd, t]) => {
    const tr = document.createElement('tr');
    const cells = [name, fmt(logp), fmt(bpd, 3), t.text];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    tr.dataset.model = name;
    if (logp < t.lo) {
      tr.children[1].classList.add('unusual');
      tr.children[1].title = 'below the typical range: unusual for this model';
    }
    return tr;
  }));
}

function setupPad() {
  clearPad();
  drawable(pad, ctx, () => Number($('pad-brush').value), () => withBusy($('score-section'), score));
  $('pad-clear').addEventListener('click', () => { clearPad(); withBusy($('score-section'), score); });
  $('pad-invert').addEventListener('click', () => {
    const img = ctx.getImageData(0, 0, pad.width, pad.height);
    for (let i = 0; i < img.data.length; i += 4) for (let c = 0; c < 3; c++) img.data[i + c] = 255 - img.data[i + c];
    ctx.putImageData(img, 0, 0);
    withBusy($('score-section'), score);
  });
  $('pad-k').addEventListener('change', () => withBusy($('score-section'), score));
  $('pad-upload').addEventListener('change', async (ev) => {
    if (await drawFile(pad, ctx, ev.target.files[0], true)) withBusy($('score-section'), score);
  });
}

// An uploaded picture drawn on canvas c (context g), scaled to fit, in gray
// when gray is set; false when there is none or it cannot be read.
async function drawFile(c, g, file, gray) {
  if (!file) return false;
  const bitmap = await createImageBitmap(file).catch(() => null);
  if (!bitmap) {
    showError(new Error(`cannot read ${file.name} as an image`));
    return false;
  }
  g.fillStyle = '#000';
  g.fillRect(0, 0, c.width, c.height);
  g.drawImage(bitmap, 0, 0, c.width, c.height); // scaled to the model's size
  const img = g.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < img.data.length; i += 4) {
    if (gray) {
      const v = 0.299 * img.data[i] + 0.587 * img.data[i + 1] + 0.114 * img.data[i + 2];
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    }
    img.data[i + 3] = 255;
  }
  g.putImageData(img, 0, 0);
  return true;
}

// ---- Completion ------------------------------------------------------------
// The start image is drawn, or sampled from the model; the rows above the
// slider's line are sent as kept (rows=R) with the image as image/png.
const cpad = $('c-pad');
const cctx = cpad.getContext('2d', { willReadFrequently: true });

function onCompleteModel() {
  const m = modelByName($('c-model').value);
  cpad.width = m.image.width;
  cpad.height = m.image.height;
  clearStart();
  const rows = $('c-rows');
  rows.max = String(m.image.height);
  rows.value = String(Math.floor(m.image.height / 2));
  showCut();
}

function clearStart() {
  cctx.fillStyle = '#000';
  cctx.fillRect(0, 0, cpad.width, cpad.height);
}

function showCut() {
  const h = cpad.height;
  const r = Number($('c-rows').value);
  $('c-rows-out').textContent = `${r} of ${h}`;
  $('c-cut').style.top = `${100 * r / h}%`;
}

// One sample of model `name` for `seed`, drawn on canvas c (context g).
async function drawSample(name, seed, c, g) {
  const s = await postJSON(`/v1/models/${encodeURIComponent(name)}/sample`, { n: 1, seed, format: 'json' });
  const img = new Image();
  img.src = pngSrc(s.images[0].png);
  await img.decode();
  g.drawImage(img, 0, 0, c.width, c.height);
}

const sampleStart = () => drawSample($('c-model').value, Number($('c-start-seed').value), cpad, cctx);

async function completeImage() {
  const m = modelByName($('c-model').value);
  const blob = await new Promise((resolve) => cpad.toBlob(resolve, 'image/png'));
  const q = new URLSearchParams({ rows: $('c-rows').value, n: $('c-n').value, temperature: $('c-temp').value, scale: '3' });
  if ($('c-seed').value !== '') q.set('seed', $('c-seed').value);
  const reply = await api(`/v1/models/${encodeURIComponent(m.name)}/complete?${q}`,
    { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: blob }).then((r) => r.json());
  $('c-seed').value = reply.seed;
  $('completions').replaceChildren(...reply.images.map((img, i) => {
    const fig = document.createElement('figure');
    const el = document.createElement('img');
    el.src = pngSrc(img.png);
    el.alt = `completion ${i + 1}: log p ${fmt(img.logp)} nats, ${fmt(img.logp_completion)} nats for the drawn part`;
    el.title = el.alt;
    const cap = document.createElement('figcaption');
    const lp = document.createElement('span');
    lp.className = 'lp';
    lp.textContent = fmt(img.logp);
    const lpc = document.createElement('span');
    lpc.className = 'lpc';
    lpc.textContent = fmt(img.logp_completion);
    cap.append(lp, document.createElement('br'), '(', lpc, ')');
    fig.append(el, cap);
    return fig;
  }));
}

function setupCompletion(completers) {
  $('complete-section').hidden = completers.length === 0;
  if (!completers.length) return;
  fillSelect($('c-model'), completers);
  onCompleteModel();
  const section = $('complete-section');
  const run = (fn) => withBusy(section, fn);
  drawable(cpad, cctx, () => 2, () => run(completeImage));
  $('c-model').addEventListener('change', () => { onCompleteModel(); run(async () => { await sampleStart(); await completeImage(); }); });
  $('c-sample').addEventListener('click', () => run(async () => { await sampleStart(); await completeImage(); }));
  $('c-clear').addEventListener('click', () => { clearStart(); run(completeImage); });
  $('c-rows').addEventListener('input', showCut);
  $('c-rows').addEventListener('change', () => run(completeImage));
  $('complete-form').addEventListener('submit', (ev) => { ev.preventDefault(); run(completeImage); });
  return run(async () => { await sampleStart(); await completeImage(); });
}

// ---- Translation -----------------------------------------------------------
// The source image is drawn, uploaded, or sampled from a model of the same
// image shape; a StarGAN translates it to one target class or to every
// class (one JSON request, the image once per class), a CycleGAN forward or
// in reverse (direction).
const tpad = $('t-pad');
const tctx = tpad.getContext('2d', { willReadFrequently: true });

const sameImage = (a, b) => a.image.height === b.image.height && a.image.width === b.image.width &&
  a.image.channels === b.image.channels;

function clearSource() {
  tctx.fillStyle = '#000';
  tctx.fillRect(0, 0, tpad.width, tpad.height);
}

function onTranslateModel() {
  const m = modelByName($('t-model').value);
  tpad.width = m.image.width;
  tpad.height = m.image.height;
  clearSource();
  document.body.classList.toggle('t-has-cond', !!m.num_classes);
  document.body.classList.toggle('t-has-dir', !!m.domains);
  const names = m.class_names || [];
  $('t-label').replaceChildren(new Option('every class', 'all'),
    ...names.map((n, i) => new Option(n || `class ${i}`, String(i))));
  const dir = $('t-direction');
  dir.replaceChildren(...(m.domains ? [new Option(`${m.domains[0]} → ${m.domains[1]}`, 'forward'),
    new Option(`${m.domains[1]} → ${m.domains[0]}`, 'reverse')] : []));
  const sources = models.filter((s) => s.operations.includes('sample') && sameImage(s, m)).map((s) => s.name);
  fillSelect($('t-source'), sources);
  document.querySelectorAll('.t-from').forEach((el) => { el.hidden = sources.length === 0; });
  $('t-how').textContent = m.num_classes
    ? 'The translator maps the image to the target class (every class: one image each). Draw, upload or sample a new source to translate it again.'
    : m.domains
      ? `The translator maps the image from ${m.domains[0]} to ${m.domains[1]} (forward) or back (reverse).`
      : 'The translator maps the image to its target domain.';
}

async function sampleSource() {
  if ($('t-source').value) await drawSample($('t-source').value, Number($('t-start-seed').value), tpad, tctx);
}

async function translateImage() {
  const m = modelByName($('t-model').value);
  const blob = await new Promise((resolve) => tpad.toBlob(resolve, 'image/png'));
  const path = `/v1/models/${encodeURIComponent(m.name)}/translate`;
  let reply;
  if (m.num_classes && $('t-label').value === 'all') {
    const png = await new Promise((resolve) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result).split(',')[1]);
      r.readAsDataURL(blob);
    });
    const labels = [...Array(m.num_classes).keys()];
    reply = await postJSON(path, { images: labels.map(() => ({ png })), label: labels, scale: 4, format: 'json' });
  } else {
    const q = new URLSearchParams({ scale: '4', format: 'json' });
    if (m.num_classes) q.set('label', $('t-label').value);
    if (m.domains) q.set('direction', $('t-direction').value);
    reply = await api(`${path}?${q}`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: blob })
      .then((r) => r.json());
  }
  $('translations').replaceChildren(...reply.images.map((img) => {
    const fig = document.createElement('figure');
    const el = document.createElement('img');
    el.src = pngSrc(img.png);
    const to = img.class || (img.label !== undefined ? `class ${img.label}` : reply.domain || 'the target domain');
    el.alt = `the image translated to ${to}`;
    el.title = el.alt;
    const cap = document.createElement('figcaption');
    cap.textContent = to;
    fig.append(el, cap);
    return fig;
  }));
}

function setupTranslation(translators) {
  $('translate-section').hidden = translators.length === 0;
  if (!translators.length) return;
  fillSelect($('t-model'), translators);
  onTranslateModel();
  const section = $('translate-section');
  const run = (fn) => withBusy(section, fn);
  const fresh = () => run(async () => { await sampleSource(); await translateImage(); });
  drawable(tpad, tctx, () => 2, () => run(translateImage));
  $('t-model').addEventListener('change', () => { onTranslateModel(); fresh(); });
  $('t-sample').addEventListener('click', fresh);
  $('t-clear').addEventListener('click', () => { clearSource(); run(translateImage); });
  $('t-upload').addEventListener('change', async (ev) => {
    const m = modelByName($('t-model').value);
    if (await drawFile(tpad, tctx, ev.target.files[0], m.image.channels === 1)) run(translateImage);
  });
  $('t-label').addEventListener('change', () => run(translateImage));
  $('t-direction').addEventListener('change', () => run(translateImage));
  $('translate-form').addEventListener('submit', (ev) => { ev.preventDefault(); run(translateImage); });
  return fresh();
}

// ---- Latent interpolation -------------------------------------------------
// GAN latents are drawn here from the seeds (mulberry32 + Box-Muller), so
// "seed A" means the same z on every visit; VAE latents, and those of an
// AAE whose prior is a mixture (N(0, I) would start between its
// components), come from encoding the model's own samples for seeds A and B.
function normals(seed, n) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const z = [];
  while (z.length < n) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const th = 2 * Math.PI * uniform();
    z.push(r * Math.cos(th), r * Math.sin(th));
  }
  return z.slice(0, n);
}

// An AAE's classes are its mixture prior's components: its decoder takes no label.
function decodesLabel(m) {
  return !!m.num_classes && m.metadata['gm.prior'] !== 'mixture';
}

// Whether the walk's ends are the codes of the model's own samples.
function encodesEnds(m) {
  return m.family === 'vae' || (m.family === 'aae' && m.metadata['gm.prior'] === 'mixture');
}

function onExploreModel() {
  const m = modelByName($('e-model').value);
  document.body.classList.toggle('e-has-cond', decodesLabel(m));
  fillSelect($('e-label'), m.class_names || []);
  const what = m.family === 'vae' ? 'latent means' : 'codes';
  $('e-how').textContent = encodesEnds(m)
    ? `Seeds A and B pick two of the ${m.family.toUpperCase()}'s samples; both are encoded, and the straight line between their ${what} is decoded.`
    : 'Seeds A and B draw two latent vectors z ~ N(0, I) in this page; the straight line between them is decoded.';
}

async function latentFor(m, seed) {
  if (!encodesEnds(m)) return normals(seed, m.latent_dim);
  const s = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/sample`, { n: 1, seed, format: 'json' });
  const e = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/encode`, { images: [{ png: s.images[0].png }] });
  return e.results[0].z;
}

async function interpolate() {
  const m = modelByName($('e-model').value);
  const steps = Math.max(2, Math.min(32, Number($('e-steps').value)));
  const za = await latentFor(m, Number($('e-a').value));
  const zb = await latentFor(m, Number($('e-b').value));
  const latents = [];
  for (let i = 0; i < steps; i++) {
    const t = i / (steps - 1);
    latents.push(za.map((a, j) => (1 - t) * a + t * zb[j]));
  }
  const body = { latents, scale: 3, format: 'json' };
  if (decodesLabel(m)) body.label = Number($('e-label').selectedIndex);
  const reply = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/decode`, body);
  const strip = $('strip');
  strip.replaceChildren(...reply.images.map((img, i) => {
    const el = document.createElement('img');
    el.src = pngSrc(img.png);
    el.alt = `step ${i + 1} of ${steps}`;
    return el;
  }));
  const walk = $('e-walk');
  walk.max = String(steps - 1);
  walk.value = '0';
  walk.disabled = false;
  showWalk();
}

function showWalk() {
  const imgs = $('strip').querySelectorAll('img');
  const i = Number($('e-walk').value);
  if (!imgs[i]) return;
  $('e-big').src = imgs[i].src;
  $('e-big').alt = `interpolation step ${i + 1} of ${imgs.length}`;
  $('e-big').hidden = false;
  imgs.forEach((img, j) => { img.style.outline = j === i ? '2px solid #f0a30a' : ''; });
}

// ---- InfoGAN codes ----------------------------------------------------------
// For a GAN with a categorical code (cat_dim) or continuous codes (code_dim):
// a category picker and one slider per code over -2..2 (the codes were
// trained on -1..1). z comes from the seed (normals, above), so each change
// decodes the same z with the new codes; a reply that a newer change has
// overtaken is dropped.
let infoganAsked = 0;

function onInfoganModel() {
  const m = modelByName($('i-model').value);
  document.body.classList.toggle('i-cat', m.cat_dim > 0);
  $('i-cat').replaceChildren(...Array.from({ length: m.cat_dim || 0 }, (_, k) => new Option(`category ${k}`, String(k))));
  $('i-codes').replaceChildren(...Array.from({ length: m.code_dim || 0 }, (_, j) => {
    const label = document.createElement('label');
    label.className = 'slider';
    const input = document.createElement('input');
    Object.assign(input, { type: 'range', id: `i-code-${j}`, min: '-2', max: '2', step: '0.1', value: '0' });
    const out = document.createElement('output');
    out.id = `i-code-${j}-out`;
    out.textContent = '0.0';
    input.addEventListener('input', () => { out.textContent = Number(input.value).toFixed(1); updateInfogan(); });
    label.append(`Code ${j + 1}`, input, out);
    return label;
  }));
}

async function updateInfogan() {
  const asked = ++infoganAsked;
  const m = modelByName($('i-model').value);
  const body = { latents: [normals(Number($('i-seed').value), m.latent_dim)], scale: 6, format: 'json' };
  if (m.cat_dim) body.cat = Number($('i-cat').value);
  if (m.code_dim) body.code = Array.from({ length: m.code_dim }, (_, j) => Number($(`i-code-${j}`).value));
  try {
    const reply = await postJSON(`/v1/models/${encodeURIComponent(m.name)}/decode`, body);
    if (asked !== infoganAsked) return;
    showError(null);
    const img = $('i-img');
    img.src = pngSrc(reply.images[0].png);
    img.alt = `${m.name}: ${m.cat_dim ? 'category ' + body.cat + ', ' : ''}codes ${(body.code || []).join(', ')}`;
    img.hidden = false;
  } catch (err) {
    if (asked === infoganAsked) showError(err);
  }
}

function setupInfogan() {
  const infogans = models.filter((m) => m.family === 'gan' && (m.cat_dim > 0 || m.code_dim > 0) &&
    m.operations.includes('decode')).map((m) => m.name);
  $('infogan-section').hidden = infogans.length === 0;
  if (!infogans.length) return null;
  fillSelect($('i-model'), infogans);
  onInfoganModel();
  $('i-model').addEventListener('change', () => { onInfoganModel(); updateInfogan(); });
  $('i-cat').addEventListener('change', updateInfogan);
  $('i-seed').addEventListener('change', updateInfogan);
  $('infogan-form').addEventListener('submit', (ev) => { ev.preventDefault(); updateInfogan(); });
  return updateInfogan();
}

// ---- Start -----------------------------------------------------------------
async function start() {
  const reply = await api('/v1/models').then((r) => r.json());
  models = reply.models;
  $('models').replaceChildren(...models.map(modelCard));
  const samplers = models.filter((m) => m.operations.includes('sample')).map((m) => m.name);
  fillSelect($('s-model'), samplers);
  onSampleModel();
  // an InfoGAN's decode needs its category: it has a panel of its own
  const decoders = models.filter((m) => m.operations.includes('decode') && !m.cat_dim).map((m) => m.name);
  fillSelect($('e-model'), decoders);
  $('explore-section').hidden = decoders.length === 0;
  if (decoders.length) onExploreModel();
  const first = scorable()[0] || models.find((m) => m.operations.includes('logp'));
  if (first) {
    pad.width = first.image.width;
    pad.height = first.image.height;
  } else {
    $('score-section').hidden = true;
  }
  setupPad();
  const completing = setupCompletion(models.filter((m) => m.operations.includes('complete')).map((m) => m.name));
  const translating = setupTranslation(models.filter((m) => m.operations.includes('translate')).map((m) => m.name));
  $('s-model').addEventListener('change', onSampleModel);
  $('e-model').addEventListener('change', onExploreModel);
  $('sample-form').addEventListener('submit', (ev) => { ev.preventDefault(); withBusy($('gallery-section'), sample); });
  $('s-new-seed').addEventListener('click', () => {
    $('s-seed').value = String(Math.floor(Math.random() * 2 ** 31));
    withBusy($('gallery-section'), sample);
  });
  $('explore-form').addEventListener('submit', (ev) => { ev.preventDefault(); withBusy($('explore-section'), interpolate); });
  $('e-walk').addEventListener('input', showWalk);
  await Promise.all([withBusy($('gallery-section'), sample), completing, translating, setupInfogan()]);
}

start().catch(showError);
