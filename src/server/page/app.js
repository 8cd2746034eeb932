// sine serve's page: one image, a mask painted over it, a job on the server's API, its progress
// over Server-Sent Events, the results side by side with the source. No framework, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const key = new URLSearchParams(location.search).get('key');  // an API key given in the page URL
const authHeaders = key ? { Authorization: 'Bearer ' + key } : {};
const withKey = (url) => (key ? url + (url.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(key) : url);

async function api(method, url, body) {
  const res = await fetch(url, {
    method,
    headers: { 'Content-Type': 'application/json', ...authHeaders },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
  if (!res.ok) throw new Error((data && data.detail) || res.status + ' ' + res.statusText);
  return data;
}

// ---- an image with a mask painted over it --------------------------------------------------
function loadImageFile(file, onload) {
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => onload(img, reader.result);
    img.onerror = () => showError('cannot read ' + file.name + ' as an image');
    img.src = reader.result;
  };
  reader.readAsDataURL(file);
}

// Builds the drop zone, the two canvases and the mask tools inside `root`; element ids are
// `prefix` + file, stage, image-canvas, mask-canvas, brush, eraser, undo, redo, invert, clear,
// show-mask, export-mask, mask-file, remove-image. `title` labels the drop zone.
function createPainter(root, prefix, title, onImage) {
  const id = (name) => prefix + name;
  root.innerHTML = `
    <div id="${id('drop')}" class="drop" tabindex="0" aria-describedby="${id('drop-help')}">
      <p id="${id('drop-help')}">${title}: drop an image here, or <label class="link" for="${id('file')}">choose a file</label>.</p>
      <input type="file" id="${id('file')}" accept="image/*" class="visually-hidden">
      <div id="${id('stage')}" class="stage" hidden>
        <canvas id="${id('image-canvas')}" class="image-canvas" aria-label="${title}"></canvas>
        <canvas id="${id('mask-canvas')}" class="mask-canvas" aria-label="mask painter over the ${title}"></canvas>
      </div>
    </div>
    <div class="toolbar" id="${id('mask-tools')}" hidden>
      <label>Brush <input type="range" id="${id('brush')}" min="1" max="128" value="16"></label>
      <label><input type="checkbox" id="${id('eraser')}"> Eraser</label>
      <button type="button" id="${id('undo')}" title="Undo (Ctrl+Z)">Undo</button>
      <button type="button" id="${id('redo')}" title="Redo (Ctrl+Y)">Redo</button>
      <button type="button" id="${id('invert')}">Invert</button>
      <button type="button" id="${id('clear')}">Clear</button>
      <label><input type="checkbox" id="${id('show-mask')}" checked> Show mask</label>
      <button type="button" id="${id('export-mask')}">Export mask</button>
      <label class="button">Load mask <input type="file" id="${id('mask-file')}" accept="image/*" class="visually-hidden"></label>
      <button type="button" id="${id('remove-image')}">Remove image</button>
    </div>`;
  const imageCanvas = $(id('image-canvas')), maskCanvas = $(id('mask-canvas'));
  const imageCtx = imageCanvas.getContext('2d'), maskCtx = maskCanvas.getContext('2d');
  const undoStack = [], redoStack = [];
  const painter = { hasImage: false, dataUrl: null };

  function setImage(img, dataUrl) {
    for (const c of [imageCanvas, maskCanvas]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
    imageCtx.drawImage(img, 0, 0);
    maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    undoStack.length = 0; redoStack.length = 0;
    painter.dataUrl = dataUrl;
    painter.hasImage = true;
    $(id('stage')).hidden = false; $(id('mask-tools')).hidden = false; $(id('drop-help')).hidden = true;
    if (onImage) onImage(img);
  }
  function removeImage() {
    painter.hasImage = false; painter.dataUrl = null;
    $(id('stage')).hidden = true; $(id('mask-tools')).hidden = true; $(id('drop-help')).hidden = false;
    $(id('file')).value = '';
  }
  $(id('file')).addEventListener('change', (e) => { if (e.target.files[0]) loadImageFile(e.target.files[0], setImage); });
  const drop = $(id('drop'));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault(); drop.classList.remove('over');
    if (e.dataTransfer.files[0]) loadImageFile(e.dataTransfer.files[0], setImage);
  });
  drop.addEventListener('keydown', (e) => {
    if ((e.key === 'Enter' || e.key === ' ') && !painter.hasImage) $(id('file')).click();
  });
  $(id('remove-image')).addEventListener('click', removeImage);

  function snapshot() {
    undoStack.push(maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
    if (undoStack.length > 50) undoStack.shift();
    redoStack.length = 0;
  }
  function restore(from, to) {
    if (!from.length) return;
    to.push(maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
    maskCtx.putImageData(from.pop(), 0, 0);
  }
  painter.undo = () => restore(undoStack, redoStack);
  painter.redo = () => restore(redoStack, undoStack);
  $(id('undo')).addEventListener('click', painter.undo);
  $(id('redo')).addEventListener('click', painter.redo);
  $(id('clear')).addEventListener('click', () => { snapshot(); maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height); });
  $(id('invert')).addEventListener('click', () => {
    snapshot();
    const d = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
    for (let i = 0; i < d.data.length; i += 4) {
      const on = d.data[i + 3] > 127;
      d.data[i] = 255; d.data[i + 1] = 255; d.data[i + 2] = 255; d.data[i + 3] = on ? 0 : 255;
    }
    maskCtx.putImageData(d, 0, 0);
  });
  $(id('show-mask')).addEventListener('change', (e) => { maskCanvas.style.visibility = e.target.checked ? 'visible' : 'hidden'; });

  let painting = false, last = null;
  function point(e) {
    const r = maskCanvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * maskCanvas.width / r.width, y: (e.clientY - r.top) * maskCanvas.height / r.height };
  }
  function stroke(p) {
    maskCtx.globalCompositeOperation = $(id('eraser')).checked ? 'destination-out' : 'source-over';
    maskCtx.strokeStyle = '#fff';
    // The brush is in screen pixels: as wide on a 64 px image as on a 512 px one.
    maskCtx.lineWidth = Number($(id('brush')).value) * maskCanvas.width / maskCanvas.getBoundingClientRect().width;
    maskCtx.lineCap = 'round';
    maskCtx.beginPath();
    maskCtx.moveTo((last || p).x, (last || p).y);
    maskCtx.lineTo(p.x, p.y);
    maskCtx.stroke();
    last = p;
  }
  maskCanvas.addEventListener('pointerdown', (e) => {
    snapshot(); painting = true; last = null; maskCanvas.setPointerCapture(e.pointerId); stroke(point(e));
  });
  maskCanvas.addEventListener('pointermove', (e) => { if (painting) stroke(point(e)); });
  for (const ev of ['pointerup', 'pointercancel']) maskCanvas.addEventListener(ev, () => { painting = false; last = null; });

  // The mask as a black-and-white PNG data URL (white = painted), or null when nothing is painted.
  painter.maskDataUrl = () => {
    if (!painter.hasImage) return null;
    const d = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
    let any = false;
    const out = document.createElement('canvas');
    out.width = maskCanvas.width; out.height = maskCanvas.height;
    const octx = out.getContext('2d');
    const o = octx.createImageData(out.width, out.height);
    for (let i = 0; i < d.data.length; i += 4) {
      const v = d.data[i + 3] > 127 ? 255 : 0;
      if (v) any = true;
      o.data[i] = o.data[i + 1] = o.data[i + 2] = v; o.data[i + 3] = 255;
    }
    octx.putImageData(o, 0, 0);
    return any ? out.toDataURL('image/png') : null;
  };
  $(id('export-mask')).addEventListener('click', () => {
    const url = painter.maskDataUrl();
    if (!url) return showError('the mask is empty');
    const a = document.createElement('a'); a.href = url; a.download = 'mask.png'; a.click();
  });
  $(id('mask-file')).addEventListener('change', (e) => {
    if (!e.target.files[0]) return;
    loadImageFile(e.target.files[0], (img) => {
      snapshot();
      const tmp = document.createElement('canvas');
      tmp.width = maskCanvas.width; tmp.height = maskCanvas.height;
      const t = tmp.getContext('2d');
      t.drawImage(img, 0, 0, tmp.width, tmp.height);
      const d = t.getImageData(0, 0, tmp.width, tmp.height);
      for (let i = 0; i < d.data.length; i += 4) {
        const on = Math.max(d.data[i], d.data[i + 1], d.data[i + 2]) > 127 && d.data[i + 3] > 127;
        d.data[i] = d.data[i + 1] = d.data[i + 2] = 255; d.data[i + 3] = on ? 255 : 0;
      }
      maskCtx.putImageData(d, 0, 0);
    });
  });
  return painter;
}

const painters = [];
function painter(rootId, prefix, title, onImage) {
  const p = createPainter($(rootId), prefix, title, onImage);
  p.root = $(rootId);
  painters.push(p);
  return p;
}
// Ctrl+Z / Ctrl+Y act on the painter of the visible tab.
document.addEventListener('keydown', (e) => {
  if (!(e.ctrlKey || e.metaKey) || (e.key !== 'z' && e.key !== 'y')) return;
  const p = painters.find((q) => q.hasImage && q.root.offsetParent !== null);
  if (!p) return;
  e.preventDefault();
  if (e.key === 'z') p.undo(); else p.redo();
});

const generatePainter = painter('generate-painter', '', 'image (optional: img2img / inpainting)', (img) => {
  $('width').value = Math.floor(img.naturalWidth / 8) * 8;
  $('height').value = Math.floor(img.naturalHeight / 8) * 8;
});
function maskDataUrl() { return generatePainter.maskDataUrl(); }  // for the browser test

// ---- running a job -------------------------------------------------------------------------
let currentJob = null, events = null;
function showError(message) { $('error').textContent = message || ''; }
function setStatus(text, fraction) {
  $('status').textContent = text;
  if (fraction !== undefined) $('bar').value = fraction;
}
const runButtons = () => document.querySelectorAll('button.primary');

function generateParams() {
  const p = {
    prompt: $('prompt').value, negative_prompt: $('negative').value,
    sampler_name: $('sampler').value, scheduler: $('scheduler').value,
    steps: Number($('steps').value), cfg_scale: Number($('cfg').value), seed: Number($('seed').value),
    width: Number($('width').value), height: Number($('height').value),
  };
  if (generatePainter.hasImage) {
    p.init_images = [generatePainter.dataUrl];
    p.denoising_strength = Number($('strength').value);
    const mask = maskDataUrl();
    if (mask) { p.mask = mask; p.mask_blur = Number($('mask-blur').value); p.inpainting_fill = Number($('masked-content').value); }
  }
  return p;
}

// Queues a job and follows its events; `source` (a data URL) is shown beside image results.
async function runJob(kind, params, source, onDone) {
  showError('');
  let job;
  try {
    job = await api('POST', '/sine/v1/jobs', { kind, params });
  } catch (e) { return showError(e.message); }
  currentJob = job.id;
  for (const b of runButtons()) b.disabled = true;
  $('cancel').disabled = false;
  setStatus(kind + ': queued (position ' + job.queue_position + ')', 0);
  events = new EventSource(withKey('/sine/v1/jobs/' + job.id + '/events'));
  events.addEventListener('running', () => setStatus(kind + ': running', 0));
  events.addEventListener('progress', (e) => {
    const d = JSON.parse(e.data);
    const eta = d.eta_seconds > 0 ? ', ETA ' + d.eta_seconds.toFixed(1) + ' s' : '';
    setStatus(kind + (d.stage ? ' (' + d.stage + ')' : '') + ': ' + d.step + '/' + d.total + eta,
              d.total ? d.step / d.total : 0);
  });
  events.addEventListener('preview', (e) => { $('preview').src = JSON.parse(e.data).image; $('preview').hidden = false; });
  events.addEventListener('done', (e) => {
    const result = JSON.parse(e.data).result;
    finish(kind + ': done', 1);
    $('preview').hidden = true;  // the result replaces the last preview
    showResult(result, source);
    if (onDone) onDone(result);
  });
  events.addEventListener('failed', (e) => { finish(kind + ': failed', 0); showError(JSON.parse(e.data).error); });
  events.addEventListener('cancelled', () => finish(kind + ': cancelled', 0));
}
function finish(state, fraction) {
  if (events) events.close();
  events = null; currentJob = null;
  for (const b of runButtons()) b.disabled = false;
  $('cancel').disabled = true;
  setStatus(state, fraction);
}
$('run').addEventListener('click', () => runJob('generate', generateParams(), generatePainter.dataUrl));
$('cancel').addEventListener('click', async () => {
  if (!currentJob) return;
  try { await api('DELETE', '/sine/v1/jobs/' + currentJob); } catch (e) { showError(e.message); }
});

function showResult(result, source) {
  // Prepended one by one, last first, so the gallery shows them in the job's order on top.
  for (const [i, artifact] of [...(result.artifacts || []).entries()].reverse()) {
    const url = withKey(artifact.url);
    const box = document.createElement('div');
    box.className = 'result';
    const download = document.createElement('a');
    download.href = url; download.download = artifact.filename; download.className = 'button';
    if (artifact.kind !== 'image') {
      const text = document.createElement('p');
      text.textContent = artifact.kind + ' ' + artifact.id + (artifact.info && artifact.info.prompt ? ' ("' + artifact.info.prompt + '")' : '');
      download.textContent = 'Download ' + artifact.filename;
      box.append(text, download);
      $('gallery').prepend(box);
      continue;
    }
    const compare = document.createElement('div');
    compare.className = 'compare';
    const after = document.createElement('img');
    after.src = url; after.alt = 'result ' + (i + 1); after.className = 'result-image';
    if (source) {
      const before = document.createElement('img');
      before.src = source; before.alt = 'source';
      after.classList.add('after');
      const slider = document.createElement('input');
      slider.type = 'range'; slider.min = 0; slider.max = 100; slider.value = 50;
      slider.setAttribute('aria-label', 'before / after');
      const clip = () => { after.style.clipPath = 'inset(0 0 0 ' + slider.value + '%)'; };
      slider.addEventListener('input', clip); clip();
      compare.append(before, after, slider);
    } else {
      compare.append(after);
    }
    const info = document.createElement('pre');
    info.textContent = artifact.info && artifact.info.infotext ? artifact.info.infotext
                     : (artifact.info && artifact.info.role ? artifact.info.role : '');
    download.textContent = 'Download PNG';
    box.append(compare, info, download);
    $('gallery').prepend(box);
  }
}

// ---- tabs ------------------------------------------------------------------------------------
const tabs = [...document.querySelectorAll('[role=tab]')];
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute('aria-selected', on);
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
  }
  tab.focus();
}
for (const [i, t] of tabs.entries()) {
  t.addEventListener('click', () => selectTab(t));
  t.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight') selectTab(tabs[(i + 1) % tabs.length]);
    if (e.key === 'ArrowLeft') selectTab(tabs[(i + tabs.length - 1) % tabs.length]);
  });
}

// ---- SINE ------------------------------------------------------------------------------------
let sineSource = null;
$('sine-file').addEventListener('change', (e) => {
  if (!e.target.files[0]) return;
  loadImageFile(e.target.files[0], (img, dataUrl) => {
    sineSource = dataUrl;
    $('sine-source').src = dataUrl; $('sine-source').hidden = false;
  });
});
// Fills the <select> `selectId` with the server's artefacts of `kind`, each labelled by `label`.
async function refreshArtifacts(kind, selectId, label, select) {
  try {
    const list = await api('GET', '/sine/v1/artifacts');
    $(selectId).textContent = '';
    for (const a of list.filter((a) => a.kind === kind)) $(selectId).append(new Option(a.id + label(a.info || {}), a.id));
    if (select) $(selectId).value = select;
  } catch (e) { showError(e.message); }
}
const refreshFinetunes = (select) =>
  refreshArtifacts('finetune', 'sine-model', (info) => (info.prompt ? ' — ' + info.prompt : ''), select);
$('sine-finetune').addEventListener('click', () => {
  if (!sineSource) return showError('choose the image to fine-tune on first');
  const params = { image: sineSource, class_word: $('sine-class').value, steps: Number($('sine-steps').value),
                   patch: $('sine-patch').checked, lora_rank: Number($('sine-lora').value) };
  if ($('sine-lr').value) params.lr = Number($('sine-lr').value);
  runJob('finetune', params, null, (result) => refreshFinetunes(result.finetune));
});
$('sine-edit').addEventListener('click', () => {
  if (!$('sine-model').value) return showError('fine-tune a model first (step 1)');
  runJob('edit', {
    finetune: $('sine-model').value, prompt: $('sine-prompt').value,
    K: Number($('sine-K').value), v: Number($('sine-v').value), cfg_scale: Number($('sine-cfg').value),
    steps: Number($('sine-edit-steps').value), width: Number($('sine-width').value),
    height: Number($('sine-height').value), seed: Number($('sine-seed').value),
  }, sineSource);
});

// ---- SpecRef ---------------------------------------------------------------------------------
const srSource = painter('sr-source-painter', 'sr-source-', 'source image');
const srReference = painter('sr-reference-painter', 'sr-ref-', 'reference image');
$('sr-run').addEventListener('click', () => {
  if (!srSource.hasImage || !srReference.hasImage) return showError('choose the source and the reference image');
  const params = {
    source: srSource.dataUrl, reference: srReference.dataUrl,
    prompt: $('sr-prompt').value, target: $('sr-target').value, words: $('sr-words').value,
    steps: Number($('sr-steps').value), cfg_scale: Number($('sr-cfg').value), masks: $('sr-masks').value,
    local_blend: $('sr-blend').checked,
  };
  const mask = $('sr-derive').checked ? null : srReference.maskDataUrl();
  if (mask) params.ref_mask = mask;
  else if (!$('sr-derive').checked) return showError('paint the object on the reference, or tick "derive from the words"');
  runJob('specref', params, srSource.dataUrl);
});

// ---- SingleInsert ----------------------------------------------------------------------------
const insertPainter = painter('insert-painter', 'insert-', 'concept image');
const refreshConcepts = (select) =>
  refreshArtifacts('concept', 'insert-concept', (info) => (info.class_word ? ' — * ' + info.class_word : ''), select);
$('insert-train').addEventListener('click', () => {
  if (!insertPainter.hasImage) return showError('choose the concept image first');
  const params = {
    image: insertPainter.dataUrl, class_word: $('insert-class').value,
    stage1_steps: Number($('insert-stage1').value), stage2_steps: Number($('insert-stage2').value),
  };
  const mask = insertPainter.maskDataUrl();
  if (mask) params.mask = mask;  // none painted: derived from the class word's cross-attention
  runJob('insert-train', params, null, (result) => refreshConcepts(result.concept));
});
$('insert-generate').addEventListener('click', () => {
  if (!$('insert-concept').value) return showError('train a concept first');
  runJob('insert-generate', {
    concepts: [$('insert-concept').value], prompt: $('insert-prompt').value,
    steps: Number($('insert-steps').value), seed: Number($('insert-seed').value),
  }, null);
});

// ---- start -----------------------------------------------------------------------------------
(async () => {
  try {
    const info = await api('GET', '/sine/v1/info');
    $('model').textContent = info.model;
    for (const s of info.samplers) $('sampler').append(new Option(s.name, s.name));
    $('sampler').value = 'Euler a';
    refreshFinetunes();
    refreshConcepts();
  } catch (e) { showError(e.message); }
})();
