// ConceptMiner3D report: charts (Chart.js) and the crop gallery, from window.REPORT
// (data/report.js) and the gallery data files (data/gallery_<k>.js, loaded when shown).
// The view state lives in the URL hash (#group=Target&concept=bicycle&camera=CAM_FRONT&page=2),
// so a filtered page can be linked to.
(function () {
  'use strict';
  const R = window.REPORT;
  const PAGE_SIZE = 48;
  const GROUP_COLOURS = { Target: '#d62728', Rare: '#ff7f0e', Common: '#1f77b4', '': '#b0b0b0' };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function summaryCharts() {
    new Chart(document.getElementById('concept-chart'), {
      type: 'bar',
      data: {
        labels: R.top_concepts.map((c) => c[0]),
        datasets: [{ label: 'crops by top concept', data: R.top_concepts.map((c) => c[1]) }],
      },
      options: { indexAxis: 'y', animation: false, plugins: { legend: { display: false } } },
    });
    const inst = R.instances || {};
    const classes = Object.keys(inst.full || {});
    const series = [['mined', 'subset'], ['random_baseline', 'random baseline'], ['full', 'full train set']];
    new Chart(document.getElementById('instance-chart'), {
      type: 'bar',
      data: {
        labels: classes,
        datasets: series.filter(([k]) => inst[k]).map(([k, label]) => ({ label, data: classes.map((c) => inst[k][c] || 0) })),
      },
      options: { animation: false, scales: { y: { type: 'logarithmic' } } },
    });
  }

  function embeddingMap() {
    const note = document.getElementById('map-note');
    if (!R.map.length) {
      note.textContent = 'No embeddings in this run (the annotation source has none).';
      return;
    }
    note.textContent = `${R.map.length} of ${R.map_of} crops (t-SNE of their CLIP embeddings); ` +
      'outliers are drawn as crosses; hover a point to see its crop.';
    const groups = ['Target', 'Rare', 'Common', ''];
    const datasets = groups.map((g) => {
      const points = R.map.filter((p) => p[2] === g);
      return {
        label: g || 'not scored',
        data: points.map((p) => ({ x: p[0], y: p[1], p })),
        backgroundColor: GROUP_COLOURS[g],
        borderColor: GROUP_COLOURS[g],
        pointStyle: points.map((p) => (p[3] ? 'crossRot' : 'circle')),
        pointRadius: points.map((p) => (p[3] ? 4 : 2)),
      };
    }).filter((d) => d.data.length);
    const tip = document.getElementById('map-tip');
    new Chart(document.getElementById('map-chart'), {
      type: 'scatter',
      data: { datasets },
      options: {
        animation: false,
        scales: { x: { display: false }, y: { display: false } },
        plugins: {
          tooltip: {
            enabled: false,
            external: ({ chart, tooltip }) => {
              if (!tooltip.opacity || !tooltip.dataPoints.length) { tip.hidden = true; return; }
              const p = tooltip.dataPoints[0].raw.p;
              tip.replaceChildren(el('img', { src: p[4], alt: p[6] }), el('div', {}, p[5]), el('div', { class: 'muted' }, p[6]));
              tip.style.left = `${chart.canvas.offsetLeft + tooltip.caretX + 12}px`;
              tip.style.top = `${chart.canvas.offsetTop + tooltip.caretY}px`;
              tip.hidden = false;
            },
          },
        },
      },
    });
    document.getElementById('map-chart').dataset.points = String(R.map.length);
  }

  // -- gallery ---------------------------------------------------------------------------
  const G = R.gallery;
  const requested = {};

  function loadChunk(k) {
    if (window.REPORT_PAGES[k]) return Promise.resolve();
    if (!requested[k]) {
      requested[k] = new Promise((resolve, reject) => {
        const script = el('script', { src: `data/gallery_${k}.js` });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`data/gallery_${k}.js is missing`));
        document.body.appendChild(script);
      });
    }
    return requested[k];
  }

  function state() {
    const s = new URLSearchParams(location.hash.slice(1));
    return { group: s.get('group') || '', concept: s.get('concept') || '', camera: s.get('camera') || '', page: Number(s.get('page') || 1) };
  }

  function setState(changes) {
    const s = Object.assign(state(), changes);
    const params = new URLSearchParams();
    Object.entries(s).forEach(([k, v]) => { if (v && !(k === 'page' && v === 1)) params.set(k, v); });
    location.hash = params.toString() || 'gallery';
  }

  function card(r) {
    const node = el('div', { class: `card ${r.grp}`, 'data-crop': r.id });
    node.appendChild(el('img', { src: r.th, alt: r.id, loading: 'lazy' }));
    node.appendChild(el('div', { class: 'title' }, `${r.top.length ? r.top[0][0] : '?'} · ${r.grp}`));
    node.appendChild(el('div', { class: 'muted' }, `${r.cam} · YOLO ${r.cls} ${r.conf.toFixed(2)}${r.o ? ' · outlier' : ''}`));
    if (r.cap) node.appendChild(el('div', { class: 'caption' }, `“${r.cap}”`));
    const canvas = el('canvas', { width: '210', height: '90' });
    node.appendChild(canvas);
    new Chart(canvas, {
      type: 'bar',
      data: { labels: r.top.map((t) => t[0]), datasets: [{ data: r.top.map((t) => t[1]), backgroundColor: GROUP_COLOURS[r.grp] }] },
      options: { indexAxis: 'y', animation: false, responsive: false, plugins: { legend: { display: false } }, scales: { x: { min: 0 } } },
    });
    node.appendChild(el('div', { class: 'muted' }, Object.entries(r.out).map(([m, v]) => `${m} ${v}`).join(' · ')));
    if (r.page) node.appendChild(el('a', { href: r.page }, 'selected sample →'));
    return node;
  }

  function renderGallery() {
    const s = state();
    const matches = [];
    for (let i = 0; i < G.size; i++) {
      if (s.group && G.group[i] !== s.group) continue;
      if (s.concept && G.concepts[G.concept[i]] !== s.concept) continue;
      if (s.camera && G.cameras[G.camera[i]] !== s.camera) continue;
      matches.push(i);
    }
    const pages = Math.max(1, Math.ceil(matches.length / PAGE_SIZE));
    const page = Math.min(Math.max(1, s.page), pages);
    const shown = matches.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
    document.getElementById('page-info').textContent = `page ${page} of ${pages} (${matches.length} crops)`;
    ['group', 'concept', 'camera'].forEach((k) => { document.getElementById(`filter-${k}`).value = s[k]; });
    const chunks = [...new Set(shown.map((i) => Math.floor(i / G.chunk)))];
    const cards = document.getElementById('cards');
    Promise.all(chunks.map(loadChunk)).then(() => {
      cards.replaceChildren(...shown.map((i) => card(window.REPORT_PAGES[Math.floor(i / G.chunk)][i % G.chunk])));
      cards.dataset.matches = String(matches.length);
      document.body.dataset.ready = '1';
    });
  }

  function setUpGallery() {
    const fill = (id, values) => values.forEach((v) => document.getElementById(id).appendChild(el('option', {}, v)));
    fill('filter-concept', G.concepts);
    fill('filter-camera', G.cameras);
    ['group', 'concept', 'camera'].forEach((k) => {
      document.getElementById(`filter-${k}`).addEventListener('change', (e) => setState({ [k]: e.target.value, page: 1 }));
    });
    document.getElementById('prev').addEventListener('click', () => setState({ page: state().page - 1 }));
    document.getElementById('next').addEventListener('click', () => setState({ page: state().page + 1 }));
    window.addEventListener('hashchange', renderGallery);
    renderGallery();
  }

  summaryCharts();
  embeddingMap();
  setUpGallery();
})();
