// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) through the
// whole chain: browser → web app (examples/axum-webapp) → its web API (examples/web-api)
// → the downstream API, which the web API calls on behalf of the signed-in user.
//
//   node chain.mjs --app http://127.0.0.1:5000 --user adele@contoso.onmicrosoft.com \
//        --password password --name "Adele Vance" [--page /call_web_api] \
//        [--result '#web_api_result'] [--screenshots target/e2e/chain]
//
// Steps: open the app's `/` → the provider's sign-in page (user name and password typed)
// → its consent page if shown → back on `/` showing the user's name and a link to the
// web API page → follow the link (through the provider again if the app asks for the
// web API's scope interactively) → the page's result element shows the user's name as
// the downstream API returned it. Requests to hosts other than loopback are aborted.
//
// Prints one JSON object per line (`{"step": ...}`) and a final `{"result": "ok" |
// "failed", ...}`; exits 0 only when every step passed.

import { parseArgs } from 'node:util';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    app: { type: 'string' },
    user: { type: 'string', default: 'adele@contoso.onmicrosoft.com' },
    password: { type: 'string', default: 'password' },
    name: { type: 'string', default: 'Adele Vance' },
    page: { type: 'string', default: '/call_web_api' },
    link: { type: 'string', default: '#call_web_api' },
    result: { type: 'string', default: '#web_api_result' },
    screenshots: { type: 'string', default: '' },
    executable: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    timeout: { type: 'string', default: '20000' },
  },
});
if (!opts.app) {
  console.error('--app is required');
  process.exit(2);
}

const appOrigin = new URL(opts.app).origin;
const timeout = Number(opts.timeout);
const report = (obj) => console.log(JSON.stringify(obj));
const isLoopback = (host) => ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host.toLowerCase());
const onApp = (url) => new URL(url).origin === appOrigin;

const profile = mkdtempSync(join(tmpdir(), 'identity-chain-'));
if (opts.screenshots) mkdirSync(opts.screenshots, { recursive: true });
let shots = 0;
async function snap(page, label) {
  if (!opts.screenshots) return;
  shots += 1;
  const file = join(opts.screenshots, `${String(shots).padStart(2, '0')}-${label}.png`);
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
}

// Waits for the document to load and stay put for a moment (the app's login page and the
// provider's redirects move on by themselves).
async function quiet(page) {
  for (let round = 0; round < 30; round += 1) {
    await page.waitForLoadState('load', { timeout }).catch(() => {});
    const navigated = await page
      .waitForEvent('framenavigated', { timeout: 800, predicate: (f) => f === page.mainFrame() })
      .then(() => true, () => false);
    if (!navigated) return;
  }
  throw new Error(`the page does not stop navigating: ${page.url()}`);
}

// Whether `selector` matches, retried while a navigation swaps the document.
async function present(page, selector) {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    try {
      return (await page.locator(selector).count()) > 0;
    } catch (e) {
      if (!/destroyed|navigat/i.test(String(e))) throw e;
      await page.waitForLoadState('load').catch(() => {});
    }
  }
  throw new Error(`could not look for ${selector}: the page keeps navigating`);
}

const text = (page) => page.innerText('body').catch(() => '');

// Through the provider's pages until the browser is back on the app and stays there.
async function viaProvider(page) {
  const pages = [];
  for (let hop = 0; hop < 12; hop += 1) {
    await quiet(page);
    if (onApp(page.url())) {
      if (await present(page, 'meta[http-equiv="refresh" i]')) {
        const here = page.url();
        await page.waitForURL((u) => u.href !== here, { timeout });
        continue;
      }
      return pages;
    }
    if (await present(page, 'form#signin')) {
      pages.push('sign-in');
      await snap(page, 'sign-in');
      await page.fill('#username', opts.user);
      await page.fill('#password', opts.password);
      await page.click('#next');
    } else if (await present(page, '#accept')) {
      pages.push('consent');
      await snap(page, 'consent');
      await page.click('#accept');
    } else {
      await snap(page, 'unexpected');
      throw new Error(`unexpected provider page ${page.url()}: ${(await text(page)).slice(0, 400)}`);
    }
  }
  throw new Error('too many provider pages');
}

const began = Date.now();
const blocked = [];
let browser;
let failure;
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: opts.executable,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1000, height: 800 },
  });
  await browser.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || isLoopback(url.hostname)) return route.continue();
    blocked.push(url.href);
    return route.abort();
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(timeout);

  // 1. Sign in on the home page.
  let t = Date.now();
  await page.goto(new URL('/', opts.app).href);
  const signIn = await viaProvider(page);
  let body = await text(page);
  const hasLink = await present(page, opts.link);
  await snap(page, 'home');
  report({ step: 'sign-in', url: page.url(), provider_pages: signIn, shows_name: body.includes(opts.name), has_link: hasLink, ms: Date.now() - t });
  if (!body.includes(opts.name)) throw new Error(`the home page lacks ${opts.name}: ${body.slice(0, 400)}`);
  if (!hasLink) throw new Error(`the home page has no ${opts.link} link`);

  // 2. The web API page, through the link.
  t = Date.now();
  await page.click(opts.link);
  const apiPages = await viaProvider(page);
  const onPage = new URL(page.url()).pathname === opts.page;
  const result = (await present(page, opts.result)) ? await page.innerText(opts.result) : '';
  await snap(page, 'web-api');
  report({ step: 'web-api', url: page.url(), provider_pages: apiPages, on_page: onPage, result: result.slice(0, 2000), shows_name: result.includes(opts.name), ms: Date.now() - t });
  if (!onPage) throw new Error(`ended on ${page.url()}, not ${opts.page}`);
  if (!result.includes(opts.name)) {
    throw new Error(`${opts.result} lacks ${opts.name}: ${(result || (await text(page))).slice(0, 600)}`);
  }
} catch (e) {
  failure = e;
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

report({
  result: failure ? 'failed' : 'ok',
  error: failure ? String(failure.stack ?? failure) : undefined,
  blocked,
  ms: Date.now() - began,
});
process.exit(failure ? 1 : 0);
