// Drives headless Chromium (Debian `chromium`) with playwright-core through Omniboard:
// finds a run in the list, opens its metrics plot, opens its config and expands the path to a
// gin binding, checks the value, and saves a screenshot. Exit code 0 only if all is seen.
//   node omniboard_check.mjs '{"base": "http://127.0.0.1:9000/sacred", "runId": 1,
//     "metric": "train/loss", "configPath": ["gin", "bindings", ...], "value": "0.05",
//     "screenshot": "out.png", "toolsDir": ".tools/node", "chromium": "/usr/bin/chromium"}'
import { TIMEOUT_MS, findRun, launch } from './omniboard_page.mjs';

const job = JSON.parse(process.argv[2]);
const browser = await launch(job);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1200 } });
  page.setDefaultTimeout(TIMEOUT_MS);
  await page.goto(job.base);
  const [row] = await findRun(page, job.runId);
  await page.click(`[test-attr="cell-row_expander-${row}"]`);
  await page.waitForSelector(`text=Details for:`);

  await page.click('a[role=button]:text-is("Metrics Plot")');
  await page.waitForSelector('.js-plotly-plot .main-svg');
  await page.waitForSelector(`.js-plotly-plot .legendtext:text-is("${job.metric}")`);
  const traces = await page.locator('.js-plotly-plot .scatterlayer .trace').count();
  if (traces < 1) throw new Error('the metrics plot has no trace');
  console.log(`metrics plot: ${traces} traces, legend has ${job.metric}`);

  await page.click('a[role=button]:text-is("Config")');
  const tree = page.locator('.react-json-view').first();
  await tree.waitFor();
  for (const key of job.configPath) {
    await tree.locator('.object-key', { hasText: new RegExp(`^"${key}"$`) }).first().click();
  }
  const leaf = job.configPath[job.configPath.length - 1];
  const shown = await tree.innerText();
  if (!shown.includes(`"${leaf}":${job.value}`)) {
    throw new Error(`config does not show "${leaf}":${job.value}; it shows:\n${shown.slice(0, 2000)}`);
  }
  console.log(`config shows ${job.configPath.join('.')} = ${job.value}`);
  await page.screenshot({ path: job.screenshot, fullPage: true });
  console.log(`screenshot: ${job.screenshot}`);
} finally {
  await browser.close();
}
