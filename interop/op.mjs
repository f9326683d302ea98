// An OpenID provider built on panva's oidc-provider (a certified implementation we did
// not write), for identity-rs's interop tests. Plain HTTP on 127.0.0.1; the issuer is
// `http://127.0.0.1:{port}/op`.
//
//   node op.mjs --redirect-uri http://127.0.0.1:5000/getAToken \
//               --post-logout-redirect-uri http://127.0.0.1:5000/ \
//               [--port 0] [--access-token-ttl 3600] [--id-token-ttl 3600]
//               [--backchannel-logout-uri http://127.0.0.1:5000/backchannel_logout]
//               [--token-delay-ms 0]
//
// Prints `issuer <url>` then `ready` on stdout once listening.
//
// What it serves besides the provider itself (under /op):
//   * client `interop-webapp` / `interop-secret`, client_secret_post, auth code + refresh;
//   * scope `api.read` of the resource server `urn:interop:api` (resource indicators):
//     JWT access tokens with the configured lifetime, chosen without a `resource`
//     parameter because OAuth clients that know nothing of RFC 8707 send none;
//   * `GET /api/me`: a protected API that verifies such a token (signature, issuer,
//     audience, expiry, scope) and answers `{"displayName": ...}`;
//   * `GET /__stats`: requests counted per provider route, for round-trip assertions;
//   * the development login and consent pages (any login, any password).
//
// Provider-side choices (the relying party is not changed for this peer):
//   * OIDC Core §11: `offline_access` is honoured only with `prompt=consent`, and
//     oidc-provider drops it otherwise; a refresh token whose grant lacks
//     `offline_access` then refuses every refresh that asks for it (`invalid_scope`).
//     This provider's policy is to always ask for consent to offline access: an
//     authorization request with `offline_access` and no `prompt` gets `prompt=consent`
//     added (counted as `forced_consent` in /__stats; `--no-force-consent` turns it off).
//     The consent page therefore shows on every such sign-in.
//   * refresh tokens are issued for every authorization code of a client allowed the
//     refresh_token grant (`issueRefreshToken`), and they outlive the provider session;
//   * refresh tokens are rotated on every use, and a used one that comes back revokes the
//     whole grant ("refresh token already used"), oidc-provider's reuse detection;
//   * back-channel logout is on: with `--backchannel-logout-uri`, ending the provider
//     session (`/op/session/end`, confirmed) POSTs a logout token to the client;
//   * outgoing requests may go to loopback (the SSRF guard is off: the apps under test
//     listen there);
//   * `--token-delay-ms` makes the token endpoint answer that much later (a slow
//     provider, so that concurrent requests overlap a refresh);
//   * profile claims go into the ID token (`conformIdTokenClaims: false`), since a
//     relying party that only reads ID-token claims must see the user's name.

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import * as crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { createLocalJWKSet, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OP_PORT ?? '0' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
    'access-token-ttl': { type: 'string', default: '3600' },
    'id-token-ttl': { type: 'string', default: '3600' },
    'client-id': { type: 'string', default: 'interop-webapp' },
    'client-secret': { type: 'string', default: 'interop-secret' },
    'no-force-consent': { type: 'boolean', default: false },
    'backchannel-logout-uri': { type: 'string', default: '' },
    'token-delay-ms': { type: 'string', default: '0' },
  },
});

const API_RESOURCE = 'urn:interop:api';
const API_SCOPE = 'api.read';
const accessTokenTTL = Number(args['access-token-ttl']);
const idTokenTTL = Number(args['id-token-ttl']);

// Directory: the dev login page accepts any login; these have names.
const PEOPLE = {
  adele: { name: 'Adele Vance', given_name: 'Adele', family_name: 'Vance' },
  alex: { name: 'Alex Wilber', given_name: 'Alex', family_name: 'Wilber' },
};
function person(accountId) {
  const key = accountId.split('@')[0].toLowerCase();
  return PEOPLE[key] ?? { name: accountId, given_name: accountId, family_name: '' };
}

const stats = {};
function count(name) {
  stats[name] = (stats[name] ?? 0) + 1;
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-1', use: 'sig', alg: 'RS256' };
const { d, p, q, dp, dq, qi, ...publicJwk } = signingJwk;
const localJwks = createLocalJWKSet({ keys: [publicJwk] });

function requestedScopes(ctx, model) {
  const fromRequest = ctx.oidc.params?.scope;
  if (fromRequest) return new Set(String(fromRequest).split(' '));
  return model?.scopes ?? new Set();
}

const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const { port } = server.address();
const origin = `http://127.0.0.1:${port}`;
const issuer = `${origin}/op`;

const configuration = {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      client_name: 'identity-rs sample',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: args['redirect-uri'],
      post_logout_redirect_uris: args['post-logout-redirect-uri'],
      ...(args['backchannel-logout-uri']
        ? { backchannel_logout_uri: args['backchannel-logout-uri'], backchannel_logout_session_required: true }
        : {}),
    },
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    const who = person(sub);
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          ...who,
          preferred_username: sub,
          email: sub.includes('@') ? sub : `${sub}@interop.example`,
          email_verified: true,
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        return requestedScopes(ctx).has(API_SCOPE) ? API_RESOURCE : undefined;
      },
      async useGrantedResource(ctx, model) {
        return requestedScopes(ctx, model).has(API_SCOPE);
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: API_SCOPE,
          audience: API_RESOURCE,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  rotateRefreshToken: true,
  // Outgoing calls (back-channel logout) go to apps on loopback, which oidc-provider's
  // SSRF guard refuses; this test provider talks to loopback only, so it drops the guard.
  async fetch(url, options) {
    delete options.dispatcher;
    return fetch(url, options);
  },
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  async expiresWithSession() {
    return false;
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTTL,
    IdToken: idTokenTTL,
    AuthorizationCode: 120,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.error, err.error_description));
provider.on('authorization.error', (ctx, err) => console.error('authorization.error', err.error, err.error_description));
provider.on('end_session.error', (ctx, err) => console.error('end_session.error', err.error, err.error_description));
provider.on('backchannel.success', () => count('backchannel_success'));
provider.on('backchannel.error', (_ctx, err) => {
  count('backchannel_error');
  console.error('backchannel.error', String(err), String(err?.cause ?? ''));
});
const opHandler = provider.callback();

async function api(req, res) {
  const send = (status, body, extra = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...extra });
    res.end(JSON.stringify(body));
  };
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!m) {
    return send(401, { error: 'invalid_request' }, { 'www-authenticate': 'Bearer' });
  }
  try {
    const { payload } = await jwtVerify(m[1], localJwks, { issuer, audience: API_RESOURCE });
    const scopes = String(payload.scope ?? '').split(' ');
    if (!scopes.includes(API_SCOPE)) {
      return send(403, { error: 'insufficient_scope' }, { 'www-authenticate': `Bearer error="insufficient_scope", scope="${API_SCOPE}"` });
    }
    const who = person(String(payload.sub));
    return send(200, { displayName: who.name, givenName: who.given_name, surname: who.family_name, id: payload.sub, scope: payload.scope, aud: payload.aud });
  } catch (e) {
    return send(401, { error: 'invalid_token', error_description: String(e.message) }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
}

server.on('request', (req, res) => {
  const url = req.url ?? '/';
  if (url === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(stats));
  }
  if (url === '/api/me' || url.startsWith('/api/me?')) {
    count('api');
    return api(req, res);
  }
  if (url === '/op' || url.startsWith('/op/') || url.startsWith('/op?')) {
    const rest = url.slice(3);
    const route = rest.split('?')[0].split('/')[1] || 'root';
    count(route === '.well-known' ? 'discovery' : route);
    req.originalUrl = url;
    req.url = rest.startsWith('/') ? rest : `/${rest}`;
    if (route === 'auth' && req.method === 'GET' && !args['no-force-consent']) {
      const u = new URL(req.url, origin);
      const scopes = (u.searchParams.get('scope') ?? '').split(' ');
      if (scopes.includes('offline_access') && !u.searchParams.has('prompt')) {
        u.searchParams.set('prompt', 'consent');
        count('forced_consent');
        req.url = `${u.pathname}${u.search}`;
        req.originalUrl = `/op${req.url}`;
      }
    }
    const delay = Number(args['token-delay-ms']);
    if (route === 'token' && delay > 0) {
      return setTimeout(() => opHandler(req, res), delay);
    }
    return opHandler(req, res);
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));

console.log(`issuer ${issuer}`);
console.log(`api ${origin}/api/me`);
console.log('ready');
