// chronoflow web UI: one hand-written script, no dependencies, no build step.
// Routes on location.pathname with the History API; the JSON contract is docs/web-api.md.
'use strict';
(function () {
  const main = document.getElementById('main');
  const enc = encodeURIComponent;
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => (s == null ? '' : String(s).replace(/[&<>"']/g, (c) => ESC[c]));
  const dec = (s) => { try { return decodeURIComponent(s); } catch (_) { return s; } };
  const POLL_MS = 2500;

  // ---------------------------------------------------------------- states
  const STATES = {
    success: ['✓', 'success'],
    failed: ['✗', 'failed'],
    running: ['▶', 'running'],
    queued: ['…', 'queued'],
    up_for_retry: ['↻', 'up_for_retry'],
    upstream_failed: ['⊘', 'upstream_failed'],
    skipped: ['↷', 'skipped'],
    scheduled: ['·', 'scheduled'],
    waiting: ['◦', 'waiting'],
    none: ['', 'no instance'],
  };
  const CODES = { s: 'success', f: 'failed', r: 'running', q: 'queued', u: 'up_for_retry', p: 'upstream_failed',
    k: 'skipped', c: 'scheduled', w: 'waiting', '-': 'none' };
  const normState = (s) => (s && STATES[s] ? s : s ? 'unknown' : 'none');
  const icon = (s) => (STATES[s] ? STATES[s][0] : '?');
  const stateName = (s) => (STATES[s] ? STATES[s][1] : String(s || 'unknown'));
  function mark(state, title) {
    const s = normState(state);
    return `<span class="mark s-${s}" title="${esc(title || stateName(state))}" aria-label="${esc(stateName(state))}">${icon(s)}</span>`;
  }
  function badge(state) {
    const s = normState(state);
    if (!state) return '<span class="muted">—</span>';
    return `<span class="badge s-${s}" title="${esc(stateName(state))}">${icon(s)} ${esc(state)}</span>`;
  }
  function legend(states) {
    const list = states || ['success', 'failed', 'running', 'queued', 'up_for_retry', 'upstream_failed', 'skipped', 'scheduled', 'waiting'];
    return `<div class="legend" role="list" aria-label="State legend">${list.map((s) =>
      `<span class="item" role="listitem"><span class="mark s-${s}" title="${esc(s)}">${icon(s)}</span>${esc(s)}</span>`).join('')}</div>`;
  }
  const KIND_LETTER = { job: 'J', sensor: 'S', wait: 'W', metadata: 'M' };
  const kindTag = (k) => `<span class="kind k-${esc(k)}" title="${esc(k)}">${esc(KIND_LETTER[k] || '?')}</span>`;

  // ---------------------------------------------------------------- formatting
  const pad = (n) => String(n).padStart(2, '0');
  function fmtTime(ms) {
    if (ms == null || ms === '') return '—';
    const d = new Date(Number(ms));
    if (isNaN(d.getTime())) return '—';
    return d.toISOString().slice(0, 19).replace('T', ' ');
  }
  function fmtDur(ms) {
    if (ms == null || isNaN(ms) || ms < 0) return '—';
    let s = Math.round(ms / 1000);
    if (s < 60) return s + 's';
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return `${m}m ${pad(s)}s`;
    let h = Math.floor(m / 60); m %= 60;
    if (h < 24) return `${h}h ${pad(m)}m ${pad(s)}s`;
    const d = Math.floor(h / 24); h %= 24;
    return `${d}d ${pad(h)}h ${pad(m)}m`;
  }
  const fmtInt = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US'));
  const fmtCpu = (ms) => (ms == null ? '—' : (ms / 1000).toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 }));
  const fmtMB = (kb) => (kb == null ? '—' : (kb / 1024).toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 }));
  const fmtPct = (f) => (f == null ? '—' : (f * 100).toFixed(f > 0 && f < 0.001 ? 2 : 1) + '%');
  const trunc = (s, n) => { s = String(s == null ? '' : s); return s.length > n ? s.slice(0, n - 1) + '…' : s; };

  function validDate(s) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return false;
    const [y, m, d] = s.split('-').map(Number);
    const dt = new Date(Date.UTC(2000, 0, 1));
    dt.setUTCFullYear(y, m - 1, d);
    return dt.getUTCFullYear() === y && dt.getUTCMonth() === m - 1 && dt.getUTCDate() === d;
  }
  // Returns an error message or null.
  function checkDate(label, s) {
    if (!s) return `${label} is required (yyyy-MM-dd).`;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return `${label} "${s}" is not in the form yyyy-MM-dd.`;
    if (!validDate(s)) return `${label} "${s}" is not a real calendar date.`;
    return null;
  }

  // ---------------------------------------------------------------- links
  const L = {
    dag: (d, q) => `/ui/dags/${enc(d)}${q ? '?' + q : ''}`,
    task: (d, r, t, tr) => `/ui/dags/${enc(d)}/runs/${enc(r)}/tasks/${enc(t)}${tr != null ? '?try=' + enc(tr) : ''}`,
    table: (n) => `/ui/tables/${enc(n)}`,
    config: (n) => `/ui/configs/${enc(n)}`,
  };
  const a = (href, text, attrs) => `<a href="${esc(href)}"${attrs ? ' ' + attrs : ''}>${esc(text)}</a>`;

  // ---------------------------------------------------------------- API
  const session = { me: null };
  class ApiError extends Error { constructor(msg, status) { super(msg); this.status = status; } }
  let redirecting = false;
  function toLogin() {
    if (redirecting || location.pathname.startsWith('/ui/login')) return;
    redirecting = true;
    location.assign('/ui/login?next=' + enc(location.pathname + location.search));
  }
  async function api(path, opts) {
    opts = opts || {};
    const method = opts.method || 'GET';
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin' };
    if (method !== 'GET') {
      headers['Content-Type'] = 'application/json';
      headers['X-CSRF-Token'] = (session.me && session.me.csrf) || '';
      init.body = JSON.stringify(opts.body === undefined ? {} : opts.body);
    }
    let res;
    try { res = await fetch(path, init); } catch (_) { throw new ApiError('Cannot reach the chronoflow server (network error).', 0); }
    const text = await res.text();
    if (res.status === 401 && !opts.no401) { toLogin(); throw new ApiError('Not signed in.', 401); }
    if (!res.ok) {
      let msg = null;
      try { msg = JSON.parse(text).error; } catch (_) { /* not JSON */ }
      if (!msg) msg = `${res.status} ${res.statusText || 'error'}`;
      throw new ApiError(msg, res.status);
    }
    return { text, res, json() { return text ? JSON.parse(text) : null; } };
  }
  const post = (path, body) => api(path, { method: 'POST', body });

  // ---------------------------------------------------------------- DOM helpers
  function setHTML(el, html) {
    if (!el) return false;
    if (el._html === html) return false;
    el.innerHTML = html;
    el._html = html;
    return true;
  }
  function showError(el, msg) { setHTML(el, `<div class="error" role="alert">${esc(msg)}</div>`); }
  function clearMsg(el) { setHTML(el, ''); }
  function formMsg(el, kind, msg) {
    if (!el) return;
    el._html = null;
    if (!msg) { el.className = 'form-message'; el.removeAttribute('role'); el.textContent = ''; return; }
    el.className = 'form-message ' + (kind === 'error' ? 'error' : 'ok');
    el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    el.textContent = msg;
  }
  const q1 = (sel, el) => (el || document).querySelector(sel);

  // ---------------------------------------------------------------- polling context
  function newCtx() {
    const ctx = { alive: true, stops: [] };
    ctx.poll = (fn, ms) => {
      let timer = null, running = false, pending = false;
      const tick = async () => {
        timer = null;
        if (!ctx.alive) return;
        if (document.visibilityState === 'visible') {
          running = true;
          try { await fn(); } catch (e) { console.warn(e); }
          running = false;
        }
        if (!ctx.alive) return;
        if (pending) { pending = false; tick(); return; }
        timer = setTimeout(tick, ms);
      };
      const onVis = () => { if (document.visibilityState === 'visible') p.now(); };
      const p = {
        now() {
          if (!ctx.alive) return;
          if (running) { pending = true; return; }
          if (timer) clearTimeout(timer);
          tick();
        },
      };
      document.addEventListener('visibilitychange', onVis);
      ctx.stops.push(() => { if (timer) clearTimeout(timer); document.removeEventListener('visibilitychange', onVis); });
      tick();
      return p;
    };
    ctx.onDestroy = (f) => ctx.stops.push(f);
    ctx.destroy = () => { ctx.alive = false; ctx.stops.forEach((f) => { try { f(); } catch (_) { /* ignore */ } }); ctx.stops = []; };
    return ctx;
  }
  // Poll one JSON URL; onData is only called when the body text changed.
  // A poll clears only the error it showed itself: a refusal an action put in the same place
  // (e.g. "may not pause") stays until the user acts again.
  function pollJSON(ctx, urlFn, onData, msgEl, ms) {
    let last = null, lastUrl = null, shown = false;
    const p = ctx.poll(async () => {
      const url = urlFn();
      try {
        const r = await api(url);
        if (!ctx.alive) return;
        if (shown) { clearMsg(msgEl); shown = false; }
        if (r.text !== last || url !== lastUrl) {
          last = r.text; lastUrl = url;
          onData(r.json(), r);
        }
      } catch (e) {
        if (!ctx.alive) return;
        if (e.status !== 401) { showError(msgEl, e.message); shown = true; }
      }
    }, ms || POLL_MS);
    p.reset = () => { last = null; };
    return p;
  }

  // ---------------------------------------------------------------- router
  const ROUTES = [
    [/^\/ui(?:\/dags)?$/, 'dags'],
    [/^\/ui\/dags\/([^/]+)\/runs\/([^/]+)\/tasks\/(.+)$/, 'task'],
    [/^\/ui\/dags\/([^/]+)$/, 'dag'],
    [/^\/ui\/status$/, 'status'],
    [/^\/ui\/freshness$/, 'freshness'],
    [/^\/ui\/errors$/, 'errors'],
    [/^\/ui\/resources$/, 'resources'],
    [/^\/ui\/tables$/, 'tables'],
    [/^\/ui\/tables\/(.+)$/, 'table'],
    [/^\/ui\/lineage$/, 'lineage'],
    [/^\/ui\/configs$/, 'configs'],
    [/^\/ui\/configs\/(.+)$/, 'config'],
    [/^\/ui\/online$/, 'online'],
    [/^\/ui\/login$/, 'login'],
  ];
  const NAV_OF = { dag: 'dags', task: 'dags', table: 'tables', config: 'configs' };
  let current = null;

  function route() {
    const path = location.pathname.replace(/\/+$/, '') || '/ui';
    const q = new URLSearchParams(location.search);
    let name = 'notfound', params = [];
    for (const [re, n] of ROUTES) {
      const m = path.match(re);
      if (m) { name = n; params = m.slice(1).map(dec); break; }
    }
    const key = name + '\u0000' + params.join('\u0000');
    if (current && current.key === key && current.handle && current.handle.onQuery) {
      current.handle.onQuery(q);
      return;
    }
    if (current) current.ctx.destroy();
    const ctx = newCtx();
    current = { key, ctx, handle: null };
    const nav = NAV_OF[name] || name;
    document.querySelectorAll('#nav a[data-nav]').forEach((el) => {
      const on = el.dataset.nav === nav;
      el.classList.toggle('active', on);
      if (on) el.setAttribute('aria-current', 'page'); else el.removeAttribute('aria-current');
    });
    document.title = (params[params.length - 1] || (name === 'dags' ? 'DAGs' : name)) + ' · chronoflow';
    main.innerHTML = '';
    main._html = null;
    try {
      current.handle = PAGES[name](main, ctx, params, q) || null;
    } catch (e) {
      console.error(e);
      main.innerHTML = `<div class="error" role="alert">This page failed to render: ${esc(e.message)}</div>`;
    }
  }
  function navigate(url, replace) {
    if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
    route();
    if (!replace) window.scrollTo(0, 0);
  }
  // Update the query string without re-rendering the page.
  function setQuery(updates, push) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(updates)) { if (v == null || v === '') q.delete(k); else q.set(k, v); }
    const s = q.toString();
    const url = location.pathname + (s ? '?' + s : '');
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
  }

  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    let el = e.target.closest ? e.target.closest('a') : null;
    if (!el) {
      const td = e.target.closest ? e.target.closest('td[data-testid="grid-cell"]') : null;
      if (td) el = td.querySelector('a');
      if (!el) return;
    }
    const href = el.getAttribute('href');
    const target = el.getAttribute('target');
    if (!href || (target && target !== '_self') || el.hasAttribute('download')) return;
    const url = new URL(href, location.href);
    if (url.origin !== location.origin || !/^\/ui(\/|$)/.test(url.pathname) || url.pathname.startsWith('/ui/assets/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
  window.addEventListener('popstate', route);

  // ---------------------------------------------------------------- identity
  function renderIdentity() {
    const el = document.getElementById('identity');
    const me = session.me;
    if (!me) { el.innerHTML = '<span class="muted">not signed in</span>'; return; }
    if (!me.auth) { el.innerHTML = '<span title="No tokens configured: loopback, read-write">local (no auth)</span>'; return; }
    el.innerHTML = `<span class="who" title="signed in">${esc(me.name || '?')}</span>` +
      (me.team ? `<span class="muted">${esc(me.team)}</span>` : '') +
      (me.role ? `<span class="role">${esc(me.role)}</span>` : '') +
      '<button type="button" id="signout">Sign out</button>';
    el.querySelector('#signout').addEventListener('click', async () => {
      try {
        await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin',
          headers: { 'X-CSRF-Token': me.csrf || '', 'Content-Type': 'application/json' }, body: '{}' });
      } catch (_) { /* go to the login page anyway */ }
      location.assign('/ui/login');
    });
  }

  // ================================================================= pages
  const PAGES = {};

  PAGES.notfound = (root) => {
    root.innerHTML = `<h1>Not found</h1><div class="error" role="alert">No page at ${esc(location.pathname)}.</div><p>${a('/ui/dags', 'Go to the DAG list')}</p>`;
  };

  // Generic "fetch JSON every few seconds and render" page.
  function simplePage(root, ctx, opts) {
    root.innerHTML = `<div class="page-head"><h1>${esc(opts.title)}</h1>${opts.headExtra || ''}</div>
      <div class="msg" data-role="msg"></div><div data-role="content"><p class="muted">Loading…</p></div>`;
    const msg = q1('[data-role=msg]', root), content = q1('[data-role=content]', root);
    const p = pollJSON(ctx, opts.url, (data) => opts.render(content, data), msg, opts.ms);
    if (opts.after) opts.after(root, p);
    return p;
  }

  // ---------------------------------------------------------------- login
  PAGES.login = (root, ctx, params, q) => {
    const err = q.get('error');
    let next = q.get('next') || '/ui';
    if (!/^\/ui(\/|$|\?)/.test(next)) next = '/ui';
    root.innerHTML = `<div class="login-box">
      <h1>Sign in to chronoflow</h1>
      ${err ? `<div class="error" role="alert">${esc(err)}</div>` : ''}
      <form data-testid="login-form" method="post" action="/ui/login">
        <label for="login-token">API token
          <input id="login-token" type="password" name="token" required autocomplete="current-password" autofocus></label>
        <input type="hidden" name="next" value="${esc(next)}">
        <input type="hidden" name="csrf" value="${esc((session.me && session.me.csrf) || '')}">
        <button type="submit" class="primary">Sign in</button>
      </form>
      <p class="muted small">Use the bearer token an administrator gave you. It is kept in a cookie for this browser.</p>
    </div>`;
  };

  // ---------------------------------------------------------------- DAG list
  PAGES.dags = (root, ctx, params, q) => {
    root.innerHTML = `<div class="page-head"><h1>DAGs</h1>${legend(['success', 'failed', 'running', 'queued'])}</div>
      <form class="filters" role="search" data-role="filters">
        <label>Team <select name="team"><option value="">all teams</option></select></label>
        <label>State <select name="state">
          <option value="">any</option><option value="running">running</option><option value="failed">failed</option>
          <option value="success">success</option><option value="paused">paused</option></select></label>
        <label>Name <input type="search" name="q" placeholder="substring" autocomplete="off"></label>
        <span class="muted" data-role="count"></span>
      </form>
      <div class="msg" data-role="msg"></div>
      <div data-role="content"><p class="muted">Loading…</p></div>`;
    const form = q1('[data-role=filters]', root);
    // No inline handler: the CSP (script-src 'self') blocks them. Enter in the name field must not submit.
    form.addEventListener('submit', (e) => e.preventDefault());
    const msg = q1('[data-role=msg]', root), content = q1('[data-role=content]', root);
    const teamSel = form.elements.team, stateSel = form.elements.state, qIn = form.elements.q;
    let teamsKey = '';
    const applyQuery = (qq) => {
      if (teamSel.querySelector(`option[value="${CSS.escape(qq.get('team') || '')}"]`) == null && qq.get('team')) {
        teamSel.insertAdjacentHTML('beforeend', `<option value="${esc(qq.get('team'))}">${esc(qq.get('team'))}</option>`);
      }
      teamSel.value = qq.get('team') || '';
      stateSel.value = qq.get('state') || '';
      if (document.activeElement !== qIn) qIn.value = qq.get('q') || '';
    };
    applyQuery(q);
    const url = () => {
      const p = new URLSearchParams();
      if (teamSel.value) p.set('team', teamSel.value);
      if (stateSel.value) p.set('state', stateSel.value);
      if (qIn.value.trim()) p.set('q', qIn.value.trim());
      const s = p.toString();
      return '/api/v1/ui/dags' + (s ? '?' + s : '');
    };
    const poller = pollJSON(ctx, url, (data) => {
      const teams = data.teams || [];
      const k = teams.join('\u0000');
      if (k !== teamsKey) {
        teamsKey = k;
        const cur = teamSel.value;
        teamSel.innerHTML = '<option value="">all teams</option>' + teams.filter(Boolean).map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join('') +
          (cur && !teams.includes(cur) ? `<option value="${esc(cur)}">${esc(cur)}</option>` : '');
        teamSel.value = cur;
      }
      const dags = data.dags || [];
      setHTML(q1('[data-role=count]', root), `${dags.length} DAG${dags.length === 1 ? '' : 's'}`);
      if (!dags.length) { setHTML(content, '<p class="empty">No DAGs match these filters.</p>'); return; }
      const rows = dags.map((d) => {
        const runs = (d.recent_runs || []).map((r) =>
          `<a href="${esc(L.dag(d.dag_id, 'tab=grid'))}">${mark(r.state, `${r.ds} · ${r.state} · ${r.run_id}`)}</a>`).join('');
        return `<tr data-testid="dag-row" data-dag-id="${esc(d.dag_id)}">
          <td>${a(L.dag(d.dag_id), d.dag_id)} ${d.kind ? `<span class="muted small">${esc(d.kind)}</span>` : ''}</td>
          <td>${esc(d.team || '—')}</td>
          <td class="mono">${esc(d.schedule || '—')}</td>
          <td>${toggleBtn(d.dag_id, d.paused)}</td>
          <td><span class="runs-marks">${runs || '<span class="muted">no runs</span>'}</span></td>
          <td class="nowrap">${d.paused ? '<span class="muted">paused</span>' : fmtTime(d.next_run_ms)}</td>
          <td class="num">${d.running ? `<span class="badge s-running">▶ ${d.running}</span>` : '0'}</td>
          <td class="num">${d.failed ? `<span class="badge s-failed">✗ ${d.failed}</span>` : '0'}</td></tr>`;
      }).join('');
      setHTML(content, `<table class="list"><thead><tr><th scope="col">DAG</th><th scope="col">Team</th><th scope="col">Schedule</th>
        <th scope="col">Paused</th><th scope="col">Last 25 runs (oldest → newest)</th><th scope="col">Next run (UTC)</th>
        <th scope="col" class="num">Running</th><th scope="col" class="num">Failed</th></tr></thead><tbody>${rows}</tbody></table>`);
    }, msg);
    const changed = () => {
      setQuery({ team: teamSel.value, state: stateSel.value, q: qIn.value.trim() });
      poller.now();
    };
    teamSel.addEventListener('change', changed);
    stateSel.addEventListener('change', changed);
    let deb = null;
    qIn.addEventListener('input', () => { clearTimeout(deb); deb = setTimeout(changed, 250); });
    ctx.onDestroy(() => clearTimeout(deb));
    root.addEventListener('click', (e) => onPauseClick(e, msg, () => poller.now()));
    return { onQuery(qq) { applyQuery(qq); poller.now(); } };
  };

  function toggleBtn(dagId, paused) {
    return `<button type="button" class="toggle" data-testid="pause-toggle" role="switch" aria-checked="${paused ? 'true' : 'false'}"
      data-dag="${esc(dagId)}" data-paused="${paused ? '1' : '0'}" aria-label="Paused"
      title="${paused ? 'Paused: click to unpause' : 'Active: click to pause'}">${paused ? '‖ paused' : '▶ active'}</button>`;
  }
  async function onPauseClick(e, msgEl, after) {
    const b = e.target.closest('button[data-testid="pause-toggle"]');
    if (!b) return;
    const dag = b.dataset.dag, paused = b.dataset.paused === '1';
    b.disabled = true;
    try {
      await post(`/api/v1/dags/${enc(dag)}/${paused ? 'unpause' : 'pause'}`, {});
      clearMsg(msgEl);
      // optimistic flip until the next poll confirms
      b.dataset.paused = paused ? '0' : '1';
      b.setAttribute('aria-checked', paused ? 'false' : 'true');
      b.textContent = paused ? '▶ active' : '‖ paused';
    } catch (err) {
      showError(msgEl, `Could not ${paused ? 'unpause' : 'pause'} ${dag}: ${err.message}`);
    } finally {
      b.disabled = false;
      after();
    }
  }

  // ---------------------------------------------------------------- DAG page
  PAGES.dag = (root, ctx, [dagId], q) => {
    const st = { q, grid: null, tab: null, tabCtl: null, tabCtx: null, manual: null };
    root.innerHTML = `<div class="page-head">
        <span class="crumbs">${a('/ui/dags', 'DAGs')} /</span>
        <h1>${esc(dagId)}</h1>
        <span class="meta" data-role="meta"></span>
        <span data-role="pause"></span>
      </div>
      <div data-role="form"></div>
      <nav class="tabs" aria-label="DAG views" data-role="tabs"></nav>
      <div class="msg" data-role="msg"></div>
      <div data-role="tab"></div>`;
    const msg = q1('[data-role=msg]', root), tabEl = q1('[data-role=tab]', root);
    const runsN = () => { const n = parseInt(st.q.get('runs') || '25', 10); return n > 0 && n <= 1000 ? n : 25; };

    function renderTabs() {
      const tab = st.tab;
      const keep = new URLSearchParams();
      if (st.q.get('runs')) keep.set('runs', st.q.get('runs'));
      const link = (t, label) => {
        const p = new URLSearchParams(keep); p.set('tab', t);
        if ((t === 'gantt' || t === 'graph') && st.q.get('run')) p.set('run', st.q.get('run'));
        return `<a href="${esc(L.dag(dagId, p.toString()))}" class="${tab === t ? 'active' : ''}" ${tab === t ? 'aria-current="page"' : ''}>${label}</a>`;
      };
      const n = runsN();
      setHTML(q1('[data-role=tabs]', root), link('grid', 'Grid') + link('graph', 'Graph') + link('gantt', 'Gantt') + link('runs', 'Runs') +
        `<span class="spacer"></span><label>Runs shown <select data-role="runs-n">${[10, 25, 50, 100].concat([10, 25, 50, 100].includes(n) ? [] : [n])
          .map((v) => `<option value="${v}" ${v === n ? 'selected' : ''}>${v}</option>`).join('')}</select></label>`);
    }
    q1('[data-role=tabs]', root).addEventListener('change', (e) => {
      if (e.target.matches('[data-role=runs-n]')) { setQuery({ runs: e.target.value === '25' ? '' : e.target.value }); st.q = new URLSearchParams(location.search); gridPoll.now(); }
    });

    function openTab() {
      const tab = ['grid', 'graph', 'gantt', 'runs'].includes(st.q.get('tab')) ? st.q.get('tab') : 'grid';
      st.tab = tab;
      renderTabs();
      if (st.tabCtx) st.tabCtx.destroy();
      st.tabCtx = newCtx();
      tabEl.innerHTML = ''; tabEl._html = null;
      st.tabCtl = TABS[tab](tabEl, st.tabCtx, dagId, st);
      if (st.grid && st.tabCtl.update) st.tabCtl.update(st.grid);
    }
    ctx.onDestroy(() => { if (st.tabCtx) st.tabCtx.destroy(); });

    function renderHeader(g) {
      setHTML(q1('[data-role=meta]', root), `<span>team <b>${esc(g.team || '—')}</b></span><span>schedule <b class="mono">${esc(g.schedule || '—')}</b></span>` +
        (g.manual ? '<span class="badge s-scheduled">manual</span>' : ''));
      setHTML(q1('[data-role=pause]', root), toggleBtn(g.dag_id || dagId, !!g.paused));
      if (st.manual !== !!g.manual) {
        st.manual = !!g.manual;
        renderTriggerForm(q1('[data-role=form]', root), dagId, st.manual, () => gridPoll.now());
      }
    }
    q1('[data-role=pause]', root).addEventListener('click', (e) => onPauseClick(e, msg, () => gridPoll.now()));

    const gridPoll = pollJSON(ctx, () => `/api/v1/ui/dags/${enc(dagId)}/grid?runs=${runsN()}`, (g) => {
      st.grid = g;
      renderHeader(g);
      if (st.tabCtl && st.tabCtl.update) st.tabCtl.update(g);
    }, msg);
    st.refresh = () => gridPoll.now();
    openTab();
    return {
      onQuery(qq) {
        const old = st.q; st.q = qq;
        const tabNow = qq.get('tab') || 'grid';
        if ((old.get('runs') || '') !== (qq.get('runs') || '')) { gridPoll.now(); renderTabs(); }
        if (tabNow !== st.tab) openTab();
        else if (st.tabCtl && st.tabCtl.onQuery) { renderTabs(); st.tabCtl.onQuery(qq); }
      },
    };
  };

  function renderTriggerForm(el, dagId, manual, after) {
    el.innerHTML = `<form data-testid="trigger-form" class="trigger-form" novalidate>
      <span class="form-title">${manual ? 'Trigger a run' : 'Trigger / backfill'}</span>
      <label for="trg-start">${manual ? 'Start ds' : 'ds (start)'}</label>
      <input id="trg-start" data-testid="trigger-start" name="start" placeholder="yyyy-MM-dd" autocomplete="off" inputmode="numeric" maxlength="10">
      <label for="trg-end">${manual ? 'End ds' : 'End ds (backfill)'}</label>
      <input id="trg-end" data-testid="trigger-end" name="end" placeholder="yyyy-MM-dd" autocomplete="off" inputmode="numeric" maxlength="10">
      <button type="submit" class="primary" data-testid="trigger-submit" title="${manual ? 'Trigger one run covering start..end' : 'Trigger one run for the start date'}">Trigger</button>
      ${manual ? '' : '<button type="button" data-testid="backfill-submit" title="Create runs for every date in start..end">Backfill range</button>'}
      <span class="muted small">${manual ? 'manual DAG: one run over the range' : 'Trigger uses the start date only; Backfill runs every date from start to end'}</span>
      <div data-testid="form-message" class="form-message" aria-live="polite"></div>
    </form>`;
    const form = el.querySelector('form');
    const sIn = form.elements.start, eIn = form.elements.end;
    const fm = form.querySelector('[data-testid=form-message]');
    const validate = (needEnd) => {
      sIn.removeAttribute('aria-invalid'); eIn.removeAttribute('aria-invalid');
      const s = sIn.value.trim(), e = eIn.value.trim();
      let err = checkDate('Start date', s);
      if (err) { sIn.setAttribute('aria-invalid', 'true'); return { err }; }
      if (!needEnd) return { s, e: s };
      err = checkDate('End date', e);
      if (err) { eIn.setAttribute('aria-invalid', 'true'); return { err }; }
      if (s > e) { sIn.setAttribute('aria-invalid', 'true'); eIn.setAttribute('aria-invalid', 'true'); return { err: `Start date ${s} is after end date ${e}.` }; }
      return { s, e };
    };
    const send = async (kind, btn) => {
      const v = validate(manual || kind === 'backfill');
      if (v.err) { formMsg(fm, 'error', v.err); return; }
      const buttons = form.querySelectorAll('button');
      buttons.forEach((b) => { b.disabled = true; });
      formMsg(fm, 'ok', kind === 'backfill' ? 'Submitting backfill…' : 'Triggering…');
      try {
        const path = `/api/v1/dags/${enc(dagId)}/${kind === 'backfill' ? 'backfill' : 'runs'}`;
        const r = await post(path, { start_ds: v.s, end_ds: v.e });
        let body = null; try { body = r.json(); } catch (_) { /* not JSON */ }
        const ids = body && Array.isArray(body.run_ids) ? body.run_ids : null;
        const range = v.s === v.e ? v.s : `${v.s} → ${v.e}`;
        formMsg(fm, 'ok', (kind === 'backfill' ? `Backfill ${range} submitted` : `Triggered ${range}`) +
          (ids ? `: ${ids.length} run${ids.length === 1 ? '' : 's'} (${trunc(ids.join(', '), 200)})` : '.'));
      } catch (e) {
        formMsg(fm, 'error', e.message);
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
        after();
      }
      void btn;
    };
    form.addEventListener('submit', (e) => { e.preventDefault(); send('trigger'); });
    const bf = form.querySelector('[data-testid=backfill-submit]');
    if (bf) bf.addEventListener('click', () => send('backfill'));
  }

  const TABS = {};

  // ------------------------------------------ grid tab (virtualized rows)
  TABS.grid = (el, ctx, dagId, page) => {
    el.innerHTML = `<div class="grid-tools">
        <label>Filter tasks <input type="search" data-role="filter" placeholder="task id substring" autocomplete="off"></label>
        <span class="muted" data-role="count"></span>
        ${legend()}
      </div>
      <div class="grid-scroll" data-role="scroll">
        <table data-testid="grid" class="grid" aria-label="Task instances: rows are tasks, columns are runs (oldest left)">
          <thead></thead><tbody></tbody></table>
      </div>`;
    const scroll = q1('[data-role=scroll]', el), table = q1('table', el), thead = table.tHead, tbody = table.tBodies[0];
    const filterIn = q1('[data-role=filter]', el);
    filterIn.value = page.q.get('task') || '';
    let g = null, rows = [], runCells = [], lastKey = '', rowH = 22, measured = false;
    const VIRT_MIN = 300;

    function prepare() {
      const f = filterIn.value.trim().toLowerCase();
      rows = [];
      const tasks = g.tasks || [];
      for (let i = 0; i < tasks.length; i++) if (!f || tasks[i].task_id.toLowerCase().includes(f)) rows.push(i);
      runCells = (g.runs || []).map((r) => ({ rid: esc(r.run_id), ds: esc(r.ds), raw: r }));
      setHTML(q1('[data-role=count]', el), `${rows.length} of ${tasks.length} tasks × ${runCells.length} runs`);
      const head = (g.runs || []).map((r) => {
        const p = new URLSearchParams({ tab: 'gantt', run: r.run_id });
        const title = `${r.run_id}\nds ${r.ds}${r.start_ds && r.end_ds && r.start_ds !== r.end_ds ? ` (${r.start_ds} → ${r.end_ds})` : ''}\n${r.state}${r.run_type ? ' · ' + r.run_type : ''}\nstarted ${fmtTime(r.started_ms)}`;
        return `<th scope="col" class="run-h"><a href="${esc(L.dag(dagId, p.toString()))}" title="${esc(title)}">${mark(r.state, title)}<span class="vds">${esc(r.ds)}</span></a></th>`;
      }).join('');
      setHTML(thead, `<tr><th scope="col" class="corner">Task</th>${head}</tr>`);
    }
    function rowHTML(i) {
      const t = g.tasks[i], codes = (g.cells && g.cells[i]) || '';
      const tid = esc(t.task_id), tenc = enc(t.task_id), denc = enc(dagId);
      let latest = null;
      let cells = '';
      for (let j = 0; j < runCells.length; j++) {
        const c = codes[j] || '-';
        const s = CODES[c] || 'unknown';
        const rc = runCells[j];
        if (s === 'none') {
          cells += `<td data-testid="grid-cell" data-task-id="${tid}" data-run-id="${rc.rid}" data-state="none" title="${tid} · ${rc.ds} · no instance"><span class="cell s-none"></span></td>`;
        } else {
          latest = j;
          cells += `<td data-testid="grid-cell" data-task-id="${tid}" data-run-id="${rc.rid}" data-state="${s}" title="${tid} · ${rc.ds} · ${stateName(s)}"><a class="cell s-${s}" href="/ui/dags/${denc}/runs/${esc(enc(rc.raw.run_id))}/tasks/${esc(tenc)}">${icon(s)}</a></td>`;
        }
      }
      const nameLink = latest != null
        ? `<a href="/ui/dags/${denc}/runs/${esc(enc(runCells[latest].raw.run_id))}/tasks/${esc(tenc)}">${tid}</a>` : tid;
      return `<tr data-task-id="${tid}"><th scope="row" title="${tid} (${esc(t.kind)}${t.mode ? ', ' + esc(t.mode) : ''})">${kindTag(t.kind)}${nameLink}</th>${cells}</tr>`;
    }
    function draw(force) {
      if (!g) return;
      const n = rows.length;
      let start = 0, end = n;
      if (n > VIRT_MIN) {
        const headH = thead.offsetHeight || 80;
        const top = Math.max(0, scroll.scrollTop - headH);
        const vis = Math.ceil((scroll.clientHeight || 800) / rowH);
        start = Math.max(0, Math.floor(top / rowH) - 12);
        end = Math.min(n, start + vis + 24);
      }
      const key = start + ':' + end;
      if (!force && key === lastKey) return;
      lastKey = key;
      const cols = runCells.length + 1;
      let html = '';
      if (start > 0) html += `<tr class="spacer" aria-hidden="true"><td colspan="${cols}" style="height:${start * rowH}px"></td></tr>`;
      for (let k = start; k < end; k++) html += rowHTML(rows[k]);
      if (end < n) html += `<tr class="spacer" aria-hidden="true"><td colspan="${cols}" style="height:${(n - end) * rowH}px"></td></tr>`;
      if (!n) html = `<tr><td colspan="${cols}" class="empty">No tasks${filterIn.value ? ' match the filter' : ''}.</td></tr>`;
      tbody.innerHTML = html;
      if (!measured && n) {
        const tr = tbody.querySelector('tr:not(.spacer)');
        const h = tr ? tr.getBoundingClientRect().height : 0;
        if (h > 10 && Math.abs(h - rowH) > 0.5) { rowH = h; measured = true; draw(true); return; }
        measured = true;
      }
    }
    let raf = 0;
    scroll.addEventListener('scroll', () => {
      if (rows.length <= VIRT_MIN || raf) return;
      raf = requestAnimationFrame(() => { raf = 0; draw(false); });
    }, { passive: true });
    let deb = null;
    filterIn.addEventListener('input', () => {
      clearTimeout(deb);
      deb = setTimeout(() => { setQuery({ task: filterIn.value.trim() }); if (g) { prepare(); scroll.scrollTop = 0; draw(true); } }, 150);
    });
    ctx.onDestroy(() => { clearTimeout(deb); cancelAnimationFrame(raf); });
    return {
      update(grid) { g = grid; prepare(); draw(true); },
      onQuery(qq) { const t = qq.get('task') || ''; if (t !== filterIn.value) { filterIn.value = t; if (g) { prepare(); draw(true); } } },
    };
  };

  // ------------------------------------------ layered layout (Sugiyama-ish)
  // nodes: array of ids; edges: [[from, to]]. Left to right: x = layer.
  function layeredLayout(ids, edges, o) {
    const N = ids.length, idx = new Map();
    ids.forEach((id, i) => idx.set(id, i));
    const out = Array.from({ length: N }, () => []), inn = Array.from({ length: N }, () => []);
    const E = [];
    for (const e of edges || []) {
      const i = idx.get(e[0]), j = idx.get(e[1]);
      if (i == null || j == null || i === j) continue;
      out[i].push(j); inn[j].push(i); E.push([i, j]);
    }
    // topological order (Kahn); nodes on cycles are appended
    const indeg = inn.map((l) => l.length), order = [];
    for (let i = 0; i < N; i++) if (!indeg[i]) order.push(i);
    for (let k = 0; k < order.length; k++) for (const w of out[order[k]]) if (--indeg[w] === 0) order.push(w);
    if (order.length < N) { const seen = new Uint8Array(N); order.forEach((v) => { seen[v] = 1; }); for (let i = 0; i < N; i++) if (!seen[i]) order.push(i); }
    const opos = new Int32Array(N); order.forEach((v, k) => { opos[v] = k; });
    // longest-path layering
    const layer = new Int32Array(N);
    for (const v of order) for (const u of inn[v]) if (opos[u] < opos[v] && layer[u] + 1 > layer[v]) layer[v] = layer[u] + 1;
    if (o && o.rank) for (const v of order) { const r = o.rank(ids[v]); if (r != null && r > layer[v]) layer[v] = r; for (const w of out[v]) if (opos[v] < opos[w] && layer[v] + 1 > layer[w]) layer[w] = layer[v] + 1; }
    // dummy vertices on long edges
    let span = 0; for (const [i, j] of E) if (layer[j] > layer[i]) span += layer[j] - layer[i] - 1;
    const useDummies = span <= 6000;
    const vLayer = Array.from(layer), up = Array.from({ length: N }, () => []), down = Array.from({ length: N }, () => []);
    const routes = [];
    for (const [i, j] of E) {
      if (layer[j] <= layer[i]) { routes.push({ pts: [i, j], back: true }); continue; }
      const chain = [i]; let prev = i;
      if (useDummies) for (let l = layer[i] + 1; l < layer[j]; l++) {
        const d = vLayer.length; vLayer.push(l); up.push([]); down.push([]);
        down[prev].push(d); up[d].push(prev); chain.push(d); prev = d;
      }
      down[prev].push(j); up[j].push(prev); chain.push(j);
      routes.push({ pts: chain, back: false });
    }
    const V = vLayer.length, nL = N ? Math.max(...vLayer) + 1 : 0;
    const layers = Array.from({ length: nL }, () => []);
    // initial order: real nodes by topological order, dummies after their source
    const seq = order.concat(Array.from({ length: V - N }, (_, k) => N + k));
    for (const v of seq) layers[vLayer[v]].push(v);
    const cpos = new Float64Array(V);
    const setPos = (arr) => { const h = (arr.length - 1) / 2; arr.forEach((v, k) => { cpos[v] = k - h; }); };
    layers.forEach(setPos);
    const sweep = (arr, nb) => {
      const bc = new Float64Array(arr.length);
      arr.forEach((v, k) => { const ns = nb[v]; if (ns.length) { let s = 0; for (const w of ns) s += cpos[w]; bc[k] = s / ns.length; } else bc[k] = cpos[v]; });
      const ix = arr.map((_, k) => k).sort((x, y) => bc[x] - bc[y] || x - y);
      const sorted = ix.map((k) => arr[k]);
      for (let k = 0; k < arr.length; k++) arr[k] = sorted[k];
      setPos(arr);
    };
    const iters = V > 3000 ? 2 : 6;
    for (let it = 0; it < iters; it++) {
      for (let l = 1; l < nL; l++) sweep(layers[l], up);
      for (let l = nL - 2; l >= 0; l--) sweep(layers[l], down);
    }
    // coordinates
    const nodeW = o.nodeW, nodeH = o.nodeH, gapX = o.gapX, gapY = o.gapY, dummyH = o.dummyH || 8, padX = 16, padY = 16;
    const x = new Float64Array(V), y = new Float64Array(V);
    const heights = layers.map((arr) => arr.reduce((s, v) => s + (v < N ? nodeH + gapY : dummyH + gapY), 0));
    const maxH = Math.max(0, ...heights);
    layers.forEach((arr, l) => {
      let cy = padY + (maxH - heights[l]) / 2;
      for (const v of arr) {
        const h = v < N ? nodeH : dummyH;
        x[v] = padX + l * (nodeW + gapX);
        y[v] = cy + h / 2; // center
        cy += h + gapY;
      }
    });
    return { N, x, y, routes, width: padX * 2 + Math.max(1, nL) * (nodeW + gapX) - gapX, height: padY * 2 + maxH, nodeW, nodeH };
  }
  function edgePaths(lay) {
    const { x, y, N, nodeW } = lay;
    let out = '';
    for (const r of lay.routes) {
      const p = r.pts;
      if (r.back) {
        const sx = x[p[0]] + nodeW, sy = y[p[0]], ex = x[p[1]], ey = y[p[1]];
        out += `<path class="gedge back" d="M${sx} ${sy} C${sx + 40} ${sy} ${ex - 40} ${ey} ${ex} ${ey}" marker-end="url(#arrow)"/>`;
        continue;
      }
      let cx = x[p[0]] + nodeW, cy = y[p[0]];
      let d = `M${cx} ${cy}`;
      for (let k = 1; k < p.length; k++) {
        const v = p[k], tx = x[v], ty = y[v], g = (tx - cx) / 2;
        d += ` C${cx + g} ${cy} ${tx - g} ${ty} ${tx} ${ty}`;
        if (v >= N) { d += ` L${tx + nodeW} ${ty}`; cx = tx + nodeW; cy = ty; }
      }
      out += `<path class="gedge" d="${d}" marker-end="url(#arrow)"/>`;
    }
    return out;
  }
  const ARROW = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#9aa3ad"/></marker></defs>';

  // ------------------------------------------ graph tab
  TABS.graph = (el, ctx, dagId, page) => {
    el.innerHTML = `<div class="grid-tools">
        <label>Colour by run <select data-role="run"><option value="">latest</option></select></label>
        ${legend()}
        <span class="legend" aria-label="Shapes"><span class="item"><svg width="20" height="12" aria-hidden="true"><rect x="0.5" y="0.5" width="19" height="11" rx="2" fill="#fff" stroke="#5b6673"/></svg>job</span>
        <span class="item"><svg width="20" height="12" aria-hidden="true"><rect x="0.5" y="0.5" width="19" height="11" rx="5.5" fill="#fff" stroke="#6a3f9a"/></svg>sensor (partition)</span>
        <span class="item"><svg width="20" height="12" aria-hidden="true"><polygon points="4,0.5 16,0.5 19.5,6 16,11.5 4,11.5 0.5,6" fill="#fffaf0" stroke="#b07a00" stroke-dasharray="3 2"/></svg>wait on another DAG</span>
        <span class="item"><svg width="20" height="12" aria-hidden="true"><rect x="0.5" y="0.5" width="19" height="11" fill="#f6f7f8" stroke="#5b6673" stroke-dasharray="2 2"/></svg>metadata</span></span>
      </div>
      <div class="msg" data-role="gmsg"></div>
      <div class="graph-wrap" data-testid="graph" data-role="wrap"><p class="muted" style="padding:10px">Loading graph…</p></div>`;
    const sel = q1('[data-role=run]', el), wrap = q1('[data-role=wrap]', el), gmsg = q1('[data-role=gmsg]', el);
    let graph = null, grid = null, nodeEls = new Map(), big = false;
    const NODE_W = 200, NODE_H = 34;

    function selectedRun() {
      if (!grid || !grid.runs || !grid.runs.length) return null;
      const want = page.q.get('run');
      const j = want ? grid.runs.findIndex((r) => r.run_id === want) : -1;
      return j >= 0 ? j : grid.runs.length - 1;
    }
    function stateMap() {
      const m = new Map();
      const j = selectedRun();
      if (j == null) return { m, run: null };
      (grid.tasks || []).forEach((t, i) => { const c = (grid.cells[i] || '')[j] || '-'; m.set(t.task_id, CODES[c] || 'unknown'); });
      return { m, run: grid.runs[j] };
    }
    function nodeHref(n, run) {
      if (n.kind === 'wait' && n.wait_dag) return L.dag(n.wait_dag);
      if (run) return L.task(dagId, run.run_id, n.id);
      return null;
    }
    function build() {
      if (!graph) return;
      const nodes = graph.nodes || [];
      const { m, run } = stateMap();
      big = nodes.length > 400;
      if (big) {
        const rows = nodes.map((n) => {
          const s = m.get(n.id) || 'none';
          const href = nodeHref(n, run);
          const ins = (graph.edges || []).filter((e) => e[1] === n.id).length;
          return `<li>${mark(s, `${n.id} · ${s}`)} ${kindTag(n.kind)}${href ? a(href, n.label || n.id) : esc(n.label || n.id)}${n.kind === 'wait' && n.wait_dag ? ` <span class="muted">waits for ${esc(n.wait_dag)}${n.wait_task ? '.' + esc(n.wait_task) : ''}</span>` : ''} <span class="muted small">${ins} upstream</span></li>`;
        }).join('');
        setHTML(wrap, `<div class="notice" style="margin:8px">This DAG has ${nodes.length} tasks (more than 400): showing a text list instead of a drawing.</div><ul class="plain" style="padding:8px 12px">${rows}</ul>`);
        nodeEls = new Map();
        return;
      }
      const lay = layeredLayout(nodes.map((n) => n.id), graph.edges, { nodeW: NODE_W, nodeH: NODE_H, gapX: 60, gapY: 14 });
      let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${lay.width}" height="${lay.height}" role="img" aria-label="Task graph of ${esc(dagId)}">${ARROW}${edgePaths(lay)}`;
      nodes.forEach((n, i) => {
        const x = lay.x[i], y = lay.y[i] - NODE_H / 2, s = normState(m.get(n.id) || 'none');
        const label = trunc(n.label || n.id, 27);
        let shape, sub;
        if (n.kind === 'sensor') { shape = `<rect class="shape" x="0" y="0" width="${NODE_W}" height="${NODE_H}" rx="16"/>`; sub = `sensor${n.table ? ': ' + trunc(n.table, 22) : ''}`; }
        else if (n.kind === 'wait') { shape = `<polygon class="shape" points="10,0 ${NODE_W - 10},0 ${NODE_W},${NODE_H / 2} ${NODE_W - 10},${NODE_H} 10,${NODE_H} 0,${NODE_H / 2}"/>`; sub = `⇢ wait: ${trunc((n.wait_dag || '?') + (n.wait_task ? '.' + n.wait_task : ''), 24)}`; }
        else if (n.kind === 'metadata') { shape = `<rect class="shape" x="0" y="0" width="${NODE_W}" height="${NODE_H}" rx="2"/>`; sub = 'metadata'; }
        else { shape = `<rect class="shape" x="0" y="0" width="${NODE_W}" height="${NODE_H}" rx="3"/>`; sub = `job${n.mode ? ' · ' + n.mode : ''}`; }
        const href = nodeHref(n, run);
        const title = `${n.id}\nkind: ${n.kind}${n.mode ? '\nmode: ' + n.mode : ''}${n.config ? '\nconfig: ' + n.config : ''}${n.table ? '\ntable: ' + n.table : ''}${n.wait_dag ? '\nwaits for: ' + n.wait_dag + (n.wait_task ? '.' + n.wait_task : '') : ''}`;
        const inner = `<title>${esc(title)}</title>${shape}<rect class="stbar s-${s}" data-role="st" x="${n.kind === 'wait' ? 12 : 4}" y="${NODE_H / 2 - 8}" width="16" height="16" rx="3"/>` +
          `<text class="icon" data-role="ic" x="${n.kind === 'wait' ? 20 : 12}" y="${NODE_H / 2 + 4}" text-anchor="middle" fill="${s === 'scheduled' || s === 'waiting' || s === 'none' || s === 'skipped' || s === 'up_for_retry' ? '#333' : '#fff'}">${icon(s)}</text>` +
          `<text x="${n.kind === 'wait' ? 34 : 26}" y="14">${esc(label)}</text><text class="sub" x="${n.kind === 'wait' ? 34 : 26}" y="27">${esc(sub)}</text>`;
        svg += `<g class="gnode k-${esc(n.kind)}" data-node-id="${esc(n.id)}" data-state="${s}" transform="translate(${x} ${y})">${href ? `<a href="${esc(href)}">${inner}</a>` : inner}</g>`;
      });
      svg += '</svg>';
      setHTML(wrap, svg);
      nodeEls = new Map();
      wrap.querySelectorAll('g.gnode').forEach((g) => nodeEls.set(g.getAttribute('data-node-id'), g));
    }
    function recolour() {
      if (!graph) return;
      if (big || !nodeEls.size) { build(); return; }
      const { m, run } = stateMap();
      const byId = new Map((graph.nodes || []).map((n) => [n.id, n]));
      for (const [id, g] of nodeEls) {
        const s = normState(m.get(id) || 'none');
        if (g.getAttribute('data-state') === s && g._run === (run && run.run_id)) continue;
        g.setAttribute('data-state', s); g._run = run && run.run_id;
        const r = g.querySelector('[data-role=st]'); r.setAttribute('class', `stbar s-${s}`);
        const t = g.querySelector('[data-role=ic]'); t.textContent = icon(s);
        t.setAttribute('fill', s === 'scheduled' || s === 'waiting' || s === 'none' || s === 'skipped' || s === 'up_for_retry' ? '#333' : '#fff');
        const an = g.querySelector('a'); const n = byId.get(id); const href = n && nodeHref(n, run);
        if (an && href) an.setAttribute('href', href);
      }
    }
    function fillRuns() {
      const runs = (grid && grid.runs) || [];
      const want = page.q.get('run') || '';
      setHTML(sel, `<option value="">latest${runs.length ? ' (' + esc(runs[runs.length - 1].ds) + ')' : ''}</option>` +
        runs.slice().reverse().map((r) => `<option value="${esc(r.run_id)}" ${r.run_id === want ? 'selected' : ''}>${esc(r.ds)} · ${esc(r.state)} · ${esc(trunc(r.run_id, 40))}</option>`).join(''));
      sel.value = runs.some((r) => r.run_id === want) ? want : '';
    }
    sel.addEventListener('change', () => { setQuery({ run: sel.value }); page.q = new URLSearchParams(location.search); recolour(); });
    api(`/api/v1/ui/dags/${enc(dagId)}/graph`).then((r) => {
      if (!ctx.alive) return;
      graph = r.json(); build();
    }).catch((e) => { if (ctx.alive && e.status !== 401) { showError(gmsg, e.message); setHTML(wrap, ''); } });
    return {
      update(g) { grid = g; fillRuns(); recolour(); },
      onQuery() { fillRuns(); recolour(); },
    };
  };

  // ------------------------------------------ gantt tab
  TABS.gantt = (el, ctx, dagId, page) => {
    el.innerHTML = `<div class="grid-tools">
        <label>Run <select data-role="run"></select></label>
        <span class="meta" data-role="runinfo"></span>
        <span class="legend"><span class="item"><svg width="22" height="10"><rect width="22" height="10" fill="#c9d3e3"/></svg>queued → started</span>
        <span class="item"><svg width="22" height="10"><rect width="22" height="10" fill="#2e9e4f"/></svg>started → ended (state colour)</span></span>
      </div>
      <div class="msg" data-role="gmsg"></div>
      <div class="gantt-wrap" data-testid="gantt" data-role="wrap"><p class="muted" style="padding:10px">Loading…</p></div>`;
    const sel = q1('[data-role=run]', el), wrap = q1('[data-role=wrap]', el), gmsg = q1('[data-role=gmsg]', el);
    let grid = null, poller = null, runId = null;
    function pick() {
      const runs = (grid && grid.runs) || [];
      const want = page.q.get('run');
      const r = runs.find((x) => x.run_id === want) || runs[runs.length - 1];
      if (want && !r) return want;
      return r ? r.run_id : want || null;
    }
    function fillRuns() {
      const runs = (grid && grid.runs) || [];
      const cur = runId || '';
      const opts = runs.slice().reverse().map((r) => `<option value="${esc(r.run_id)}">${esc(r.ds)} · ${esc(r.state)} · ${esc(trunc(r.run_id, 40))}</option>`);
      if (cur && !runs.some((r) => r.run_id === cur)) opts.unshift(`<option value="${esc(cur)}">${esc(cur)}</option>`);
      setHTML(sel, opts.join(''));
      sel.value = cur;
    }
    function start() {
      const id = pick();
      if (id === runId && poller) return;
      runId = id;
      fillRuns();
      if (!id) { setHTML(wrap, '<p class="empty">This DAG has no runs yet.</p>'); return; }
      if (poller && poller.ctx) poller.ctx.destroy();
      const sub = newCtx(); ctx.onDestroy(() => sub.destroy());
      poller = pollJSON(sub, () => `/api/v1/ui/dags/${enc(dagId)}/runs/${enc(id)}`, (d) => draw(d), gmsg);
      poller.ctx = sub;
    }
    let lastDetail = null;
    function draw(d) {
      lastDetail = d;
      const run = d.run || {};
      setHTML(q1('[data-role=runinfo]', el), `${badge(run.state)} <span>ds <b>${esc(run.ds || '')}</b></span><span>started ${fmtTime(run.started_ms)}</span>` +
        `<span>ended ${fmtTime(run.ended_ms)}</span><span>duration ${run.started_ms ? fmtDur((run.ended_ms || Date.now()) - run.started_ms) : '—'}</span>`);
      setHTML(wrap, ganttSVG(dagId, run, d.tasks || []));
    }
    sel.addEventListener('change', () => { setQuery({ run: sel.value }); page.q = new URLSearchParams(location.search); start(); });
    ctx.poll(() => { if (lastDetail && lastDetail.run && !lastDetail.run.ended_ms) setHTML(wrap, ganttSVG(dagId, lastDetail.run, lastDetail.tasks || [])); }, 5000);
    return {
      update(g) { grid = g; if (!runId || !poller) start(); else fillRuns(); },
      onQuery() { start(); },
    };
  };

  function niceStep(spanMs, target) {
    const steps = [1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];
    for (const s of steps) if (spanMs / s <= target) return s;
    return steps[steps.length - 1] * Math.ceil(spanMs / (target * steps[steps.length - 1]));
  }
  function ganttSVG(dagId, run, tasks) {
    const now = Date.now();
    const items = tasks.filter((t) => t.queued_ms || t.started_ms);
    const missing = tasks.length - items.length;
    if (!items.length) return `<p class="empty">No task of this run has been queued or started yet${tasks.length ? ` (${tasks.length} tasks waiting)` : ''}.</p>`;
    let t0 = Infinity, t1 = -Infinity;
    for (const t of items) {
      const a0 = t.queued_ms || t.started_ms; if (a0 < t0) t0 = a0;
      const e = t.ended_ms || (t.started_ms || t.queued_ms ? now : 0); if (e > t1) t1 = e;
      if (t.started_ms && t.started_ms > t1) t1 = t.started_ms;
    }
    if (run.started_ms && run.started_ms < t0) t0 = run.started_ms;
    if (run.ended_ms && run.ended_ms > t1) t1 = run.ended_ms;
    if (!(t1 > t0)) t1 = t0 + 1000;
    const labelW = 250, chartW = 900, rowH = 20, top = 34, W = labelW + chartW + 60;
    const H = top + items.length * rowH + 10;
    const sx = (t) => labelW + ((t - t0) / (t1 - t0)) * chartW;
    const step = niceStep(t1 - t0, 9);
    let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="Gantt chart of run ${esc(run.run_id || '')}">`;
    svg += `<g class="axis"><text x="4" y="14">UTC, from ${esc(fmtTime(t0))}</text>`;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = sx(t);
      const lbl = step >= 864e5 ? new Date(t).toISOString().slice(5, 10) : new Date(t).toISOString().slice(11, step >= 6e4 ? 16 : 19);
      svg += `<line class="tick" x1="${x}" x2="${x}" y1="${top - 6}" y2="${H}"/><text x="${x}" y="${top - 10}" text-anchor="middle">${lbl}</text>`;
    }
    svg += '</g>';
    items.forEach((t, i) => {
      const y = top + i * rowH, s = normState(t.state);
      const href = L.task(dagId, run.run_id, t.task_id);
      svg += `<a href="${esc(href)}"><text class="lbl" x="4" y="${y + 14}">${esc(trunc(t.task_id, 38))}</text></a>`;
      const qs = t.queued_ms, ss = t.started_ms, en = t.ended_ms || (ss || qs ? now : null);
      const tip = `${t.task_id} · ${stateName(t.state)}\nqueued ${fmtTime(qs)}\nstarted ${fmtTime(ss)}\nended ${fmtTime(t.ended_ms)}` +
        `${qs && ss ? '\nwaited ' + fmtDur(ss - qs) : ''}${ss ? '\nran ' + fmtDur((t.ended_ms || now) - ss) : ''}${t.try_number ? '\ntry ' + t.try_number + (t.max_tries ? '/' + t.max_tries : '') : ''}`;
      svg += `<g><title>${esc(tip)}</title>`;
      if (qs) { const qe = ss || (t.ended_ms || now); svg += `<rect class="gbar-q" x="${sx(qs)}" y="${y + 4}" width="${Math.max(1, sx(qe) - sx(qs))}" height="12" rx="2"/>`; }
      if (ss) svg += `<rect class="s-${s}" x="${sx(ss)}" y="${y + 3}" width="${Math.max(2, sx(en) - sx(ss))}" height="14" rx="2"/>`;
      const endX = sx(en || ss || qs);
      svg += `<text class="lbl" x="${endX + 4}" y="${y + 14}">${icon(s)} ${esc(ss ? fmtDur((t.ended_ms || now) - ss) : stateName(t.state))}</text></g>`;
    });
    svg += '</svg>';
    return (missing ? `<p class="muted small" style="margin:4px 8px">${missing} task(s) not yet queued are not shown.</p>` : '') + svg;
  }

  // ------------------------------------------ runs tab
  TABS.runs = (el, ctx, dagId) => {
    el.innerHTML = '<div data-role="c"><p class="muted">Loading…</p></div>';
    const c = q1('[data-role=c]', el);
    return {
      update(g) {
        const runs = (g.runs || []).slice().reverse();
        if (!runs.length) { setHTML(c, '<p class="empty">No runs yet.</p>'); return; }
        setHTML(c, `<table class="list"><thead><tr><th scope="col">Run</th><th scope="col">ds</th><th scope="col">Range</th><th scope="col">Type</th>
          <th scope="col">State</th><th scope="col">Started (UTC)</th><th scope="col">Ended (UTC)</th><th scope="col" class="num">Duration</th><th scope="col">Views</th></tr></thead><tbody>` +
          runs.map((r) => `<tr><td class="mono">${esc(r.run_id)}</td><td class="mono">${esc(r.ds)}</td>
            <td class="mono">${esc(r.start_ds || '')}${r.end_ds && r.end_ds !== r.start_ds ? ' → ' + esc(r.end_ds) : ''}</td><td>${esc(r.run_type || '')}</td>
            <td>${badge(r.state)}</td><td class="nowrap">${fmtTime(r.started_ms)}</td><td class="nowrap">${fmtTime(r.ended_ms)}</td>
            <td class="num">${r.started_ms ? fmtDur((r.ended_ms || Date.now()) - r.started_ms) : '—'}</td>
            <td>${a(L.dag(dagId, new URLSearchParams({ tab: 'gantt', run: r.run_id }).toString()), 'gantt')} · ${a(L.dag(dagId, new URLSearchParams({ tab: 'graph', run: r.run_id }).toString()), 'graph')}</td></tr>`).join('') +
          '</tbody></table>');
      },
    };
  };

  // ---------------------------------------------------------------- task try page
  PAGES.task = (root, ctx, [dagId, runId, taskId], q) => {
    const st = { q, data: null, logTry: null };
    const base = `/api/v1/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}`;
    root.innerHTML = `<div class="page-head">
        <span class="crumbs">${a('/ui/dags', 'DAGs')} / ${a(L.dag(dagId), dagId)} / ${a(L.dag(dagId, new URLSearchParams({ tab: 'gantt', run: runId }).toString()), runId)} /</span>
        <h1>${esc(taskId)}</h1><span data-role="state"></span>
      </div>
      <div class="msg" data-role="msg"></div>
      <div class="panel actions" data-role="actions">
        <button type="button" data-testid="clear-button" data-act="clear">↺ Clear</button>
        <label><input type="checkbox" data-testid="clear-downstream" data-role="down"> downstream</label>
        <button type="button" data-testid="mark-success" data-act="success">✓ Mark success</button>
        <button type="button" data-testid="mark-failed" data-act="failed" class="danger">✗ Mark failed</button>
        <button type="button" data-testid="stop-button" data-act="stop" class="danger" disabled title="Only while running">■ Stop</button>
        <div data-testid="form-message" class="form-message" aria-live="polite" data-role="amsg"></div>
      </div>
      <div class="task-grid">
        <div class="panel" data-role="summary"><p class="muted">Loading…</p></div>
        <div class="panel" data-role="deps"></div>
      </div>
      <details class="panel" data-role="action-box"><summary><b>Action</b> <span class="muted">(what this task runs, JSON)</span></summary><pre class="json" data-role="action"></pre></details>
      <h2>Tries</h2>
      <div data-role="tries"></div>
      <div class="log-head"><h2 data-role="loghead">Log</h2><span class="muted" data-role="logstate"></span>
        <label><input type="checkbox" data-role="follow" checked> follow (scroll to end)</label></div>
      <pre class="log" data-testid="task-log" data-role="log" aria-live="off"></pre>`;
    const msg = q1('[data-role=msg]', root), amsg = q1('[data-role=amsg]', root);
    const logEl = q1('[data-role=log]', root), logState = q1('[data-role=logstate]', root);
    const follow = q1('[data-role=follow]', root);
    let logCtl = null;

    function wantedTry() {
      const t = parseInt(st.q.get('try') || '', 10);
      if (t > 0) return t;
      const d = st.data;
      if (!d) return null;
      const tries = d.tries || [];
      let m = 0; for (const tr of tries) if (tr.try_number > m) m = tr.try_number;
      return m || null;
    }
    function startLog(tryN) {
      if (logCtl) logCtl.stop();
      st.logTry = tryN;
      logEl.textContent = '';
      setHTML(q1('[data-role=loghead]', root), tryN ? `Log — try ${tryN}` : 'Log');
      if (!tryN) { setHTML(logState, 'no tries yet'); return; }
      let offset = 0, stopped = false, timer = null;
      const enc8 = new TextEncoder();
      const tick = async () => {
        timer = null;
        if (stopped || !ctx.alive) return;
        if (document.visibilityState !== 'visible') { timer = setTimeout(tick, 1000); return; }
        let complete = false, delay = 1000;
        try {
          const res = await fetch(`${base}/logs?try=${tryN}&offset=${offset}`, { credentials: 'same-origin', headers: { Accept: 'text/plain' } });
          if (stopped || !ctx.alive) return;
          if (res.status === 401) { toLogin(); return; }
          const text = await res.text();
          if (stopped || !ctx.alive) return;
          if (!res.ok) {
            let m = null; try { m = JSON.parse(text).error; } catch (_) { /* plain */ }
            setHTML(logState, res.status === 404 ? `no log yet (${esc(m || 'not found')}) — retrying` : `<span class="error" role="alert">${esc(m || res.status + ' ' + res.statusText)}</span>`);
            delay = 2000;
          } else {
            if (text) {
              const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 20;
              logEl.appendChild(document.createTextNode(text));
              if (follow.checked && atBottom) logEl.scrollTop = logEl.scrollHeight;
            }
            const next = parseInt(res.headers.get('X-Log-Offset') || '', 10);
            offset = Number.isFinite(next) ? next : offset + enc8.encode(text).length;
            complete = (res.headers.get('X-Log-Complete') || '').toLowerCase() === 'true';
            setHTML(logState, complete ? `complete · ${fmtInt(offset)} bytes` : `<span class="badge s-running">▶ following</span> ${fmtInt(offset)} bytes`);
          }
        } catch (_) {
          setHTML(logState, '<span class="error" role="alert">Cannot reach the server to read the log; retrying.</span>');
          delay = 3000;
        }
        if (!complete && !stopped && ctx.alive) timer = setTimeout(tick, delay);
      };
      tick();
      logCtl = { stop() { stopped = true; if (timer) clearTimeout(timer); } };
    }
    ctx.onDestroy(() => { if (logCtl) logCtl.stop(); });

    function render(d) {
      st.data = d;
      const t = d.task || {};
      const s = t.state;
      setHTML(q1('[data-role=state]', root), badge(s));
      q1('[data-testid=stop-button]', root).disabled = s !== 'running';
      setHTML(q1('[data-role=summary]', root), `<table class="kv"><tbody>
        <tr><th scope="row">State</th><td>${badge(s)}</td></tr>
        <tr><th scope="row">Kind</th><td>${kindTag(t.kind)}${esc(t.kind || '—')}</td></tr>
        <tr><th scope="row">Try</th><td>${esc(t.try_number ?? '—')}${t.max_tries ? ' of ' + esc(t.max_tries) : ''}</td></tr>
        <tr><th scope="row">Worker</th><td class="mono">${esc(t.worker_id || '—')}</td></tr>
        <tr><th scope="row">Queued</th><td>${fmtTime(t.queued_ms)}</td></tr>
        <tr><th scope="row">Started</th><td>${fmtTime(t.started_ms)}${t.queued_ms && t.started_ms ? ` <span class="muted">(waited ${fmtDur(t.started_ms - t.queued_ms)})</span>` : ''}</td></tr>
        <tr><th scope="row">Ended</th><td>${fmtTime(t.ended_ms)}${t.started_ms ? ` <span class="muted">(${t.ended_ms ? 'ran' : 'running for'} ${fmtDur((t.ended_ms || Date.now()) - t.started_ms)})</span>` : ''}</td></tr>
        <tr><th scope="row">Run</th><td>${a(L.dag(dagId, new URLSearchParams({ tab: 'gantt', run: runId }).toString()), runId)}</td></tr>
        ${t.error ? `<tr><th scope="row">Error</th><td class="err-text">${esc(t.error)}</td></tr>` : ''}
      </tbody></table>`);
      const links = (arr) => (arr && arr.length ? `<div class="linklist">${arr.map((x) => a(L.task(dagId, runId, x), x)).join('')}</div>` : '<span class="muted">none</span>');
      setHTML(q1('[data-role=deps]', root), `<h3>Upstream (${(t.upstream || []).length})</h3>${links(t.upstream)}<h3>Downstream (${(t.downstream || []).length})</h3>${links(t.downstream)}`);
      setHTML(q1('[data-role=action]', root), esc(JSON.stringify(t.action == null ? null : t.action, null, 2)));
      const tries = (d.tries || []).slice().sort((x, y) => y.try_number - x.try_number);
      const cur = wantedTry();
      setHTML(q1('[data-role=tries]', root), tries.length ? `<table class="list" data-testid="tries-table"><thead><tr>
          <th scope="col">Try</th><th scope="col">Worker</th><th scope="col">State</th><th scope="col">Started (UTC)</th><th scope="col" class="num">Duration</th>
          <th scope="col" class="num">Exit code</th><th scope="col" class="num">CPU s</th><th scope="col" class="num">Peak MB</th><th scope="col">Error</th></tr></thead><tbody>` +
        tries.map((tr) => `<tr class="${tr.try_number === cur ? 'current' : ''}"><td>${a(L.task(dagId, runId, taskId, tr.try_number), '#' + tr.try_number)}${tr.try_number === cur ? ' <span class="muted small">(log below)</span>' : ''}</td>
          <td class="mono">${esc(tr.worker_id || '—')}</td><td>${badge(tr.state)}</td><td class="nowrap">${fmtTime(tr.started_ms)}</td>
          <td class="num">${fmtDur(tr.duration_ms != null ? tr.duration_ms : (tr.started_ms ? (tr.ended_ms || Date.now()) - tr.started_ms : null))}</td>
          <td class="num">${tr.exit_code == null ? '—' : esc(tr.exit_code)}</td><td class="num">${fmtCpu(tr.cpu_ms)}</td><td class="num">${fmtMB(tr.max_rss_kb)}</td>
          <td class="err">${esc(trunc(tr.error || '', 400))}</td></tr>`).join('') + '</tbody></table>'
        : '<table class="list" data-testid="tries-table"><thead><tr><th scope="col">Try</th><th scope="col">Worker</th><th scope="col">State</th><th scope="col">Duration</th><th scope="col">Exit code</th><th scope="col">CPU s</th><th scope="col">Peak MB</th><th scope="col">Error</th></tr></thead><tbody><tr><td colspan="8" class="empty">No tries yet.</td></tr></tbody></table>');
      if (cur !== st.logTry) startLog(cur);
    }
    const poller = pollJSON(ctx, () => `/api/v1/ui/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}`, render, msg);

    q1('[data-role=actions]', root).addEventListener('click', async (e) => {
      const b = e.target.closest('button[data-act]');
      if (!b) return;
      const act = b.dataset.act;
      const down = q1('[data-role=down]', root).checked;
      const btns = root.querySelectorAll('[data-role=actions] button');
      btns.forEach((x) => { x.disabled = true; });
      formMsg(amsg, 'ok', 'Working…');
      try {
        let text;
        if (act === 'clear') {
          const r = await post(`${base}/clear?downstream=${down ? 'true' : 'false'}`, {});
          // The API answers the cleared task ids (older docs said a count): accept both.
          let c = null; try { c = r.json().cleared; } catch (_) { /* ignore */ }
          const n = Array.isArray(c) ? c.length : typeof c === 'number' ? c : null;
          const ids = Array.isArray(c) && c.length ? ` (${trunc(c.join(', '), 300)})` : '';
          text = `Cleared ${n != null ? n + ' ' : ''}task instance${n === 1 ? '' : 's'}${ids}${down ? ' with downstream' : ''}; they will be scheduled again.`;
        } else if (act === 'stop') {
          await post(`${base}/stop`, {});
          text = 'Stop requested: the running try is being killed and will end failed.';
        } else {
          await post(`${base}/mark`, { state: act });
          text = `Marked ${act}.`;
        }
        formMsg(amsg, 'ok', text);
      } catch (err) {
        formMsg(amsg, 'error', err.message);
      } finally {
        btns.forEach((x) => { x.disabled = false; });
        const s = st.data && st.data.task && st.data.task.state;
        q1('[data-testid=stop-button]', root).disabled = s !== 'running';
        poller.reset(); poller.now();
      }
    });
    return {
      onQuery(qq) { st.q = qq; if (st.data) { const d = st.data; st.data = null; render(d); } },
    };
  };

  // ---------------------------------------------------------------- status
  PAGES.status = (root, ctx) => {
    simplePage(root, ctx, {
      title: 'Job status',
      url: () => '/api/v1/ui/status',
      render(c, d) {
        const now = d.now_ms || Date.now();
        const tl = (x) => `${a(L.dag(x.dag_id), x.dag_id)}</td><td>${a(L.task(x.dag_id, x.run_id, x.task_id), x.task_id)}</td><td class="mono small">${esc(x.run_id)}`;
        const run = d.running || [], qd = d.queued || [], fl = d.failed || [];
        setHTML(c, `<h2>${mark('running')} Running now (${run.length})</h2>` + (run.length ? `<table class="list"><thead><tr><th scope="col">DAG</th><th scope="col">Task</th><th scope="col">Run</th><th scope="col">Worker</th><th scope="col">Started (UTC)</th><th scope="col" class="num">Running for</th></tr></thead><tbody>` +
          run.map((x) => `<tr><td>${tl(x)}</td><td class="mono">${esc(x.worker_id || '—')}</td><td class="nowrap">${fmtTime(x.started_ms)}</td><td class="num">${fmtDur(now - x.started_ms)}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">Nothing is running.</p>') +
          `<h2>${mark('queued')} Queued (${qd.length})</h2>` + (qd.length ? `<table class="list"><thead><tr><th scope="col">DAG</th><th scope="col">Task</th><th scope="col">Run</th><th scope="col">Queued at (UTC)</th><th scope="col" class="num">Waiting for</th></tr></thead><tbody>` +
          qd.map((x) => `<tr><td>${tl(x)}</td><td class="nowrap">${fmtTime(x.queued_ms)}</td><td class="num">${fmtDur(now - x.queued_ms)}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">Nothing is queued.</p>') +
          `<h2>${mark('failed')} Failed in the last 24 h (${fl.length})</h2><div data-testid="status-failed">` + (fl.length ? `<table class="list"><thead><tr><th scope="col">DAG</th><th scope="col">Task</th><th scope="col">Run</th><th scope="col">Ended (UTC)</th><th scope="col">Error</th></tr></thead><tbody>` +
          fl.map((x) => `<tr><td>${tl(x)}</td><td class="nowrap">${fmtTime(x.ended_ms)}</td><td class="err">${esc(trunc(x.error || '', 300))}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">No failures in the last 24 hours.</p>') + '</div>');
      },
    });
  };

  // ---------------------------------------------------------------- freshness
  const configOrTable = (kind, name) => (kind === 'table' ? L.table(name) : L.config(name));
  PAGES.freshness = (root, ctx) => {
    simplePage(root, ctx, {
      title: 'Freshness',
      url: () => '/api/v1/ui/freshness',
      render(c, d) {
        const items = d.items || [];
        const late = items.filter((x) => x.lag_days > 0).length;
        setHTML(c, `<p class="muted">${items.length} items · ${late ? `<span class="lag">⚠ ${late} behind</span>` : 'all up to date'}. Lag = days between the newest partition and the expected one.</p>` +
          (items.length ? `<table class="list"><thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">Table</th><th scope="col">Schedule</th>
          <th scope="col">Newest partition</th><th scope="col">Expected</th><th scope="col" class="num">Lag (days)</th></tr></thead><tbody>` +
          items.map((x) => `<tr><td>${esc(x.kind)}</td><td>${a(configOrTable(x.kind, x.name), x.name)}</td><td>${x.table ? a(L.table(x.table), x.table) : '—'}</td>
            <td class="mono">${esc(x.schedule || '—')}</td><td class="mono">${esc(x.newest || '—')}</td><td class="mono">${esc(x.expected || '—')}</td>
            <td class="num ${x.lag_days > 0 ? 'lag' : ''}">${x.lag_days == null ? '—' : x.lag_days > 0 ? `⚠ ${x.lag_days}` : '✓ 0'}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">Nothing to report.</p>'));
      },
    });
  };

  // ---------------------------------------------------------------- errors
  PAGES.errors = (root, ctx, params, q) => {
    const days = () => new URLSearchParams(location.search).get('days') || '7';
    const p = simplePage(root, ctx, {
      title: 'Errors',
      headExtra: `<label>Window <select data-role="days">${[1, 3, 7, 14, 30].map((n) => `<option value="${n}">${n} day${n > 1 ? 's' : ''}</option>`).join('')}</select></label>`,
      url: () => `/api/v1/ui/errors?days=${enc(days())}`,
      render(c, d) {
        const gs = d.groups || [];
        if (!gs.length) { setHTML(c, `<table class="list" data-testid="error-groups"><tbody><tr><td class="empty">No failed tries in the last ${esc(days())} days.</td></tr></tbody></table>`); return; }
        setHTML(c, `<table class="list" data-testid="error-groups"><thead><tr><th scope="col">Pattern</th><th scope="col" class="num">Count</th><th scope="col">First seen</th><th scope="col">Last seen</th>
          <th scope="col">DAGs</th><th scope="col">Tasks</th><th scope="col">Example</th></tr></thead><tbody>` +
          gs.map((g) => {
            const tasks = g.tasks || [];
            return `<tr data-testid="error-group"><td class="err" style="max-width:320px">${esc(g.pattern)}</td><td class="num"><b>${fmtInt(g.count)}</b></td>
            <td class="nowrap">${fmtTime(g.first_ms)}</td><td class="nowrap">${fmtTime(g.last_ms)}</td>
            <td>${(g.dags || []).map((x) => a(L.dag(x), x)).join('<br>')}</td>
            <td class="small">${tasks.slice(0, 5).map((t) => a(L.task(t.dag_id, t.run_id, t.task_id), `${t.task_id} (${t.run_id})`)).join('<br>')}${tasks.length > 5 ? `<br><span class="muted">+${tasks.length - 5} more</span>` : ''}</td>
            <td><details><summary class="err-text">${esc(trunc(g.example || '', 90))}</summary><pre class="json" style="max-width:520px;white-space:pre-wrap">${esc(g.example || '')}</pre></details></td></tr>`;
          }).join('') + '</tbody></table>');
      },
    });
    const sel = q1('[data-role=days]', root);
    sel.value = days();
    sel.addEventListener('change', () => { setQuery({ days: sel.value === '7' ? '' : sel.value }); p.now(); });
    return { onQuery() { sel.value = days(); p.now(); } };
  };

  // ---------------------------------------------------------------- resources
  function barChart(team, rows) {
    const W = 360, H = 120, padL = 44, padB = 20, padT = 6;
    rows = rows.slice().sort((x, y) => (x.day < y.day ? -1 : x.day > y.day ? 1 : 0));
    const max = Math.max(1, ...rows.map((r) => r.cpu_ms || 0));
    const bw = (W - padL - 4) / Math.max(1, rows.length);
    let svg = `<svg width="${W}" height="${H}" role="img" aria-label="CPU seconds per day for ${esc(team)}">`;
    svg += `<text x="${padL - 4}" y="${padT + 8}" text-anchor="end">${fmtCpu(max)}</text><text x="${padL - 4}" y="${H - padB}" text-anchor="end">0</text>`;
    svg += `<line x1="${padL}" x2="${W}" y1="${H - padB}" y2="${H - padB}" stroke="#c9ced6"/>`;
    rows.forEach((r, i) => {
      const h = ((r.cpu_ms || 0) / max) * (H - padB - padT);
      svg += `<rect class="bar" x="${padL + i * bw + 1}" y="${H - padB - h}" width="${Math.max(1, bw - 2)}" height="${Math.max(0, h)}"><title>${esc(r.day)}: ${fmtCpu(r.cpu_ms)} CPU s, ${fmtInt(r.tries)} tries, peak ${fmtMB(r.max_rss_kb)} MB</title></rect>`;
    });
    if (rows.length) {
      svg += `<text x="${padL}" y="${H - 6}">${esc(rows[0].day)}</text>`;
      if (rows.length > 1) svg += `<text x="${W}" y="${H - 6}" text-anchor="end">${esc(rows[rows.length - 1].day)}</text>`;
    }
    return svg + '</svg>';
  }
  PAGES.resources = (root, ctx) => {
    const days = () => new URLSearchParams(location.search).get('days') || '14';
    const p = simplePage(root, ctx, {
      title: 'Resources',
      headExtra: `<label>Window <select data-role="days">${[1, 7, 14, 30, 90].map((n) => `<option value="${n}">${n} day${n > 1 ? 's' : ''}</option>`).join('')}</select></label>`,
      url: () => `/api/v1/ui/resources?days=${enc(days())}`,
      ms: 5000,
      render(c, d) {
        const byJob = (d.by_job || []).slice().sort((x, y) => (y.cpu_ms || 0) - (x.cpu_ms || 0));
        const btd = d.by_team_day || [];
        const teams = [...new Set(btd.map((r) => r.team))].sort();
        const tries = d.tries || [];
        setHTML(c, `<h2>CPU seconds per team per day</h2>` +
          (teams.length ? `<div class="chart-grid">${teams.map((t) => `<div class="chart"><h3>${esc(t || '(no team)')}</h3>${barChart(t, btd.filter((r) => r.team === t))}</div>`).join('')}</div>
          <details style="margin-top:8px"><summary>Table (${btd.length} team-days)</summary><table class="list"><thead><tr><th scope="col">Team</th><th scope="col">Day</th><th scope="col" class="num">CPU s</th><th scope="col" class="num">Peak MB</th><th scope="col" class="num">Tries</th></tr></thead><tbody>` +
          btd.map((r) => `<tr><td>${esc(r.team)}</td><td class="mono">${esc(r.day)}</td><td class="num">${fmtCpu(r.cpu_ms)}</td><td class="num">${fmtMB(r.max_rss_kb)}</td><td class="num">${fmtInt(r.tries)}</td></tr>`).join('') +
          '</tbody></table></details>' : '<p class="empty">No tries in this window.</p>') +
          `<h2>Per job</h2>` + (byJob.length ? `<table class="list"><thead><tr><th scope="col">Job</th><th scope="col">Team</th><th scope="col" class="num">Tries</th><th scope="col" class="num">CPU s (total)</th>
            <th scope="col" class="num">Peak MB</th><th scope="col" class="num">Avg duration</th></tr></thead><tbody>` +
          byJob.map((r) => `<tr><td>${esc(r.job)}</td><td>${esc(r.team || '—')}</td><td class="num">${fmtInt(r.tries)}</td><td class="num">${fmtCpu(r.cpu_ms)}</td>
            <td class="num">${fmtMB(r.max_rss_kb)}</td><td class="num">${r.tries ? fmtDur(r.duration_ms / r.tries) : '—'}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">No jobs.</p>') +
          `<h2>Newest tries (${tries.length})</h2>` + (tries.length ? `<table class="list"><thead><tr><th scope="col">Ended (UTC)</th><th scope="col">DAG</th><th scope="col">Task</th><th scope="col">Team</th><th scope="col">Job</th>
            <th scope="col" class="num">CPU s</th><th scope="col" class="num">Peak MB</th><th scope="col" class="num">Duration</th></tr></thead><tbody>` +
          tries.map((r) => `<tr><td class="nowrap">${fmtTime(r.ended_ms)}</td><td>${a(L.dag(r.dag_id), r.dag_id)}</td><td>${a(L.dag(r.dag_id, new URLSearchParams({ tab: 'grid', task: r.task_id }).toString()), r.task_id)}</td>
            <td>${esc(r.team || '—')}</td><td>${esc(r.job || '—')}</td><td class="num">${fmtCpu(r.cpu_ms)}</td><td class="num">${fmtMB(r.max_rss_kb)}</td><td class="num">${fmtDur(r.duration_ms)}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">No tries.</p>'));
      },
    });
    const sel = q1('[data-role=days]', root);
    sel.value = days();
    sel.addEventListener('change', () => { setQuery({ days: sel.value === '14' ? '' : sel.value }); p.now(); });
    return { onQuery() { sel.value = days(); p.now(); } };
  };

  // ---------------------------------------------------------------- tables
  PAGES.tables = (root, ctx) => {
    simplePage(root, ctx, {
      title: 'Tables',
      url: () => '/api/v1/ui/tables',
      ms: 5000,
      render(c, d) {
        const ts = d.tables || [];
        setHTML(c, ts.length ? `<table class="list"><thead><tr><th scope="col">Table</th><th scope="col" class="num">Partitions</th><th scope="col">Newest</th><th scope="col" class="num">Rows (newest)</th><th scope="col">Quality</th></tr></thead><tbody>` +
          ts.map((t) => t.error
            ? `<tr data-testid="table-unreadable"><td>${a(L.table(t.name), t.name)}</td><td colspan="4" class="err">unreadable: ${esc(t.error)}</td></tr>`
            : `<tr><td>${a(L.table(t.name), t.name)}</td><td class="num">${fmtInt(t.partitions)}</td><td class="mono">${esc(t.newest || '—')}</td><td class="num">${fmtInt(t.rows)}</td>
            <td>${t.flagged ? `<span class="flag" title="partitions whose row count dropped or jumped">⚑ ${fmtInt(t.flagged)} flagged</span>` : '<span class="muted">✓ ok</span>'}</td></tr>`).join('') + '</tbody></table>' : '<p class="empty">No tables.</p>');
      },
    });
  };
  PAGES.table = (root, ctx, [name]) => {
    root.innerHTML = `<div class="page-head"><span class="crumbs">${a('/ui/tables', 'Tables')} /</span><h1>${esc(name)}</h1></div>
      <div class="msg" data-role="msg"></div><div data-role="c"><p class="muted">Loading…</p></div>`;
    const c = q1('[data-role=c]', root);
    pollJSON(ctx, () => `/api/v1/ui/tables/${enc(name)}`, (d) => {
      const schema = d.schema || [], parts = (d.partitions || []).slice().sort((x, y) => (x.ds < y.ds ? 1 : x.ds > y.ds ? -1 : 0));
      const colNames = [];
      const seen = new Set();
      for (const p of parts) for (const col of p.columns || []) if (!seen.has(col.name)) { seen.add(col.name); colNames.push(col.name); }
      const flagBadge = (p) => (p.flag ? `<span class="flag ${p.flag === 'jump' ? 'jump' : ''}" data-testid="quality-flag" title="compared with the trailing median of up to 7 earlier partitions">${p.flag === 'drop' ? '▼ row count dropped' : p.flag === 'jump' ? '▲ row count jumped' : esc(p.flag)}${p.median != null ? ` (median ${fmtInt(Math.round(p.median))})` : ''}</span>` : '');
      const nullCell = (f) => (f == null ? '<td class="num muted">—</td>' : `<td class="num"><span class="nullbar ${f > 0.5 ? 'high' : ''}" aria-hidden="true"><span style="width:${Math.min(100, Math.max(0, f * 100)).toFixed(1)}%"></span></span>${fmtPct(f)}</td>`);
      setHTML(c, `<div class="cols"><div class="panel"><table class="kv"><tbody>
          <tr><th scope="row">Format</th><td class="mono">${esc(d.format || '—')}</td></tr>
          <tr><th scope="row">Partition column</th><td class="mono">${esc(d.partition_column || '—')}</td></tr>
          <tr><th scope="row">Partitions</th><td>${fmtInt(parts.length)}</td></tr>
          <tr><th scope="row">Producer</th><td>${d.producer ? a(L.config(d.producer), d.producer) : '<span class="muted">none (external source)</span>'}</td></tr>
          <tr><th scope="row">Readers</th><td>${(d.readers || []).length ? `<div class="linklist">${d.readers.map((r) => a(L.config(r), r)).join('')}</div>` : '<span class="muted">none</span>'}</td></tr>
          <tr><th scope="row">Lineage</th><td>${a('/ui/lineage?q=' + enc(name), 'show in lineage')}</td></tr>
        </tbody></table></div>
        <div class="panel"><h3 style="margin-top:0">Schema (${schema.length} columns)</h3><table class="list"><thead><tr><th scope="col">Column</th><th scope="col">Type</th></tr></thead><tbody>` +
        schema.map((s) => `<tr><td class="mono">${esc(s.name)}</td><td class="mono">${esc(s.type)}</td></tr>`).join('') + `</tbody></table></div></div>
        <h2>Partitions (newest first)</h2><div class="hscroll"><table class="list" data-testid="table-partitions"><thead><tr><th scope="col">ds</th><th scope="col" class="num">Rows</th><th scope="col">Quality</th>` +
        colNames.map((n) => `<th scope="col" class="num" title="null fraction of ${esc(n)}">${esc(n)}<br><span class="muted small">nulls</span></th>`).join('') + '</tr></thead><tbody>' +
        (parts.length ? parts.map((p) => {
          const byName = new Map((p.columns || []).map((x) => [x.name, x.null_fraction]));
          return `<tr data-testid="partition-row" data-ds="${esc(p.ds)}"><td class="mono">${esc(p.ds)}</td><td class="num">${fmtInt(p.rows)}</td><td>${flagBadge(p) || '<span class="muted">✓</span>'}</td>${colNames.map((n) => nullCell(byName.get(n))).join('')}</tr>`;
        }).join('') : `<tr><td colspan="${3 + colNames.length}" class="empty">No partitions.</td></tr>`) + '</tbody></table></div>');
    }, q1('[data-role=msg]', root), 5000);
  };

  // ---------------------------------------------------------------- lineage
  const LKIND_RANK = { table: 0, group_by: 1, join: 2, staging_query: 3 };
  PAGES.lineage = (root, ctx, params, q) => {
    root.innerHTML = `<div class="page-head"><h1>Lineage</h1>
        <label>Find <input type="search" data-role="filter" placeholder="name substring" autocomplete="off"></label>
        <span class="muted" data-role="count"></span>
        <span class="legend"><span class="item"><svg width="18" height="12"><rect class="shape" width="18" height="12" rx="6" fill="#f1f5f9" stroke="#64748b"/></svg>table</span>
        <span class="item"><svg width="18" height="12"><rect width="18" height="12" rx="2" fill="#eef6ff" stroke="#2f7fd8"/></svg>group_by</span>
        <span class="item"><svg width="18" height="12"><polygon points="4,0 14,0 18,6 14,12 4,12 0,6" fill="#f3eefc" stroke="#7c4dbe"/></svg>join</span>
        <span class="item"><svg width="18" height="12"><rect width="18" height="12" fill="#fff6e8" stroke="#c9821b" stroke-dasharray="3 2"/></svg>staging_query</span></span>
      </div>
      <div class="msg" data-role="msg"></div>
      <div class="graph-wrap" data-testid="lineage" data-role="wrap" style="max-height:calc(100vh - 120px)"><p class="muted" style="padding:10px">Loading…</p></div>`;
    const wrap = q1('[data-role=wrap]', root), filterIn = q1('[data-role=filter]', root);
    filterIn.value = q.get('q') || '';
    let data = null, big = false;
    const NW = 210, NH = 34;
    function apply() {
      const f = filterIn.value.trim().toLowerCase();
      if (!data) return;
      if (big) {
        let shown = 0;
        wrap.querySelectorAll('tr[data-node-id]').forEach((tr) => {
          const on = !f || tr.dataset.search.includes(f);
          tr.hidden = !on; if (on) shown++;
        });
        setHTML(q1('[data-role=count]', root), `${shown} of ${data.nodes.length} nodes`);
        return;
      }
      let hits = 0, first = null;
      wrap.querySelectorAll('g.lnode').forEach((g) => {
        const hit = !!f && g.dataset.search.includes(f);
        g.classList.toggle('hit', hit);
        g.classList.toggle('dim', !!f && !hit);
        if (hit) { hits++; if (!first) first = g; }
      });
      setHTML(q1('[data-role=count]', root), f ? `${hits} match${hits === 1 ? '' : 'es'} of ${data.nodes.length}` : `${data.nodes.length} nodes`);
      if (first && f) {
        const bb = first.getBBox(); const tr = first.transform.baseVal.consolidate();
        const x = tr ? tr.matrix.e : bb.x, y = tr ? tr.matrix.f : bb.y;
        wrap.scrollTo({ left: Math.max(0, x - wrap.clientWidth / 3), top: Math.max(0, y - wrap.clientHeight / 3) });
      }
    }
    function build(d) {
      data = d;
      const nodes = d.nodes || [], edges = d.edges || [];
      big = nodes.length > 600;
      if (!nodes.length) { setHTML(wrap, '<p class="empty">No configs or tables.</p>'); return; }
      if (big) {
        const ins = new Map(), outs = new Map();
        for (const [x, y] of edges) { (outs.get(x) || outs.set(x, []).get(x)).push(y); (ins.get(y) || ins.set(y, []).get(y)).push(x); }
        const lbl = new Map(nodes.map((n) => [n.id, n.label || n.id]));
        const names = (arr) => (arr || []).slice(0, 6).map((i) => esc(lbl.get(i) || i)).join(', ') + ((arr || []).length > 6 ? ` +${arr.length - 6}` : '');
        setHTML(wrap, `<div class="notice" style="margin:8px">${nodes.length} nodes (more than 600): showing a filterable list instead of a drawing.</div>
          <table class="list"><thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">Inputs</th><th scope="col">Outputs</th></tr></thead><tbody>` +
          nodes.slice().sort((x, y) => (LKIND_RANK[x.kind] ?? 9) - (LKIND_RANK[y.kind] ?? 9) || String(x.label).localeCompare(String(y.label))).map((n) =>
            `<tr data-node-id="${esc(n.id)}" data-search="${esc(String(n.label || n.id).toLowerCase() + ' ' + String(n.id).toLowerCase())}"><td>${esc(n.kind)}</td><td>${n.link ? a(n.link, n.label || n.id) : esc(n.label || n.id)}</td>
            <td class="small">${names(ins.get(n.id))}</td><td class="small">${names(outs.get(n.id))}</td></tr>`).join('') + '</tbody></table>');
        apply();
        return;
      }
      const lay = layeredLayout(nodes.map((n) => n.id), edges, { nodeW: NW, nodeH: NH, gapX: 70, gapY: 12 });
      let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${lay.width}" height="${lay.height}" role="img" aria-label="Lineage of tables and configs">${ARROW}${edgePaths(lay)}`;
      nodes.forEach((n, i) => {
        const x = lay.x[i], y = lay.y[i] - NH / 2;
        let shape;
        if (n.kind === 'table') shape = `<rect class="shape" x="0" y="0" width="${NW}" height="${NH}" rx="14"/>`;
        else if (n.kind === 'join') shape = `<polygon class="shape" points="10,0 ${NW - 10},0 ${NW},${NH / 2} ${NW - 10},${NH} 10,${NH} 0,${NH / 2}"/>`;
        else if (n.kind === 'staging_query') shape = `<rect class="shape" x="0" y="0" width="${NW}" height="${NH}" stroke-dasharray="5 3"/>`;
        else shape = `<rect class="shape" x="0" y="0" width="${NW}" height="${NH}" rx="3"/>`;
        const label = n.label || n.id;
        // Long names (Join part tables: <join>_<group_by>) go on two lines, split at a '_' or '.',
        // so that nodes that differ only at the end stay distinguishable; the kind is the shape.
        let l1 = label, l2 = n.kind;
        if (label.length > 30) {
          const cut = Math.max(label.lastIndexOf('_', 30), label.lastIndexOf('.', 30));
          const at = cut >= 12 ? cut + 1 : 30;
          l1 = label.slice(0, at);
          l2 = label.length - at > 32 ? '…' + label.slice(label.length - 31) : label.slice(at);
        }
        const inner = `<title>${esc(n.kind)}: ${esc(label)}</title>${shape}<text x="12" y="15">${esc(l1)}</text><text class="sub${l2 === n.kind ? '' : ' more'}" x="12" y="28">${esc(l2)}</text>`;
        svg += `<g class="lnode k-${esc(n.kind)}" data-node-id="${esc(n.id)}" data-search="${esc(String(label).toLowerCase() + ' ' + String(n.id).toLowerCase())}" transform="translate(${x} ${y})">${n.link ? `<a href="${esc(n.link)}">${inner}</a>` : inner}</g>`;
      });
      setHTML(wrap, svg + '</svg>');
      apply();
    }
    pollJSON(ctx, () => '/api/v1/ui/lineage', build, q1('[data-role=msg]', root), 15000);
    let deb = null;
    filterIn.addEventListener('input', () => { clearTimeout(deb); deb = setTimeout(() => { setQuery({ q: filterIn.value.trim() }); apply(); }, 150); });
    ctx.onDestroy(() => clearTimeout(deb));
    return { onQuery(qq) { filterIn.value = qq.get('q') || ''; apply(); } };
  };

  // ---------------------------------------------------------------- configs
  function diagTable(diags) {
    if (!diags || !diags.length) return '<p class="muted">✓ No diagnostics.</p>';
    return `<table class="list"><thead><tr><th scope="col">Severity</th><th scope="col">Code</th><th scope="col">Path</th><th scope="col">Message</th></tr></thead><tbody>` +
      diags.map((x) => `<tr><td class="sev-${esc(x.severity)}">${x.severity === 'error' ? '✗' : x.severity === 'warning' ? '⚠' : 'ℹ'} ${esc(x.severity)}</td><td class="mono">${esc(x.code)}</td>
        <td class="mono">${esc(x.path)}</td><td>${esc(x.message)}</td></tr>`).join('') + '</tbody></table>';
  }
  function checkForm(el, prefill) {
    el.innerHTML = `<form class="stack-form" data-testid="config-check-form" novalidate>
        <p class="muted" style="margin:0">Paste compiled JSON to see its diagnostics and what would change in the plan. This is a dry run: nothing is applied.</p>
        <label for="chk-file">File path (relative to the repo, e.g. production/joins/team/name)
          <input id="chk-file" name="file" autocomplete="off" placeholder="production/joins/team/name" value="${esc(prefill.file || '')}"></label>
        <label for="chk-json">Compiled JSON
          <textarea id="chk-json" name="json" rows="12" spellcheck="false">${esc(prefill.json || '')}</textarea></label>
        <div class="row"><button type="submit" class="primary">Check (dry run)</button></div>
        <div data-testid="form-message" class="form-message" aria-live="polite"></div>
      </form>
      <div data-testid="config-diff" data-role="result"></div>`;
    const form = el.querySelector('form'), fm = form.querySelector('[data-testid=form-message]'), out = el.querySelector('[data-role=result]');
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const file = form.elements.file.value.trim(), text = form.elements.json.value;
      form.elements.file.removeAttribute('aria-invalid'); form.elements.json.removeAttribute('aria-invalid');
      if (!file) { form.elements.file.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', 'File path is required.'); return; }
      let parsed;
      try { parsed = JSON.parse(text); } catch (err) { form.elements.json.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', `Not valid JSON: ${err.message}`); return; }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) { form.elements.json.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', 'The compiled config must be a JSON object.'); return; }
      const btn = form.querySelector('button'); btn.disabled = true;
      formMsg(fm, 'ok', 'Checking…');
      try {
        const r = await post('/api/v1/ui/configs/check', { file, json: text });
        const d = r.json() || {};
        const diff = d.diff || {};
        const added = diff.added || [], removed = diff.removed || [], changed = diff.changed || [];
        const nErr = (d.diagnostics || []).filter((x) => x.severity === 'error').length;
        formMsg(fm, nErr ? 'error' : 'ok', `Checked: ${(d.diagnostics || []).length} diagnostic(s), ${nErr} error(s). Nothing was applied.`);
        const lst = (arr, cls, sign) => (arr.length ? `<ul class="diff-list">${arr.map((x) => `<li class="${cls}">${sign} ${a(L.dag(x), x)}</li>`).join('')}</ul>` : '<p class="muted">none</p>');
        out._html = null;
        out.innerHTML = `<div class="notice dry-run" role="status">Dry run — nothing was applied. This is what would change if the config were deployed.</div>
          <h3>Diagnostics</h3>${diagTable(d.diagnostics)}
          <h3>Plan diff</h3>
          ${!added.length && !removed.length && !changed.length ? '<p class="muted">No DAG or task would change.</p>' : ''}
          <h3 class="diff-add">DAGs added (${added.length})</h3>${lst(added, 'diff-add', '+')}
          <h3 class="diff-chg">DAGs changed (${changed.length})</h3>${changed.length ? `<ul class="diff-list">${changed.map((ch) => `<li class="diff-chg">~ ${a(L.dag(ch.dag_id), ch.dag_id)}
            ${(ch.tasks_added || []).length ? `<div class="diff-add">+ tasks added: ${(ch.tasks_added).map(esc).join(', ')}</div>` : ''}
            ${(ch.tasks_removed || []).length ? `<div class="diff-rem">− tasks removed: ${(ch.tasks_removed).map(esc).join(', ')}</div>` : ''}
            ${(ch.tasks_changed || []).length ? `<div class="diff-chg">~ tasks changed: ${(ch.tasks_changed).map(esc).join(', ')}</div>` : ''}</li>`).join('')}</ul>` : '<p class="muted">none</p>'}
          <h3 class="diff-rem">DAGs removed (${removed.length})</h3>${lst(removed, 'diff-rem', '−')}`;
      } catch (err) {
        formMsg(fm, 'error', err.message);
      } finally { btn.disabled = false; }
    });
  }
  PAGES.configs = (root, ctx) => {
    root.innerHTML = `<div class="page-head"><h1>Configs</h1><label>Filter <input type="search" data-role="filter" placeholder="name, team, kind" autocomplete="off"></label><span class="muted" data-role="count"></span></div>
      <div class="msg" data-role="msg"></div><div data-role="c"><p class="muted">Loading…</p></div>
      <h2>Check a config</h2><div class="panel" data-role="check"></div>`;
    const c = q1('[data-role=c]', root), filterIn = q1('[data-role=filter]', root);
    filterIn.value = new URLSearchParams(location.search).get('q') || '';
    let list = [];
    const draw = () => {
      const f = filterIn.value.trim().toLowerCase();
      const rows = list.filter((x) => !f || `${x.name} ${x.team} ${x.kind} ${x.file}`.toLowerCase().includes(f));
      setHTML(q1('[data-role=count]', root), `${rows.length} of ${list.length}`);
      setHTML(c, rows.length ? `<table class="list"><thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Team</th><th scope="col">File</th><th scope="col" class="num">Errors</th><th scope="col" class="num">Warnings</th></tr></thead><tbody>` +
        rows.map((x) => `<tr><td>${a(L.config(x.name), x.name)}</td><td>${esc(x.kind)}</td><td>${esc(x.team || '—')}</td><td class="mono small">${esc(x.file || '')}</td>
          <td class="num">${x.errors ? `<span class="sev-error">✗ ${x.errors}</span>` : '0'}</td><td class="num">${x.warnings ? `<span class="sev-warning">⚠ ${x.warnings}</span>` : '0'}</td></tr>`).join('') + '</tbody></table>'
        : '<p class="empty">No configs match.</p>');
    };
    pollJSON(ctx, () => '/api/v1/ui/configs', (d) => { list = d.configs || []; draw(); }, q1('[data-role=msg]', root), 10000);
    filterIn.addEventListener('input', () => { setQuery({ q: filterIn.value.trim() }); draw(); });
    checkForm(q1('[data-role=check]', root), {});
  };
  // ---------------------------------------------------------------- consistency (a Join's page)
  const addDays = (ds, n) => { const [y, m, d] = ds.split('-').map(Number); const t = new Date(Date.UTC(y, m - 1, d + n)); return t.toISOString().slice(0, 10); };
  const fmtRate = (r) => (r == null ? '—' : Number(r).toFixed(4));
  // The overall consistency rate per day (days without figures are gaps), min_rate dashed.
  function rateChart(join, report) {
    const W = 760, H = 160, padL = 48, padR = 8, padB = 20, padT = 14;
    const start = report.start_ds, n = Math.max(1, Math.round((Date.parse(report.end_ds) - Date.parse(start)) / 86400000) + 1);
    const days = report.days || [], min = report.thresholds.min_rate;
    const lo = Math.max(0, Math.min(min, ...days.map((d) => d.consistency_rate)) - 0.005), hi = 1;
    const x = (ds) => padL + ((Math.round((Date.parse(ds) - Date.parse(start)) / 86400000) + 0.5) / n) * (W - padL - padR);
    const y = (r) => padT + ((hi - r) / Math.max(1e-9, hi - lo)) * (H - padT - padB);
    let svg = `<svg width="${W}" height="${H}" role="img" aria-label="Overall consistency rate per day of ${esc(join)}" data-testid="consistency-chart">`;
    svg += `<text x="${padL - 4}" y="${y(hi) + 4}" text-anchor="end">${fmtRate(hi)}</text><text x="${padL - 4}" y="${y(lo) + 4}" text-anchor="end">${fmtRate(lo)}</text>`;
    svg += `<line x1="${padL}" x2="${W - padR}" y1="${H - padB}" y2="${H - padB}" stroke="#c9ced6"/>`;
    svg += `<line class="threshold" x1="${padL}" x2="${W - padR}" y1="${y(min)}" y2="${y(min)}"><title>min_rate ${min}</title></line>`;
    svg += `<text x="${padL + 4}" y="${y(min) - 3}">min_rate ${esc(min)}</text>`;
    let path = '', prev = null;
    days.forEach((d) => {
      const gap = prev && addDays(prev, 1) !== d.ds;
      path += `${path && !gap ? 'L' : 'M'}${x(d.ds).toFixed(1)},${y(d.consistency_rate).toFixed(1)}`;
      prev = d.ds;
    });
    if (path) svg += `<path class="rate" d="${path}"/>`;
    days.forEach((d) => {
      svg += `<circle class="${d.below_min_rate ? 'point below' : 'point'}" cx="${x(d.ds).toFixed(1)}" cy="${y(d.consistency_rate).toFixed(1)}" r="3.5"><title>${esc(d.ds)}: ${fmtRate(d.consistency_rate)} (${fmtInt(d.inconsistent_rows)} of ${fmtInt(d.rows)} rows inconsistent)</title></circle>`;
    });
    svg += `<text x="${padL}" y="${H - 6}">${esc(start)}</text><text x="${W - padR}" y="${H - 6}" text-anchor="end">${esc(report.end_ds)}</text>`;
    return svg + '</svg>';
  }
  function consistencyTable(report) {
    const days = (report.days || []).slice().reverse();
    if (!days.length) return `<p class="empty">No consistency figures from ${esc(report.start_ds)} to ${esc(report.end_ds)}: has the Join's OOC DAG (chronon_join_ooc_&lt;team&gt;) run?</p>`;
    return `<table class="list" data-testid="consistency-days"><thead><tr><th scope="col">Day</th><th scope="col" class="num">Rate</th><th scope="col" class="num">Rows</th><th scope="col" class="num">Inconsistent</th><th scope="col">Worst features</th><th scope="col">Drift above max_psi</th></tr></thead><tbody>` +
      days.map((d) => {
        const worst = (d.features || []).filter((f) => f.consistency_rate < 1).slice(0, 3);
        const drift = d.drift == null ? '<span class="muted">no figures</span>'
          : (d.drift_above_max_psi || []).slice(0, 3).map((f) => `${esc(f.feature)} (${esc(f.side)}) ${Number(f.psi).toFixed(3)}`).join('<br>') || '<span class="muted">none</span>';
        return `<tr><td class="mono">${esc(d.ds)}</td><td class="num">${d.below_min_rate ? `<span class="sev-error" title="below min_rate">✗ ${fmtRate(d.consistency_rate)}</span>` : fmtRate(d.consistency_rate)}</td>
          <td class="num">${fmtInt(d.rows)}</td><td class="num">${fmtInt(d.inconsistent_rows)}</td>
          <td class="small">${worst.map((f) => `<span class="mono">${esc(f.feature)}</span> ${fmtRate(f.consistency_rate)}`).join('<br>') || '<span class="muted">none</span>'}</td><td class="small">${drift}</td></tr>`;
      }).join('') + '</tbody></table>';
  }
  // Polls a Join's figures into `el`: the newest 30 days with figures (the API's default range
  // ends at the newest day; the window is counted back from it).
  function consistencySection(el, ctx, name) {
    setHTML(el, '<p class="muted">Loading…</p>');
    let end = null;
    const base = `/api/v1/joins/${enc(name)}/consistency`;
    const p = pollJSON(ctx, () => (end ? `${base}?start_ds=${addDays(end, -29)}&end_ds=${end}` : base), (d) => {
      if (!end) { end = d.end_ds; p.now(); return; }
      setHTML(el, `<div class="chart consistency">${rateChart(name, d)}</div>${consistencyTable(d)}`);
    }, el, 30000);
  }

  PAGES.config = (root, ctx, [name]) => {
    root.innerHTML = `<div class="page-head"><span class="crumbs">${a('/ui/configs', 'Configs')} /</span><h1>${esc(name)}</h1><span class="meta" data-role="meta"></span></div>
      <div class="msg" data-role="msg"></div>
      <div class="cols"><div><h2>Diagnostics</h2><div data-role="diag"></div><h2>Jobs</h2><div data-role="jobs"></div></div>
      <div><h2>Compiled JSON</h2><pre class="json" data-testid="config-json" data-role="json">Loading…</pre></div></div>
      <section data-role="consistency-box" hidden><h2>Online/offline consistency</h2><div data-role="consistency"></div></section>
      <details class="panel" style="margin-top:14px" data-role="checkbox"><summary><b>Check an edited version</b> <span class="muted">(dry run, nothing is applied)</span></summary><div data-role="check"></div></details>`;
    let checkReady = false;
    pollJSON(ctx, () => `/api/v1/ui/configs/${enc(name)}`, (d) => {
      setHTML(q1('[data-role=meta]', root), `<span>kind <b>${esc(d.kind)}</b></span><span>team <b>${esc(d.team || '—')}</b></span><span class="mono">${esc(d.file || '')}</span>`);
      setHTML(q1('[data-role=diag]', root), diagTable(d.diagnostics));
      const jobs = d.jobs || [];
      setHTML(q1('[data-role=jobs]', root), jobs.length ? `<table class="list"><thead><tr><th scope="col">Job</th><th scope="col">Mode</th><th scope="col">DAG</th><th scope="col">Task</th></tr></thead><tbody>` +
        jobs.map((j) => `<tr><td class="mono">${esc(j.job)}</td><td>${esc(j.mode || '—')}</td><td>${j.dag_id ? a(L.dag(j.dag_id), j.dag_id) : '—'}</td>
          <td>${j.dag_id && j.task_id ? a(L.dag(j.dag_id, new URLSearchParams({ tab: 'grid', task: j.task_id }).toString()), j.task_id) : esc(j.task_id || '—')}</td></tr>`).join('') + '</tbody></table>' : '<p class="muted">No jobs.</p>');
      const pretty = JSON.stringify(d.json, null, 2);
      setHTML(q1('[data-role=json]', root), esc(pretty));
      if (!checkReady) {
        checkReady = true;
        checkForm(q1('[data-role=check]', root), { file: d.file || '', json: pretty });
        if (d.kind === 'join') { q1('[data-role=consistency-box]', root).hidden = false; consistencySection(q1('[data-role=consistency]', root), ctx, name); }
      }
    }, q1('[data-role=msg]', root), 10000);
  };

  // ---------------------------------------------------------------- online
  function parseAt(s) {
    s = s.trim();
    if (!s) return { v: null };
    if (/^\d+$/.test(s)) return { v: Number(s) };
    const m = s.match(/^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/);
    if (!m) return { err: 'Time must be "yyyy-MM-dd HH:mm:ss" (UTC) or epoch milliseconds.' };
    if (!validDate(m[1])) return { err: `"${m[1]}" is not a real calendar date.` };
    const [hh, mm, ss] = [m[2], m[3], m[4]].map(Number);
    if (hh > 23 || mm > 59 || ss > 59) return { err: `"${s}" is not a valid time of day.` };
    const [y, mo, d] = m[1].split('-').map(Number);
    const dt = new Date(0); dt.setUTCFullYear(y, mo - 1, d); dt.setUTCHours(hh, mm, ss, 0);
    return { v: dt.getTime() };
  }
  const showVal = (v) => (v === undefined ? '<span class="muted">(absent)</span>' : `<code>${esc(typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v))}</code>`);
  PAGES.online = (root, ctx) => {
    root.innerHTML = `<div class="page-head"><h1>Online serving</h1></div>
      <div class="msg" data-role="msg"></div>
      <div class="cols"><div><h2>GroupBys served</h2><div data-role="c"><p class="muted">Loading…</p></div></div>
      <div><h2>Fetch playground</h2><div class="panel">
        <form class="stack-form" data-testid="playground-form" novalidate>
          <div class="row">
            <label for="pg-kind">Kind <select id="pg-kind" name="kind"><option value="join">join</option><option value="group_by">group_by</option></select></label>
            <label for="pg-name" style="flex:1">Name <input id="pg-name" name="name" list="pg-names" autocomplete="off" placeholder="team.config_name.v1"></label>
          </div>
          <datalist id="pg-names"></datalist>
          <label for="pg-keys">Keys (JSON object) <textarea id="pg-keys" name="keys" rows="4" spellcheck="false" placeholder='{"user_id": "123"}'></textarea></label>
          <label for="pg-at">Time (optional): yyyy-MM-dd HH:mm:ss UTC, or epoch millis <input id="pg-at" name="at" autocomplete="off" placeholder="2024-01-31 12:00:00"></label>
          <div class="row"><button type="submit" class="primary">Fetch</button></div>
          <div data-testid="form-message" class="form-message" aria-live="polite"></div>
        </form>
        <div data-testid="playground-result" data-role="result"></div></div></div></div>`;
    let online = { group_bys: [], joins: [] };
    const form = q1('form', root), fm = q1('[data-testid=form-message]', form), out = q1('[data-role=result]', root);
    const fillNames = () => {
      const names = form.elements.kind.value === 'join' ? online.joins || [] : (online.group_bys || []).map((g) => g.name);
      setHTML(q1('#pg-names', root), names.map((n) => `<option value="${esc(n)}"></option>`).join(''));
    };
    form.elements.kind.addEventListener('change', fillNames);
    pollJSON(ctx, () => '/api/v1/ui/online', (d) => {
      online = d; fillNames();
      const gbs = d.group_bys || [];
      setHTML(q1('[data-role=c]', root), (gbs.length ? `<table class="list"><thead><tr><th scope="col">GroupBy</th><th scope="col">Batch ds served</th><th scope="col" class="num">Streamed rows</th><th scope="col">Last upload (UTC)</th></tr></thead><tbody>` +
        gbs.map((g) => `<tr><td>${a(L.config(g.name), g.name)}</td><td class="mono">${esc(g.batch_ds || '—')}</td><td class="num">${fmtInt(g.streamed_rows)}</td><td class="nowrap">${fmtTime(g.last_upload_ms)}</td></tr>`).join('') + '</tbody></table>'
        : '<p class="empty">No GroupBy is served online.</p>') +
        `<h3>Joins (${(d.joins || []).length})</h3>` + ((d.joins || []).length ? `<div class="linklist">${d.joins.map((j) => a(L.config(j), j)).join('')}</div>` : '<p class="muted">none</p>'));
    }, q1('[data-role=msg]', root), 5000);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const els = form.elements;
      [els.name, els.keys, els.at].forEach((x) => x.removeAttribute('aria-invalid'));
      const name = els.name.value.trim();
      if (!name) { els.name.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', 'Name is required.'); return; }
      let keys;
      try { keys = JSON.parse(els.keys.value || ''); } catch (err) { els.keys.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', `Keys are not valid JSON: ${err.message}`); return; }
      if (!keys || typeof keys !== 'object' || Array.isArray(keys)) { els.keys.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', 'Keys must be a JSON object, e.g. {"user_id": "123"}.'); return; }
      const at = parseAt(els.at.value);
      if (at.err) { els.at.setAttribute('aria-invalid', 'true'); formMsg(fm, 'error', at.err); return; }
      const btn = form.querySelector('button[type=submit]'); btn.disabled = true;
      formMsg(fm, 'ok', 'Fetching…');
      try {
        const r = await post('/api/v1/ui/online/playground', { kind: els.kind.value, name, keys, at_millis: at.v });
        const d = r.json() || {};
        const feats = d.features || {}, back = d.backfill, differs = new Set(d.differs || []);
        const names = [...new Set(Object.keys(feats).concat(back ? Object.keys(back) : []))].sort();
        formMsg(fm, differs.size ? 'error' : 'ok', back ? (differs.size ? `${differs.size} feature(s) differ from the backfill row.` : 'Online values match the backfill row.') : 'Fetched (no backfill row to compare with).');
        out._html = null;
        out.innerHTML = `<p class="muted">${names.length} features${at.v != null ? ` at ${esc(fmtTime(at.v))} UTC` : ''}${d.backfill_table ? ` · backfill table ${a(L.table(d.backfill_table), d.backfill_table)}` : ''}</p>` +
          `<table class="list"><thead><tr><th scope="col">Feature</th><th scope="col">Online (fetched)</th><th scope="col">Backfill row</th><th scope="col">Match</th></tr></thead><tbody>` +
          (names.length ? names.map((n) => {
            const dif = differs.has(n);
            return `<tr class="${dif ? 'differs' : ''}" data-feature="${esc(n)}"><td class="mono">${esc(n)}</td><td>${showVal(feats[n])}</td><td>${back ? showVal(back[n]) : '<span class="muted">—</span>'}</td>
              <td>${!back ? '<span class="muted">n/a</span>' : dif ? '<span class="differs-mark">≠ differs</span>' : '<span class="muted">= same</span>'}</td></tr>`;
          }).join('') : '<tr><td colspan="4" class="empty">No features returned.</td></tr>') + '</tbody></table>';
      } catch (err) {
        formMsg(fm, 'error', err.message);
      } finally { btn.disabled = false; }
    });
  };

  // ---------------------------------------------------------------- start
  async function start() {
    const onLogin = location.pathname.replace(/\/+$/, '') === '/ui/login';
    try {
      const r = await api('/api/v1/ui/me', { no401: onLogin });
      session.me = r.json();
    } catch (e) {
      if (e.status === 401) { if (!onLogin) return; }
      else if (!onLogin) {
        renderIdentity();
        route();
        main.insertAdjacentHTML('afterbegin', `<div class="error" role="alert">Could not load the session: ${esc(e.message)}</div>`);
        return;
      }
    }
    renderIdentity();
    route();
  }
  start();
})();
