// Headless Debian Chromium for the end-to-end suites, driven by playwright-core (which never
// downloads a browser of its own). A missing Chromium is a test failure, never a skip.
//
//   const browser = await launchChromium();
//   const page = await openTab(browser, 'http://127.0.0.1:PORT/page.html', 'tab1');
//   …
//   await browser.close();
import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const LAUNCH_TIMEOUT_MS = 30000;

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox', // the tests run as root (or uid 0 of a user namespace)
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-quic',
  '--disable-sync',
  // Host ICE candidates carry the real address instead of a random .local name that the
  // other peer would have to resolve by multicast DNS, which nothing answers here. (Chromium
  // honours only the last --disable-features, so this replaces Playwright's default list;
  // none of those features matters to these suites.)
  // Chromium gathers no candidate at all, not even on 127.0.0.1 (with or without
  // --allow-loopback-in-peer-connection), unless there is a default route: hence the veth
  // and route of run-in-netns.sh --veth.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // Players start without a click.
  '--autoplay-policy=no-user-gesture-required',
];

export async function launchChromium({ args = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install the Debian package "chromium" ` +
      '(deploy/install-deps.sh test does); the end-to-end suites cannot run without it');
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout: LAUNCH_TIMEOUT_MS,
  });
}

// A new context (so tabs share no cache, storage or peer ids) with one page at `url`. The
// page's console messages, uncaught errors and crashes go to the test's stderr prefixed
// with [label], so a failing run shows what each browser tab was doing.
export async function openTab(browser, url, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const say = (line) => process.stderr.write(`[${label}] ${line}\n`);
  page.on('console', (msg) => say(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => say(`pageerror: ${err.stack ?? err.message}`));
  page.on('crash', () => say('page crashed'));
  page.on('requestfailed', (req) => {
    const error = req.failure()?.errorText ?? '';
    // Players abort requests all the time (p2p-media-loader even after reading the whole
    // body): not worth a line.
    if (error !== 'net::ERR_ABORTED') say(`request failed: ${req.url()} ${error}`);
  });
  await page.goto(url);
  return page;
}
