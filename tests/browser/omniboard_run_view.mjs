// Drives headless Chromium (playwright-core) through Omniboard on a pre-training run: its name
// in the run list is "command · experiment", the board's metric column shows its final loss,
// its metrics plot selects the loss alone (the eff/ and health/ metrics stay in the menu, not
// on the loss's axis), and a picture in its artifacts is no wider than its panel. Screenshots
// of the list, the plot and the picture. Exit code 0 only if all is seen.
//   node omniboard_run_view.mjs '{"base": ..., "runId": 2, "runName": "pretrain · tiny_cpu",
//     "column": "loss", "value": "1.19", "plotted": "train/loss", "notPlotted": "eff/",
//     "picture": "reconstruction_0000004.png", "shots": "dir", "toolsDir": ..., "chromium": ...}'
import path from 'path';
import { TIMEOUT_MS, findRun, launch } from './omniboard_page.mjs';

const job = JSON.parse(process.argv[2]);
const browser = await launch(job);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(TIMEOUT_MS);
  await page.goto(job.base);
  const [row, rowText] = await findRun(page, job.runId);
  if (!rowText.includes(job.runName)) throw new Error(`run ${job.runId} is not named "${job.runName}": ${rowText}`);
  console.log(`run list: "${job.runName}"`);
  await page.screenshot({ path: path.join(job.shots, 'omniboard_run_list.png') });
  // The board's metric columns sit after Omniboard's own: scroll the table right to them.
  for (let tries = 0; tries < 10 && !(await page.locator(`[test-attr="header-sort-${job.column}"]`).count()); tries++) {
    await page.mouse.move(700, 300);
    await page.mouse.wheel(800, 0);
    await page.waitForTimeout(300);
  }
  const withColumn = (await page.locator('.fixedDataTableRowLayout_rowWrapper').allInnerTexts())
    .map(text => text.replace(/\s+/g, ' '));
  const shown = withColumn.find(text => text.split(' ').includes(String(job.runId)));
  if (!(await page.locator(`[test-attr="header-sort-${job.column}"]`).count()) || !shown || !shown.includes(job.value)) {
    throw new Error(`no "${job.column}" column showing ${job.value} for run ${job.runId}: ${withColumn.join(' / ')}`);
  }
  console.log(`column ${job.column}: ${job.value}`);
  await page.screenshot({ path: path.join(job.shots, 'omniboard_run_columns.png') });
  await page.reload();
  await page.waitForSelector(`[test-attr="cell-row_expander-${row}"]`);

  await page.click(`[test-attr="cell-row_expander-${row}"]`);
  await page.waitForSelector('text=Details for:');
  await page.click('a[role=button]:text-is("Metrics Plot")');
  await page.waitForSelector(`.js-plotly-plot .legendtext:text-is("${job.plotted}")`);
  const legend = await page.locator('.js-plotly-plot .legendtext').allTextContents();   // SVG text
  if (legend.some(name => name.startsWith(job.notPlotted))) {
    throw new Error(`the default plot puts ${job.notPlotted} beside ${job.plotted}: ${legend}`);
  }
  console.log(`metrics plot: ${legend.join(', ')}`);
  await page.screenshot({ path: path.join(job.shots, 'omniboard_run_plot.png') });

  await page.click('a[role=button]:text-is("Artifacts")');
  await page.click(`text=${job.picture}`);
  const picture = page.locator('img[alt="image"]').first();
  await picture.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('img[alt="image"]');
    return img && img.complete && img.naturalWidth > 0;
  });
  const fit = await picture.evaluate(img => {
    const panel = img.parentElement.getBoundingClientRect();
    return { maxWidth: getComputedStyle(img).maxWidth, width: img.getBoundingClientRect().width,
             panel: panel.width, natural: img.naturalWidth };
  });
  if (fit.maxWidth !== '100%' || fit.width > fit.panel + 1) {
    throw new Error(`the picture is not sized to its panel: ${JSON.stringify(fit)}`);
  }
  console.log(`picture: ${fit.width}px shown in a ${fit.panel}px panel (natural ${fit.natural}px)`);
  await page.screenshot({ path: path.join(job.shots, 'omniboard_run_picture.png') });
} finally {
  await browser.close();
}
