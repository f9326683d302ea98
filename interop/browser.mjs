// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) signing in
// to and out of an identity-rs sample app through the identity provider's HTML pages.
//
//   node browser.mjs --app http://127.0.0.1:5000 --user adele@contoso.onmicrosoft.com \
//        --password password --name "Adele Vance" [--api /call_api] [--logout /logout] \
//        [--screenshots target/e2e/axum] [--map-host login.microsoftonline.com] \
//        [--ignore-certificate-errors] [--provider-logout https://provider/.../logout]
//
// Steps: open the app's `/` → the provider's sign-in page (typed user name and password)
// → its consent page if shown → back on `/` showing the user's name → the API page
// showing `displayName` → sign-out, which must pass through the app again. With
// `--provider-logout`, the user signs out at the provider instead (single sign-out): the
// frames its sign-out page loads are reported (URL, status, whether a cookie was sent). Every request
// to a host other than loopback (and `--map-host` names, resolved to 127.0.0.1) is
// aborted, so nothing leaves the machine (the provider pages may import web fonts).
//
// Prints one JSON object per line: `{"step": ..., "url": ..., ...}` for each step and a
// final `{"result": "ok" | "failed", ...}`; exits 0 only when every step passed.

import { parseArgs } from 'node:util';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    app: { type: 'string' },
    user: { type: 'string', default: 'adele@contoso.onmicrosoft.com' },
    password: { type: 'string', default: 'password' },
    name: { type: 'string', default: 'Adele Vance' },
    api: { type: 'string', default: '/call_api' },
    'api-text': { type: 'string', default: 'displayName' },
    logout: { type: 'string', default: '/logout' },
    screenshots: { type: 'string', default: '' },
    'map-host': { type: 'string', multiple: true, default: [] },
    'ignore-certificate-errors': { type: 'boolean', default: false },
    executable: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    timeout: { type: 'string', default: '20000' },
    'provider-logout': { type: 'string', default: '' },
  },
});
if (!args.app) {
  console.error('--app is required');
  process.exit(2);
}
const app = new URL(args.app);
const timeout = Number(args.timeout);
const mapped = args['map-host'].map((h) => h.toLowerCase());

function emit(obj) {
  console.log(JSON.stringify(obj));
}

function allowedHost(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === '127.0.0.1' || h === 'localhost' || h === '::1' || mapped.includes(h);
}

const flags = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
if (mapped.length) {
  const rules = mapped.map((h) => `MAP ${h} 127.0.0.1`).join(', ');
  flags.push(`--host-resolver-rules=${rules}, EXCLUDE localhost`);
}
if (args['ignore-certificate-errors']) flags.push('--ignore-certificate-errors');

const userDataDir = mkdtempSync(join(tmpdir(), 'identity-chromium-'));
if (args.screenshots) mkdirSync(args.screenshots, { recursive: true });

const started = Date.now();
const navigations = [];
// Every document request of the main frame, redirect hops included.
const requests = [];
const aborted = [];
let context;
let shot = 0;

async function screenshot(page, label) {
  if (!args.screenshots) return;
  shot += 1;
  const path = join(args.screenshots, `${String(shot).padStart(2, '0')}-${label}.png`);
  await page.screenshot({ path, fullPage: true }).catch(() => {});
}

function onApp(url) {
  const u = new URL(url);
  return u.origin === app.origin;
}

// `page.$(selector)`, retried while a navigation replaces the document under it (the
// app's login page leaves by itself through its meta refresh).
async function has(page, selector) {
  for (let i = 0; i < 50; i += 1) {
    try {
      return !!(await page.$(selector));
    } catch (e) {
      if (!/context was destroyed|navigat/i.test(String(e))) throw e;
      await page.waitForLoadState('load').catch(() => {});
    }
  }
  throw new Error(`the page kept navigating while looking for ${selector}`);
}

// Waits until the page has loaded and then stays put for a moment: the app's login page
// and the provider's redirects move on by themselves, and a test must look at the page
// the browser ends on, not one it is leaving.
async function settled(page) {
  for (let i = 0; i < 30; i += 1) {
    await page.waitForLoadState('load', { timeout }).catch(() => {});
    const moved = await page
      .waitForEvent('framenavigated', { timeout: 700, predicate: (f) => f === page.mainFrame() })
      .then(() => true, () => false);
    if (!moved) return;
  }
  throw new Error(`the page keeps navigating: ${page.url()}`);
}

// Passes the provider's pages (sign-in, account picker, consent) until the browser is
// back on the app. Returns the names of the provider pages it went through.
async function throughProvider(page) {
  const seen = [];
  for (let i = 0; i < 12; i += 1) {
    await settled(page);
    if (onApp(page.url())) {
      // The app's login page moves on by itself (meta refresh), sometimes slowly.
      const from = page.url();
      if (await has(page, 'meta[http-equiv="refresh" i]')) {
        await page.waitForURL((u) => u.href !== from, { timeout });
        continue;
      }
      if (onApp(page.url())) return seen;
      continue;
    }
    if (await has(page, 'form#signin')) {
      seen.push('sign-in');
      await screenshot(page, 'provider-sign-in');
      await page.fill('#username', args.user);
      await page.fill('#password', args.password);
      await page.click('#next');
      continue;
    }
    if (await has(page, '#accept')) {
      seen.push('consent');
      await screenshot(page, 'provider-consent');
      await page.click('#accept');
      continue;
    }
    // Anything else is a provider page we do not know (an error page, say).
    await screenshot(page, 'provider-unknown');
    throw new Error(`unexpected provider page ${page.url()}: ${(await bodyText(page)).slice(0, 400)}`);
  }
  throw new Error('too many provider pages');
}

async function bodyText(page) {
  return page.innerText('body').catch(() => '');
}

let failure;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.executable,
    headless: true,
    args: flags,
    ignoreHTTPSErrors: args['ignore-certificate-errors'],
    viewport: { width: 1000, height: 800 },
  });
  emit({ step: 'launch', ms: Date.now() - started });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || allowedHost(url.hostname)) return route.continue();
    aborted.push(url.href);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations.push(frame.url());
  });
  page.on('request', (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) requests.push(request.url());
  });

  // 1. Sign in.
  let t = Date.now();
  await page.goto(new URL('/', app).href);
  const signInPages = await throughProvider(page);
  let text = await bodyText(page);
  await screenshot(page, 'home');
  emit({ step: 'sign-in', url: page.url(), provider_pages: signInPages, shows_name: text.includes(args.name), ms: Date.now() - t });
  if (!text.includes(args.name)) throw new Error(`home page lacks ${args.name}: ${text.slice(0, 400)}`);
  if (new URL(page.url()).pathname !== '/') throw new Error(`signed in on ${page.url()}, not /`);

  // 2. The API page.
  if (args.api) {
    t = Date.now();
    await page.goto(new URL(args.api, app).href);
    const apiPages = await throughProvider(page);
    text = await bodyText(page);
    await screenshot(page, 'api');
    emit({ step: 'api', url: page.url(), provider_pages: apiPages, shows_api: text.includes(args['api-text']), ms: Date.now() - t });
    if (!text.includes(args['api-text'])) throw new Error(`API page lacks ${args['api-text']}: ${text.slice(0, 400)}`);
  }

  // 3'. Sign out at the provider (another app of the tenant, or the user's account page):
  // its sign-out page frames the apps' front-channel logout URLs.
  if (args['provider-logout']) {
    t = Date.now();
    const frames = [];
    page.on('response', async (res) => {
      const req = res.request();
      if (!req.isNavigationRequest() || req.frame() === page.mainFrame()) return;
      const headers = await req.allHeaders().catch(() => ({}));
      frames.push({
        url: req.url(),
        status: res.status(),
        sent_cookie: Object.keys(headers).some((h) => h.toLowerCase() === 'cookie'),
      });
    });
    await page.goto(args['provider-logout']);
    await settled(page);
    await screenshot(page, 'provider-signed-out');
    emit({ step: 'provider-sign-out', url: page.url(), frames, ms: Date.now() - t });
  } else {
  // 3. Sign out: app → provider's end-session → back to the app (whose home page then
  // sends an anonymous browser to the provider's sign-in page again).
  t = Date.now();
  const before = requests.length;
  await page.goto(new URL(args.logout, app).href);
  await settled(page);
  const after = requests.slice(before);
  const providerIndex = after.findIndex((u) => !onApp(u));
  const backOnApp = providerIndex >= 0 && after.slice(providerIndex + 1).some((u) => onApp(u));
  await screenshot(page, 'signed-out');
  emit({ step: 'sign-out', url: page.url(), requests: after, back_on_app: backOnApp, ms: Date.now() - t });
  if (!backOnApp) throw new Error(`sign-out did not return to the app: ${after.join(' -> ')}`);
  }

  // 4. Signed out for real: the home page leads to the provider's sign-in form again.
  await page.goto(new URL('/', app).href);
  await settled(page);
  text = await bodyText(page);
  const needsPassword = !onApp(page.url()) && (await has(page, 'form#signin'));
  emit({ step: 'after-sign-out', url: page.url(), needs_password: needsPassword, shows_name: text.includes(args.name) && onApp(page.url()) });
  if (!needsPassword) throw new Error(`after sign-out, / did not lead to the sign-in form: ${page.url()}`);
  await screenshot(page, 'after-sign-out');
} catch (e) {
  failure = e;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

emit({
  result: failure ? 'failed' : 'ok',
  error: failure ? String(failure.stack ?? failure) : undefined,
  ms: Date.now() - started,
  aborted,
  navigations,
  requests,
});
process.exit(failure ? 1 : 0);
