// Page-load time of chronoflow's grid page for the big DAG in headless Chromium (the same measurement
// airflow_page.mjs makes on Airflow 3.3).
//
//   node bench/ui/chronoflow_page.mjs BASE_URL     (playwright-core is installed into .bench/playwright on first use)
//
// One sample: a new tab in one browser context (assets from the HTTP cache after the warm-up), page.goto
// (BASE/ui/dags/ui_bench_big?tab=grid), then the time until the grid has a cell of every one of the 25 runs
// in the DOM ([data-testid=grid-cell][data-run-id=...]; the grid draws only the rows on screen).
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

const base = process.argv[2] || "http://127.0.0.1:18686";
const dagId = process.env.CHRONOFLOW_UI_BIG_DAG || "ui_bench_big";
const runs = Number(process.env.CHRONOFLOW_UI_RUNS || 25);
const tasks = Number(process.env.CHRONOFLOW_UI_TASKS || 5000);
const N = Number(process.env.CHRONOFLOW_UI_PAGE_N || 5);
const WARMUP = Number(process.env.CHRONOFLOW_UI_PAGE_WARMUP || 1);

const grid = await (await fetch(`${base}/api/v1/ui/dags/${dagId}/grid?runs=${runs}`)).json();
const runIds = grid.runs.map((r) => r.run_id);
if (runIds.length !== runs) throw new Error(`expected ${runs} runs, got ${runIds.length}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(Math.floor(p * s.length), s.length - 1)]; };
try {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const samples = [], cellCounts = [];
  for (let rep = 0; rep < WARMUP + N; rep++) {
    const page = await context.newPage();
    const t0 = Date.now();
    await page.goto(`${base}/ui/dags/${dagId}?tab=grid&runs=${runs}`, { waitUntil: "commit", timeout: 300000 });
    await page.waitForFunction((ids) => ids.every((id) =>
      document.querySelector(`[data-testid="grid-cell"][data-run-id="${CSS.escape(id)}"]`)),
      runIds, { polling: 20, timeout: 300000 });
    const ms = Date.now() - t0;
    const cells = await page.evaluate(() => document.querySelectorAll('[data-testid="grid-cell"]').length);
    if (rep >= WARMUP) { samples.push(ms); cellCounts.push(cells); }
    process.stderr.write(`[chronoflow_page] ${rep < WARMUP ? "warm-up" : "sample"} ${ms} ms, ${cells} grid cells in the DOM\n`);
    await page.close();
  }
  console.log(JSON.stringify({
    peer: "chronoflow", what: `grid_page_${tasks}x${runs}`, median_ms: pct(samples, 0.5), p95_ms: pct(samples, 0.95),
    n: N, cells_in_dom: cellCounts[0],
    note: "headless Chromium, navigation start to a grid cell of every run in the DOM (virtualized grid)",
  }));
} finally {
  await browser.close();
}
