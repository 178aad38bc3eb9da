// Browser tests of the chronoflow web UI: a real `chronoflow standalone` on the quickstart, driven
// by headless Chromium through playwright-core.
//
//   cargo build -p chronoflow
//   (cd crates/chronoflow-web/tests/browser && npm ci)
//   node --test crates/chronoflow-web/tests/browser/
//
// Environment:
//   CHRONOFLOW_BIN          the binary (default: $CARGO_TARGET_DIR or <repo>/target, then debug/chronoflow)
//   CHRONOFLOW_CHROMIUM     the browser (default: /usr/bin/chromium)
//   CHRONOFLOW_SCREENSHOTS  where the screenshots go (default: a temp dir, printed)
//   CHRONOFLOW_UPDATE_DOCS_SCREENSHOTS=1  also copy the best ones to docs/screenshots/
//   CHRONOFLOW_KEEP_TMP=1   keep the temp world (repo, warehouse, state, server log)
//   CI=true                 a missing binary or browser fails instead of skipping
//
// The world: the quickstart configs in a temp repo plus one GroupBy of a team "risk" whose jobs
// run on a command executor that always fails (`chronoflow.toml`), the quickstart data imported as
// quickstart.sh does, all DAGs paused but the Join backfill DAG and the risk GroupBy DAG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../../..');
const BIN = process.env.CHRONOFLOW_BIN || path.join(process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target'), 'debug/chronoflow');
const CHROMIUM = process.env.CHRONOFLOW_CHROMIUM || '/usr/bin/chromium';
const CI = process.env.CI === 'true' || process.env.CI === '1';
const QUICKSTART = path.join(ROOT, 'fixtures/chronon/quickstart');
const VIEWPORT = { width: 1280, height: 800 };
const DS = '2023-11-30'; // the day the quickstart's checkouts (the Joins' left side) cover

const BACKFILL_DAG = 'chronon_join_backfill';
const RISK_DAG = 'chronon_gb_batch_risk';
const RISK_TASK = 'risk_purchases_v1__upload';
const V1_TASK = 'quickstart_training_set_v1__backfill';
const BOOM = `boom: deliberate failure of ${RISK_TASK}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(desc, fn, { timeout = 30_000, interval = 200 } = {}) {
  const end = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) {
      throw new Error(`timed out after ${Math.round(timeout / 1000)} s waiting for ${desc}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(interval);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// ------------------------------------------------------------------ the world
class World {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chronoflow-ui-'));
    this.repo = path.join(this.dir, 'repo');
    this.db = `sqlite://${path.join(this.dir, 'state.db')}`;
    this.env = {
      ...process.env,
      CHRONOFLOW_WAREHOUSE: path.join(this.dir, 'warehouse'),
      CHRONOFLOW_DATABASE_URL: this.db,
      CHRONOFLOW_HOME: path.join(this.dir, 'home'),
      CHRONOFLOW_KV: path.join(this.dir, 'kv'),
    };
    this.server = null;
    this.logFile = path.join(this.dir, 'standalone.log');
  }

  async cf(...args) {
    try {
      const r = await run(BIN, args, { cwd: this.repo, env: this.env, timeout: 60_000, maxBuffer: 16 << 20 });
      return r.stdout;
    } catch (e) {
      throw new Error(`chronoflow ${args.join(' ')} failed: ${e.message}\n${e.stderr || ''}`);
    }
  }

  async setUp() {
    await fsp.cp(QUICKSTART, this.repo, { recursive: true });
    // A GroupBy of a team whose executor always fails: the honest way to get a failed task.
    const gb = JSON.parse(await fsp.readFile(path.join(this.repo, 'compiled/production/group_bys/quickstart/purchases.v1'), 'utf8'));
    gb.metaData.name = 'risk.purchases.v1';
    gb.metaData.team = 'risk';
    await fsp.mkdir(path.join(this.repo, 'compiled/production/group_bys/risk'), { recursive: true });
    await fsp.writeFile(path.join(this.repo, 'compiled/production/group_bys/risk/purchases.v1'), JSON.stringify(gb, null, 1));
    const teamsPath = path.join(this.repo, 'compiled/teams.json');
    const teams = JSON.parse(await fsp.readFile(teamsPath, 'utf8'));
    teams.risk = { description: 'browser test: a team whose jobs always fail', namespace: 'default' };
    await fsp.writeFile(teamsPath, JSON.stringify(teams, null, 2));
    await fsp.writeFile(path.join(this.repo, 'chronoflow.toml'), `
[executors.boom]
kind = "command"
argv = ["sh", "-c", "echo 'boom: deliberate failure of {task_id}' >&2; exit 3"]

[teams.risk]
executor = "boom"

# The daily run the scheduler starts by itself waits on today's data: leave room for a backfill,
# and fail at once (no retry after 60 s).
[dags.${RISK_DAG}]
max_active_runs = 4
retries = 0
`);
    // The data, as quickstart.sh imports it.
    for (const t of ['purchases', 'returns', 'users', 'checkouts']) {
      await this.cf('table', 'import', `data.${t}`, path.join(this.repo, 'data', `${t}.csv`));
    }
    const users = await fsp.readFile(path.join(this.repo, 'data/users.csv'), 'utf8');
    const users30 = path.join(this.dir, 'users-2023-11-30.csv');
    await fsp.writeFile(users30, users.replace(/^2023-11-29,/gm, '2023-11-30,'));
    await this.cf('table', 'import', 'data.users', users30);
    // Something for the online page: the GroupBys served as of 2023-11-29, a Join's metadata.
    for (const g of ['purchases', 'returns', 'users']) {
      const conf = `compiled/production/group_bys/quickstart/${g}.v1`;
      await this.cf('run', '--mode', 'upload', '--repo', '.', '--conf', conf, '--ds', '2023-11-29');
      await this.cf('run', '--mode', 'upload-to-kv', '--repo', '.', '--conf', conf, '--ds', '2023-11-29');
    }
    await this.cf('run', '--mode', 'metadata-upload', '--repo', '.', '--conf', 'compiled/production/joins/quickstart/training_set.v2');
    // Only the Join backfill DAG and the risk DAG run (the daily DAGs would wait for today's data).
    await this.cf('dags', 'sync', '--repo', '.');
    await this.cf('dags', 'pause', '--all');
    await this.cf('dags', 'unpause', BACKFILL_DAG);
    await this.cf('dags', 'unpause', RISK_DAG);
  }

  async start() {
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    const log = fs.openSync(this.logFile, 'a');
    this.server = spawn(BIN, ['standalone', '--repo', this.repo, '--warehouse', this.env.CHRONOFLOW_WAREHOUSE,
      '--database-url', this.db, '--home', this.env.CHRONOFLOW_HOME, '--kv', this.env.CHRONOFLOW_KV,
      '--listen', `127.0.0.1:${this.port}`, '--tick-ms', '100'],
    { cwd: this.repo, env: this.env, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.exited = null;
    this.server.on('exit', (code, sig) => { this.exited = `exit code ${code}, signal ${sig}`; });
    await waitFor(`${this.base}/api/v1/health`, async () => {
      if (this.exited) throw new Error(`chronoflow standalone exited (${this.exited}):\n${this.logTail()}`);
      const r = await fetch(`${this.base}/api/v1/health`).catch(() => null);
      return r && r.ok;
    }, { timeout: 30_000, interval: 100 });
  }

  logTail(n = 40) {
    try { return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-n).join('\n'); } catch (_) { return '(no log)'; }
  }

  // SIGTERM drains (nothing long runs here); SIGKILL after 5 s.
  async stop() {
    const p = this.server;
    if (!p || this.exited) return;
    const gone = new Promise((r) => p.once('exit', r));
    try { process.kill(-p.pid, 'SIGTERM'); } catch (_) { return; }
    const t = setTimeout(() => { try { process.kill(-p.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 5000);
    await gone;
    clearTimeout(t);
  }

  killNow() {
    if (this.server && !this.exited) { try { process.kill(-this.server.pid, 'SIGKILL'); } catch (_) { /* gone */ } }
  }

  // The API, as a client outside the browser (no Origin, no cookie: the guard's CLI path).
  async api(p, { token, method = 'GET', body } = {}) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null; try { json = JSON.parse(text); } catch (_) { /* text */ }
    return { status: r.status, json, text };
  }

  async dagPaused(dag, token) {
    const r = await this.api(`/api/v1/dags/${encodeURIComponent(dag)}`, { token });
    assert.equal(r.status, 200, `GET /api/v1/dags/${dag}: ${r.status} ${r.text}`);
    return r.json.dag.paused;
  }
}

// ------------------------------------------------------------------ the attacker's site
function startAttacker(targetPort) {
  const pages = {
    '/form': (dag, act) => `<!doctype html><title>cute cats</title><h1>cute cats</h1>
      <form id="f" method="post" action="http://127.0.0.1:${targetPort}/api/v1/dags/${dag}/${act}">
      <input type="hidden" name="x" value="1"></form><script>document.getElementById('f').submit()</script>`,
    '/fetch': (dag, act) => `<!doctype html><title>more cats</title><h1>more cats</h1><script>
      fetch('http://127.0.0.1:${targetPort}/api/v1/dags/${dag}/${act}', { method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'Content-Type': 'text/plain' }, body: '{}' }).then(() => { document.title = 'sent'; }, () => { document.title = 'sent'; });
      </script>`,
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const page = pages[u.pathname];
    if (!page) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page(u.searchParams.get('dag'), u.searchParams.get('act') || 'pause'));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ------------------------------------------------------------------ the test
const skipReason = (() => {
  if (!fs.existsSync(BIN)) return `no chronoflow binary at ${BIN} (cargo build -p chronoflow, or set CHRONOFLOW_BIN)`;
  if (!fs.existsSync(CHROMIUM)) return `no browser at ${CHROMIUM} (apt-get install chromium, or set CHRONOFLOW_CHROMIUM)`;
  return null;
})();

test('chronoflow web UI in headless Chromium', { timeout: 8 * 60_000, skip: !CI && skipReason ? skipReason : false }, async (t) => {
  if (skipReason) assert.fail(skipReason); // under CI a missing browser or binary fails
  const t0 = Date.now();
  const world = new World();
  const shotDir = process.env.CHRONOFLOW_SCREENSHOTS || path.join(world.dir, 'screenshots');
  fs.mkdirSync(shotDir, { recursive: true });
  t.diagnostic(`screenshots: ${shotDir}`);
  console.log(`# screenshots: ${shotDir}`);
  // The server runs in its own process group: never leave it behind, even on Ctrl-C.
  const onExit = () => world.killNow();
  const onSignal = () => { world.killNow(); process.exit(130); };
  process.on('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let browser = null, attacker = null, failed = false;
  const timings = [];

  // Every page of our UI: no uncaught exception, no console error. The browser logs a failed
  // fetch ("Failed to load resource: ... status of 403") as a console error: such lines are
  // allowed only in the steps that provoke them (`allowHttp`).
  const problems = [];
  let stepName = 'setup', allowHttp = false;
  const watch = (page) => {
    page.on('pageerror', (e) => problems.push(`[${stepName}] uncaught exception on ${page.url()}: ${e.stack || e.message}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const text = m.text();
      if (allowHttp && /^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
      problems.push(`[${stepName}] console error on ${page.url()}: ${text} (${(m.location() || {}).url || ''})`);
    });
    return page;
  };
  const state = { page: null };
  const shot = async (name, page = state.page) => {
    const file = path.join(shotDir, `${name}.png`);
    await page.screenshot({ path: file });
    return file;
  };

  async function step(name, fn, opts = {}) {
    await t.test(name, { skip: failed ? 'an earlier step failed' : false }, async () => {
      stepName = name; allowHttp = !!opts.allowHttp;
      const s = Date.now();
      try {
        await fn();
        assert.deepEqual(problems, [], `console errors or uncaught exceptions in step ${name}`);
      } catch (e) {
        failed = true;
        if (state.page && !state.page.isClosed()) {
          const f = await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-')}`).catch(() => null);
          if (f) e.message += `\n(screenshot: ${f}; page ${state.page.url()})`;
        }
        e.message += `\n(server log tail, ${world.logFile}):\n${world.logTail(15)}`;
        throw e;
      } finally {
        timings.push(`${name}: ${((Date.now() - s) / 1000).toFixed(1)} s`);
        problems.length = 0;
      }
    });
  }

  // Text of a locator, or '' when absent.
  const text = async (page, sel) => {
    const l = page.locator(sel);
    return (await l.count()) ? (await l.first().textContent()) || '' : '';
  };
  const cells = (page) => page.$$eval('[data-testid=grid-cell]', (tds) => tds.map((td) => ({ task: td.dataset.taskId, run: td.dataset.runId, state: td.dataset.state })));
  const gotoUi = async (page, p) => { await page.goto(world.base + p); };
  // Click a link of the top bar (client-side navigation: the page is not reloaded).
  const nav = async (page, name) => { await page.click(`#nav a[data-nav=${name}]`); };

  try {
    await t.test('setup: temp repo, data, chronoflow standalone, browser', async () => {
      const s = Date.now();
      await world.setUp();
      await world.start();
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
      attacker = await startAttacker(world.port);
      timings.push(`setup (import, uploads, server up, browser): ${((Date.now() - s) / 1000).toFixed(1)} s`);
      t.diagnostic(`chronoflow ${world.base} (world ${world.dir}); browser ${browser.version()}`);
    }).catch(() => { failed = true; });

    const ctx = failed ? null : await browser.newContext({ viewport: VIEWPORT });
    const page = ctx ? watch(await ctx.newPage()) : null;
    state.page = page;
    page?.setDefaultTimeout(20_000);
    let runId = null;

    await step('a. DAG list, trigger the Join backfill, grid turns success', async () => {
      await gotoUi(page, '/ui');
      await waitFor('6 DAG rows', async () => (await page.locator('[data-testid=dag-row]').count()) === 6);
      const row = page.locator(`[data-testid=dag-row][data-dag-id=${BACKFILL_DAG}]`);
      assert.equal(await row.count(), 1, `no row for ${BACKFILL_DAG}`);
      const rowText = await row.textContent();
      assert.match(rowText, /manual/, 'the Join backfill DAG is listed as manual');
      assert.match(rowText, /no runs/, 'a fresh world has no runs of it');
      assert.equal(await row.locator('[data-testid=pause-toggle]').getAttribute('aria-checked'), 'false');
      // The name filter: typing filters, Enter does not reload the page (no form submission).
      await page.evaluate(() => { window.__noReload = true; });
      await page.fill('form[data-role=filters] input[name=q]', 'backfill');
      await page.press('form[data-role=filters] input[name=q]', 'Enter');
      await waitFor('the filter to keep one DAG', async () => (await page.locator('[data-testid=dag-row]').count()) === 1);
      assert.equal(await page.evaluate(() => window.__noReload), true, 'Enter in the filter reloaded the page');
      assert.match(page.url(), /\/ui\?q=backfill$/);
      await row.locator(`a[href="/ui/dags/${BACKFILL_DAG}"]`).click();
      await page.waitForURL(`**/ui/dags/${BACKFILL_DAG}`);
      await page.fill('[data-testid=trigger-start]', DS);
      await page.fill('[data-testid=trigger-end]', DS);
      await page.click('[data-testid=trigger-submit]');
      const fm = page.locator('[data-testid=trigger-form] [data-testid=form-message]');
      await waitFor('the trigger confirmation', async () => /Triggered 2023-11-30: 1 run/.test(await fm.textContent()));
      const seen = new Set();
      const done = await waitFor('every task of the run success in the grid', async () => {
        const cs = await cells(page);
        cs.forEach((c) => seen.add(c.state));
        if (!cs.length) return false;
        const runs = new Set(cs.map((c) => c.run));
        assert.equal(runs.size, 1, `one run expected in the grid, found ${[...runs]}`);
        if (cs.some((c) => c.state === 'failed' || c.state === 'upstream_failed')) {
          throw new Error(`a task failed: ${JSON.stringify(cs)}`);
        }
        return cs.every((c) => c.state === 'success') && cs;
      }, { timeout: 180_000, interval: 250 });
      runId = done[0].run;
      assert.deepEqual(done.map((c) => c.task).sort(), [
        'quickstart_training_set_v1__backfill', 'quickstart_training_set_v2__backfill', 'wait_for__data_checkouts__ds',
        'wait_for__data_purchases__ds', 'wait_for__data_returns__ds', 'wait_for__data_users__ds'].sort());
      assert.match(runId, /2023-11-30/);
      t.diagnostic(`grid states seen while polling: ${[...seen].join(', ')}`);
      // The run's header mark turned success too.
      assert.equal(await page.locator('[data-testid=grid] thead .mark.s-success').count(), 1);
    });

    await step('b. task page from a grid cell: log and tries', async () => {
      await page.click(`[data-testid=grid-cell][data-task-id=${V1_TASK}][data-run-id="${runId}"] a`);
      await page.waitForURL(`**/tasks/${V1_TASK}`);
      const log = page.locator('[data-testid=task-log]');
      await waitFor('the log of try 1', async () => /rows=200/.test(await log.textContent()));
      const logText = await log.textContent();
      assert.match(logText, /# try 1 on .*\(success\)/);
      assert.match(logText, /backfill quickstart\.training_set\.v1 over 2023-11-30/);
      assert.equal((logText.match(/backfill quickstart\.training_set\.v1 over/g) || []).length, 1, 'the log is shown once, not repeated');
      const tries = page.locator('[data-testid=tries-table] tbody tr');
      assert.equal(await tries.count(), 1);
      assert.match(await tries.first().textContent(), /#1.*success/s);
      assert.match(await text(page, '[data-role=loghead]'), /try 1/);
    });

    await step('c. clear the task: it runs again (try 2)', async () => {
      // The rerun takes well under a second, less than the page's poll interval: to see the task
      // leave success for sure, the DAG is paused (through the API) while the task is cleared,
      // so it stays scheduled until the DAG is unpaused.
      const r = await world.api(`/api/v1/dags/${BACKFILL_DAG}/pause`, { method: 'POST', body: {} });
      assert.equal(r.status, 200, `pause: ${r.status} ${r.text}`);
      await page.click('[data-testid=clear-button]');
      const am = page.locator('[data-role=actions] [data-testid=form-message]');
      await waitFor('the clear confirmation', async () => /Cleared 1 task instance \(quickstart_training_set_v1__backfill\)/.test(await am.textContent()));
      const waiting = await waitFor('the task to show it waits again', async () => {
        const st = (await text(page, 'h1 + [data-role=state]')).trim();
        return /scheduled|queued|waiting/.test(st) && st;
      }, { timeout: 20_000, interval: 100 });
      assert.equal(await page.locator('[data-testid=tries-table] tbody tr').count(), 1, 'no new try while the DAG is paused');
      // Every state the page shows from now on.
      await page.evaluate(() => {
        const el = document.querySelector('h1 + [data-role=state]');
        window.__states = [el.textContent.trim()];
        new MutationObserver(() => { const s = el.textContent.trim(); if (s && s !== window.__states.at(-1)) window.__states.push(s); })
          .observe(el, { childList: true, subtree: true, characterData: true });
      });
      const u = await world.api(`/api/v1/dags/${BACKFILL_DAG}/unpause`, { method: 'POST', body: {} });
      assert.equal(u.status, 200, `unpause: ${u.status} ${u.text}`);
      await waitFor('try 2 in the tries table, success', async () => {
        const rows = page.locator('[data-testid=tries-table] tbody tr');
        return (await rows.count()) === 2 && /#2.*success/s.test(await rows.first().textContent());
      }, { timeout: 120_000, interval: 100 });
      // Try 2 finds its partition written and says so (the header line shows the try's state when
      // the log was first read).
      await waitFor('the log of try 2', async () => /Log — try 2/.test(await text(page, '[data-role=loghead]')) &&
        /# try 2 on .*\((running|success)\)\s+backfill quickstart\.training_set\.v1 over 2023-11-30/.test(await text(page, '[data-testid=task-log]')));
      await waitFor('the task state back to success', async () => /success/.test(await text(page, 'h1 + [data-role=state]')));
      const states = await page.evaluate(() => window.__states);
      t.diagnostic(`task states shown: ✓ success → ${waiting} → ${states.slice(1).join(' → ')}`);
    });

    await step('d. a failing task: grid, error analysis, status page', async () => {
      await nav(page, 'dags');
      await page.locator(`[data-testid=dag-row][data-dag-id=${RISK_DAG}] a[href="/ui/dags/${RISK_DAG}"]`).click();
      await page.waitForURL(`**/ui/dags/${RISK_DAG}`);
      await page.fill('[data-testid=trigger-start]', DS);
      await page.fill('[data-testid=trigger-end]', DS);
      await page.click('[data-testid=backfill-submit]');
      const fm = page.locator('[data-testid=trigger-form] [data-testid=form-message]');
      await waitFor('the backfill confirmation', async () => /Backfill 2023-11-30 submitted: 1 run/.test(await fm.textContent()));
      const cell = `[data-testid=grid-cell][data-task-id=${RISK_TASK}][data-run-id^="backfill__2023-11-30"]`;
      await waitFor(`${RISK_TASK} failed in the grid`, async () => (await page.getAttribute(cell, 'data-state', { timeout: 1000 })) === 'failed', { timeout: 120_000 });
      assert.equal(await page.getAttribute(`[data-testid=grid-cell][data-task-id=${RISK_TASK}_to_kv][data-run-id^="backfill__2023-11-30"]`, 'data-state'), 'upstream_failed');

      await nav(page, 'errors');
      const group = page.locator('[data-testid=error-group]', { hasText: BOOM });
      await waitFor('an error group with the message', async () => (await group.count()) === 1);
      const g = await group.textContent();
      assert.match(g, new RegExp(RISK_DAG));
      assert.match(g, new RegExp(`${RISK_TASK} \\(backfill__2023-11-30`));
      // From the group to the failed try: the error and its log.
      await group.locator(`a[href*="/tasks/${RISK_TASK}"]`).first().click();
      await page.waitForURL(`**/tasks/${RISK_TASK}`);
      await waitFor('the failed try with its log', async () => (await text(page, '[data-testid=task-log]')).includes(BOOM));
      assert.match(await text(page, '[data-testid=tries-table] tbody tr'), /failed.*\b3\b.*boom/s);

      await nav(page, 'status');
      const failedList = page.locator('[data-testid=status-failed]');
      await waitFor('the failed list on /ui/status', async () => (await failedList.count()) === 1 && (await failedList.textContent()).includes(BOOM));
      assert.match(await failedList.textContent(), new RegExp(`${RISK_DAG}.*${RISK_TASK}`, 's'));
    });

    await step('e. tables: partitions, row counts, null fractions, a quality flag', async () => {
      await nav(page, 'tables');
      const link = page.locator('a[href="/ui/tables/default.quickstart_training_set_v1"]');
      await link.waitFor();
      await link.click();
      await page.waitForURL('**/ui/tables/default.quickstart_training_set_v1');
      const row = page.locator('[data-testid=partition-row][data-ds="2023-11-30"]');
      await row.waitFor();
      const tds = await row.locator('td').allTextContents();
      assert.equal(tds[1], '200', 'row count of the training set partition');
      const fractions = tds.slice(3).filter((x) => /^\d+(\.\d+)?%$/.test(x.trim()));
      assert.ok(fractions.length >= 20, `null fractions per column (got ${tds.slice(3).join(' | ')})`);
      assert.ok(fractions.some((x) => x.trim() !== '0.0%'), 'some feature columns have nulls (users without history)');
      assert.equal(await page.locator('[data-testid=quality-flag]').count(), 0);
      assert.match(await page.locator('main').textContent(), /Producer\s*quickstart\.training_set\.v1/);

      // A tiny extra partition of a source table: its row count drops far below the median.
      const csv = path.join(world.dir, 'purchases-2023-12-01.csv');
      await fsp.writeFile(csv, 'ds,ts,purchase_id,user_id,product_id,purchase_price\n2023-12-01,1701400000000,AAAA0000-0000-0000-0000-000000000001,1,19,120\n');
      await world.cf('table', 'import', 'data.purchases', csv);
      await nav(page, 'tables');
      const prow = page.locator('tr', { has: page.locator('a[href="/ui/tables/data.purchases"]') });
      await waitFor('data.purchases flagged in the table list', async () => /1 flagged|\d+ flagged/.test(await prow.textContent()) && /2023-12-01/.test(await prow.textContent()));
      await prow.locator('a').click();
      await page.waitForURL('**/ui/tables/data.purchases');
      const flagged = page.locator('[data-testid=partition-row][data-ds="2023-12-01"]');
      await flagged.waitFor();
      assert.equal((await flagged.locator('td').nth(1).textContent()).trim(), '1');
      assert.match(await flagged.locator('[data-testid=quality-flag]').textContent(), /row count dropped \(median 11\)/);
    });

    await step('h. bad input: impossible dates, end before start, unknown DAG', async () => {
      const before = (await world.api(`/api/v1/runs?dag_id=${BACKFILL_DAG}`)).json.runs.length;
      await gotoUi(page, `/ui/dags/${BACKFILL_DAG}`);
      const fm = page.locator('[data-testid=trigger-form] [data-testid=form-message]');
      await page.fill('[data-testid=trigger-start]', '2023-02-30');
      await page.fill('[data-testid=trigger-end]', '2023-03-01');
      await page.click('[data-testid=trigger-submit]');
      await waitFor('the invalid date message', async () => /"2023-02-30" is not a real calendar date/.test(await fm.textContent()));
      assert.equal(await page.getAttribute('[data-testid=trigger-start]', 'aria-invalid'), 'true');
      await page.fill('[data-testid=trigger-start]', '2023-11-30');
      await page.fill('[data-testid=trigger-end]', '2023-11-29');
      await page.click('[data-testid=trigger-submit]');
      await waitFor('the end-before-start message', async () => /Start date 2023-11-30 is after end date 2023-11-29/.test(await fm.textContent()));
      await sleep(500);
      assert.equal((await world.api(`/api/v1/runs?dag_id=${BACKFILL_DAG}`)).json.runs.length, before, 'no run was created');
      // The server refuses the same input on its own (a client that skips the form).
      for (const [body, msg] of [[{ start_ds: '2023-02-30', end_ds: '2023-03-01' }, /is not a yyyy-MM-dd date/],
        [{ start_ds: '2023-11-30', end_ds: '2023-11-29' }, /is after end_ds/]]) {
        const r = await world.api(`/api/v1/dags/${BACKFILL_DAG}/runs`, { method: 'POST', body });
        assert.equal(r.status, 400, `POST runs ${JSON.stringify(body)}: ${r.status} ${r.text}`);
        assert.match(r.json.error, msg);
      }
      assert.equal((await world.api(`/api/v1/runs?dag_id=${BACKFILL_DAG}`)).json.runs.length, before, 'no run was created');

      await gotoUi(page, '/ui/dags/nope');
      const alert = page.locator('main [role=alert]');
      await waitFor('the unknown DAG message', async () => /unknown DAG "nope"/.test(await text(page, 'main [role=alert]')));
      const body = await page.locator('main').textContent();
      assert.doesNotMatch(body, /stack|panicked|at \S+\.js:\d+|Traceback/i);
      assert.equal(await page.locator('[data-testid=trigger-form]').count(), 0, 'no trigger form for an unknown DAG');
      assert.equal(await alert.count(), 1);
      await gotoUi(page, '/ui/no/such/page');
      await waitFor('the not-found page', async () => /Not found/.test(await text(page, 'main h1')));
    }, { allowHttp: true });

    await step('i. screenshots of every main page (1280×800)', async () => {
      const v2 = 'quickstart_training_set_v2__backfill';
      const pages = [
        ['01-dags', '/ui', '[data-testid=dag-row]'],
        ['02-grid', `/ui/dags/${BACKFILL_DAG}?tab=grid`, '[data-testid=grid-cell]'],
        ['03-graph', `/ui/dags/${BACKFILL_DAG}?tab=graph`, '[data-testid=graph] g.gnode[data-state=success]'],
        ['04-gantt', `/ui/dags/${BACKFILL_DAG}?tab=gantt`, '[data-testid=gantt] svg'],
        ['05-task', `/ui/dags/${BACKFILL_DAG}/runs/${encodeURIComponent(runId)}/tasks/${v2}`, '[data-testid=tries-table] tbody tr'],
        ['06-status', '/ui/status', '[data-testid=status-failed]'],
        ['07-errors', '/ui/errors', '[data-testid=error-group]'],
        ['08-resources', '/ui/resources', 'main h2:has-text("Per job")'],
        ['09-tables', '/ui/tables', 'main table.list a'],
        ['10-table', '/ui/tables/default.quickstart_training_set_v2', '[data-testid=partition-row]'],
        ['11-table-quality', '/ui/tables/data.purchases', '[data-testid=quality-flag]'],
        ['12-lineage', '/ui/lineage', '[data-testid=lineage] g.lnode'],
        ['13-configs', '/ui/configs', 'main table.list tbody tr'],
        ['14-online', '/ui/online', 'main [data-role=c] table'],
        ['15-freshness', '/ui/freshness', 'main table.list tbody tr'],
      ];
      for (const [name, p, ready] of pages) {
        await gotoUi(page, p);
        await page.locator(ready).first().waitFor({ timeout: 20_000 }).catch((e) => { throw new Error(`${p}: ${ready} never appeared: ${e.message}`); });
        if (name === '05-task') await waitFor('the task log', async () => /rows=200/.test(await text(page, '[data-testid=task-log]')));
        const alerts = await page.locator('main .error[role=alert]').allTextContents();
        assert.deepEqual(alerts, [], `${p} shows an error`);
        if (name === '12-lineage') {
          const lineage = await page.locator('[data-testid=lineage]').textContent();
          for (const n of ['quickstart.training_set.v1', 'quickstart.purchases.v1', 'data.purchases', 'default.quickstart_training_set_v1']) {
            assert.ok(lineage.includes(n), `the lineage shows ${n}`);
          }
        }
        await sleep(150);
        await shot(name);
      }
      if (process.env.CHRONOFLOW_UPDATE_DOCS_SCREENSHOTS === '1') {
        const docs = path.join(ROOT, 'docs/screenshots');
        fs.mkdirSync(docs, { recursive: true });
        for (const [from, to] of [['01-dags', 'dag-list'], ['02-grid', 'grid'], ['05-task', 'task-log'], ['12-lineage', 'lineage'], ['11-table-quality', 'table-quality']]) {
          fs.copyFileSync(path.join(shotDir, `${from}.png`), path.join(docs, `${to}.png`));
        }
        t.diagnostic(`copied 5 screenshots to ${docs}`);
      }
    });

    await step("j. a Join's page: consistency chart and daily figures", async () => {
      // Figures as the OOC DAG's metrics job writes them (<join>_consistency, <join>_drift), for
      // six days with a gap on 2023-11-27; 2023-11-30 is below min_rate with one drifting feature.
      const out = 'default.quickstart_training_set_v2';
      const f1 = 'quickstart_purchases_v1_purchase_price_sum_14d', f2 = 'quickstart_returns_v1_refund_amt_sum_7d';
      const rows = ['ds,feature,rows,both_null,online_null_only,offline_null_only,mismatches,smape,consistency_rate'];
      for (const [ds, bad] of [['2023-11-24', 0], ['2023-11-25', 1], ['2023-11-26', 2], ['2023-11-28', 0], ['2023-11-29', 3], ['2023-11-30', 56]]) {
        const rate = (1 - bad / 380).toFixed(6);
        rows.push(`${ds},${f1},380,0,0,0,${bad},0.05,${rate}`, `${ds},${f2},380,0,0,0,0,0.0,1.0`, `${ds},__overall__,380,0,0,0,${bad},0.0,${rate}`);
      }
      const drift = ['ds,feature,side,rows,null_rate,distinct_estimate,mean,p05,p25,p50,p75,p95,psi,baseline_days'];
      for (const side of ['online', 'offline']) {
        drift.push(`2023-11-30,${f1},${side},380,0.01,120,10.5,1.0,5.0,10.0,15.0,20.0,${side === 'online' ? 0.41 : 0.05},7`);
      }
      const c = path.join(world.dir, 'consistency.csv'), d = path.join(world.dir, 'drift.csv');
      await fsp.writeFile(c, rows.join('\n') + '\n');
      await fsp.writeFile(d, drift.join('\n') + '\n');
      await world.cf('table', 'import', `${out}_consistency`, c);
      await world.cf('table', 'import', `${out}_drift`, d);

      await gotoUi(page, '/ui/configs/quickstart.training_set.v2');
      const chart = page.locator('[data-testid=consistency-chart]');
      await chart.waitFor();
      assert.equal(await chart.locator('circle.point').count(), 6, 'one point per day with figures');
      assert.equal(await chart.locator('circle.point.below').count(), 1, 'one day below min_rate');
      assert.match(await chart.textContent(), /min_rate 0\.99/);
      const days = page.locator('[data-testid=consistency-days] tbody tr');
      assert.equal(await days.count(), 6);
      const newest = await days.first().textContent();
      assert.match(newest, /2023-11-30/);
      assert.match(newest, /✗ 0\.8526/);
      assert.match(newest, new RegExp(`${f1} \\(online\\) 0\\.410`));
      assert.doesNotMatch(await days.nth(1).textContent(), /✗/);
      // The same figures as the API (one reader).
      const api = await world.api('/api/v1/joins/quickstart.training_set.v2/consistency?start_ds=2023-11-30&end_ds=2023-11-30');
      assert.equal(api.status, 200, api.text);
      assert.equal(api.json.days[0].inconsistent_rows, 56);
      // A GroupBy's page has no consistency section.
      await gotoUi(page, '/ui/configs/quickstart.purchases.v1');
      await page.locator('[data-role=meta] b').first().waitFor();
      assert.equal(await page.locator('[data-role=consistency-box]').isVisible(), false);
      await gotoUi(page, '/ui/configs/quickstart.training_set.v2');
      await chart.waitFor();
      await page.locator('[data-role=consistency-box]').scrollIntoViewIfNeeded();
      await shot('16-consistency');
    });

    // Cross-site POSTs, in the default mode users run: no token configured, loopback, the
    // browser fully trusted by the server. Both the page's own context and a fresh one.
    const crossSite = async (context, dag, act, label) => {
      const evil = watch(await context.newPage());
      const ap = attacker.address().port;
      const target = `${world.base}/api/v1/dags/${dag}/${act}`;
      const resp = evil.waitForResponse((r) => r.url() === target, { timeout: 15_000 });
      await evil.goto(`http://127.0.0.1:${ap}/form?dag=${dag}&act=${act}`);
      const r = await resp;
      const status = r.status();
      const body = await r.text().catch(() => '');
      assert.equal(status, 403, `${label}: the cross-site form POST got ${status} ${body}`);
      assert.match(body, /cross-site request refused/);
      await evil.goto(`http://127.0.0.1:${ap}/fetch?dag=${dag}&act=${act}`);
      await waitFor('the no-cors fetch to be sent', async () => (await evil.title()) === 'sent', { timeout: 10_000 });
      await evil.close();
      t.diagnostic(`${label}: cross-site POST ${act} ${dag} → ${status} ${body.trim()}`);
    };

    await step('g. cross-site POST without tokens (loopback mode)', async () => {
      assert.equal((await world.api('/api/v1/ui/me')).json.auth, false, 'no tokens yet');
      assert.equal(await world.dagPaused(BACKFILL_DAG), false);
      await crossSite(ctx, BACKFILL_DAG, 'pause', 'no tokens, the UI context');
      const fresh = await browser.newContext({ viewport: VIEWPORT });
      await crossSite(fresh, BACKFILL_DAG, 'pause', 'no tokens, a fresh context');
      await fresh.close();
      await sleep(300);
      assert.equal(await world.dagPaused(BACKFILL_DAG), false, `${BACKFILL_DAG} was paused by a cross-site POST`);
      // Not paused from the UI either (the page still shows it active).
      await gotoUi(page, '/ui');
      await waitFor('the DAG list', async () => (await page.locator('[data-testid=dag-row]').count()) === 6);
      assert.equal(await page.getAttribute(`[data-testid=dag-row][data-dag-id=${BACKFILL_DAG}] [data-testid=pause-toggle]`, 'aria-checked'), 'false');
    }, { allowHttp: true });

    const tokens = {};
    await step('f. access control: viewer refused, team operator allowed', async () => {
      const mk = async (name, team, role) => {
        const out = await world.cf('tokens', 'create', '--name', name, '--team', team, '--role', role, '--database-url', world.db);
        const m = out.match(/cft_[A-Za-z0-9_-]+/);
        assert.ok(m, `no token in the output of tokens create: ${out}`);
        tokens[name] = m[0];
      };
      await mk('viewer', '*', 'viewer');
      await mk('risk-operator', 'risk', 'operator');
      await mk('quickstart-operator', 'quickstart', 'operator');
      await mk('admin', '*', 'admin');
      await waitFor('the API to require a token', async () => (await world.api('/api/v1/ui/me')).status === 401, { timeout: 10_000 });
      assert.equal(await world.dagPaused(RISK_DAG, tokens.admin), false);

      const signIn = async (token) => {
        const c = await browser.newContext({ viewport: VIEWPORT });
        const p = watch(await c.newPage());
        p.setDefaultTimeout(20_000);
        state.page = p;
        await p.goto(`${world.base}/ui`);
        await p.waitForURL('**/ui/login?next=*');
        await p.fill('[data-testid=login-form] input[name=token]', token);
        await p.click('[data-testid=login-form] button[type=submit]');
        await p.waitForURL(/\/ui$/);
        await waitFor('the DAG list after sign-in', async () => (await p.locator('[data-testid=dag-row]').count()) === 6);
        return { c, p };
      };
      const tryPause = async (p) => {
        const row = p.locator(`[data-testid=dag-row][data-dag-id=${RISK_DAG}]`);
        assert.equal(await row.locator('[data-testid=pause-toggle]').getAttribute('aria-checked'), 'false');
        await row.locator('[data-testid=pause-toggle]').click();
      };

      // A wrong token: the login page says so.
      {
        const c = await browser.newContext({ viewport: VIEWPORT });
        const p = watch(await c.newPage());
        state.page = p;
        await p.goto(`${world.base}/ui/login`);
        await p.fill('[data-testid=login-form] input[name=token]', 'cft_not_a_token');
        await p.click('[data-testid=login-form] button[type=submit]');
        await waitFor('the bad token message', async () => /not valid or was revoked/.test(await text(p, 'main [role=alert]')));
        await c.close();
      }

      // The viewer reads everything but may not pause.
      let s = await signIn(tokens.viewer);
      assert.match(await s.p.locator('#identity').textContent(), /viewer/);
      await tryPause(s.p);
      const refusal = /Could not pause chronon_gb_batch_risk: token "viewer" \(viewer of \*\) may not change DAG/;
      await waitFor('the refusal message', async () => refusal.test(await text(s.p, 'main [role=alert]')));
      await sleep(3000); // longer than the page's poll: the message stays
      assert.match(await text(s.p, 'main [role=alert]'), refusal, 'the refusal message went away by itself');
      assert.equal(await world.dagPaused(RISK_DAG, tokens.admin), false, 'the viewer paused the DAG');
      await waitFor('the toggle back to active', async () => (await s.p.getAttribute(`[data-testid=dag-row][data-dag-id=${RISK_DAG}] [data-testid=pause-toggle]`, 'aria-checked')) === 'false');
      await s.c.close();

      // An operator of another team may not either.
      s = await signIn(tokens['quickstart-operator']);
      await tryPause(s.p);
      await waitFor('the refusal message', async () => /may not change DAG "chronon_gb_batch_risk" of team "risk"/.test(await text(s.p, 'main [role=alert]')));
      assert.equal(await world.dagPaused(RISK_DAG, tokens.admin), false, 'an operator of another team paused the DAG');
      // Signing out ends the session.
      await s.p.click('#signout');
      await s.p.waitForURL('**/ui/login');
      await s.c.close();

      // The team's operator may.
      s = await signIn(tokens['risk-operator']);
      assert.match(await s.p.locator('#identity').textContent(), /risk-operator.*risk.*operator/s);
      await tryPause(s.p);
      await waitFor('the DAG paused (API)', async () => world.dagPaused(RISK_DAG, tokens.admin), { timeout: 10_000 });
      await waitFor('the toggle to show paused', async () => (await s.p.getAttribute(`[data-testid=dag-row][data-dag-id=${RISK_DAG}] [data-testid=pause-toggle]`, 'aria-checked')) === 'true');
      assert.equal(await text(s.p, 'main [role=alert]'), '');

      // g, signed in: the session cookie (SameSite=Strict, but 127.0.0.1 on another port is the
      // same site) goes with the attacker's form; the guard refuses it all the same.
      await crossSite(s.c, RISK_DAG, 'unpause', 'signed in as risk-operator');
      await sleep(300);
      assert.equal(await world.dagPaused(RISK_DAG, tokens.admin), true, `${RISK_DAG} was unpaused by a cross-site POST`);
      await s.c.close();
      state.page = page;
    }, { allowHttp: true });
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (attacker) await new Promise((r) => attacker.close(r));
    await world.stop().catch(() => world.killNow());
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    timings.push(`total: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    for (const line of timings) t.diagnostic(line);
    if (failed || process.env.CHRONOFLOW_KEEP_TMP === '1') {
      t.diagnostic(`kept the world for inspection: ${world.dir} (server log ${world.logFile})`);
    } else if (!process.env.CHRONOFLOW_SCREENSHOTS) {
      // The screenshots live in the world: keep them, drop the rest.
      for (const e of fs.readdirSync(world.dir)) if (e !== 'screenshots') fs.rmSync(path.join(world.dir, e), { recursive: true, force: true });
    } else {
      fs.rmSync(world.dir, { recursive: true, force: true });
    }
  }
});
