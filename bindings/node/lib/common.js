'use strict'
// What the Express middleware and the Fastify plugin share: checking their options once, at
// setup, and turning one `Authorization` header into an answer. Every decision about the key
// (its status, scopes, the HTTP status and the `WWW-Authenticate` challenge) is the binding's
// `Verification`, that is, core's; this file only adds an optional `realm` to the challenge
// and maps `KEYSTEAD_UNAVAILABLE` to 503. It reads the `Authorization` header and nothing
// else of the request (never the body), and it never logs or returns that header.

/** The `Retry-After` of a 503 when the options do not say, in seconds. */
const DEFAULT_RETRY_AFTER = 5

// The request's state: which store last accepted which key with which scopes. A second
// check on the same request (an app-wide middleware, then a route's) reuses it: it neither
// verifies again nor counts a second use.
const STATE = Symbol('keystead.state')

const MESSAGES = {
  missing: 'An API key is required: send it as Authorization: Bearer <key>.',
  malformed: 'The Authorization header does not hold a Bearer API key.',
  not_found: 'The API key is not valid.',
  disabled: 'The API key is disabled.',
  revoked: 'The API key has been revoked.',
  expired: 'The API key has expired.',
  insufficient_scope: 'The API key does not grant the scope this resource requires.',
}
const UNAVAILABLE_MESSAGE = 'The API key store cannot be reached now; retry later.'

function configError(where, message) {
  const err = new TypeError(`${where}: ${message}`)
  err.code = 'KEYSTEAD_INVALID_ARGUMENT'
  return err
}

/** `scopes` as an array of strings: undefined/null is none, one string is one scope. */
function scopeList(scopes, where) {
  if (scopes === undefined || scopes === null) return []
  if (typeof scopes === 'string') return [scopes]
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string')) {
    throw configError(where, 'scopes must be a string or an array of strings')
  }
  return [...scopes]
}

/** `a` followed by the scopes of `b` not already in it. */
function union(a, b) {
  if (b.length === 0) return a
  if (a.length === 0) return b
  const out = [...a]
  for (const s of b) if (!out.includes(s)) out.push(s)
  return out
}

/** Throws core's KEYSTEAD_INVALID_ARGUMENT now, at setup, for a scope no key can have. */
function checkScopes(store, scopes) {
  // The empty key is malformed before any lookup, so this touches no database; core checks
  // the required scopes first.
  if (scopes.length > 0) store.verify('', { scopes })
}

/** The options both frameworks take, checked. */
function compileOptions(options, where) {
  if (options === null || typeof options !== 'object') {
    throw configError(where, 'options must be an object with a `store`')
  }
  const { store, realm, retryAfter = DEFAULT_RETRY_AFTER, logger = null } = options
  if (
    store === null ||
    typeof store !== 'object' ||
    typeof store.verifyHeader !== 'function' ||
    typeof store.verify !== 'function'
  ) {
    throw configError(where, 'options.store must be a KeyStore (KeyStore.open(...))')
  }
  if (realm !== undefined && realm !== null) {
    // A quoted-string without quotes, backslashes or control characters: no escaping needed.
    if (typeof realm !== 'string' || !/^[\x20-\x7e]*$/.test(realm) || /["\\]/.test(realm)) {
      throw configError(
        where,
        'options.realm must be a string of printable ASCII without `"` or `\\`',
      )
    }
  }
  if (!Number.isSafeInteger(retryAfter) || retryAfter < 0) {
    throw configError(where, 'options.retryAfter must be a whole number of seconds >= 0')
  }
  if (logger !== null && (typeof logger !== 'object' || typeof logger.warn !== 'function')) {
    throw configError(where, 'options.logger must have warn() (and debug()), e.g. a pino logger')
  }
  const scopes = scopeList(options.scopes, where)
  checkScopes(store, scopes)
  return { store, scopes, realm: realm ?? null, retryAfter: String(retryAfter), logger }
}

/** Core's challenge with `realm="..."` as its first parameter (RFC 6750 §3). */
function challenge(value, realm) {
  if (realm === null || value === null) return value
  if (value === 'Bearer') return `Bearer realm="${realm}"`
  return `Bearer realm="${realm}", ${value.slice('Bearer '.length)}`
}

/**
 * Checks the request's `Authorization` header against `config.store` (options compiled by
 * `compileOptions`) for `scopes`.
 *
 * Returns `{ ok: true, key }` or a refusal `{ ok: false, status, headers, body, log }`;
 * `log` is what may be logged about it (a code and a key id, never the key). Throws what
 * `verifyHeader` throws except `KEYSTEAD_UNAVAILABLE`, which is a 503 refusal.
 */
function authenticate(req, authorization, config, scopes) {
  const { store, realm, retryAfter } = config
  const state = req[STATE]
  let required = scopes
  if (state !== undefined && state.config.store === store) {
    // Already accepted on this request by this store: enough if it granted these scopes too.
    const granted = state.scopes
    if (scopes.every((s) => granted.includes(s))) return { ok: true, key: state.key }
    // Otherwise ask core again with every scope required so far, so that its answer (and
    // the scope list of its 403 challenge) covers the whole requirement.
    required = union(state.required, scopes)
  }
  let check
  try {
    check = store.verifyHeader(authorization, required.length > 0 ? { scopes: required } : undefined)
  } catch (err) {
    if (err && err.code === 'KEYSTEAD_UNAVAILABLE') {
      return {
        ok: false,
        status: 503,
        headers: { 'retry-after': retryAfter },
        body: { error: { code: 'unavailable', message: UNAVAILABLE_MESSAGE } },
        log: {
          level: 'warn',
          fields: { keystead: { code: err.code, error: String(err.message) } },
          message: 'keystead: the key store is unavailable; answered 503',
        },
      }
    }
    throw err
  }
  if (check.ok) {
    const key = check.key
    // A copy: what a later check trusts is what core returned, whatever the app does to
    // req.keystead.scopes.
    req[STATE] = { config, key, required, scopes: [...key.scopes] }
    return { ok: true, key }
  }
  const headers = {}
  const www = challenge(check.wwwAuthenticate, realm)
  if (www !== null) headers['www-authenticate'] = www
  return {
    ok: false,
    status: check.httpStatus,
    headers,
    body: { error: { code: check.code, message: MESSAGES[check.code] ?? 'The API key is refused.' } },
    log: {
      level: 'debug',
      fields: { keystead: { code: check.code, keyId: check.keyId, status: check.httpStatus } },
      message: 'keystead: API key refused',
    },
  }
}

/**
 * The `Authorization` value of a Node request (`http.IncomingMessage`). Node keeps only the
 * first of several `Authorization` fields in `headers`; these are joined with ", " instead
 * (as a WSGI server and keystead.asgi do), which core refuses as malformed.
 */
function authorizationOf(message) {
  const all = message.headersDistinct === undefined ? undefined : message.headersDistinct.authorization
  if (Array.isArray(all) && all.length > 1) return all.join(', ')
  return message.headers.authorization
}

/** Writes `entry` to a pino-style logger (`logger[level](fields, message)`), if any. */
function emit(logger, entry) {
  if (logger === null || logger === undefined) return
  const write = logger[entry.level]
  if (typeof write === 'function') write.call(logger, entry.fields, entry.message)
}

module.exports = {
  DEFAULT_RETRY_AFTER,
  STATE,
  authenticate,
  authorizationOf,
  compileOptions,
  configError,
  checkScopes,
  scopeList,
  emit,
}
