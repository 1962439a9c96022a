// The web page in real headless chromium against a live gmserve: it loads
// without console errors, samples show decoded images of the right size, the
// seed fixes them, drawing updates both log p figures, completions keep the
// given rows, translations reach every class and both directions, the
// interpolation strip fills, the InfoGAN's sliders and
// category redraw its image, an API error reaches the
// person in the API's words, and the page's origin serves the API's
// OpenAPI description.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const url = process.env.GMSERVE_URL;
const shots = process.env.SHOTS;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const results = [];
async function check(name, fn) {
  try {
    await fn();
    results.push(['ok', name]);
    console.log(`ok - ${name}`);
  } catch (err) {
    results.push(['FAIL', name]);
    console.log(`not ok - ${name}\n  ${String(err.stack || err).split('\n').join('\n  ')}`);
  }
}

const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

const gallerySrcs = () => page.$$eval('#gallery img', (imgs) => imgs.map((i) => i.src));
const waitIdle = (section) => page.waitForFunction((s) => !document.getElementById(s).hasAttribute('aria-busy'), section);

await page.goto(url + '/');
await page.waitForSelector('#gallery img');
await waitIdle('gallery-section');

await check('the page lists the models', async () => {
  const cards = await page.$$eval('#models .card h3', (hs) => hs.map((h) => h.textContent));
  assert.deepEqual(cards.sort(), ['aae', 'cyc', 'gan', 'infogan', 'nade', 'star', 'vae']);
});

await check('sampling shows decoded images at 28 x scale', async () => {
  await page.selectOption('#s-model', 'vae');
  await page.fill('#s-n', '6');
  await page.fill('#s-seed', '7');
  await page.selectOption('#s-scale', '4');
  await page.click('#s-go');
  await waitIdle('gallery-section');
  const widths = await page.$$eval('#gallery img', (imgs) => imgs.map((i) => [i.complete, i.naturalWidth]));
  assert.equal(widths.length, 6);
  for (const [complete, w] of widths) assert.ok(complete && w === 28 * 4, `naturalWidth ${w}`);
  await page.screenshot({ path: `${shots}/gallery.png`, fullPage: true });
});

await check('a new seed changes the images and the old seed restores them', async () => {
  const first = await gallerySrcs();
  await page.fill('#s-seed', '8');
  await page.click('#s-go');
  await waitIdle('gallery-section');
  const second = await gallerySrcs();
  assert.notDeepEqual(second, first);
  await page.fill('#s-seed', '7');
  await page.click('#s-go');
  await waitIdle('gallery-section');
  assert.deepEqual(await gallerySrcs(), first);
});

await check('the conditional GAN shows its classes', async () => {
  await page.selectOption('#s-model', 'gan');
  assert.ok(await page.isVisible('#s-label'));
  const classes = await page.$$eval('#s-label option', (o) => o.length);
  assert.equal(classes, 1 + 10); // "any" and the ten Fashion-MNIST classes
  await page.selectOption('#s-model', 'vae');
});

await check('the adversarial autoencoder samples in the gallery by class (its mixture prior\'s components)', async () => {
  await page.selectOption('#s-model', 'aae');
  assert.ok(await page.isVisible('#s-label'));
  assert.ok(await page.isHidden('#s-trunc'));
  await page.selectOption('#s-label', { label: 'sneaker' });
  const bodies = [];
  const seen = (req) => { if (req.url().endsWith('/v1/models/aae/sample')) bodies.push(JSON.parse(req.postData())); };
  page.on('request', seen);
  await page.fill('#s-n', '4');
  await page.click('#s-go');
  await waitIdle('gallery-section');
  page.off('request', seen);
  assert.equal(bodies[bodies.length - 1].label, 7);
  await page.selectOption('#s-label', '');
  const widths = await page.$$eval('#gallery img', (imgs) => imgs.map((i) => [i.complete, i.naturalWidth]));
  assert.equal(widths.length, 4);
  for (const [complete, w] of widths) assert.ok(complete && w > 0, `naturalWidth ${w}`);
  await page.screenshot({ path: `${shots}/aae.png`, fullPage: true });
  await page.selectOption('#s-model', 'vae');
});

await check('drawing on the canvas updates both log p figures', async () => {
  await page.locator('#pad').scrollIntoViewIfNeeded();
  const box = await page.locator('#pad').boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.2);
  await page.mouse.down();
  for (let i = 1; i <= 10; i++) await page.mouse.move(box.x + box.width * (0.3 + 0.04 * i), box.y + box.height * (0.2 + 0.06 * i));
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelectorAll('#scores tbody tr').length === 2);
  await waitIdle('score-section');
  const first = await page.$$eval('#scores tbody tr', (rows) => rows.map((r) => [r.children[0].textContent, Number(r.children[1].textContent)]));
  assert.deepEqual(first.map((r) => r[0].split(' ')[0]).sort(), ['nade', 'vae']);
  for (const [, logp] of first) assert.ok(Number.isFinite(logp) && logp < 0, `log p ${logp}`);
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.8, { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction((old) => {
    const now = [...document.querySelectorAll('#scores tbody tr')].map((r) => Number(r.children[1].textContent));
    return now.length === 2 && now.every((x, i) => x !== old[i]);
  }, first.map((r) => r[1]));
  await page.screenshot({ path: `${shots}/score.png`, fullPage: true });
});

// The kept rows of each completion, read back from its pixels, against the
// start image's (binarized at 0.5, as the NADE reads it); and log p(kept) =
// logp - logp_completion, which must be below 0.
const completionFacts = (rows) => page.evaluate((kept) => {
  const pad = document.getElementById('c-pad');
  const start = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
  const tmp = document.createElement('canvas');
  tmp.width = pad.width * 3;
  tmp.height = pad.height * 3;
  const g = tmp.getContext('2d', { willReadFrequently: true });
  return [...document.querySelectorAll('#completions figure')].map((fig) => {
    g.drawImage(fig.querySelector('img'), 0, 0);
    const px = g.getImageData(0, 0, tmp.width, tmp.height).data;
    let keptWrong = 0, restDiffers = 0;
    for (let y = 0; y < pad.height; y++) {
      for (let x = 0; x < pad.width; x++) {
        const want = start[(y * pad.width + x) * 4] >= 128 ? 255 : 0;
        const got = px[((3 * y + 1) * tmp.width + 3 * x + 1) * 4];
        if (y < kept) keptWrong += got !== want;
        else restDiffers += got !== want;
      }
    }
    return { keptWrong, restDiffers, lp: Number(fig.querySelector('.lp').textContent), lpc: Number(fig.querySelector('.lpc').textContent) };
  });
}, rows);

await check('completions keep the given rows and show their log p; the slider and the seed drive them', async () => {
  await page.locator('#c-pad').scrollIntoViewIfNeeded();
  await page.waitForSelector('#completions img');
  await waitIdle('complete-section');
  await page.fill('#c-start-seed', '5');
  await page.click('#c-sample');
  await waitIdle('complete-section');
  await page.fill('#c-n', '4');
  await page.fill('#c-seed', '9');
  await page.fill('#c-rows', '10');
  await page.dispatchEvent('#c-rows', 'input');
  assert.equal(await page.textContent('#c-rows-out'), '10 of 28');
  await page.click('#c-go');
  await waitIdle('complete-section');
  const loaded = () => page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#completions img')];
    return imgs.length === 4 && imgs.every((i) => i.complete && i.naturalWidth === 28 * 3);
  });
  await loaded();
  const facts = await completionFacts(10);
  assert.equal(facts.length, 4);
  for (const f of facts) {
    assert.equal(f.keptWrong, 0, 'a kept pixel changed');
    assert.ok(Number.isFinite(f.lp) && f.lpc <= 0 && f.lp - f.lpc < 0, `log p ${f.lp}, of the completion ${f.lpc}`);
  }
  assert.ok(facts.some((f) => f.restDiffers > 0), 'the rest was drawn, not copied');
  const srcs = () => page.$$eval('#completions img', (imgs) => imgs.map((i) => i.src));
  const first = await srcs();
  await page.fill('#c-rows', '20');
  await page.dispatchEvent('#c-rows', 'change');
  await waitIdle('complete-section');
  await loaded();
  assert.notDeepEqual(await srcs(), first);
  for (const f of await completionFacts(20)) assert.equal(f.keptWrong, 0);
  await page.fill('#c-rows', '10');
  await page.dispatchEvent('#c-rows', 'change');
  await waitIdle('complete-section');
  await loaded();
  assert.deepEqual(await srcs(), first, 'the same seed and rows give the same completions');
  await page.screenshot({ path: `${shots}/complete.png`, fullPage: true });
});

// The translations shown: [complete, naturalWidth, caption, the mean grey
// level of the image's pixels (0..255)].
const translationFacts = () => page.$$eval('#translations figure', (figs) => figs.map((fig) => {
  const img = fig.querySelector('img');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum += px[i];
  return [img.complete, img.naturalWidth, fig.querySelector('figcaption').textContent, sum / (px.length / 4)];
}));

await check('a StarGAN translates a sampled image to every class, then to one', async () => {
  await page.locator('#t-pad').scrollIntoViewIfNeeded();
  await page.waitForSelector('#translations img');
  await waitIdle('translate-section');
  await page.selectOption('#t-model', 'star');
  await waitIdle('translate-section');
  assert.ok(await page.isVisible('#t-label') && await page.isHidden('#t-direction'));
  assert.equal(await page.$$eval('#t-label option', (o) => o.length), 1 + 10); // every class, and the ten
  await page.selectOption('#t-source', 'gan');
  await page.fill('#t-start-seed', '4');
  await page.click('#t-sample');
  await waitIdle('translate-section');
  await page.waitForFunction(() => document.querySelectorAll('#translations img').length === 10 &&
    [...document.querySelectorAll('#translations img')].every((i) => i.complete && i.naturalWidth > 0));
  const every = await translationFacts();
  assert.deepEqual(every.map((f) => f[2]), [...Array(10).keys()].map((k) => `class ${k}`));
  for (const [complete, w] of every) assert.ok(complete && w === 28 * 4, `naturalWidth ${w}`);
  await page.screenshot({ path: `${shots}/translate.png`, fullPage: true });
  await page.selectOption('#t-label', '3');
  await waitIdle('translate-section');
  await page.waitForFunction(() => document.querySelectorAll('#translations img').length === 1 &&
    document.querySelector('#translations img').complete);
  const one = await translationFacts();
  assert.equal(one[0][2], 'class 3');
  assert.equal(one[0][3], every[3][3], 'the one translation to class 3 is the one among every class');
});

await check('a two-way translator goes both directions (a translator giving grey 0.5 everywhere)', async () => {
  await page.selectOption('#t-model', 'cyc');
  await waitIdle('translate-section');
  assert.ok(await page.isHidden('#t-label') && await page.isVisible('#t-direction'));
  const ways = await page.$$eval('#t-direction option', (o) => o.map((x) => x.textContent));
  assert.deepEqual(ways, ['A → B', 'B → A']);
  for (const [way, domain] of [['reverse', 'A'], ['forward', 'B']]) {
    await page.selectOption('#t-direction', way);
    await waitIdle('translate-section');
    await page.waitForFunction((d) => {
      const f = document.querySelector('#translations figcaption');
      return f && f.textContent === d && document.querySelector('#translations img').complete;
    }, domain);
    const [[complete, w, , mean]] = await translationFacts();
    assert.ok(complete && w === 28 * 4);
    assert.ok(Math.abs(mean - 127.5) <= 0.5, `mean grey ${mean}, want 0.5 of 255`);
  }
});

await check('the interpolation strip fills and the slider walks it', async () => {
  await page.selectOption('#e-model', 'vae');
  await page.fill('#e-steps', '7');
  await page.click('#e-go');
  await page.waitForFunction(() => document.querySelectorAll('#strip img').length === 7);
  await waitIdle('explore-section');
  const loaded = await page.$$eval('#strip img', (imgs) => imgs.every((i) => i.complete && i.naturalWidth === 28 * 3));
  assert.ok(loaded);
  await page.fill('#e-walk', '6');
  await page.dispatchEvent('#e-walk', 'input');
  const big = await page.getAttribute('#e-big', 'src');
  const last = await page.$$eval('#strip img', (imgs) => imgs[6].src);
  assert.equal(big, last);
  await page.selectOption('#e-model', 'gan');
  await page.click('#e-go');
  await page.waitForFunction(() => document.querySelector('#strip img') && document.querySelector('#strip img').naturalWidth === 28 * 3);
  await page.screenshot({ path: `${shots}/explore.png`, fullPage: true });
  // the AAE's prior is a mixture: the ends are the codes of two of its samples, not N(0, I) draws
  const asked = [];
  const seen = (req) => { if (req.url().includes('/v1/models/aae/')) asked.push(req.url().split('/').pop()); };
  page.on('request', seen);
  await page.selectOption('#e-model', 'aae');
  assert.match(await page.textContent('#e-how'), /samples; both are encoded/);
  await page.fill('#e-steps', '5');
  await page.click('#e-go');
  await page.waitForFunction(() => document.querySelectorAll('#strip img').length === 5 &&
    [...document.querySelectorAll('#strip img')].every((i) => i.complete && i.naturalWidth === 28 * 3));
  await waitIdle('explore-section');
  page.off('request', seen);
  assert.deepEqual(asked, ['sample', 'encode', 'sample', 'encode', 'decode']);
});

await check('the InfoGAN panel: a slider or the category changes the decode request and the image', async () => {
  await page.locator('#infogan-section').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => document.getElementById('i-img').naturalWidth === 28 * 6);
  assert.equal(await page.$$eval('#i-cat option', (o) => o.length), 10);
  assert.equal(await page.$$eval('#i-codes input[type=range]', (s) => s.length), 2);
  const bodies = [];
  const seen = (req) => { if (req.url().endsWith('/v1/models/infogan/decode')) bodies.push(JSON.parse(req.postData())); };
  page.on('request', seen);
  const src = () => page.getAttribute('#i-img', 'src');
  const changed = (old) => page.waitForFunction((o) => {
    const img = document.getElementById('i-img');
    return img.src !== o && img.complete && img.naturalWidth === 28 * 6;
  }, old);
  const before = await src();
  await page.fill('#i-code-0', '1.5');
  await page.dispatchEvent('#i-code-0', 'input');
  await changed(before);
  assert.equal(await page.textContent('#i-code-0-out'), '1.5');
  const last = bodies[bodies.length - 1];
  assert.deepEqual(last.code, [1.5, 0]);
  assert.equal(last.cat, 0);
  assert.equal(last.latents[0].length, 62);
  const afterSlider = await src();
  await page.selectOption('#i-cat', '3');
  await changed(afterSlider);
  assert.equal(bodies[bodies.length - 1].cat, 3);
  assert.deepEqual(bodies[bodies.length - 1].latents, last.latents, 'the seed keeps z');
  await page.fill('#i-code-0', '0');
  await page.dispatchEvent('#i-code-0', 'input');
  await page.selectOption('#i-cat', '0');
  await page.waitForFunction((o) => document.getElementById('i-img').src === o, before);
  page.off('request', seen);
  await page.screenshot({ path: `${shots}/infogan.png`, fullPage: true });
});

await check('an API error appears on the page in the API\'s words', async () => {
  await page.fill('#s-n', '100000');
  await page.click('#s-go');
  await page.waitForSelector('#error:not([hidden])');
  const text = await page.textContent('#error');
  assert.match(text, /^422: n = 100000 is out of range: 1 to 256 \(the server's max_n setting\)/);
  assert.ok(await page.isEnabled('#s-go'), 'controls are enabled again');
  await page.screenshot({ path: `${shots}/error.png`, fullPage: true });
  await page.fill('#s-n', '4');
  await page.click('#s-go');
  await waitIdle('gallery-section');
  assert.ok(await page.isHidden('#error'));
});

await check('controls disable while a request runs', async () => {
  await page.fill('#s-n', '64');
  await page.evaluate(() => {
    window.sawDisabled = false;
    const go = document.getElementById('s-go');
    new MutationObserver(() => { if (go.disabled) window.sawDisabled = true; }).observe(go, { attributes: true });
  });
  await page.click('#s-go');
  await waitIdle('gallery-section');
  assert.ok(await page.evaluate(() => window.sawDisabled), 'Sample was never disabled');
  assert.ok(await page.isEnabled('#s-go'));
});

await check('a narrow screen keeps the page usable', async () => {
  await page.setViewportSize({ width: 380, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px`);
  await page.screenshot({ path: `${shots}/narrow.png`, fullPage: true });
});

await check('keyboard reaches the controls', async () => {
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.focus('#api-key');
  const seen = new Set();
  // the model cards come first: each folded metadata field (<summary>) is a Tab stop
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    seen.add(await page.evaluate(() => document.activeElement.id));
  }
  for (const id of ['s-model', 's-n', 's-seed', 's-new-seed']) assert.ok(seen.has(id), `Tab never reached #${id}`);
});

await check('GET /openapi.json parses and lists the routes', async () => {
  const doc = await page.evaluate(async () => (await fetch('/openapi.json')).json());
  assert.equal(doc.openapi, '3.1.0');
  const want = ['/', '/healthz', '/readyz', '/metrics', '/openapi.json', '/v1/models', '/v1/models/{name}',
    '/v1/models/{name}/sample', '/v1/models/{name}/logp', '/v1/models/{name}/encode', '/v1/models/{name}/decode',
    '/sample', '/logp', '/encode', '/decode'];
  for (const p of want) assert.ok(doc.paths[p], `/openapi.json lists no ${p}`);
  assert.ok(doc.paths['/v1/models/{name}/sample'].get.parameters.some((p) => p.name === 'seed'));
});

await check('no console errors', async () => {
  // chromium logs every non-2xx fetch; the one 422 above was asked for
  const unexpected = consoleErrors.filter((e) => !/status of 422/.test(e));
  assert.deepEqual(unexpected, []);
  assert.equal(consoleErrors.length - unexpected.length, 1);
});

await browser.close();
const failed = results.filter((r) => r[0] !== 'ok').length;
console.log(`browser: ${results.length - failed} passed, ${failed} failed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
