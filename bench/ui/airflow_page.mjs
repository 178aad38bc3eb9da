// Page-load time of Airflow 3.3's grid page for the big DAG in headless Chromium (optional part of airflow.sh).
//
//   node bench/ui/airflow_page.mjs BASE_URL      (playwright-core is installed into .bench/playwright on first use)
//
// One sample: a new tab in one browser context (so the UI's JS/CSS come from the HTTP cache after the warm-up,
// as for a returning user), page.goto(BASE/dags/ui_big?limit=25), then the time until the grid has a cell
// (element id `grid-{run_id}-{task_id}`, as the UI renders them) for every one of the 25 runs, i.e. the last
// NDJSON line of /ui/grid/ti_summaries is rendered. The grid is virtualized: only the visible task rows are
// in the DOM. The grid's run count is the page URL's `limit` (default 10), the left panel is the grid
// (localStorage `default_dag_view` = "grid", also the default), the JWT from GET /auth/token is the `_token` cookie.
// Prints one JSON line {"peer":"airflow","what":"grid_page_5000x25",...} with the API calls the page made.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pwDir = path.join(root, ".bench/playwright");
if (!existsSync(path.join(pwDir, "node_modules/playwright-core"))) {
  execFileSync("npm", ["install", "--silent", "--no-audit", "--no-fund", "--prefix", pwDir, "playwright-core@1.65.1"],
    { stdio: "inherit", timeout: 300000 });
}
const { chromium } = createRequire(pwDir + "/")("playwright-core");

const base = process.argv[2] || "http://127.0.0.1:18090";
const dagId = process.env.AIRFLOW_UI_BIG_DAG || "ui_big";
const runs = Number(process.env.AIRFLOW_UI_RUNS || 25);
const tasks = Number(process.env.AIRFLOW_UI_TASKS || 5000);
const N = Number(process.env.AIRFLOW_UI_PAGE_N || 5);
const WARMUP = Number(process.env.AIRFLOW_UI_PAGE_WARMUP || 1);

const token = (await (await fetch(`${base}/auth/token`)).json()).access_token;
const runIds = (await (await fetch(`${base}/ui/grid/runs/${dagId}?limit=${runs}&order_by=-run_after`,
  { headers: { Authorization: `Bearer ${token}` } })).json()).map((r) => r.run_id);
if (runIds.length !== runs) throw new Error(`expected ${runs} runs, got ${runIds.length}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(Math.floor(p * s.length), s.length - 1)]; };
try {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const u = new URL(base);
  await context.addCookies([{ name: "_token", value: token, domain: u.hostname, path: "/" }]);
  await context.addInitScript(() => localStorage.setItem("default_dag_view", JSON.stringify("grid")));
  const samples = [], cellCounts = [];
  let calls = [];
  for (let rep = 0; rep < WARMUP + N; rep++) {
    const page = await context.newPage();
    const seen = [];
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (/^\/(ui|api)\//.test(u.pathname)) seen.push(r.method() + " " + u.pathname + u.search.slice(0, 90));
    });
    const t0 = Date.now();
    await page.goto(`${base}/dags/${dagId}?limit=${runs}`, { waitUntil: "commit", timeout: 300000 });
    await page.waitForFunction((ids) => ids.every((id) => document.querySelector(`[id^="grid-${CSS.escape(id)}-"]`)),
      runIds, { polling: 50, timeout: 300000 });
    const ms = Date.now() - t0;
    const cells = await page.evaluate(() => document.querySelectorAll('[id^="grid-"]').length);
    if (rep >= WARMUP) { samples.push(ms); cellCounts.push(cells); }
    if (rep === WARMUP) calls = seen;
    process.stderr.write(`[airflow_page] ${rep < WARMUP ? "warm-up" : "sample"} ${ms} ms, ${cells} grid cells in the DOM\n`);
    await page.close();
  }
  console.log(JSON.stringify({
    peer: "airflow", what: `grid_page_${tasks}x${runs}`, median_ms: pct(samples, 0.5), p95_ms: pct(samples, 0.95),
    n: N, cells_in_dom: cellCounts[0], calls: [...new Set(calls)],
    note: "headless Chromium, navigation start to a grid cell of every run in the DOM (virtualized grid)",
  }));
} finally {
  await browser.close();
}
