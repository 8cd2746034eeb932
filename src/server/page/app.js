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

// ---- the source image and its mask ---------------------------------------------------------
const imageCanvas = $('image-canvas'), maskCanvas = $('mask-canvas');
const imageCtx = imageCanvas.getContext('2d'), maskCtx = maskCanvas.getContext('2d');
let hasImage = false, sourceDataUrl = null;
const undoStack = [], redoStack = [];

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

function setImage(img, dataUrl) {
  for (const c of [imageCanvas, maskCanvas]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
  imageCtx.drawImage(img, 0, 0);
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  undoStack.length = 0; redoStack.length = 0;
  sourceDataUrl = dataUrl;
  hasImage = true;
  $('stage').hidden = false;
  $('mask-tools').hidden = false;
  $('drop-help').hidden = true;
  $('width').value = Math.floor(img.naturalWidth / 8) * 8;
  $('height').value = Math.floor(img.naturalHeight / 8) * 8;
}

function removeImage() {
  hasImage = false; sourceDataUrl = null;
  $('stage').hidden = true; $('mask-tools').hidden = true; $('drop-help').hidden = false;
  $('file').value = '';
}

$('file').addEventListener('change', (e) => { if (e.target.files[0]) loadImageFile(e.target.files[0], setImage); });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files[0]) loadImageFile(e.dataTransfer.files[0], setImage);
});
drop.addEventListener('keydown', (e) => { if ((e.key === 'Enter' || e.key === ' ') && !hasImage) $('file').click(); });
$('remove-image').addEventListener('click', removeImage);

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
$('undo').addEventListener('click', () => restore(undoStack, redoStack));
$('redo').addEventListener('click', () => restore(redoStack, undoStack));
document.addEventListener('keydown', (e) => {
  if (!(e.ctrlKey || e.metaKey) || !hasImage) return;
  if (e.key === 'z') { e.preventDefault(); restore(undoStack, redoStack); }
  if (e.key === 'y') { e.preventDefault(); restore(redoStack, undoStack); }
});
$('clear').addEventListener('click', () => { snapshot(); maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height); });
$('invert').addEventListener('click', () => {
  snapshot();
  const d = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const on = d.data[i + 3] > 127;
    d.data[i] = 255; d.data[i + 1] = 255; d.data[i + 2] = 255; d.data[i + 3] = on ? 0 : 255;
  }
  maskCtx.putImageData(d, 0, 0);
});
$('show-mask').addEventListener('change', (e) => { maskCanvas.style.visibility = e.target.checked ? 'visible' : 'hidden'; });

let painting = false, last = null;
function maskPoint(e) {
  const r = maskCanvas.getBoundingClientRect();
  return { x: (e.clientX - r.left) * maskCanvas.width / r.width, y: (e.clientY - r.top) * maskCanvas.height / r.height };
}
function stroke(p) {
  maskCtx.globalCompositeOperation = $('eraser').checked ? 'destination-out' : 'source-over';
  maskCtx.strokeStyle = maskCtx.fillStyle = '#fff';
  maskCtx.lineWidth = Number($('brush').value);
  maskCtx.lineCap = 'round';
  maskCtx.beginPath();
  maskCtx.moveTo((last || p).x, (last || p).y);
  maskCtx.lineTo(p.x, p.y);
  maskCtx.stroke();
  last = p;
}
maskCanvas.addEventListener('pointerdown', (e) => {
  snapshot(); painting = true; last = null; maskCanvas.setPointerCapture(e.pointerId); stroke(maskPoint(e));
});
maskCanvas.addEventListener('pointermove', (e) => { if (painting) stroke(maskPoint(e)); });
for (const ev of ['pointerup', 'pointercancel']) maskCanvas.addEventListener(ev, () => { painting = false; last = null; });

// The mask as a black-and-white PNG (white = repaint), or null when nothing is painted.
function maskDataUrl() {
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
}
$('export-mask').addEventListener('click', () => {
  const url = maskDataUrl();
  if (!url) return showError('the mask is empty');
  const a = document.createElement('a'); a.href = url; a.download = 'mask.png'; a.click();
});
$('mask-file').addEventListener('change', (e) => {
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
  if (hasImage) {
    p.init_images = [sourceDataUrl];
    p.denoising_strength = Number($('strength').value);
    const mask = maskDataUrl();
    if (mask) { p.mask = mask; p.mask_blur = Number($('mask-blur').value); p.inpainting_fill = 1; }
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
$('run').addEventListener('click', () => runJob('generate', generateParams(), hasImage ? sourceDataUrl : null));
$('cancel').addEventListener('click', async () => {
  if (!currentJob) return;
  try { await api('DELETE', '/sine/v1/jobs/' + currentJob); } catch (e) { showError(e.message); }
});

function showResult(result, source) {
  for (const [i, artifact] of (result.artifacts || []).entries()) {
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
    info.textContent = artifact.info && artifact.info.infotext ? artifact.info.infotext : '';
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
async function refreshFinetunes(select) {
  try {
    const list = await api('GET', '/sine/v1/artifacts');
    $('sine-model').textContent = '';
    for (const a of list.filter((a) => a.kind === 'finetune'))
      $('sine-model').append(new Option(a.id + (a.info && a.info.prompt ? ' — ' + a.info.prompt : ''), a.id));
    if (select) $('sine-model').value = select;
  } catch (e) { showError(e.message); }
}
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

// ---- start -----------------------------------------------------------------------------------
(async () => {
  try {
    const info = await api('GET', '/sine/v1/info');
    $('model').textContent = info.model;
    for (const s of info.samplers) $('sampler').append(new Option(s.name, s.name));
    $('sampler').value = 'Euler a';
    refreshFinetunes();
  } catch (e) { showError(e.message); }
})();
