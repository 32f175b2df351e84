// What the Omniboard browser checks share: headless Chromium through playwright-core with the
// flags that work here, and finding a run's row in Omniboard's run list (a fixed-data-table
// whose rows carry test-attr="cell-row_expander-N").
import { createRequire } from 'module';
import path from 'path';

export const TIMEOUT_MS = 30000;

export async function launch(job) {
  const require = createRequire(path.resolve(job.toolsDir) + '/');
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: job.chromium,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// → [row index, the row's text] of run `runId` in the list shown on `page`; throws when absent.
export async function findRun(page, runId) {
  await page.waitForSelector('[test-attr="cell-row_expander-0"]');
  const rows = await page.locator('[test-attr^="cell-row_expander-"]').count();
  for (let index = 0; index < rows; index++) {
    const cells = page.locator('.fixedDataTableRowLayout_rowWrapper').filter({
      has: page.locator(`[test-attr="cell-row_expander-${index}"]`) });
    const text = await cells.first().innerText();
    if (text.split(/\s+/).includes(String(runId))) return [index, text];
  }
  throw new Error(`run ${runId} is not in Omniboard's run list`);
}
