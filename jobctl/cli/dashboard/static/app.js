// jobctl dashboard: the live parts of the Jobs and Job pages.
// Everything shown comes from /api/ as JSON and goes into the page with textContent only:
// a job name or a log line is text, never markup.
'use strict';

(function () {
  const token = (document.querySelector('meta[name="jobctl-token"]') || {}).content || '';
  const control = ((document.querySelector('meta[name="jobctl-control"]') || {}).content || '0') === '1';
  const page = document.body.dataset.page;

  function get(path) {
    return fetch(path, { credentials: 'same-origin', headers: { 'X-Jobctl-Token': token }, cache: 'no-store' })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (doc) {
          if (!r.ok) { throw new Error((doc && doc.error) || ('HTTP ' + r.status)); }
          return doc;
        });
      });
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function showError(message) {
    const box = document.getElementById('error');
    if (!box) { return; }
    box.hidden = !message;
    box.textContent = message || '';
  }

  function clearChildren(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function clock(iso) {
    // 08/08/25 04:11:05PM: local time to the second, as `describe` prints it
    if (!iso) { return '-'; }
    const d = new Date(iso);
    const p = function (n) { return String(n).padStart(2, '0'); };
    let h = d.getHours() % 12; if (h === 0) { h = 12; }
    return p(d.getMonth() + 1) + '/' + p(d.getDate()) + '/' + p(d.getFullYear() % 100) + ' ' + p(h) + ':' +
      p(d.getMinutes()) + ':' + p(d.getSeconds()) + (d.getHours() < 12 ? 'AM' : 'PM');
  }

  function seconds(a, b) {
    if (!a) { return '-'; }
    const s = Math.max(0, Math.round(((b ? new Date(b) : new Date()) - new Date(a)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? (h + 'h ' + m + 'm ' + r + 's') : (m ? (m + 'm ' + r + 's') : (r + 's'));
  }

  // -- Jobs --------------------------------------------------------------------------------------
  function jobsPage() {
    const form = document.getElementById('filters');
    const tbody = document.querySelector('#jobs tbody');
    const columns = Array.from(document.querySelectorAll('#jobs thead th')).map(function (th) { return th.textContent; });
    const fields = ['state', 'label', 'queue', 'user', 'all'];
    const params = new URLSearchParams(window.location.search);
    fields.forEach(function (f) {
      const input = form.elements[f];
      if (params.get(f)) {
        if (input.tagName === 'SELECT' && !Array.from(input.options).some(function (o) { return o.value === params.get(f); })) {
          input.appendChild(el('option', params.get(f))).value = params.get(f);
        }
        input.value = params.get(f);
      }
    });
    let timer = null;

    function query() {
      const q = new URLSearchParams();
      fields.forEach(function (f) { const v = form.elements[f].value.trim(); if (v) { q.set(f, v); } });
      return q;
    }

    function fillSelect(select, values) {
      const have = new Set(Array.from(select.options).map(function (o) { return o.value; }));
      values.forEach(function (v) {
        if (!have.has(v)) { const o = el('option', v); o.value = v; select.appendChild(o); }
      });
    }

    function render(doc) {
      fillSelect(form.elements.state, doc.states || []);
      fillSelect(form.elements.user, doc.users || []);
      fillSelect(form.elements.queue, doc.queues || []);
      const existing = new Map();
      Array.from(tbody.rows).forEach(function (tr) { existing.set(tr.dataset.id, tr); });
      const seen = new Set();
      doc.rows.forEach(function (row, index) {
        const id = String(row.id);
        seen.add(id);
        let tr = existing.get(id);
        if (!tr) {
          tr = document.createElement('tr');
          tr.dataset.id = id;
          columns.forEach(function (col) {
            const td = el('td');
            td.dataset.col = col;
            if (col === 'NAME') {
              const a = el('a');
              a.href = '/job/' + encodeURIComponent(id);
              td.appendChild(a);
            }
            tr.appendChild(td);
          });
        }
        tr.dataset.state = row.state;
        Array.from(tr.cells).forEach(function (td) {
          const col = td.dataset.col;
          const text = row.cells[col] === undefined ? '' : row.cells[col];
          const target = col === 'NAME' ? td.firstChild : td;
          if (target.textContent !== text) { target.textContent = text; }
          if (col === 'STATUS') { td.className = 'st-' + row.state; }
        });
        if (tbody.rows[index] !== tr) { tbody.insertBefore(tr, tbody.rows[index] || null); }
      });
      existing.forEach(function (tr, id) { if (!seen.has(id)) { tr.remove(); } });
      const more = document.getElementById('more');
      more.hidden = !doc.more;
      more.textContent = doc.more || '';
      document.getElementById('updated').textContent = new Date().toLocaleTimeString();
    }

    function poll() {
      clearTimeout(timer);
      const q = query();
      get('/api/table?' + q.toString()).then(function (doc) {
        showError('');
        render(doc);
      }).catch(function (e) { showError(e.message); })
        .finally(function () { timer = setTimeout(poll, 1000); });
    }

    form.addEventListener('change', function () {
      const q = query();
      history.replaceState(null, '', '/' + (q.toString() ? '?' + q.toString() : ''));
      poll();
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); });
    poll();
  }

  // -- Job ---------------------------------------------------------------------------------------
  function jobPage() {
    const id = document.body.dataset.job;
    const log = document.getElementById('log');
    const attemptSelect = document.getElementById('log-attempt');
    const ranks = document.getElementById('log-ranks');
    const logState = document.getElementById('log-state');
    const LOG_KEEP = 1 << 20; // characters kept on the page
    let lastDoc = '';
    let following = { attempt: null, rank: 0, offset: null, pinned: false };
    let logTimer = null;

    function summary(doc) {
      const dl = document.getElementById('summary');
      clearChildren(dl);
      const res = doc.resources || {};
      const accs = res.accelerators ? Object.keys(res.accelerators).map(function (k) { return k + ':' + res.accelerators[k]; }).join(', ') : '-';
      const rows = [
        ['Name', doc.name], ['Status', doc.status], ['Reason', doc.reason || '-'], ['Message', doc.message || '-'],
        ['Resources', doc.num_nodes + ' node(s), ' + res.cpus + ' CPU, ' + res.memory_gib + ' GiB, accelerators ' + accs],
        ['Backend', doc.backend + (doc.backend_id ? ' (' + doc.backend_id + ')' : '')], ['User', doc.user],
        ['Attempt', doc.attempt + ' of at most ' + doc.max_attempts],
        ['Labels', Object.keys(doc.labels || {}).map(function (k) { return k + '=' + doc.labels[k]; }).join(', ') || '-'],
        ['Submitted', clock(doc.submitted_at)], ['Started', clock(doc.started_at)], ['Ended', clock(doc.ended_at)],
        ['Exit code', doc.exit_code === null || doc.exit_code === undefined ? '-' : doc.exit_code],
        ['Depends on', (doc.depends_on || []).map(function (d) { return d.dep_id + ' (' + d.condition + ')'; }).join(', ') || '-'],
        ['Workdir', (doc.spec || {}).workdir || '-'],
        ['Run', ((doc.spec || {}).run || '').trim() || '-'],
      ];
      if ((doc.spec || {}).setup) { rows.push(['Setup', doc.spec.setup.trim()]); }
      if (doc.held) { rows.push(['Holding', doc.held.cpus + ' CPU, ' + doc.held.memory_mib + ' MiB' + (doc.held.devices && doc.held.devices.length ? ', ' + doc.held.accelerator + ' ' + doc.held.devices.join(',') : '')]); }
      rows.forEach(function (r) { dl.appendChild(el('dt', r[0])); dl.appendChild(el('dd', r[1])); });
    }

    function table(selector, rows) {
      const tbody = document.querySelector(selector + ' tbody');
      clearChildren(tbody);
      rows.forEach(function (cells) {
        const tr = el('tr');
        cells.forEach(function (c) {
          const td = el('td', c.text === undefined ? c : c.text);
          if (c.cls) { td.className = c.cls; }
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
    }

    function render(doc) {
      document.getElementById('job-name').textContent = doc.name;
      const status = document.getElementById('job-status');
      status.textContent = doc.status;
      status.className = 'status st-' + doc.state;
      document.title = 'Job ' + doc.id + ' ' + doc.name + ' · jobctl';
      summary(doc);
      table('#usage', (doc.attempts || []).map(function (a) {
        const u = a.usage || {};
        return [a.n, clock(a.started_at), clock(a.ended_at),
          u.wall_seconds !== undefined ? u.wall_seconds + 's' : seconds(a.started_at, a.ended_at),
          a.outcome || (a.ended_at ? '-' : 'running'), a.exit_code === null || a.exit_code === undefined ? '-' : a.exit_code];
      }));
      table('#events', (doc.events || []).map(function (e) {
        return [clock(e.at), e.from_state || '-', { text: e.to_state, cls: 'st-' + e.to_state }, e.actor || 'system',
          e.reason || '', e.message || ''];
      }));
      // the log's attempt and rank choices
      const n = doc.attempt || 0;
      if (attemptSelect.options.length !== n) {
        clearChildren(attemptSelect);
        for (let i = 1; i <= n; i++) { const o = el('option', String(i)); o.value = String(i); attemptSelect.appendChild(o); }
        if (!following.pinned && n) { switchLog(n, following.rank); }
        attemptSelect.value = String(following.attempt || n);
      }
      if (ranks.childNodes.length !== doc.num_nodes) {
        clearChildren(ranks);
        for (let r = 0; r < doc.num_nodes; r++) {
          const b = el('button', 'rank ' + r);
          b.type = 'button';
          b.dataset.rank = String(r);
          b.addEventListener('click', function () { switchLog(following.attempt, r); });
          ranks.appendChild(b);
        }
      }
      Array.from(ranks.childNodes).forEach(function (b) { b.className = Number(b.dataset.rank) === following.rank ? 'here' : ''; });
    }

    function poll() {
      get('/api/jobs/' + encodeURIComponent(id)).then(function (doc) {
        showError('');
        const text = JSON.stringify(doc);
        if (text !== lastDoc) { lastDoc = text; render(doc); }
      }).catch(function (e) { showError(e.message); })
        .finally(function () { setTimeout(poll, 1000); });
    }

    function switchLog(attempt, rank) {
      following = { attempt: attempt, rank: rank, offset: null, pinned: following.pinned };
      clearChildren(log);
      clearTimeout(logTimer);
      pollLog();
    }

    function pollLog() {
      clearTimeout(logTimer);
      const wanted = following;
      if (!wanted.attempt) { logState.textContent = 'not started yet'; logTimer = setTimeout(pollLog, 1000); return; }
      const q = new URLSearchParams({ attempt: String(wanted.attempt), rank: String(wanted.rank) });
      if (wanted.offset !== null) { q.set('offset', String(wanted.offset)); }
      get('/api/jobs/' + encodeURIComponent(id) + '/logs?' + q.toString()).then(function (doc) {
        if (wanted !== following) { return; } // switched meanwhile
        if (doc.text) {
          const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          log.appendChild(document.createTextNode(doc.text));
          while (log.textContent.length > LOG_KEEP && log.firstChild) { log.removeChild(log.firstChild); }
          if (atBottom) { log.scrollTop = log.scrollHeight; }
        }
        following.offset = doc.next_offset;
        logState.textContent = doc.finished && !doc.more ? 'attempt ' + doc.attempt + ', rank ' + doc.rank + ': complete'
          : 'attempt ' + doc.attempt + ', rank ' + doc.rank + ': following';
        logTimer = setTimeout(pollLog, doc.more ? 50 : (doc.finished ? 5000 : 1000));
      }).catch(function (e) {
        logState.textContent = e.message;
        logTimer = setTimeout(pollLog, 2000);
      });
    }

    attemptSelect.addEventListener('change', function () {
      following.pinned = Number(attemptSelect.value) !== attemptSelect.options.length;
      switchLog(Number(attemptSelect.value), following.rank);
    });

    if (control) {
      const result = document.getElementById('control-result');
      document.querySelectorAll('#controls button').forEach(function (button) {
        button.addEventListener('click', function () {
          const verb = button.dataset.verb;
          result.className = 'result';
          result.textContent = verb + '…';
          fetch('/api/jobs/' + encodeURIComponent(id) + '/' + verb, {
            method: 'POST', credentials: 'same-origin', headers: { 'X-Jobctl-Token': token },
          }).then(function (r) {
            return r.json().catch(function () { return [{ ok: false, message: 'HTTP ' + r.status }]; });
          }).then(function (doc) {
            const items = Array.isArray(doc) ? doc : [{ ok: false, message: doc.error || 'failed' }];
            result.textContent = items.map(function (i) { return i.message; }).join('; ');
            result.className = items.every(function (i) { return i.ok; }) ? 'result' : 'result bad';
          }).catch(function (e) { result.textContent = e.message; result.className = 'result bad'; });
        });
      });
    }
    poll();
    pollLog();
  }

  if (page === 'jobs') { jobsPage(); }
  if (page === 'job') { jobPage(); }
})();
