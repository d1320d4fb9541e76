/**
 * Preloaded into a Node-RED process under test (node --expose-gc --require
 * probe.js): when the file $TWINREC_PROBE_FILE.req appears, it collects
 * garbage and writes the heap, RSS and the live handles by kind to
 * $TWINREC_PROBE_FILE, so a test can see growth from outside without touching
 * the product. (Node-RED exits on SIGUSR2, so a signal cannot be the trigger.)
 */
import fs from 'node:fs';

const file = process.env.TWINREC_PROBE_FILE;
if (file) {
  const timer = setInterval(() => {
    if (!fs.existsSync(`${file}.req`)) return;
    fs.rmSync(`${file}.req`, { force: true });
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) {
      g();
      g();
    }
    const kinds: Record<string, number> = {};
    for (const r of process.getActiveResourcesInfo()) kinds[r] = (kinds[r] ?? 0) + 1;
    const m = process.memoryUsage();
    fs.writeFileSync(`${file}.tmp`, JSON.stringify({ at: Date.now(), heapUsed: m.heapUsed, rss: m.rss, resources: kinds }));
    fs.renameSync(`${file}.tmp`, file);
  }, 100);
  timer.unref();
}
